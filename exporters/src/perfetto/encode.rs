//! Turns calls, sessions and requests into Perfetto `TracePacket`s, encoded with the prost
//! messages generated from Perfetto's protos ([`super::protos`]).
//!
//! Layout: one track per process and one per thread (its `TrackDescriptor` names the
//! thread); every thread writes on a packet sequence of its own, whose first packet clears
//! the incremental state and sets the thread's track as the default, so that a call costs
//! two small packets (`TYPE_SLICE_BEGIN` with an interned name, `TYPE_SLICE_END`). Event
//! names are interned per sequence (`InternedData.event_names`). Timestamps are absolute
//! nanoseconds on the trace's clock (the recording process's monotonic clock since its
//! start, as in JSONL). Calls arrive in the order they ended, so the packets are not in time
//! order: trace readers sort them by timestamp, which is why the timestamps are absolute
//! rather than incremental (an incremental timestamp cannot go back).
//!
//! A file is the packets, each framed as field 1 of `perfetto.protos.Trace`, so any prefix
//! of whole packets is a valid trace and files can be concatenated.

use super::protos::{
    debug_annotation, trace_packet, track_descriptor, track_event, DebugAnnotation, EventName,
    InternedData, ProcessDescriptor, ThreadDescriptor, TracePacket, TracePacketDefaults,
    TrackDescriptor, TrackEvent, TrackEventDefaults,
};
use std::collections::HashMap;

/// Thread ids above this are given compact ids (Linux thread ids stay below it), as the
/// readers keep thread ids in 32 bits.
const MAX_NATIVE_TID: u64 = i32::MAX as u64;
/// First compact id handed to a thread id too large for the readers.
const FIRST_COMPACT_TID: i64 = 1_000_000_000;
/// Up to this many threads, a thread is found by a scan rather than by hashing.
const FEW_THREADS: usize = 8;
/// The sequence of the process-level packets (process tracks, requests, the final record);
/// threads get the ones after it.
const PROCESS_SEQUENCE: u32 = 1;
/// `TracePacket.sequence_flags` of a sequence's first packet.
const STATE_CLEARED: u32 = trace_packet::SequenceFlags::SeqIncrementalStateCleared as u32;
/// `TracePacket.sequence_flags` of every later packet: they rely on the defaults and
/// interned names of the first.
const NEEDS_STATE: u32 = trace_packet::SequenceFlags::SeqNeedsIncrementalState as u32;

/// A value of a debug annotation (the key/value pairs shown with a slice).
pub enum Value<'a> {
    /// Text shown as is.
    Str(&'a str),
    /// Text made for this annotation (a span id in hex).
    Owned(String),
    /// JSON text (a preview), which readers expand into nested arguments.
    Json(&'a str),
    /// A whole number.
    Int(i64),
    /// A flag.
    Bool(bool),
    /// Nested key/value pairs.
    Dict(Vec<(&'a str, Value<'a>)>),
}

impl Value<'_> {
    fn annotation(self, name: &str) -> DebugAnnotation {
        let mut a = DebugAnnotation {
            name_field: Some(debug_annotation::NameField::Name(name.to_string())),
            ..Default::default()
        };
        a.value = match self {
            Value::Str(s) => Some(debug_annotation::Value::StringValue(s.to_string())),
            Value::Owned(s) => Some(debug_annotation::Value::StringValue(s)),
            Value::Json(s) => Some(debug_annotation::Value::LegacyJsonValue(s.to_string())),
            Value::Int(i) => Some(debug_annotation::Value::IntValue(i)),
            Value::Bool(b) => Some(debug_annotation::Value::BoolValue(b)),
            Value::Dict(entries) => {
                a.dict_entries = entries.into_iter().map(|(k, v)| v.annotation(k)).collect();
                None
            }
        };
        a
    }
}

/// Key/value pairs shown with a slice.
pub type Annotations<'a> = Vec<(&'a str, Value<'a>)>;

