//! Every input kind through the one bounded reader (`src/fsio/read.rs`): a FIFO, a symlink
//! to `/dev/zero` and a sparse 1 GiB file in its place give the input's exit code (or a
//! warning and exit 0 where the input is optional) within 2 s at a peak RSS below 200 MB,
//! measured as the trust tests measure (`util::run_measured`). Each command runs under
//! `timeout -s KILL` so a reader that waits on a FIFO fails the test instead of hanging it.
//!
//! Where the command loads the models before it reads the input (a photo, a labels row beside
//! a good photo, a cache entry or kernel-choice file that is rebuilt), its own work with a
//! good input takes about that or more, so the bound is that work plus a margin: the command
//! on the clean input (a good photo, the good row alone, no cache entry, no choice file) is
//! measured first, and the bad input may take at most 64 MiB more memory and 2 s more than
//! 1.5x its time (never less than 2 s and 200 MiB). The time bound catches a wait on a FIFO
//! (the machine's load makes model runs vary by seconds), the memory bound a read of the file.

use crate::util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use util::*;

/// The three files that lie: one that blocks, one without end, one mostly holes.
#[derive(Debug, Clone, Copy)]
enum Bad {
    Fifo,
    DevZero,
    Sparse,
}

const ALL: [Bad; 3] = [Bad::Fifo, Bad::DevZero, Bad::Sparse];

/// Puts `bad` at `path`, replacing whatever is there.
fn make(path: &Path, bad: Bad) {
    let _ = std::fs::remove_file(path);
    match bad {
        Bad::Fifo => {
            use std::os::unix::ffi::OsStrExt;
            let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        }
        Bad::DevZero => std::os::unix::fs::symlink("/dev/zero", path).unwrap(),
        Bad::Sparse => std::fs::File::create(path)
            .unwrap()
            .set_len(1 << 30)
            .unwrap(),
    }
}

/// `dir/NAME` made `bad`, the name saying which kind it is (`fifo-NAME`, ...).
fn bad_file(dir: &Path, name: &str, bad: Bad) -> PathBuf {
    let prefix = match bad {
        Bad::Fifo => "fifo",
        Bad::DevZero => "zero",
        Bad::Sparse => "sparse",
    };
    let p = dir.join(format!("{prefix}-{name}"));
    make(&p, bad);
    p
}

/// `timeout` (coreutils) found on PATH: the measuring wrapper execs a path, not a name.
fn timeout() -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("timeout"))
        .find(|p| p.is_file())
        .expect("coreutils' timeout on PATH")
}

const MAX_SECONDS: f64 = 2.0;
const MAX_RSS_MIB: u64 = 200;

/// What the same command took on a clean input: wall time and peak RSS in MiB.
type Baseline = Option<(Duration, u64)>;

/// Most a bad input may add to a [`Baseline`].
const MAX_ADDED_RSS_MIB: u64 = 64;

/// `c` under `timeout -s KILL 20`, measured: output, peak RSS in MiB, wall time.
fn measured(c: &Command) -> (std::process::Output, u64, Duration) {
    let mut t = Command::new(timeout());
    t.args(["-s", "KILL", "20"])
        .arg(c.get_program())
        .args(c.get_args())
        .env_clear()
        .current_dir(root());
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            t.env(k, v);
        }
    }
    let (o, kib, took) = run_measured(&mut t);
    (o, kib / 1024, took)
}

/// Measures `c` on a clean input; it must succeed.
fn baseline(what: &str, c: &Command) -> Baseline {
    let (o, mib, took) = measured(c);
    ok(&o);
    eprintln!(
        "{what} (clean input): exit 0 in {:.2} s, peak RSS {mib} MiB",
        took.as_secs_f64()
    );
    Some((took, mib))
}

