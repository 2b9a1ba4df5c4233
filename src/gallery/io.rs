//! Reading a gallery file and replacing one atomically.
//!
//! Consumes a path; produces a [`Gallery`] (read) or a file on disk (write). A write goes to
//! a temporary file in the target's directory, is synced, then renamed over the target, so a
//! crash or a full disk leaves the previous gallery intact.

use super::Gallery;
use crate::{Error, Result};
use std::io::Write;
use std::path::Path;

/// Largest gallery file [`Gallery::read`] accepts by default: 1 GiB (a 10,000-image gallery
/// of 12 keys x 512 f16 values is about 125 MB).
pub const DEFAULT_MAX_GALLERY_BYTES: u64 = 1 << 30;

/// Checks applied when reading a gallery file.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Files larger than this many bytes are refused before they are read.
    pub max_bytes: u64,
    /// When set, the detached signature `FILE.sig` must verify with this key
    /// (see [`crate::sign`]).
    pub public_key: Option<crate::sign::PublicKey>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_bytes: DEFAULT_MAX_GALLERY_BYTES,
            public_key: None,
        }
    }
}

impl Gallery {
    /// Reads and checks the gallery file at `path` (see [`Gallery::from_bytes`]) with the
    /// default [`ReadOptions`] (size limit, no signature).
    ///
    /// A file that cannot be read is an [`Error::Gallery`] too (the deployer's fix is the same:
    /// point at a valid gallery).
    pub fn read(path: impl AsRef<Path>) -> Result<Gallery> {
        Gallery::read_checked(path, &ReadOptions::default())
    }

    /// Reads the gallery at `path`: refuses a file above `options.max_bytes` before reading
    /// it, verifies the detached signature when a public key is given ([`Error::Signature`]),
    /// then decodes it ([`Gallery::from_bytes`]).
    pub fn read_checked(path: impl AsRef<Path>, options: &ReadOptions) -> Result<Gallery> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::gallery(path, format!("cannot read: {e}")))?;
        if meta.len() > options.max_bytes {
            return Err(Error::gallery(
                path,
                format!(
                    "the file is {} bytes, over the limit of {} bytes for a gallery",
                    meta.len(),
                    options.max_bytes
                ),
            ));
        }
        let bytes =
            std::fs::read(path).map_err(|e| Error::gallery(path, format!("cannot read: {e}")))?;
        let signed = match &options.public_key {
            Some(key) => Some(crate::sign::verify_detached(
                key,
                crate::sign::Role::Gallery,
                &bytes,
                path,
            )?),
            None => None,
        };
        let gallery = Gallery::from_bytes(&bytes, path)?;
        if let Some(signed) = signed {
            crate::sign::check_revision(path, signed, gallery.revision())?;
        }
        Ok(gallery)
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
