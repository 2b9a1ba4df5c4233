//! Reading a gallery file and replacing one atomically.
//!
//! Consumes a path; produces a [`Gallery`] (read) or a file on disk (write). A write goes to
//! a temporary file in the target's directory, is synced, then renamed over the target, so a
//! crash or a full disk leaves the previous gallery intact.

use super::Gallery;
use crate::{Error, Result};

use std::path::Path;

/// Largest gallery file [`Gallery::read`] accepts by default ([`crate::fsio::Cap::GALLERY`]:
/// 512 MiB; a 10,000-image gallery of 12 keys x 512 f16 values is about 125 MB).
pub const DEFAULT_MAX_GALLERY_BYTES: u64 = crate::fsio::Cap::GALLERY.bytes;

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

    /// Reads the gallery at `path` through the bounded reader ([`crate::fsio::read_capped`]:
    /// a FIFO, a device or a file above `options.max_bytes` is refused before reading), verifies the detached signature when a public key is given ([`Error::Signature`]),
    /// then decodes it ([`Gallery::from_bytes`]).
    pub fn read_checked(path: impl AsRef<Path>, options: &ReadOptions) -> Result<Gallery> {
        let path = path.as_ref();
        let cap = crate::fsio::Cap::GALLERY.with_bytes(options.max_bytes);
        let bytes =
            crate::fsio::read_capped(path, cap).map_err(|e| Error::gallery(path, e.to_string()))?;
        let signed = match &options.public_key {
            Some(key) => Some(crate::sign::verify_detached(
                key,
                crate::sign::Role::Gallery,
                &bytes,
                path,
            )?),
            None => None,
        };
        let gallery = Gallery::from_vec(bytes, path)?;
        if let Some(signed) = signed {
            crate::sign::check_revision(path, signed, gallery.revision())?;
        }
        Ok(gallery)
    }

    /// Writes the gallery to `path`, replacing any existing file atomically
    /// ([`crate::fsio`]); a gallery holds patient data, so the file is owner-only (0600).
    /// Failures are [`Error::Io`]. Takes no lock: the commands write through
    /// [`super::lock::WriteLock`], one writer per gallery.
    pub fn write_atomic(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::fsio::write_atomic(
            path.as_ref(),
            &self.to_bytes(),
            crate::fsio::Access::Private,
        )
    }
}