/// Runs `c` measured; asserts the exit code, that stderr names every fragment, and the
/// bounds: under 2 s and 200 MiB, or with a baseline (the larger of) 64 MiB and 1.5x + 2 s
/// over it.
/// Returns stderr.
fn check(what: &str, c: &mut Command, code: i32, fragments: &[&str], base: Baseline) -> String {
    let (o, mib, took) = measured(c);
    let err = expect_failure(&o, code, fragments);
    let secs = took.as_secs_f64();
    eprintln!("{what}: exit {code} in {secs:.2} s, peak RSS {mib} MiB");
    let (max_time, max_mib) = match base {
        None => (Duration::from_secs_f64(MAX_SECONDS), MAX_RSS_MIB),
        Some((t, m)) => (
            (t.mul_f64(1.5) + Duration::from_secs_f64(MAX_SECONDS))
                .max(Duration::from_secs_f64(MAX_SECONDS)),
            (m + MAX_ADDED_RSS_MIB).max(MAX_RSS_MIB),
        ),
    };
    assert!(
        took < max_time,
        "{what}: {secs:.2} s (limit {max_time:?}): {err}"
    );
    assert!(
        mib < max_mib,
        "{what}: peak RSS {mib} MiB (limit {max_mib}): {err}"
    );
    err
}

/// The words each kind's refusal uses.
fn why(bad: Bad) -> &'static str {
    match bad {
        Bad::Fifo => "FIFO",
        Bad::DevZero => "character device",
        Bad::Sparse => "over the limit",
    }
}

/// A copy of the demo gallery in `dir`.
fn gallery_copy(dir: &Path) -> PathBuf {
    let g = dir.join("clinic.gallery");
    std::fs::copy(demo_gallery(), &g).unwrap();
    g
}

#[test]
fn galleries() {
    let d = tempdir();
    for bad in ALL {
        let g = bad_file(d.path(), "clinic.gallery", bad);
        let name = g.file_name().unwrap().to_str().unwrap().to_string();
        check(
            &format!("gallery inspect {bad:?}"),
            cmd().args(["gallery", "inspect"]).arg(&g),
            6,
            &[&name, why(bad)],
            None,
        );
    }
}

#[test]
fn photos() {
    let d = tempdir();
    let predict = |photo: &Path| {
        let mut c = cmd();
        c.args(["predict", "--bundle"])
            .arg(demo_bundle())
            .arg("--gallery")
            .arg(demo_gallery())
            .arg(photo);
        c
    };
    let base = baseline("predict", &predict(&demo_photo("person_a_1.jpg")));
    for bad in ALL {
        let p = bad_file(d.path(), "photo.jpg", bad);
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        check(
            &format!("predict {bad:?}"),
            &mut predict(&p),
            4,
            &[&name, why(bad)],
            base,
        );
    }
}

#[test]
fn labels_row_photos() {
    let d = tempdir();
    let mut csv = String::from("image,label,subject\n");
    csv.push_str(&format!(
        "{},Demo identity A,person_a\n",
        demo_photo("person_a_1.jpg").display()
    ));
    let out = d.path().join("g.gallery");
    let build = |labels: &Path| {
        let mut c = cmd();
        c.args(["gallery", "build", "--bundle"])
            .arg(demo_bundle())
            .arg("--labels")
            .arg(labels)
            .arg("--out")
            .arg(&out);
        c
    };
    let good = write(d.path(), "good.csv", csv.as_bytes());
    let base = baseline("gallery build, the good row alone", &build(&good));
    std::fs::remove_file(&out).unwrap();
    let mut names = Vec::new();
    for (i, bad) in ALL.into_iter().enumerate() {
        let p = bad_file(d.path(), &format!("row{i}.jpg"), bad);
        csv.push_str(&format!("{},Demo identity B,person_b{i}\n", p.display()));
        names.push(p.file_name().unwrap().to_str().unwrap().to_string());
    }
    let labels = write(d.path(), "labels.csv", csv.as_bytes());
    let err = check(
        "gallery build, the good row and 3 bad rows",
        &mut build(&labels),
        0,
        &["skipped"],
        base,
    );
    for (name, bad) in names.iter().zip(ALL) {
        assert!(
            err.lines().any(|l| l.contains("skipped")
                && l.contains(name.as_str())
                && l.contains(why(bad))),
            "{name}: {err}"
        );
    }
    assert!(out.exists(), "the good row's gallery was written");
}

