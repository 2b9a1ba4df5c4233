//! One writer per gallery: an advisory lock beside the file, held across a writer's whole
//! read-modify-write.
//!
//! Consumes a gallery path and how long to wait; produces a [`WriteLock`] (or an
//! [`Error::Gallery`], exit 6, naming the process that holds the lock when the wait runs
//! out). The lock is `flock(LOCK_EX)` on `.NAME.lock` in the gallery's folder (0644 whatever
//! the umask, never removed: removing a lock file lets two writers lock two different files).
//! The holder writes its process id into it; a waiter reads it back for its message.
//!
//! While it holds the lock a writer reads the current file, edits it in memory and writes it
//! with [`WriteLock::write`], which first removes the temporaries a killed writer left
//! (`.NAME.XXXXXX.tmp`; no live writer has one, since each writes under this lock) and, just
//! before the rename, checks that the file is still the one seen when the lock was taken
//! (same inode, same revision): a writer that does not take the lock (an older build, a
//! copy by hand) makes the command fail rather than lose its change. Readers (`predict`,
//! `run`) take no lock: the rename is atomic, so a held lock never blocks a device's start.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Gallery;
use crate::{Error, Result};

/// How often a waiting writer tries the lock again.
const RETRY: Duration = Duration::from_millis(25);
/// How long a waiter waits for the holder's process id before it reports an unnamed holder.
const NAME_GRACE: Duration = Duration::from_millis(200);
/// Longest lock-file content read back for the holder's process id.
const MAX_LOCK_BYTES: u64 = 64;
/// Bytes of a gallery's beginning read to find its revision (header, body tag, bundle id,
/// version label, revision; the two names are short).
const HEAD_BYTES: u64 = 64 * 1024;

/// The lock file of the gallery at `path`: `.NAME.lock` in the same folder.
pub fn lock_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    dir.join(format!(".{name}.lock"))
}

/// What the gallery file was when the lock was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// (device, inode); `None` when the file did not exist.
    inode: Option<(u64, u64)>,
    /// Its revision; `None` when absent or not readable as a gallery.
    revision: Option<u32>,
}

/// The exclusive right to rewrite one gallery file, until dropped.
#[derive(Debug)]
pub struct WriteLock {
    file: File,
    gallery: PathBuf,
    seen: Seen,
}

impl WriteLock {
    /// Takes the write lock of the gallery at `path`, trying for up to `wait` (zero: once).
    /// `on_wait` is called once, with the holder's process id when known, if the lock is held
    /// by another process (the CLI says it waits). When the wait runs out: an
    /// [`Error::Gallery`] naming the holder; nothing is written.
    pub fn acquire(
        path: &Path,
        wait: Duration,
        on_wait: impl FnOnce(Option<u32>),
    ) -> Result<WriteLock> {
        let lock = lock_path(path);
        let fail = |why: String| Error::gallery(path, why);
        let mut file = crate::fsio::open_lock_file(&lock)
            .map_err(|e| fail(format!("cannot open the lock file {}: {e}", lock.display())))?;
        let start = Instant::now();
        let mut on_wait = Some(on_wait);
        loop {
            match try_lock(&file) {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => return Err(fail(format!("cannot lock {}: {e}", lock.display()))),
            }
            // the holder writes its id just after locking: give it a moment before saying
            // that an unnamed process holds the lock
            if on_wait.is_some() {
                let pid = holder(&mut file);
                if pid.is_some() || start.elapsed() >= NAME_GRACE {
                    if let Some(f) = on_wait.take() {
                        f(pid);
                    }
                }
            }
            if start.elapsed() >= wait {
                let who = match holder(&mut file) {
                    Some(pid) => format!("process {pid}"),
                    None => "another process".to_string(),
                };
                return Err(fail(format!(
                    "{who} is writing this gallery (it holds {}); still locked after {:.1} s, \
                     nothing written; run the command again when it has finished, or wait \
                     longer with --lock-wait SECONDS",
                    lock.display(),
                    wait.as_secs_f64()
                )));
            }
            std::thread::sleep(
                RETRY
                    .min(wait.saturating_sub(start.elapsed()))
                    .max(Duration::from_millis(1)),
            );
        }
        // ours now: say who holds it (best effort: the message is the only reader)
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(file, "{}", std::process::id());
        crate::fsio::test_stop("locked");
        Ok(WriteLock {
            seen: seen(path),
            file,
            gallery: path.to_path_buf(),
        })
    }

    /// The gallery file this lock is for.
    pub fn path(&self) -> &Path {
        &self.gallery
    }

    /// Writes `gallery` over the locked file: removes the temporaries killed writers left,
    /// writes atomically (owner-only, [`crate::fsio`]), and refuses to rename when the file
    /// is no longer the one seen when the lock was taken ([`Error::Gallery`], nothing
    /// replaced).
    pub fn write(&self, gallery: &Gallery) -> Result<()> {
        self.write_bytes(&gallery.to_bytes())
    }

