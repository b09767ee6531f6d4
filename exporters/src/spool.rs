//! The spool of the network exporters: request bodies that could not be delivered, kept on
//! disk and replayed in order once the endpoint answers again, also by a later process.
//!
//! Each endpoint has its own directory under the spool root (so a batch is only ever
//! replayed to the endpoint it was meant for). A batch is one file, created under a
//! temporary name and renamed into place, named `{unix_ns}-{pid}-{seq}.spool` so that name
//! order is creation order. A process claims a file by renaming it to
//! `….spool.claimed-{pid}`: the rename is atomic, so two processes sharing the directory
//! never send the same file. The file is deleted only after a 2xx, or renamed back when the
//! send fails; claims left by a process that died are released by the next one. Files are
//! mode 0600 in a 0700 directory, and the directory is capped in size: the oldest files are
//! dropped, and their spans counted, to make room.

use ferrotrace_core::metrics::Counters;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One request body, ready to send or to spool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// The (possibly compressed) body bytes.
    pub body: Vec<u8>,
    /// The `Content-Type` header value.
    pub content_type: String,
    /// The body is gzip-compressed (`Content-Encoding: gzip`).
    pub gzip: bool,
    /// Span records carried, for the counters.
    pub spans: u64,
}

const MAGIC: &str = "ferrotrace-spool 1";
const SUFFIX: &str = ".spool";
const CLAIM: &str = ".claimed-";

/// A size-capped spool directory for one endpoint.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    seq: AtomicU64,
    counters: Arc<Counters>,
}

/// A spool file this process has claimed; deliver it, or release it for a later try.
pub struct Claimed {
    path: PathBuf,
    original: PathBuf,
}

/// The per-user default spool root: `$XDG_CACHE_HOME/ferrotrace/spool`, else
/// `~/.cache/ferrotrace/spool`.
pub fn default_root() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(cache.join("ferrotrace").join("spool"))
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

impl Spool {
    /// Opens (creating it, mode 0700) the spool of `exporter` sending to `url` under `root`.
    pub fn open(
        root: &Path,
        exporter: &str,
        url: &str,
        max_bytes: u64,
        counters: Arc<Counters>,
    ) -> io::Result<Spool> {
        let dir = root.join(format!("{exporter}-{:016x}", seahash::hash(url.as_bytes())));
        DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        Ok(Spool {
            dir,
            max_bytes,
            seq: AtomicU64::new(0),
            counters,
        })
    }

