//! What the commands leave behind and print: results that cannot be written are failures
//! (exit 1), every file follows the one mode rule whatever the umask, `run` names no patient
//! without `--verbose` (warnings included), and labels cannot drive the terminal.

use crate::util;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use util::*;

fn dev_full() -> Stdio {
    Stdio::from(
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full"),
    )
}

/// Every command whose result goes to stdout: a full disk behind it is exit 1, never 0.
#[test]
fn a_result_that_cannot_be_written_is_exit_1() {
    let d = tempdir();
    let photo = demo_photo("person_a_2.jpg");
    let base = |c: &mut Command| {
        c.arg("--bundle")
            .arg(demo_bundle())
            .arg("--gallery")
            .arg(demo_gallery());
    };
    let mut runs: Vec<(&str, Command)> = Vec::new();
    for (name, extra) in [
        ("predict", &[][..]),
        ("predict --json", &["--json"][..]),
        ("predict --fuse", &["--fuse"][..]),
    ] {
        let mut c = cmd();
        c.arg("predict");
        base(&mut c);
        c.args(extra).arg(&photo).arg(&photo);
        runs.push((name, c));
    }
    let mut c = cmd();
    c.args(["run", "--once", "--screen", "none", "--board", "x86-dev"]);
    base(&mut c);
    c.arg("--state-dir")
        .arg(d.path().join("state"))
        .arg("--source")
        .arg(&photo);
    runs.push(("run --once", c));
    let mut c = cmd();
    c.args(["gallery", "list", "--gallery"]).arg(demo_gallery());
    runs.push(("gallery list", c));
    for (name, mut c) in runs {
        let o = c.stdout(dev_full()).output().unwrap();
        let err = expect_failure(&o, 1, &["cannot write the result"]);
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}

/// The mode of `p` (permission bits).
fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `c` run under umask 000, as a careless service manager or shell would start it.
fn under_umask_000(mut c: Command) -> String {
    // SAFETY: umask is async-signal-safe and touches no memory of the parent.
    unsafe {
        c.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    ok(&c.output().unwrap())
}

/// Every file and folder each command writes, made under umask 000: patient data 0600,
/// everything else 0644, created folders 0700, nothing world-writable anywhere.
#[test]
fn files_and_folders_follow_the_mode_rule_whatever_the_umask() {
    let d = tempdir();
    let w = d.path().join("work");
    std::fs::create_dir(&w).unwrap();
    let bundle = demo_bundle_copy(&w);
    let cache = w.join("cache/models");
    let gallery = w.join("clinic.gallery");
    let mut c = cmd();
    c.args(["gallery", "build", "--bundle"])
        .arg(&bundle)
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--labels")
        .arg(root().join("models/demo/labels.csv"))
        .arg("--out")
        .arg(&gallery);
    under_umask_000(c);
    let mut c = cmd();
    c.args(["sign", "--generate-key"])
        .arg(w.join("keys/device"));
    // the key's folder must exist: the tool does not create it
    std::fs::create_dir(w.join("keys")).unwrap();
    under_umask_000(c);
    for file in [&bundle, &gallery] {
        let mut c = cmd();
        c.args(["sign", "--key"])
            .arg(w.join("keys/device"))
            .arg("--file")
            .arg(file);
        under_umask_000(c);
    }
    let captures = w.join("captures");
    std::fs::create_dir(&captures).unwrap();
    let mut c = cmd();
    c.args(["run", "--once", "--board", "x86-dev", "--bundle"])
        .arg(&bundle)
        .arg("--gallery")
        .arg(&gallery)
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--public-key")
        .arg(w.join("keys/device.pub"))
        .arg("--state-dir")
        .arg(w.join("state/device"))
        .arg("--screen")
        .arg(format!("png:{}", w.join("screen.png").display()))
        .arg("--audit-log")
        .arg(w.join("audit.jsonl"))
        .arg("--save-captures")
        .arg(&captures)
        .arg("--source")
        .arg(demo_photo("person_a_2.jpg"));
    under_umask_000(c);

    let private = [
        gallery.clone(),
        w.join("keys/device"),
        w.join("screen.png"),
        w.join("audit.jsonl"),
    ];
    for p in &private {
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
    let shots: Vec<_> = std::fs::read_dir(&captures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(shots.len(), 1, "{shots:?}");
    assert_eq!(mode(&shots[0]), 0o600, "{}", shots[0].display());
    for p in [
        w.join("keys/device.pub"),
        w.join("clinic.gallery.sig"),
        w.join("bundle.toml.sig"),
        w.join("state/device/revisions.json"),
        w.join("state/device/revisions.lock"),
    ] {
        assert_eq!(mode(&p), 0o644, "{}", p.display());
    }
    for dir in [
        w.join("cache"),
        cache.clone(),
        w.join("state"),
        w.join("state/device"),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    let mut cached = 0;
    let mut stack = vec![w.clone()];
    while let Some(p) = stack.pop() {
        let m = mode(&p);
        assert_eq!(m & 0o002, 0, "{} is world-writable ({m:o})", p.display());
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if p.starts_with(&cache) {
            assert_eq!(m, 0o644, "cache entry {}", p.display());
            cached += 1;
        }
    }
    // the native engine (the default) keeps its measured kernel choices in the cache folder
    assert!(cached >= 1, "nothing was written to the cache folder");
    assert_eq!(mode(&cache.join("native-kernels.txt")), 0o644);
}

/// A photo folder as clinics name it: after patients. Without `--verbose` neither results nor
/// warnings name a file; with it, the warnings do.
#[test]
fn run_warnings_name_no_photo_unless_verbose() {
    let d = tempdir();
    let photos = d.path().join("clinic");
    std::fs::create_dir(&photos).unwrap();
    write(&photos, "Jane_Doe_1990.jpg", b"not a jpeg at all");
    image::RgbImage::from_pixel(160, 160, image::Rgb([128, 128, 128]))
        .save(photos.join("John_Smith_2001.png"))
        .unwrap();
    std::fs::copy(
        demo_photo("person_a_2.jpg"),
        photos.join("Mary_Major_2.jpg"),
    )
    .unwrap();
    let run_folder = |extra: &[&str]| {
        let o = cmd()
            .args(["run", "--screen", "none", "--board", "x86-dev"])
            .args(["--result-seconds", "0"])
            .arg("--bundle")
            .arg(demo_bundle())
            .arg("--gallery")
            .arg(demo_gallery())
            .arg("--state-dir")
            .arg(d.path().join("state"))
            .arg("--source")
            .arg(&photos)
            .args(extra)
            .output()
            .unwrap();
        let (_, out, err) = parts(&o);
        assert!(!err.contains("panicked"), "{err}");
        format!("{out}\n{err}")
    };
    let all = run_folder(&[]);
    assert!(all.contains("Demo identity A"), "{all}");
    assert!(all.contains("skipped a frame"), "{all}");
    for private in [
        "Jane_Doe",
        "John_Smith",
        "Mary_Major",
        "clinic/",
        "person_a",
    ] {
        assert!(!all.contains(private), "prints {private}: {all}");
    }
    let all = run_folder(&["--verbose"]);
    assert!(all.contains("Jane_Doe_1990.jpg"), "{all}");
}

/// Labels with escape sequences and bidi overrides are shown escaped in every table.
#[test]
fn labels_are_escaped_in_tables() {
    let d = tempdir();
    let labels = write(
        d.path(),
        "labels.csv",
        "image,label,subject\n\
         person_a_1.jpg,\"Evil\u{1b}[2J\u{1b}]0;title\u{7}\",p\u{202e}1\n\
         person_b_1.jpg,Demo identity B,p2\n"
            .as_bytes(),
    );
    for f in ["person_a_1.jpg", "person_b_1.jpg"] {
        std::fs::copy(demo_photo(f), d.path().join(f)).unwrap();
    }
    let gallery = d.path().join("g.gallery");
    ok(&run([
        "gallery".as_ref(),
        "build".as_ref(),
        "--bundle".as_ref(),
        demo_bundle().as_os_str(),
        "--labels".as_ref(),
        labels.as_os_str(),
        "--out".as_ref(),
        gallery.as_os_str(),
    ]));
    let table = ok(&run([
        "predict".as_ref(),
        "--bundle".as_ref(),
        demo_bundle().as_os_str(),
        "--gallery".as_ref(),
        gallery.as_os_str(),
        demo_photo("person_a_2.jpg").as_os_str(),
    ]));
    let list = ok(&run([
        "gallery".as_ref(),
        "list".as_ref(),
        "--gallery".as_ref(),
        gallery.as_os_str(),
    ]));
    for text in [&table, &list] {
        assert!(
            !text.contains(['\u{1b}', '\u{7}', '\u{202e}']),
            "raw control characters: {text:?}"
        );
    }
    assert!(table.contains("Evil\\u{1b}[2J"), "{table}");
    assert!(list.contains("p\\u{202e}1"), "{list}");
}
