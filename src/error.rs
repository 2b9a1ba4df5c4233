//! The library's one error type. Variants follow the pipeline stage that failed and carry
//! the file and the reason in words a clinician or deployer can act on; a caller that must
//! tell cases apart matches on the variant, never on the message. Messages name files and
//! values, never command-line flags. The binary maps each variant to an exit code
//! (`src/cli/exit.rs`, the README's table).

use std::path::{Path, PathBuf};

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong between a photo and a ranking.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid values from the caller, or input files that are not photos, bundles or
    /// galleries (options, labels CSV, board profiles, gallery cases).
    #[error("{0}")]
    Usage(String),

    /// A gallery that cannot take another entry: a table reached the file format's limit.
    #[error("the gallery is full ({limit})")]
    GalleryFull {
        /// Which limit was reached.
        limit: String,
    },

    /// A worker thread that panicked: a bug in this program, not a problem of the input.
    #[error("internal error: {0} (a bug; please report it)")]
    Internal(String),

    /// A photo was analysed but no face was found in it.
    #[error("{path}: no face found{detail}", path = .path.display())]
    NoFace {
        /// The photo.
        path: PathBuf,
        /// Extra context (empty or starting with a separator).
        detail: String,
    },

    /// A photo that cannot be read or decoded, or is outside the limits.
    #[error("{path}: {reason}", path = .path.display())]
    Image {
        /// The photo.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A model bundle (manifest or model file) that is malformed, tampered or does not fit.
    #[error("model bundle {path}: {reason}", path = .path.display())]
    Bundle {
        /// Manifest or model file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A detector whose outputs do not decode: tensors that do not fit the priors or grid of
    /// its decoder (the model file does not match the manifest's detector settings).
    #[error("model bundle {path}: detector outputs do not decode: {source}", path = .path.display())]
    Decode {
        /// The detector's model file.
        path: PathBuf,
        /// What the decoder found.
        #[source]
        source: crate::detect::DecodeError,
    },

    /// A gallery file that is malformed, corrupted or made for another bundle.
    #[error("gallery {path}: {reason}", path = .path.display())]
    Gallery {
        /// The gallery file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A signed file (bundle manifest, gallery) whose detached ed25519 signature is missing,
    /// malformed, made with another key, or does not match the content (tampered).
    #[error("signature check failed for {path}: {reason}", path = .path.display())]
    Signature {
        /// The file whose signature was checked.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// An I/O failure on a file we were asked to write.
    #[error("{path}: {source}", path = .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// An image error for `path`.
    pub fn image(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Error::Image {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }

    /// A bundle error for `path`.
    pub fn bundle(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Error::Bundle {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }

    /// A gallery error for `path`.
    pub fn gallery(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Error::Gallery {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }

    /// A signature error for `path`.
    pub fn signature(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Error::Signature {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }

    /// An I/O error for `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}