    /// The directory holding this endpoint's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Unclaimed files, oldest first.
    fn files(&self) -> Vec<(PathBuf, u64)> {
        let mut out: Vec<(PathBuf, u64)> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(SUFFIX))
            .map(|e| (e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)))
            .collect();
        out.sort();
        out
    }

    /// True when at least one unclaimed file waits (after releasing dead processes' claims).
    pub fn has_files(&self) -> bool {
        self.release_stale_claims();
        !self.files().is_empty()
    }

    fn release_stale_claims(&self) {
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((base, pid)) = name.split_once(CLAIM) {
                if pid.parse::<u32>().is_ok_and(|p| !process_alive(p)) {
                    let _ = fs::rename(entry.path(), self.dir.join(base));
                }
            }
        }
    }

    /// Writes `p` as the newest file, dropping the oldest files beyond the cap, and returns
    /// the file. A payload that cannot be kept (larger than the cap, or a write error) is
    /// counted as dropped.
    pub fn write(&self, p: &Payload) -> Option<PathBuf> {
        match self.try_write(p) {
            Ok(path) => {
                Counters::add(&self.counters.spooled, p.spans);
                Some(path)
            }
            Err(_) => {
                Counters::add(&self.counters.spool_dropped, p.spans);
                None
            }
        }
    }

    fn try_write(&self, p: &Payload) -> io::Result<PathBuf> {
        let header = format!(
            "{MAGIC} spans={} gzip={} content-type={}\n",
            p.spans,
            u8::from(p.gzip),
            p.content_type
        );
        let size = (header.len() + p.body.len()) as u64;
        if size > self.max_bytes {
            return Err(io::Error::other("larger than the spool cap"));
        }
        let mut files = self.files();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        let mut oldest = files.drain(..);
        while total + size > self.max_bytes {
            let Some((path, len)) = oldest.next() else {
                break;
            };
            let spans = read_header(&path).map(|h| h.0).unwrap_or(0);
            if fs::remove_file(&path).is_ok() {
                Counters::add(&self.counters.spool_dropped, spans);
            }
            total = total.saturating_sub(len);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(
            "{now:020}-{:010}-{:08}",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        );
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(header.as_bytes())?;
        f.write_all(&p.body)?;
        f.sync_data()?;
        let path = self.dir.join(format!("{name}{SUFFIX}"));
        fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// Claims the oldest unclaimed file, or None when the spool is empty.
    pub fn claim_oldest(&self) -> Option<Claimed> {
        self.release_stale_claims();
        for (path, _) in self.files() {
            let claimed = PathBuf::from(format!("{}{CLAIM}{}", path.display(), std::process::id()));
            if fs::rename(&path, &claimed).is_ok() {
                return Some(Claimed {
                    path: claimed,
                    original: path,
                });
            }
        }
        None
    }
}

/// Reads a spool file's header: (spans, gzip, content type) and the reader at the body.
fn read_header(path: &Path) -> io::Result<(u64, bool, String, BufReader<File>)> {
    let mut r = BufReader::new(File::open(path)?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "not a ferrotrace spool file");
    let rest = line
        .trim_end()
        .strip_prefix(MAGIC)
        .ok_or_else(bad)?
        .trim_start();
    let mut fields = rest.splitn(3, ' ');
    let mut next = |key: &str| {
        fields
            .next()
            .and_then(|f| f.strip_prefix(key))
            .map(str::to_string)
            .ok_or_else(bad)
    };
    let spans = next("spans=")?.parse().map_err(|_| bad())?;
    let gzip = next("gzip=")? == "1";
    let content_type = next("content-type=")?;
    Ok((spans, gzip, content_type, r))
}

impl Claimed {
    /// Reads the claimed batch.
    pub fn payload(&self) -> io::Result<Payload> {
        let (spans, gzip, content_type, mut r) = read_header(&self.path)?;
        let mut body = Vec::new();
        r.read_to_end(&mut body)?;
        Ok(Payload {
            body,
            content_type,
            gzip,
            spans,
        })
    }

    /// The batch was delivered (or is unreadable): deletes the file.
    pub fn remove(self) {
        let _ = fs::remove_file(&self.path);
    }

    /// The send failed: returns the file to the spool, in its place in the order.
    pub fn release(self) {
        let _ = fs::rename(&self.path, &self.original);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn payload(tag: u8, len: usize) -> Payload {
        Payload {
            body: vec![tag; len],
            content_type: "application/x-protobuf".into(),
            gzip: true,
            spans: 3,
        }
    }

    fn root(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ft-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn replays_in_order_and_claims_once() {
        let root = root("order");
        let counters = Arc::new(Counters::default());
        let a = Spool::open(
            &root,
            "otlp",
            "http://x/v1/traces",
            1 << 20,
            Arc::clone(&counters),
        )
        .unwrap();
        let b = Spool::open(
            &root,
            "otlp",
            "http://x/v1/traces",
            1 << 20,
            Arc::clone(&counters),
        )
        .unwrap();
        for tag in 0..5 {
            a.write(&payload(tag, 10));
        }
        assert_eq!(counters.snapshot().spooled, 15);
        let mode = fs::metadata(a.files()[0].0.clone())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let first = a.claim_oldest().unwrap();
        assert_eq!(first.payload().unwrap(), payload(0, 10));
        let second = b.claim_oldest().unwrap();
        assert_eq!(
            second.payload().unwrap().body[0],
            1,
            "another process never gets a claimed file"
        );
        second.release();
        first.remove();
        let mut seen = Vec::new();
        while let Some(c) = b.claim_oldest() {
            seen.push(c.payload().unwrap().body[0]);
            c.remove();
        }
        assert_eq!(seen, vec![1, 2, 3, 4]);
        assert!(!a.has_files());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn cap_drops_oldest_and_counts() {
        let root = root("cap");
        let counters = Arc::new(Counters::default());
        let s = Spool::open(&root, "http", "http://y", 1200, Arc::clone(&counters)).unwrap();
        for tag in 0..4 {
            s.write(&payload(tag, 300));
        }
        s.write(&payload(9, 5000));
        let snap = counters.snapshot();
        assert_eq!(snap.spooled, 12);
        assert_eq!(
            snap.spool_dropped, 6,
            "one file evicted for the cap, one larger than the cap"
        );
        assert_eq!(s.claim_oldest().unwrap().payload().unwrap().body[0], 1);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn claims_of_dead_processes_are_released() {
        let root = root("stale");
        let s = Spool::open(&root, "otlp", "u", 1 << 20, Arc::default()).unwrap();
        s.write(&payload(7, 4));
        let (path, _) = s.files().remove(0);
        fs::rename(&path, format!("{}{CLAIM}{}", path.display(), u32::MAX)).unwrap();
        assert!(s.has_files());
        assert_eq!(s.claim_oldest().unwrap().payload().unwrap().body[0], 7);
        fs::remove_dir_all(root).unwrap();
    }
}
