//! Shared helpers for the integration tests: the binary, the demo bundle, temp dirs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The crate root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The demo bundle manifest; panics with the fix when set-up has not been run.
pub fn demo_bundle() -> PathBuf {
    let m = root().join("models/demo/bundle.toml");
    let model = root().join("models/demo/sface.onnx");
    assert!(
        model.exists() && demo_photo("person_a_1.jpg").exists(),
        "the demo bundle is not prepared: run scripts/setup.sh first (README)"
    );
    m
}

/// A demo photo by file name.
pub fn demo_photo(name: &str) -> PathBuf {
    root().join("models/demo/photos").join(name)
}

/// A fresh temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// The binary under test with a clean, hermetic environment.
pub fn cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gestalt-edge"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(root());
    c
}

/// Runs the binary with `args`.
pub fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    cmd().args(args).output().expect("run gestalt-edge")
}

/// Exit code, stdout and stderr of a run, for assertions.
pub fn parts(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

/// Asserts an exit code and that stderr mentions every fragment; returns stderr.
pub fn expect_failure(o: &Output, code: i32, fragments: &[&str]) -> String {
    let (c, out, err) = parts(o);
    assert_eq!(c, code, "exit code; stdout: {out}\nstderr: {err}");
    for f in fragments {
        assert!(err.contains(f), "stderr lacks {f:?}: {err}");
    }
    assert!(!err.contains("panicked"), "panic: {err}");
    err
}

/// The demo gallery: person_a_1, person_b_1 and the two impostors (built once per test binary).
pub fn demo_gallery() -> &'static Path {
    static G: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = G.get_or_init(|| {
        let dir = tempdir();
        let out = dir.path().join("demo.gallery");
        let o = run([
            "gallery".as_ref(),
            "build".as_ref(),
            "--bundle".as_ref(),
            demo_bundle().as_os_str(),
            "--labels".as_ref(),
            root().join("models/demo/labels.csv").as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ]);
        let (c, stdout, err) = parts(&o);
        assert_eq!(c, 0, "gallery build failed: {stdout}\n{err}");
        (dir, out)
    });
    path
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}
