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
//!
//! A temporary file is registered while it exists ([`inflight`]): SIGTERM or SIGINT during a
//! write removes it before the process ends (SIGKILL cannot be caught; the next writer of the
//! same file sweeps what it left, see [`sweep_temporaries`]).
//!
//! Test stops: the binary may name one write stage ([`set_test_stop`], from the environment
//! variable `GESTALT_EDGE_TEST_PAUSE`); a write reaching it stops its own process (SIGSTOP),
//! so a test can kill it provably inside the write. Stopping is all it does: what is written
//! and every check stay the same, and anyone who can set the process's environment can stop it
//! with `kill -STOP` anyway, so it is compiled into every build.

mod inflight;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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
    write_atomic_checked(path, access, fill, || Ok(()))
}

/// [`write_atomic_with`], calling `before_rename` once the temporary file is complete and
/// durable, just before it replaces `path`: an error from it leaves `path` as it was, removes
/// the temporary and is returned (a writer re-checks there that nobody replaced the file it
/// read).
pub fn write_atomic_checked(
    path: &Path,
    access: Access,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    before_rename: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let io = |e: std::io::Error| Error::io(path, e);
    let dir = folder(path);
    let prefix = temp_prefix(path).ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file path",
        ))
    })?;
    // `.NAME.XXXXXX.tmp`: a left-over after a kill says which file it was for
    let tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)
        .map_err(io)?;
    // removed by the SIGTERM / SIGINT handler if the process is told to end during the write;
    // registered until the temporary is renamed or removed (dropped after `tmp`)
    let registered = inflight::Registration::new(tmp.path());
    let result = fill_and_rename(tmp, path, access, fill, before_rename);
    drop(registered);
    result
}

/// The body of [`write_atomic_checked`] once the temporary exists: `tmp` is renamed over
/// `path` or removed (dropped) on every path out.
fn fill_and_rename(
    tmp: tempfile::NamedTempFile,
    path: &Path,
    access: Access,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    before_rename: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let io = |e: std::io::Error| Error::io(path, e);
    set_mode(tmp.as_file(), access).map_err(io)?;
    test_stop("created");
    {
        let mut w = std::io::BufWriter::new(tmp.as_file());
        fill(&mut w).map_err(io)?;
        w.flush().map_err(io)?;
    }
    test_stop("written");
    tmp.as_file().sync_all().map_err(io)?;
    test_stop("synced");
    before_rename()?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    test_stop("renamed");
    sync_folder(folder(path));
    Ok(())
}

/// Suffix of every temporary file [`write_atomic_with`] makes.
const TEMP_SUFFIX: &str = ".tmp";

/// `.NAME.`: how the temporary files of `path` begin (`None` for a path without a file name).
fn temp_prefix(path: &Path) -> Option<std::ffi::OsString> {
    let name = path.file_name()?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    Some(prefix)
}

/// The temporary files of `path` in its folder (`.NAME.XXXXXX.tmp`): what a writer killed
/// with SIGKILL left, or a live writer's (callers that sweep them hold the file's write lock,
/// so there is no live writer). Sorted.
pub fn temporaries(path: &Path) -> Result<Vec<PathBuf>> {
    let Some(prefix) = temp_prefix(path) else {
        return Ok(Vec::new());
    };
    let prefix = prefix.to_string_lossy().into_owned();
    let dir = folder(path);
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // the random part tempfile adds is six characters, never empty
        if name.len() > prefix.len() + TEMP_SUFFIX.len()
            && name.starts_with(&prefix)
            && name.ends_with(TEMP_SUFFIX)
        {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// Removes the temporary files of `path` ([`temporaries`]); returns how many. Call it only
/// while holding the file's write lock. A temporary that cannot be removed is an
/// [`Error::Io`] naming it (it may hold data that should be gone).
pub fn sweep_temporaries(path: &Path) -> Result<usize> {
    let found = temporaries(path)?;
    for t in &found {
        match std::fs::remove_file(t) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(t, e)),
        }
    }
    Ok(found.len())
}

/// The write stage at which this process stops itself (tests only; see the module doc).
static TEST_STOP: OnceLock<String> = OnceLock::new();

/// Names the write stage (`created`, `written`, `synced`, `renamed`, or a caller's such as
/// `locked`) at which this process stops itself with SIGSTOP; set once, by the binary, from
/// its environment. Later calls change nothing.
pub fn set_test_stop(stage: &str) {
    let _ = TEST_STOP.set(stage.to_string());
}

/// Stops the process (SIGSTOP) when `stage` is the stage named by [`set_test_stop`].
pub fn test_stop(stage: &str) {
    if TEST_STOP.get().is_some_and(|s| s == stage) {
        #[cfg(unix)]
        // SAFETY: raise takes a signal number and no pointers.
        unsafe {
            libc::raise(libc::SIGSTOP);
        }
    }
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

/// Opens (creating when missing) the lock file `path`: no symlink followed, never blocking on
/// a FIFO, a regular file required, 0644 on the handle whatever the umask (a lock file holds
/// at most its holder's process id, never patient data). The one opener of the gallery locks
/// and of [`lock_exclusive`].
pub fn open_lock_file(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).read(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // no symlink followed: a lock file lies beside what it guards
        options
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // the umask may have taken bits away (or a planted file may have more): set them
        if file.metadata()?.permissions().mode() & 0o7777 != 0o644 {
            file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(file)
}

/// Opens the lock file `path` ([`open_lock_file`]) and holds an exclusive advisory lock on it
/// until the returned handle is dropped; waits while another process holds it.
pub fn lock_exclusive(path: &Path) -> std::io::Result<File> {
    let f = open_lock_file(path)?;
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
