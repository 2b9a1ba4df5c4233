//! The results a command prints on standard output, checked: a write that fails (a full disk
//! behind `> out.json`, `/dev/full`, a closed pipe) is remembered, and the process ends with
//! exit code 1 and "cannot write the result" instead of 0 with a lost or partial result.
//! Every `print` of the binary goes through [`out!`] / [`outln!`]; `main` calls [`finish`],
//! which flushes and reports the first failure.

use std::io::Write;
use std::sync::Mutex;

/// The first failed write, if any.
static FAILED: Mutex<Option<std::io::Error>> = Mutex::new(None);

fn remember(e: std::io::Error) {
    let mut slot = FAILED.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_none() {
        *slot = Some(e);
    }
}

/// Writes `args` to standard output; a failure is remembered for [`finish`].
pub fn write(args: std::fmt::Arguments<'_>) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_fmt(args) {
        remember(e);
    }
}

/// Flushes standard output; the first write that failed during the run, or the flush's own
/// failure, is returned.
pub fn finish() -> std::io::Result<()> {
    if let Err(e) = std::io::stdout().lock().flush() {
        remember(e);
    }
    match FAILED.lock().unwrap_or_else(|p| p.into_inner()).take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `print!` whose failure is an error of the process (see the module docs).
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::out::write(format_args!($($t)*)) };
}

/// `println!` whose failure is an error of the process (see the module docs).
macro_rules! outln {
    () => { $crate::cli::out::write(format_args!("\n")) };
    ($($t:tt)*) => {{
        $crate::cli::out::write(format_args!($($t)*));
        $crate::cli::out::write(format_args!("\n"));
    }};
}

pub(crate) use {out, outln};
