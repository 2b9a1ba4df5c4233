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

/// Puts the demo models into `dir` (hard links where the file system allows, else copies):
/// a manifest in `dir` may name only files inside its own folder.
pub fn link_demo_models(dir: &Path) {
    let models = root().join("models/demo");
    for f in ["yunet.onnx", "sface.onnx"] {
        let (from, to) = (models.join(f), dir.join(f));
        // never copy onto an existing name: it may be a hard link to the original, and a
        // copy would truncate the original through it
        if to.exists() {
            continue;
        }
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).expect("copy a demo model");
        }
    }
}

/// A copy of the demo manifest in `dir` with the demo models beside it.
pub fn demo_bundle_copy(dir: &Path) -> PathBuf {
    let src = demo_bundle();
    link_demo_models(dir);
    let m = dir.join("bundle.toml");
    std::fs::copy(&src, &m).expect("copy the demo manifest");
    m
}

/// Forks (a real fork of this small interpreter), execs the command, reaps it with wait4
/// and appends its peak RSS in KiB to stderr after [`MAXRSS_MARK`].
const MEASURE_PY: &str = r#"
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
sys.stderr.write("\n@maxrss_kib=%d\n" % ru.ru_maxrss)
sys.stderr.flush()
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"#;

/// What [`MEASURE_PY`] writes before the peak RSS.
const MAXRSS_MARK: &str = "\n@maxrss_kib=";

/// Runs `c` and returns its output, its peak resident set size in KiB and its wall time.
///
/// The kernel's figure for a child this test process spawns directly is useless here: at
/// exec, Linux records the high-water mark of the memory the child leaves (with std's
/// vfork-style spawn, this whole test process, which holds models of other tests), so the
/// command runs under a small python3 process that forks and measures it instead.
pub fn run_measured(c: &mut Command) -> (Output, u64, std::time::Duration) {
    let mut m = Command::new("python3");
    m.env_clear()
        .arg("-c")
        .arg(MEASURE_PY)
        .arg(c.get_program())
        .args(c.get_args());
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            m.env(k, v);
        }
    }
    if let Some(d) = c.get_current_dir() {
        m.current_dir(d);
    }
    let start = std::time::Instant::now();
    let mut out = m.output().expect("spawn python3 to measure gestalt-edge");
    let elapsed = start.elapsed();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let at = text
        .rfind(MAXRSS_MARK)
        .unwrap_or_else(|| panic!("no peak RSS reported: {text}"));
    let kib: u64 = text[at + MAXRSS_MARK.len()..]
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("bad peak RSS line: {text}"));
    out.stderr.truncate(at);
    (out, kib, elapsed)
}

/// Stdout of a run that must succeed (exit 0), else a failure showing both streams.
pub fn ok(o: &std::process::Output) -> String {
    let (c, out, err) = parts(o);
    assert_eq!(c, 0, "stdout: {out}\nstderr: {err}");
    out
}

/// `sign --generate-key DIR/NAME`: the secret and public key files.
pub fn gen_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let secret = dir.join(name);
    let out = ok(&run([
        "sign".as_ref(),
        "--generate-key".as_ref(),
        secret.as_os_str(),
    ]));
    assert!(out.contains("fingerprint"), "{out}");
    let public = dir.join(format!("{name}.pub"));
    (secret, public)
}

/// `sign --key SECRET --file FILE`: writes FILE.sig.
pub fn sign(secret: &Path, file: &Path) {
    let out = ok(&cmd()
        .args(["sign", "--key"])
        .arg(secret)
        .arg("--file")
        .arg(file)
        .output()
        .unwrap());
    assert!(out.contains("wrote"), "{out}");
}
