//! Confinement of the files a manifest names: a bundle reads only regular files inside its
//! own folder, below a size cap, so a manifest cannot point the device at `/dev/zero`, at a
//! file elsewhere on the system, or through a symlink out of the bundle.
//!
//! Consumes the manifest's path, the manifest entry that names a file ("detector",
//! "embedder 'sface'") and the name as written; produces the file's resolved path and bytes
//! (read through one open handle whose size was checked first), or an [`Error::Bundle`] that
//! names the manifest entry and what is wrong. Nothing outside the bundle folder is hashed or
//! described beyond "outside the bundle folder".

use std::path::{Component, Path, PathBuf};

use crate::fsio::Cap;

use crate::{Error, Result};

/// Largest model file a bundle reads ([`Cap::MODEL`]).
pub const MAX_MODEL_BYTES: u64 = Cap::MODEL.bytes;

/// Largest manifest read ([`Cap::MANIFEST`]).
pub const MAX_MANIFEST_BYTES: u64 = Cap::MANIFEST.bytes;

/// Checks the form of a file name from a manifest: relative, not empty, no `..`, no root or
/// drive prefix. The error is a sentence without the entry's name.
pub fn check_name(file: &str) -> std::result::Result<(), String> {
    if file.is_empty() {
        return Err("the file name is empty".into());
    }
    let p = Path::new(file);
    if p.is_absolute() || p.has_root() {
        return Err(format!(
            "'{file}' is an absolute path; model files are named relative to the manifest's folder"
        ));
    }
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!(
                    "'{file}' leaves the bundle folder ('..'); model files must lie inside it"
                ))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("'{file}' is an absolute path"))
            }
        }
    }
    Ok(())
}

/// Resolves `file` (as written in the manifest at `manifest`, for `entry`) to a regular file
/// inside the manifest's folder, following symlinks only while they stay inside it.
pub fn resolve(manifest: &Path, entry: &str, file: &str) -> Result<PathBuf> {
    let dir = match manifest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let fail = |why: String| file_error(manifest, entry, file, why);
    check_name(file).map_err(fail)?;
    let root = dir
        .canonicalize()
        .map_err(|e| fail(format!("cannot resolve the bundle folder: {e}")))?;
    let joined = dir.join(file);
    let real = joined
        .canonicalize()
        .map_err(|e| fail(format!("cannot read the model file: {e}")))?;
    if !real.starts_with(&root) {
        return Err(fail(
            "a symlink leads outside the bundle folder; model files must lie inside it".into(),
        ));
    }
    let meta = std::fs::metadata(&real).map_err(|e| fail(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    Ok(joined)
}

/// [`resolve`], then opens the file through the crate's bounded reader
/// ([`crate::fsio::open_capped`]): not waited on, a regular file on the opened handle, its
/// size at most `cap`. Returns the path and the handle; the handle yields at most the cap.
pub fn open(
    manifest: &Path,
    entry: &str,
    file: &str,
    cap: Cap,
) -> Result<(PathBuf, crate::fsio::Capped)> {
    let path = resolve(manifest, entry, file)?;
    let f = crate::fsio::open_capped(&path, cap)
        .map_err(|e| file_error(manifest, entry, file, e.to_string()))?;
    Ok((path, f))
}

/// An error about `file` of the manifest's `entry`.
pub fn file_error(manifest: &Path, entry: &str, file: &str, why: String) -> Error {
    Error::bundle(
        manifest,
        format!("{entry}: file = \"{}\": {why}", file.escape_default()),
    )
}

/// [`open`], then reads the file through that handle; the read stops one byte past the cap
/// (a file that grows meanwhile is refused too).
pub fn read(manifest: &Path, entry: &str, file: &str, cap: Cap) -> Result<(PathBuf, Vec<u8>)> {
    let path = resolve(manifest, entry, file)?;
    let bytes = crate::fsio::read_capped(&path, cap)
        .map_err(|e| file_error(manifest, entry, file, e.to_string()))?;
    Ok((path, bytes))
}

/// Reads a small text file (a manifest) through the bounded reader with `cap`.
pub fn read_small_text(path: &Path, cap: Cap) -> Result<String> {
    crate::fsio::read_text_capped(path, cap)
        .map_err(|e| Error::bundle(path, format!("manifest: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_relative_and_stay_inside() {
        for ok in ["m.onnx", "models/m.onnx", "./m.onnx", "a/./b.onnx"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/dev/zero",
            "../m.onnx",
            "a/../../m.onnx",
            "a/../m.onnx",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_devices_symlinks_out_and_large_files() {
        let d = tempfile::tempdir().unwrap();
        let bundle = d.path().join("b");
        std::fs::create_dir(&bundle).unwrap();
        let manifest = bundle.join("bundle.toml");
        std::fs::write(&manifest, "x").unwrap();
        std::fs::write(bundle.join("m.onnx"), b"model").unwrap();
        std::fs::write(d.path().join("outside.onnx"), b"secret").unwrap();
        let (p, bytes) = read(&manifest, "detector", "m.onnx", Cap::MODEL.with_bytes(100)).unwrap();
        assert_eq!((p, bytes), (bundle.join("m.onnx"), b"model".to_vec()));
        let msg = |r: Result<(PathBuf, Vec<u8>)>| r.unwrap_err().to_string();
        let e = msg(read(
            &manifest,
            "detector",
            "m.onnx",
            Cap::MODEL.with_bytes(3),
        ));
        assert!(
            e.contains("detector") && e.contains("over the limit"),
            "{e}"
        );
        let e = msg(read(
            &manifest,
            "embedder 'e'",
            "/dev/zero",
            Cap::MODEL.with_bytes(100),
        ));
        assert!(e.contains("embedder 'e'") && e.contains("absolute"), "{e}");
        let e = msg(read(
            &manifest,
            "detector",
            "../outside.onnx",
            Cap::MODEL.with_bytes(100),
        ));
        assert!(e.contains("leaves the bundle folder"), "{e}");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(d.path().join("outside.onnx"), bundle.join("l.onnx"))
                .unwrap();
            let e = msg(read(
                &manifest,
                "detector",
                "l.onnx",
                Cap::MODEL.with_bytes(100),
            ));
            assert!(e.contains("outside the bundle folder"), "{e}");
            std::os::unix::fs::symlink("/dev/zero", bundle.join("z.onnx")).unwrap();
            let e = msg(read(
                &manifest,
                "detector",
                "z.onnx",
                Cap::MODEL.with_bytes(100),
            ));
            assert!(e.contains("outside") || e.contains("regular"), "{e}");
            std::os::unix::fs::symlink("m.onnx", bundle.join("inside.onnx")).unwrap();
            assert!(read(
                &manifest,
                "detector",
                "inside.onnx",
                Cap::MODEL.with_bytes(100)
            )
            .is_ok());
        }
        std::fs::create_dir(bundle.join("dir.onnx")).unwrap();
        let e = msg(read(
            &manifest,
            "detector",
            "dir.onnx",
            Cap::MODEL.with_bytes(100),
        ));
        assert!(e.contains("not a regular file"), "{e}");
    }
}
