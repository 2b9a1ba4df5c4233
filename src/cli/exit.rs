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
/// An internal error (a worker thread panicked): a bug, not the input's fault (sysexits'
/// EX_SOFTWARE, far from the input codes so later ones cannot collide).
pub const INTERNAL: i32 = 70;

/// The exit code for `e`.
pub fn code(e: &Error) -> i32 {
    match e {
        Error::Usage(_) => USAGE,
        Error::NoFace { .. } => NO_FACE,
        Error::Image { .. } => IMAGE,
        Error::Bundle { .. } | Error::Decode { .. } => BUNDLE,
        Error::Gallery { .. } | Error::GalleryFull { .. } => GALLERY,
        Error::Signature { .. } => SIGNATURE,
        Error::Io { .. } => IO,
        Error::Internal(_) => INTERNAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's table is what users read: every code here must have its row there.
    #[test]
    fn the_readme_table_has_a_row_for_every_code() {
        let readme = include_str!("../../README.md");
        for c in [
            OK, IO, USAGE, NO_FACE, IMAGE, BUNDLE, GALLERY, SIGNATURE, INTERNAL,
        ] {
            assert!(
                readme.contains(&format!("\n| {c} | ")),
                "README lacks exit code {c}"
            );
        }
        let full = Error::GalleryFull {
            limit: "2^32 entries".into(),
        };
        assert_eq!(code(&full), GALLERY);
        assert_eq!(code(&Error::Internal("worker".into())), INTERNAL);
        assert_eq!(code(&Error::Usage("x".into())), USAGE);
    }
}
