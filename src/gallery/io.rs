//! Reading a gallery file and replacing one atomically.
//!
//! Consumes a path; produces a [`Gallery`] (read) or a file on disk (write). A write goes to
//! a temporary file in the target's directory, is synced, then renamed over the target, so a
//! crash or a full disk leaves the previous gallery intact.

use super::Gallery;
use crate::{Error, Result};
use std::io::Write;
use std::path::Path;

impl Gallery {
    /// Reads and checks the gallery file at `path` (see [`Gallery::from_bytes`]).
    ///
    /// A file that cannot be read is an [`Error::Gallery`] too (the deployer's fix is the same:
    /// point at a valid gallery).
    pub fn read(path: impl AsRef<Path>) -> Result<Gallery> {
        let path = path.as_ref();
        let bytes =
            std::fs::read(path).map_err(|e| Error::gallery(path, format!("cannot read: {e}")))?;
        Gallery::from_bytes(&bytes, path)
    }

    /// Writes the gallery to `path`, replacing any existing file atomically: temporary file
    /// in the same directory, `sync_all`, rename over `path`, then a best-effort fsync of the
    /// directory. An existing file's permissions are kept. Failures are [`Error::Io`].
    pub fn write_atomic(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let io = |e: std::io::Error| Error::io(path, e);
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| Error::Usage(format!("{}: not a file path", path.display())))?;
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(name);
        prefix.push(".");
        let mut tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(io)?;
        if let Ok(meta) = std::fs::metadata(path) {
            // Best effort: keep the permissions of the gallery being replaced.
            let _ = tmp.as_file().set_permissions(meta.permissions());
        }
        tmp.write_all(&self.to_bytes()).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        if let Ok(d) = std::fs::File::open(dir) {
            // Best effort: make the rename durable (not supported on every platform).
            let _ = d.sync_all();
        }
        Ok(())
    }
}
