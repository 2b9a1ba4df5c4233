//! The write lock of the commands that write a gallery file: the flag's wait and what the
//! user is told while waiting (the lock itself is `gestalt_edge::gallery::lock`).

use std::path::Path;
use std::time::Duration;

use gestalt_edge::gallery::lock::WriteLock;
use gestalt_edge::Result;

use crate::cli::args::LockArgs;

/// Takes the write lock of the gallery at `path`, waiting up to `--lock-wait` seconds.
pub fn lock(path: &Path, args: &LockArgs) -> Result<WriteLock> {
    WriteLock::acquire(path, Duration::from_secs(args.lock_wait), |pid| {
        let who = pid.map_or_else(|| "another process".to_string(), |p| format!("process {p}"));
        eprintln!(
            "waiting up to {} s for {who}, which is writing {}",
            args.lock_wait,
            path.display()
        );
    })
}