#[test]
fn signatures_and_keys() {
    let d = tempdir();
    let (secret, public) = gen_key(d.path(), "site");
    let g = gallery_copy(d.path());
    let sig = gestalt_edge::sign::signature_path(&g);
    for bad in ALL {
        make(&sig, bad);
        check(
            &format!("sign --verify, .sig {bad:?}"),
            cmd()
                .args(["sign", "--verify"])
                .arg(&public)
                .arg("--file")
                .arg(&g),
            7,
            &["clinic.gallery.sig", why(bad)],
            None,
        );
        let key = bad_file(d.path(), "site.pub", bad);
        let name = key.file_name().unwrap().to_str().unwrap().to_string();
        check(
            &format!("sign --verify, public key {bad:?}"),
            cmd()
                .args(["sign", "--verify"])
                .arg(&key)
                .arg("--file")
                .arg(&g),
            7,
            &[&name, why(bad)],
            None,
        );
        let key = bad_file(d.path(), "site", bad);
        let name = key.file_name().unwrap().to_str().unwrap().to_string();
        check(
            &format!("sign --key, secret key {bad:?}"),
            cmd()
                .args(["sign", "--key"])
                .arg(&key)
                .arg("--file")
                .arg(&g),
            7,
            &[&name, why(bad)],
            None,
        );
    }
    drop(secret);
}

#[test]
fn manifests() {
    let d = tempdir();
    for bad in ALL {
        let m = bad_file(d.path(), "bundle.toml", bad);
        let name = m.file_name().unwrap().to_str().unwrap().to_string();
        check(
            &format!("predict, manifest {bad:?}"),
            cmd()
                .args(["predict", "--bundle"])
                .arg(&m)
                .arg("--gallery")
                .arg(demo_gallery())
                .arg(demo_photo("person_a_2.jpg")),
            5,
            &[&name, why(bad)],
            None,
        );
    }
}

#[test]
fn model_files() {
    let d = tempdir();
    let manifest = demo_bundle_copy(d.path());
    let text = std::fs::read_to_string(&manifest).unwrap();
    // the embedder's ONNX file, then a compiled file pinned for it
    let onnx = text.replace("file = \"sface.onnx\"", "file = \"bad.onnx\"");
    let compiled = text.replace(
        "output = \"fc1\"",
        &format!(
            "output = \"fc1\"\ncompiled = {{ file = \"bad.native\", sha256 = \"{}\" }}",
            "0".repeat(64)
        ),
    );
    assert!(onnx != text && compiled != text);
    for (manifest_text, file) in [(onnx, "bad.onnx"), (compiled, "bad.native")] {
        std::fs::write(&manifest, &manifest_text).unwrap();
        for bad in ALL {
            make(&d.path().join(file), bad);
            // the bundle's own confinement refuses a FIFO (not a regular file) and a symlink
            // to `/dev/zero` (outside the bundle folder) before the reader opens them
            let words = match bad {
                Bad::Fifo => "not a regular file",
                Bad::DevZero => "outside the bundle folder",
                Bad::Sparse => "over the limit",
            };
            check(
                &format!("predict, {file} {bad:?}"),
                cmd()
                    .args(["predict", "--no-cache", "--bundle"])
                    .arg(&manifest)
                    .arg("--gallery")
                    .arg(demo_gallery())
                    .arg(demo_photo("person_a_2.jpg")),
                5,
                &[file, words],
                None,
            );
        }
    }
}

