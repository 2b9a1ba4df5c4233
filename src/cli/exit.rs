//! Library error -> process exit code: the README's exit-code table, in one place. Every
//! command that ends on an error, and every per-photo failure a batch reports, goes through
//! [`code`].

use gestalt_edge::Error;

/// The command did what it was asked.
pub const OK: i32 = 0;
/// A file could not be read or written (the operating system's error).
pub const IO: i32 = 1;
/// Bad arguments or a bad labels CSV.
pub const USAGE: i32 = 2;
/// No face found (or no usable photo for a gallery).
pub const NO_FACE: i32 = 3;
/// An unreadable or unsupported image, or a camera that stayed lost.
pub const IMAGE: i32 = 4;
/// A bad or mismatched model bundle.
pub const BUNDLE: i32 = 5;
/// A bad, mismatched or full gallery, or bad reference data files.
pub const GALLERY: i32 = 6;
/// A signature is missing or does not verify.
pub const SIGNATURE: i32 = 7;

/// The exit code for `e`.
pub fn code(e: &Error) -> i32 {
    match e {
        Error::Usage(_) => USAGE,
        Error::NoFace { .. } => NO_FACE,
        Error::Image { .. } => IMAGE,
        Error::Bundle { .. } => BUNDLE,
        Error::Gallery { .. } => GALLERY,
        Error::Signature { .. } => SIGNATURE,
        Error::Io { .. } => IO,
    }
}
