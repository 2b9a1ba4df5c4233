//! Files written whole, atomically, with one permission rule: the only code in the crate that
//! fsyncs (`sync_all`, `sync_data`).
//!
//! Consumes a target path, the bytes (or a writer callback) and what the file holds
//! ([`Access`]); produces the file, or an [`Error::Io`] naming it. A write goes to a temporary
//! file in the target's folder, is fsynced, renamed over the target and the folder is fsynced,
//! so a crash or a kill leaves the complete old file or the complete new one, never a mix.
//!
//! The rule: files that hold patient data or secrets (galleries, saved embeddings, audit logs,
//! secret keys, saved captures, screen images: they show a face) are readable by their owner
//! only (0600); everything else (models, manifests, the model cache, kernel choices,
//! `revisions.json`, public keys, signatures, plots) is
//! 0644, lock files included; nothing is world-writable. The mode is set on the file itself,
//! so it does not depend on the umask. Folders the tool creates ([`create_dir_all`]) are
//! owner-only (0700) whatever the umask.
//!
//! Reading has one rule too ([`read_capped`], [`open_capped`], in `fsio/read.rs`): every file
//! the crate reads is opened without blocking, must be a regular file and is read through the
//! [`Cap`] of its kind.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

mod read;
pub use read::{open_capped, read_capped, read_text_capped, Cap, Capped, ReadError};

/// What a file holds, which decides who may read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Patient data or secrets: owner read/write only (0600).
    Private,
    /// Anything else: owner read/write, everyone read (0644).
    Shared,
}

impl Access {
    /// The Unix permission bits of this access.
    pub fn mode(self) -> u32 {
        match self {
            Access::Private => 0o600,
            Access::Shared => 0o644,
        }
    }
}

/// The folder a file lives in (`.` for a bare file name).
fn folder(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` atomically with `access` permissions.
pub fn write_atomic(path: &Path, bytes: &[u8], access: Access) -> Result<()> {
    write_atomic_with(path, access, |w| w.write_all(bytes))
}

/// Writes what `fill` writes to `path` atomically with `access` permissions (for encoders that
/// stream). `fill` gets a buffered writer over the temporary file.
pub fn write_atomic_with(
    path: &Path,
    access: Access,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let io = |e: std::io::Error| Error::io(path, e);
    let dir = folder(path);
    // `.NAME.XXXXXX.tmp`: a left-over after a kill says which file it was for
    let name = path.file_name().ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file path",
        ))
    })?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io)?;
    set_mode(tmp.as_file(), access).map_err(io)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file());
        fill(&mut w).map_err(io)?;
        w.flush().map_err(io)?;
    }
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    sync_folder(dir);
    Ok(())
}

/// Opens `path` for appending, creating it with `access` permissions when it does not exist
/// (an existing file keeps its permissions). Each append is the caller's one `write_all`.
pub fn open_append(path: &Path, access: Access) -> Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(access.mode());
    }
    #[cfg(not(unix))]
    let _ = access;
    options.open(path).map_err(|e| Error::io(path, e))
}

/// Creates the folder `dir` and its missing parents, each new one owner-only (0700) whatever
/// the umask (a umask can only take bits away). Existing folders keep their modes.
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Opens (creating when missing) the lock file `path` and holds an exclusive advisory lock on
/// it until the returned handle is dropped; waits while another process holds it. A lock file
/// the caller created is 0644 whatever the umask (its content is never patient data).
pub fn lock_exclusive(path: &Path) -> std::io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    // another user's lock file (for example root's, read by the service) keeps its mode
    let _ = set_mode(&f, Access::Shared);
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock takes a file descriptor owned by `f` for the call's duration.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(f)
}

/// Makes the data appended to `file` durable (its content, not every piece of metadata).
pub fn sync_appended(file: &File, path: &Path) -> Result<()> {
    file.sync_data().map_err(|e| Error::io(path, e))
}

#[cfg(unix)]
fn set_mode(file: &File, access: Access) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(access.mode()))
}

#[cfg(not(unix))]
fn set_mode(_file: &File, _access: Access) -> std::io::Result<()> {
    Ok(())
}

/// fsyncs the folder so the rename itself survives a power cut. Best effort: some file
/// systems cannot fsync a folder, and the data is already durable in the renamed file.
fn sync_folder(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn replaces_whole_files_and_leaves_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.bin");
        write_atomic(&p, b"old", Access::Shared).unwrap();
        write_atomic(&p, b"new content", Access::Shared).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new content");
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only_and_shared_files_world_readable() {
        let d = tempfile::tempdir().unwrap();
        let private = d.path().join("g.gallery");
        let shared = d.path().join("m.onnx");
        write_atomic(&private, b"x", Access::Private).unwrap();
        write_atomic(&shared, b"x", Access::Shared).unwrap();
        assert_eq!(mode(&private), 0o600);
        assert_eq!(mode(&shared), 0o644);
        // a rewrite applies the rule again, whatever the old file's mode was
        write_atomic(&private, b"y", Access::Shared).unwrap();
        assert_eq!(mode(&private), 0o644);
        let log = d.path().join("audit.jsonl");
        drop(open_append(&log, Access::Private).unwrap());
        assert_eq!(mode(&log), 0o600);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.bin");
        write_atomic(&p, b"old", Access::Shared).unwrap();
        let e = write_atomic_with(&p, Access::Shared, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("encoder failed"))
        })
        .unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