    /// [`WriteLock::write`] of a gallery already encoded (`bytes`, a whole file).
    pub fn write_bytes(&self, bytes: &[u8]) -> Result<()> {
        crate::fsio::sweep_temporaries(&self.gallery)?;
        crate::fsio::write_atomic_checked(
            &self.gallery,
            crate::fsio::Access::Private,
            |w| w.write_all(bytes),
            || {
                let now = seen(&self.gallery);
                if now == self.seen {
                    Ok(())
                } else {
                    Err(Error::gallery(
                        &self.gallery,
                        format!(
                            "the file was replaced while this command ran (revision {} when it \
                             started, {} now) by a writer that does not take the lock; nothing \
                             written, run the command again",
                            show(self.seen.revision),
                            show(now.revision)
                        ),
                    ))
                }
            },
        )
    }

    /// After a write: an [`Error::Gallery`] when a temporary of the file (a complete earlier
    /// copy) is still in its folder, so a removal is never reported done while the data is
    /// still on disk.
    pub fn check_no_copies_left(&self) -> Result<()> {
        let left = crate::fsio::temporaries(&self.gallery)?;
        match left.first() {
            None => Ok(()),
            Some(t) => Err(Error::gallery(
                &self.gallery,
                format!(
                    "the new file is written, but {} (a temporary copy, possibly of the removed \
                     data) could not be removed; remove it by hand",
                    t.display()
                ),
            )),
        }
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        // no process id left behind for a later waiter to name; the flock goes with the file
        let _ = self.file.set_len(0);
    }
}

fn show(r: Option<u32>) -> String {
    r.map_or_else(|| "none".to_string(), |r| r.to_string())
}

/// Tries the exclusive lock without blocking: `Ok(false)` when another process holds it.
fn try_lock(file: &File) -> std::io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock takes a file descriptor we own for the call's duration and no pointers.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Ok(false);
        }
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(false);
        }
        Err(e)
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        Ok(true)
    }
}

/// The process id the lock's holder wrote, if readable.
fn holder(file: &mut File) -> Option<u32> {
    file.rewind().ok()?;
    let mut text = String::new();
    (&mut *file)
        .take(MAX_LOCK_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse().ok()
}

/// The gallery file as it is now: its inode and revision.
fn seen(path: &Path) -> Seen {
    let inode = std::fs::metadata(path).ok().map(|m| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino())
        }
        #[cfg(not(unix))]
        {
            (0, m.len())
        }
    });
    Seen {
        inode,
        revision: inode.and_then(|_| read_revision(path)),
    }
}

/// The revision in the first [`HEAD_BYTES`] of a gallery file, without decoding the rest.
fn read_revision(path: &Path) -> Option<u32> {
    let f = crate::fsio::open_capped(path, crate::fsio::Cap::GALLERY).ok()?;
    let mut head = Vec::new();
    f.take(HEAD_BYTES).read_to_end(&mut head).ok()?;
    super::format::peek_revision(&head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_waits_then_names_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let g = d.path().join("g.gallery");
        let first = WriteLock::acquire(&g, Duration::ZERO, |_| panic!("free lock")).unwrap();
        // flock locks belong to the open file description: a second open in this process
        // contends like another process would
        let mut waited = None;
        let e = WriteLock::acquire(&g, Duration::from_millis(60), |pid| waited = Some(pid))
            .unwrap_err();
        assert_eq!(waited, Some(Some(std::process::id())));
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("process {} is writing", std::process::id())),
            "{msg}"
        );
        drop(first);
        WriteLock::acquire(&g, Duration::ZERO, |_| panic!("released")).unwrap();
    }

    #[test]
    fn a_file_replaced_by_a_writer_without_the_lock_is_not_overwritten() {
        let d = tempfile::tempdir().unwrap();
        let g = d.path().join("g.gallery");
        let mut gallery = crate::gallery::tests::small_gallery_for_locks();
        gallery.write_atomic(&g).unwrap();
        let lock = WriteLock::acquire(&g, Duration::ZERO, |_| {}).unwrap();
        // a writer that takes no lock replaces the file meanwhile
        gallery.set_revision(7);
        gallery.write_atomic(&g).unwrap();
        let theirs = std::fs::read(&g).unwrap();
        gallery.set_revision(1);
        let e = lock.write(&gallery).unwrap_err();
        assert!(matches!(e, Error::Gallery { .. }), "{e}");
        assert!(
            e.to_string().contains("replaced while this command ran"),
            "{e}"
        );
        assert_eq!(std::fs::read(&g).unwrap(), theirs);
        assert!(crate::fsio::temporaries(&g).unwrap().is_empty());
        // unchanged since the lock was taken: written
        drop(lock);
        let lock = WriteLock::acquire(&g, Duration::ZERO, |_| {}).unwrap();
        gallery.set_revision(8);
        lock.write(&gallery).unwrap();
        assert_eq!(Gallery::read(&g).unwrap().revision(), 8);
    }

    #[cfg(unix)]
    #[test]
    fn the_lock_file_is_0644_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let g = d.path().join("g.gallery");
        // a planted world-writable lock file is tightened too
        std::fs::write(lock_path(&g), b"").unwrap();
        std::fs::set_permissions(lock_path(&g), std::fs::Permissions::from_mode(0o666)).unwrap();
        drop(WriteLock::acquire(&g, Duration::ZERO, |_| {}).unwrap());
        let mode = std::fs::metadata(lock_path(&g))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o644);
    }
}