/// One thread's track and packet sequence.
struct Thread {
    /// The recorded thread id (`tid` is what the readers get).
    thread_id: u64,
    sequence: u32,
    uuid: u64,
    pid: u32,
    tid: i64,
    /// The name its track descriptor gave it last.
    name: String,
    /// Interned name id per name key (0: not interned on this sequence yet).
    name_iids: Vec<u64>,
    next_iid: u64,
}

/// Encodes packets into a buffer that the caller drains ([`TraceEncoder::buffer`]).
#[derive(Default)]
pub struct TraceEncoder {
    out: Vec<u8>,
    /// Process id → its track uuid.
    processes: HashMap<u32, u64>,
    /// The threads seen, in order.
    threads: Vec<Thread>,
    /// (process id, thread id) → index in `threads`.
    thread_index: HashMap<(u32, u64), usize>,
    /// The last thread looked up (a batch's calls are from one thread).
    last: Option<((u32, u64), usize)>,
    next_sequence: u32,
    next_compact_tid: i64,
}

/// A track uuid for `parts`, stable across processes (a merged trace keeps them apart).
fn uuid(parts: &[u64]) -> u64 {
    let mut bytes = Vec::with_capacity(parts.len() * 8);
    for p in parts {
        bytes.extend_from_slice(&p.to_le_bytes());
    }
    seahash::hash(&bytes) >> 1
}

fn sequence_id(sequence: u32) -> Option<trace_packet::OptionalTrustedPacketSequenceId> {
    Some(trace_packet::OptionalTrustedPacketSequenceId::TrustedPacketSequenceId(sequence))
}

impl TraceEncoder {
    /// An encoder with nothing written yet.
    pub fn new() -> Self {
        TraceEncoder {
            next_sequence: PROCESS_SEQUENCE + 1,
            next_compact_tid: FIRST_COMPACT_TID,
            ..Default::default()
        }
    }

