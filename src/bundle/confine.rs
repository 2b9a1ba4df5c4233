//! Confinement of the files a manifest names: a bundle reads only regular files inside its
//! own folder, below a size cap, so a manifest cannot point the device at `/dev/zero`, at a
//! file elsewhere on the system, or through a symlink out of the bundle.
//!
//! Consumes the manifest's path, the manifest entry that names a file ("detector",
//! "embedder 'sface'") and the name as written; produces the file's resolved path and bytes
//! (read through one open handle whose size was checked first), or an [`Error::Bundle`] that
//! names the manifest entry and what is wrong. Nothing outside the bundle folder is hashed or
//! described beyond "outside the bundle folder".

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::{Error, Result};

/// Largest model file a bundle reads: 2 GiB (the largest demo embedder is about 170 MB).
pub const MAX_MODEL_BYTES: u64 = 2 << 30;

/// Largest manifest read: 1 MiB (a manifest is a few kilobytes).
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

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

/// [`resolve`], then opens the file: the size is checked on the handle against `max_bytes`.
/// Returns the path, the handle and the size; whoever reads it reads at most that size.
pub fn open(
    manifest: &Path,
    entry: &str,
    file: &str,
    max_bytes: u64,
) -> Result<(PathBuf, std::fs::File, u64)> {
    let path = resolve(manifest, entry, file)?;
    let fail = |why: String| file_error(manifest, entry, file, why);
    let f = std::fs::File::open(&path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let meta = f
        .metadata()
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    if meta.len() > max_bytes {
        return Err(fail(format!(
            "the file is {} bytes, over the limit of {max_bytes} bytes for a model",
            meta.len()
        )));
    }
    Ok((path, f, meta.len()))
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
pub fn read(
    manifest: &Path,
    entry: &str,
    file: &str,
    max_bytes: u64,
) -> Result<(PathBuf, Vec<u8>)> {
    let (path, f, size) = open(manifest, entry, file, max_bytes)?;
    let fail = |why: String| file_error(manifest, entry, file, why);
    let mut bytes = Vec::with_capacity(size as usize);
    f.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > max_bytes {
        return Err(fail(format!(
            "the file grew past the limit of {max_bytes} bytes while it was read"
        )));
    }
    Ok((path, bytes))
}

/// Reads a small text file (a manifest) refusing anything but a regular file below
/// `max_bytes`, checked on the open handle before reading.
pub fn read_small_text(path: &Path, max_bytes: u64) -> Result<String> {
    let fail = |why: String| Error::bundle(path, why);
    let f =
        std::fs::File::open(path).map_err(|e| fail(format!("cannot read the manifest: {e}")))?;
    let meta = f
        .metadata()
        .map_err(|e| fail(format!("cannot read the manifest: {e}")))?;
    if !meta.is_file() {
        return Err(fail("the manifest is not a regular file".into()));
    }
    if meta.len() > max_bytes {
        return Err(fail(format!(
            "the manifest is {} bytes, over the limit of {max_bytes}",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    f.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read the manifest: {e}")))?;
    if bytes.len() as u64 > max_bytes {
        return Err(fail(format!(
            "the manifest grew past the limit of {max_bytes} bytes while it was read"
        )));
    }
    String::from_utf8(bytes).map_err(|_| fail("the manifest is not UTF-8 text".into()))
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
        let (p, bytes) = read(&manifest, "detector", "m.onnx", 100).unwrap();
        assert_eq!((p, bytes), (bundle.join("m.onnx"), b"model".to_vec()));
        let msg = |r: Result<(PathBuf, Vec<u8>)>| r.unwrap_err().to_string();
        let e = msg(read(&manifest, "detector", "m.onnx", 3));
        assert!(
            e.contains("detector") && e.contains("over the limit"),
            "{e}"
        );
        let e = msg(read(&manifest, "embedder 'e'", "/dev/zero", 100));
        assert!(e.contains("embedder 'e'") && e.contains("absolute"), "{e}");
        let e = msg(read(&manifest, "detector", "../outside.onnx", 100));
        assert!(e.contains("leaves the bundle folder"), "{e}");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(d.path().join("outside.onnx"), bundle.join("l.onnx"))
                .unwrap();
            let e = msg(read(&manifest, "detector", "l.onnx", 100));
            assert!(e.contains("outside the bundle folder"), "{e}");
            std::os::unix::fs::symlink("/dev/zero", bundle.join("z.onnx")).unwrap();
            let e = msg(read(&manifest, "detector", "z.onnx", 100));
            assert!(e.contains("outside") || e.contains("regular"), "{e}");
            std::os::unix::fs::symlink("m.onnx", bundle.join("inside.onnx")).unwrap();
            assert!(read(&manifest, "detector", "inside.onnx", 100).is_ok());
        }
        std::fs::create_dir(bundle.join("dir.onnx")).unwrap();
        let e = msg(read(&manifest, "detector", "dir.onnx", 100));
        assert!(e.contains("not a regular file"), "{e}");
    }
}