#[test]
fn tables() {
    let d = tempdir();
    let golden = |n: &str| root().join("tests/golden/eval").join(n);
    for bad in ALL {
        let labels = bad_file(d.path(), "labels.csv", bad);
        let name = labels.file_name().unwrap().to_str().unwrap().to_string();
        check(
            &format!("gallery build, labels {bad:?}"),
            cmd()
                .args(["gallery", "build", "--bundle"])
                .arg(demo_bundle())
                .arg("--labels")
                .arg(&labels)
                .arg("--out")
                .arg(d.path().join("never.gallery")),
            2,
            &[&name, why(bad)],
            None,
        );
        for (i, table) in ["encodings.csv", "frequent_gallery.csv", "syndromes.tsv"]
            .iter()
            .enumerate()
        {
            let mut files: Vec<PathBuf> =
                ["encodings.csv", "frequent_gallery.csv", "syndromes.tsv"]
                    .iter()
                    .map(|n| golden(n))
                    .collect();
            files[i] = bad_file(d.path(), table, bad);
            let name = files[i].file_name().unwrap().to_str().unwrap().to_string();
            check(
                &format!("gallery import, {table} {bad:?}"),
                cmd()
                    .args(["gallery", "import", "--encodings"])
                    .arg(&files[0])
                    .arg("--images")
                    .arg(&files[1])
                    .arg("--syndromes")
                    .arg(&files[2])
                    .arg("--out")
                    .arg(d.path().join("never.gallery")),
                6,
                &[&name, why(bad)],
                None,
            );
        }
    }
}

#[test]
fn board_profiles() {
    let d = tempdir();
    for bad in ALL {
        let b = bad_file(d.path(), "board.toml", bad);
        let name = b.file_name().unwrap().to_str().unwrap().to_string();
        check(
            &format!("run, board profile {bad:?}"),
            cmd()
                .args(["run", "--once", "--screen", "none", "--board"])
                .arg(&b)
                .arg("--bundle")
                .arg(demo_bundle())
                .arg("--gallery")
                .arg(demo_gallery())
                .arg("--source")
                .arg(demo_photo("person_a_2.jpg")),
            2,
            &[&name, why(bad)],
            None,
        );
    }
}

#[test]
fn state_files() {
    let d = tempdir();
    let (secret, public) = gen_key(d.path(), "site");
    let g = gallery_copy(d.path());
    sign(&secret, &g);
    let state = d.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let marks = state.join("revisions.json");
    for bad in ALL {
        make(&marks, bad);
        check(
            &format!("gallery add, revisions.json {bad:?}"),
            cmd()
                .args(["gallery", "add", "--bundle"])
                .arg(demo_bundle())
                .arg("--gallery")
                .arg(&g)
                .arg("--public-key")
                .arg(&public)
                .arg("--state-dir")
                .arg(&state)
                .arg("--image")
                .arg(demo_photo("person_a_2.jpg"))
                .args(["--label", "Demo identity A"]),
            8,
            &["revisions.json", why(bad)],
            None,
        );
    }
}

#[test]
fn kernel_choices() {
    let d = tempdir();
    let cache = d.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let choices = cache.join("native-kernels.txt");
    let predict = || {
        let mut c = cmd();
        c.args(["predict", "--engine", "native", "--cache-dir"])
            .arg(&cache)
            .arg("--bundle")
            .arg(demo_bundle())
            .arg("--gallery")
            .arg(demo_gallery())
            .arg(demo_photo("person_a_2.jpg"));
        c
    };
    // no choice file yet: every shape is measured, as after a refusal
    let base = baseline("predict, no kernel choices yet", &predict());
    assert!(choices.is_file(), "the choices were saved");
    for bad in ALL {
        make(&choices, bad);
        check(
            &format!("predict, kernel choices {bad:?}"),
            &mut predict(),
            0,
            &["native-kernels.txt", why(bad)],
            base,
        );
        assert!(choices.is_file(), "rebuilt as a regular file");
    }
}

#[test]
fn cache_entries() {
    let d = tempdir();
    let cache = d.path().join("cache");
    let predict = || {
        let mut c = cmd();
        c.args(["predict", "--engine", "tract", "--cache-dir"])
            .arg(&cache)
            .arg("--bundle")
            .arg(demo_bundle())
            .arg("--gallery")
            .arg(demo_gallery())
            .arg(demo_photo("person_a_2.jpg"));
        c
    };
    // an empty cache: both entries are built, as after a refusal
    let base = baseline("predict, empty model cache", &predict());
    let entries: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x != "txt"))
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    for bad in ALL {
        for e in &entries {
            make(e, bad);
        }
        check(
            &format!("predict, cache entries {bad:?}"),
            &mut predict(),
            0,
            &["damaged or stale; rebuilt"],
            base,
        );
    }
}
