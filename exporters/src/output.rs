//! Output files: `{pid}` expansion, mode 0600, byte counting.

use std::ffi::OsString;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Expands `{pid}` in an output path (any bytes the OS allows in a path are kept).
pub fn expand_path(template: impl AsRef<Path>, pid: u32) -> PathBuf {
    let bytes = template.as_ref().as_os_str().as_encoded_bytes();
    let pid = pid.to_string();
    let mut out = Vec::with_capacity(bytes.len() + pid.len());
    let mut rest = bytes;
    while let Some(at) = rest.windows(5).position(|w| w == b"{pid}") {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(pid.as_bytes());
        rest = &rest[at + 5..];
    }
    out.extend_from_slice(rest);
    PathBuf::from(OsString::from_vec(out))
}

/// Creates (or truncates) a file readable and writable by its owner only, and returns it
/// closed, as an [`OutputFile`] that opens it again when there is something to write.
pub fn create_private(path: &Path) -> io::Result<OutputFile> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(0o600))?;
    Ok(OutputFile {
        path: path.to_path_buf(),
        file: None,
    })
}

/// An output file held open only while the export thread writes to it: opened (appending)
/// by the first write after a flush and closed by [`Write::flush`], which the export thread
/// calls when it falls idle, before a fork and at shutdown. The traced program, or a child
/// that lists its own descriptors (CPython's `test_subprocess` does), does not find
/// ferrotrace's among them while nothing is being written, and a forked child inherits none.
pub struct OutputFile {
    path: PathBuf,
    file: Option<File>,
}

impl OutputFile {
    /// The open file, opening it for appending if it is closed.
    fn open(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            self.file = Some(OpenOptions::new().append(true).open(&self.path)?);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.open()?.write(buf)
    }

    /// Closes the file (a `File` buffers nothing); the next write opens it again.
    fn flush(&mut self) -> io::Result<()> {
        self.file = None;
        Ok(())
    }
}

/// Writes at least this large go straight to the file (after what is already buffered):
/// exporters hand over whole rendered batches, and copying those into the buffer first only
/// doubles the memory traffic of the export thread.
const DIRECT_WRITE: usize = 32 * 1024;

/// A buffered writer that counts the bytes handed to it.
pub struct CountingWriter {
    inner: BufWriter<OutputFile>,
    written: u64,
}

impl CountingWriter {
    /// Wraps a file with a 256 KiB buffer.
    pub fn new(file: OutputFile) -> Self {
        CountingWriter {
            inner: BufWriter::with_capacity(256 * 1024, file),
            written: 0,
        }
    }

    /// Returns the bytes written since the last call.
    pub fn take_written(&mut self) -> u64 {
        std::mem::take(&mut self.written)
    }
}

impl Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = if buf.len() >= DIRECT_WRITE {
            self.inner.flush()?;
            self.inner.get_mut().write(buf)?
        } else {
            self.inner.write(buf)?
        };
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A destination that can be cut back to a length (a file).
pub trait Truncate: Write {
    /// Drops everything after the first `len` bytes and writes on from there.
    fn truncate_to(&mut self, len: u64) -> io::Result<()>;
}

impl Truncate for OutputFile {
    /// Appending writes land at the new end, so only the length changes.
    fn truncate_to(&mut self, len: u64) -> io::Result<()> {
        self.open()?.set_len(len)
    }
}

/// Appends whole records, unbuffered: a write either lands entirely or, when it fails
/// part-way (a full disk), the file is cut back to the records before it, so the file never
/// ends in a cut-off line and its length is always the bytes reported written.
pub struct WholeWriter<S: Truncate> {
    sink: S,
    path: PathBuf,
    /// Bytes of whole records in the destination.
    len: u64,
}

impl<S: Truncate> WholeWriter<S> {
    /// Writes to `sink` (empty), which is `path`.
    pub fn new(sink: S, path: &Path) -> Self {
        WholeWriter {
            sink,
            path: path.to_path_buf(),
            len: 0,
        }
    }

    /// Bytes of whole records written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True before the first record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes `buf` (whole records) entirely, or nothing of it; returns the bytes written.
    /// The error names the cause and the path.
    pub fn write_whole(&mut self, buf: &[u8]) -> io::Result<u64> {
        match self.sink.write_all(buf) {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(buf.len() as u64)
            }
            Err(e) => {
                let cut = match self.sink.truncate_to(self.len) {
                    Ok(()) => String::new(),
                    Err(t) => format!(" (and cutting it back failed: {t})"),
                };
                Err(io::Error::new(
                    e.kind(),
                    format!("{e} writing {}{cut}", self.path.display()),
                ))
            }
        }
    }

    /// Pushes what was written to the destination.
    pub fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts `room` bytes, then fails like a full disk (after a short write).
    struct Full {
        data: Vec<u8>,
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.room - self.data.len());
            if n == 0 {
                return Err(io::Error::from_raw_os_error(28));
            }
            self.data.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Truncate for Full {
        fn truncate_to(&mut self, len: u64) -> io::Result<()> {
            self.data.truncate(len as usize);
            Ok(())
        }
    }

    #[test]
    fn a_write_that_fails_part_way_leaves_only_whole_records() {
        let sink = Full {
            data: Vec::new(),
            room: 25,
        };
        let mut w = WholeWriter::new(sink, Path::new("/full/t.jsonl"));
        assert_eq!(w.write_whole(b"{\"a\":1}\n{\"b\":2}\n").unwrap(), 16);
        let err = w.write_whole(b"{\"c\":3}\n{\"d\":4}\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("No space left on device"), "{text}");
        assert!(text.contains("/full/t.jsonl"), "{text}");
        assert_eq!(
            w.sink.data, b"{\"a\":1}\n{\"b\":2}\n",
            "cut back to the last whole record"
        );
        assert_eq!(w.len(), 16, "bytes written are the bytes the file holds");
        // Room again (something was deleted): the next record lands whole.
        w.sink.room = 100;
        assert_eq!(w.write_whole(b"{\"e\":5}\n").unwrap(), 8);
        assert_eq!(w.sink.data.len() as u64, w.len());
        assert!(w.sink.data.ends_with(b"{\"e\":5}\n"));
    }
}