    /// The packets encoded so far and not yet taken: write them out and clear the buffer.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    fn push(&mut self, packet: &TracePacket) {
        prost::encoding::message::encode(1, packet, &mut self.out);
    }

    /// The track of process `pid`, described (named `name`) on first sight.
    pub fn process(&mut self, pid: u32, name: &str) -> u64 {
        if let Some(&uuid) = self.processes.get(&pid) {
            return uuid;
        }
        let track = uuid(&[u64::from(pid)]);
        self.processes.insert(pid, track);
        self.push(&TracePacket {
            optional_trusted_packet_sequence_id: sequence_id(PROCESS_SEQUENCE),
            data: Some(trace_packet::Data::TrackDescriptor(TrackDescriptor {
                uuid: Some(track),
                process: Some(ProcessDescriptor {
                    pid: Some(pid as i32),
                    process_name: Some(name.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        });
        track
    }

    /// The thread `thread_id` of `pid`: on first sight its sequence starts (state cleared,
    /// its track the default) with its track descriptor, named `name` or `thread ID`; a
    /// later non-empty `name` that differs is described again (readers keep the last).
    fn thread(&mut self, pid: u32, thread_id: u64, name: &str) -> &mut Thread {
        let key = (pid, thread_id);
        if name.is_empty() {
            if let Some((k, i)) = self.last {
                if k == key {
                    return &mut self.threads[i];
                }
            }
        }
        // A few threads: a scan is cheaper than hashing the key.
        let known = if self.threads.len() <= FEW_THREADS {
            self.threads
                .iter()
                .position(|t| t.thread_id == thread_id && t.pid == pid)
        } else {
            self.thread_index.get(&key).copied()
        };
        let i = match known {
            Some(i) if name.is_empty() || name == self.threads[i].name => i,
            _ => self.describe(key, known, name),
        };
        self.last = Some((key, i));
        &mut self.threads[i]
    }

    /// Writes the track descriptor of thread `key` (index `known` if seen before, else a
    /// new sequence starts with it), named `name` or `thread ID`; returns its index.
    fn describe(
        &mut self,
        (pid, thread_id): (u32, u64),
        known: Option<usize>,
        name: &str,
    ) -> usize {
        let process = self.process(pid, &format!("python (pid {pid})"));
        let first = known.is_none();
        let i = match known {
            Some(i) => i,
            None => {
                let tid = if thread_id <= MAX_NATIVE_TID {
                    thread_id as i64
                } else {
                    self.next_compact_tid += 1;
                    self.next_compact_tid - 1
                };
                self.threads.push(Thread {
                    thread_id,
                    sequence: self.next_sequence,
                    uuid: uuid(&[u64::from(pid), thread_id]),
                    pid,
                    tid,
                    name: String::new(),
                    name_iids: Vec::new(),
                    next_iid: 1,
                });
                self.next_sequence += 1;
                self.thread_index
                    .insert((pid, thread_id), self.threads.len() - 1);
                self.threads.len() - 1
            }
        };
        let t = &self.threads[i];
        let label = if !name.is_empty() {
            name.to_string()
        } else {
            format!("thread {thread_id}")
        };
        let packet = TracePacket {
            optional_trusted_packet_sequence_id: sequence_id(t.sequence),
            sequence_flags: Some(if first { STATE_CLEARED } else { NEEDS_STATE }),
            trace_packet_defaults: first.then(|| TracePacketDefaults {
                track_event_defaults: Some(TrackEventDefaults {
                    track_uuid: Some(t.uuid),
                }),
                ..Default::default()
            }),
            data: Some(trace_packet::Data::TrackDescriptor(TrackDescriptor {
                uuid: Some(t.uuid),
                parent_uuid: Some(process),
                thread: Some(ThreadDescriptor {
                    pid: Some(t.pid as i32),
                    tid: Some(t.tid),
                    thread_name: Some(label.clone()),
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        self.push(&packet);
        self.threads[i].name = label;
        i
    }

    /// Names thread `thread_id` of `pid` (its Python name), describing it if new or renamed.
    pub fn thread_name(&mut self, pid: u32, thread_id: u64, name: &str) {
        self.thread(pid, thread_id, name);
    }

    /// One call: a slice from `start_ns` lasting `duration_ns` on its thread's track, named
    /// by `name_key` (a small number per distinct name: interned per sequence, `name` gives
    /// the text the first time), with `annotations` when there are any.
    pub fn call(
        &mut self,
        pid: u32,
        thread_id: u64,
        (name_key, name): (u32, impl FnOnce() -> String),
        start_ns: u64,
        duration_ns: u64,
        annotations: Annotations<'_>,
    ) {
        let t = self.thread(pid, thread_id, "");
        let sequence = t.sequence;
        let i = name_key as usize;
        if t.name_iids.len() <= i {
            t.name_iids.resize(i + 1, 0);
        }
        let mut interned = None;
        if t.name_iids[i] == 0 {
            t.name_iids[i] = t.next_iid;
            t.next_iid += 1;
            interned = Some(InternedData {
                event_names: vec![EventName {
                    iid: Some(t.name_iids[i]),
                    name: Some(name()),
                }],
                ..Default::default()
            });
        }
        let iid = t.name_iids[i];
        self.push(&TracePacket {
            timestamp: Some(start_ns),
            optional_trusted_packet_sequence_id: sequence_id(sequence),
            sequence_flags: Some(NEEDS_STATE),
            interned_data: interned,
            data: Some(trace_packet::Data::TrackEvent(TrackEvent {
                r#type: Some(track_event::Type::SliceBegin as i32),
                name_field: Some(track_event::NameField::NameIid(iid)),
                debug_annotations: annotations
                    .into_iter()
                    .map(|(k, v)| v.annotation(k))
                    .collect(),
                ..Default::default()
            })),
            ..Default::default()
        });
        self.end(sequence, None, start_ns.saturating_add(duration_ns));
    }

    fn end(&mut self, sequence: u32, track: Option<u64>, at_ns: u64) {
        self.push(&TracePacket {
            timestamp: Some(at_ns),
            optional_trusted_packet_sequence_id: sequence_id(sequence),
            sequence_flags: Some(NEEDS_STATE),
            data: Some(trace_packet::Data::TrackEvent(TrackEvent {
                r#type: Some(track_event::Type::SliceEnd as i32),
                track_uuid: track,
                ..Default::default()
            })),
            ..Default::default()
        });
    }

    /// A slice named `name` (not interned: sessions and requests are few) on the track of
    /// thread `thread_id`, from `start_ns` to `end_ns`.
    pub fn thread_slice(
        &mut self,
        pid: u32,
        thread_id: u64,
        name: &str,
        start_ns: u64,
        end_ns: u64,
        annotations: Annotations<'_>,
    ) {
        let sequence = self.thread(pid, thread_id, "").sequence;
        self.slice(sequence, None, name, start_ns, end_ns, annotations);
    }

    /// A slice named `name` on a track of its own under process `pid`'s track (a served
    /// request: requests served at once by one thread overlap, so they cannot share its
    /// track), the track named `name` and keyed by `key`.
    pub fn own_track_slice(
        &mut self,
        pid: u32,
        key: u64,
        name: &str,
        start_ns: u64,
        end_ns: u64,
        annotations: Annotations<'_>,
    ) {
        let process = self.process(pid, &format!("python (pid {pid})"));
        let track = uuid(&[u64::from(pid), key, 1]);
        self.push(&TracePacket {
            optional_trusted_packet_sequence_id: sequence_id(PROCESS_SEQUENCE),
            data: Some(trace_packet::Data::TrackDescriptor(TrackDescriptor {
                uuid: Some(track),
                parent_uuid: Some(process),
                static_or_dynamic_name: Some(track_descriptor::StaticOrDynamicName::Name(
                    name.to_string(),
                )),
                ..Default::default()
            })),
            ..Default::default()
        });
        self.slice(
            PROCESS_SEQUENCE,
            Some(track),
            name,
            start_ns,
            end_ns,
            annotations,
        );
    }

    fn slice(
        &mut self,
        sequence: u32,
        track: Option<u64>,
        name: &str,
        start_ns: u64,
        end_ns: u64,
        annotations: Annotations<'_>,
    ) {
        let flags = (sequence != PROCESS_SEQUENCE).then_some(NEEDS_STATE);
        self.push(&TracePacket {
            timestamp: Some(start_ns),
            optional_trusted_packet_sequence_id: sequence_id(sequence),
            sequence_flags: flags,
            data: Some(trace_packet::Data::TrackEvent(TrackEvent {
                r#type: Some(track_event::Type::SliceBegin as i32),
                track_uuid: track,
                name_field: Some(track_event::NameField::Name(name.to_string())),
                debug_annotations: annotations
                    .into_iter()
                    .map(|(k, v)| v.annotation(k))
                    .collect(),
                ..Default::default()
            })),
            ..Default::default()
        });
        self.end(sequence, track, end_ns.max(start_ns));
    }

    /// An instant event named `name` on process `pid`'s track at `at_ns` (the final record
    /// with the counters).
    pub fn process_instant(
        &mut self,
        pid: u32,
        name: &str,
        at_ns: u64,
        annotations: Annotations<'_>,
    ) {
        let process = self.process(pid, &format!("python (pid {pid})"));
        self.push(&TracePacket {
            timestamp: Some(at_ns),
            optional_trusted_packet_sequence_id: sequence_id(PROCESS_SEQUENCE),
            data: Some(trace_packet::Data::TrackEvent(TrackEvent {
                r#type: Some(track_event::Type::Instant as i32),
                track_uuid: Some(process),
                name_field: Some(track_event::NameField::Name(name.to_string())),
                debug_annotations: annotations
                    .into_iter()
                    .map(|(k, v)| v.annotation(k))
                    .collect(),
                ..Default::default()
            })),
            ..Default::default()
        });
    }
}
