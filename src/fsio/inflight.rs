//! Temporary files in flight, removed when the process is told to end (SIGTERM, SIGINT).
//!
//! A write registers its temporary file's path in one of [`SLOTS`] fixed buffers (no
//! allocation, so the signal handler may read them) and unregisters it once the file is
//! renamed or removed. The handler, installed once with `sigaction` when the first temporary
//! is registered, claims each registered slot, unlinks its path, puts the signal's previous
//! disposition back and raises the signal again, so the process ends as it would have (or a
//! handler installed before ours runs). A slot is claimed by one compare-and-swap, so a
//! writer never reuses a buffer the handler is reading. A path longer than a slot, or more
//! than [`SLOTS`] temporaries at once, is written unregistered (the next writer of that file
//! sweeps it, see [`super::sweep_temporaries`]).

use std::cell::UnsafeCell;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

/// Temporaries registered at once (a command writes one file at a time; the model cache and
/// the marks may overlap a gallery write).
const SLOTS: usize = 8;
/// Longest path a slot holds, with its terminating NUL (Linux's PATH_MAX).
const PATH_BYTES: usize = 4096;

const FREE: u8 = 0;
/// A writer is filling the buffer.
const FILLING: u8 = 1;
/// The buffer holds a live temporary's path.
const LIVE: u8 = 2;
/// The handler took it (the process is ending).
const CLAIMED: u8 = 3;

struct Slot {
    state: AtomicU8,
    path: UnsafeCell<[u8; PATH_BYTES]>,
}

// SAFETY: a slot's buffer is written only by the thread that moved its state FREE -> FILLING
// and read only by the one that moved it LIVE -> CLAIMED; the state's acquire/release orders
// the buffer's bytes.
unsafe impl Sync for Slot {}

static REGISTRY: [Slot; SLOTS] = [const {
    Slot {
        state: AtomicU8::new(FREE),
        path: UnsafeCell::new([0; PATH_BYTES]),
    }
}; SLOTS];

/// A registered temporary; dropping it unregisters the path.
pub(super) struct Registration {
    slot: Option<usize>,
}

impl Registration {
    /// Registers `path` (see the module doc for when it is not).
    pub(super) fn new(path: &Path) -> Registration {
        install_handler();
        Registration {
            slot: register(path),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            // fails only when the handler claimed it: the process is ending, leave it
            let _ =
                REGISTRY[i]
                    .state
                    .compare_exchange(LIVE, FREE, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}

#[cfg(unix)]
fn register(path: &Path) -> Option<usize> {
    use std::os::unix::ffi::OsStrExt;
    // an absolute path: the handler must not depend on the working folder
    let abs;
    let path = if path.is_absolute() {
        path
    } else {
        abs = std::env::current_dir().ok()?.join(path);
        &abs
    };
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= PATH_BYTES || bytes.contains(&0) {
        return None;
    }
    for (i, slot) in REGISTRY.iter().enumerate() {
        if slot
            .state
            .compare_exchange(FREE, FILLING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // SAFETY: FILLING gives this thread the buffer alone (see `Slot`).
            let buf = unsafe { &mut *slot.path.get() };
            buf[..bytes.len()].copy_from_slice(bytes);
            buf[bytes.len()] = 0;
            slot.state.store(LIVE, Ordering::Release);
            return Some(i);
        }
    }
    None
}

#[cfg(not(unix))]
fn register(_path: &Path) -> Option<usize> {
    None
}

#[cfg(unix)]
mod handler {
    use super::*;
    use std::sync::Once;

    /// The dispositions of SIGTERM and SIGINT before ours.
    struct Previous(UnsafeCell<[libc::sigaction; 2]>);
    // SAFETY: written once inside `INSTALL` before the handler can run, then only read.
    unsafe impl Sync for Previous {}

    static PREVIOUS: Previous = Previous(UnsafeCell::new(unsafe { std::mem::zeroed() }));
    static INSTALL: Once = Once::new();
    const SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

    pub(super) fn install() {
        INSTALL.call_once(|| {
            for (k, &sig) in SIGNALS.iter().enumerate() {
                // SAFETY: sigaction with a zeroed, then filled, struct; the handler only calls
                // async-signal-safe functions (unlink, sigaction, raise) and atomics.
                unsafe {
                    let mut action: libc::sigaction = std::mem::zeroed();
                    action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                    action.sa_flags = libc::SA_RESTART;
                    libc::sigemptyset(&mut action.sa_mask);
                    let previous = &mut (*PREVIOUS.0.get())[k];
                    if libc::sigaction(sig, &action, previous) != 0 {
                        // keep the default; the temporary is then left for the next writer
                        continue;
                    }
                    // a signal the process ignored stays ignored
                    if previous.sa_sigaction == libc::SIG_IGN {
                        libc::sigaction(sig, previous, std::ptr::null_mut());
                    }
                }
            }
        });
    }

    extern "C" fn on_signal(sig: libc::c_int) {
        for slot in REGISTRY.iter() {
            if slot
                .state
                .compare_exchange(LIVE, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                // SAFETY: CLAIMED gives the handler the NUL-terminated buffer alone.
                unsafe {
                    libc::unlink((*slot.path.get()).as_ptr().cast());
                }
            }
        }
        let k = SIGNALS.iter().position(|&s| s == sig).unwrap_or(0);
        // SAFETY: restore the disposition saved at install time and raise the signal again:
        // with the default it ends the process (blocked until this handler returns), with an
        // earlier handler that handler runs.
        unsafe {
            let previous = &(*PREVIOUS.0.get())[k];
            libc::sigaction(sig, previous, std::ptr::null_mut());
            libc::raise(sig);
        }
    }
}

fn install_handler() {
    #[cfg(unix)]
    handler::install();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn slots_are_taken_and_given_back() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        let live = |i: usize| REGISTRY[i].state.load(Ordering::Acquire) == LIVE;
        let a = Registration::new(&p);
        let i = a.slot.expect("a slot");
        assert!(live(i));
        drop(a);
        assert!(!live(i));
        // a path longer than a slot is not registered
        let long = d.path().join("y".repeat(PATH_BYTES));
        assert!(Registration::new(&long).slot.is_none());
    }
}
