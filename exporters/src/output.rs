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

/// Creates (or truncates) a file readable and writable by its owner only.
pub fn create_private(path: &PathBuf) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Writes at least this large go straight to the file (after what is already buffered):
/// exporters hand over whole rendered batches, and copying those into the buffer first only
/// doubles the memory traffic of the export thread.
const DIRECT_WRITE: usize = 32 * 1024;

/// A buffered writer that counts the bytes handed to it.
pub struct CountingWriter {
    inner: BufWriter<File>,
    written: u64,
}

impl CountingWriter {
    /// Wraps a file with a 256 KiB buffer.
    pub fn new(file: File) -> Self {
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
