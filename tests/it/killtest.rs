//! Crash safety of gallery writes.
//!
//! Provably inside the write: a writer run with `GESTALT_EDGE_TEST_PAUSE=STAGE` stops itself
//! at that stage of its write (`locked`: lock taken; `created`, `written`, `synced`: the
//! temporary file exists, empty, filled, fsynced; `renamed`: it replaced the gallery), the
//! test sees it stopped with the temporary there and the gallery still the old one, and kills
//! it there with SIGKILL, SIGTERM or SIGINT. The gallery must be the complete old or new file,
//! SIGTERM and SIGINT must remove the temporary before the process ends, and the next writer
//! must leave no copy of a removed subject anywhere in the folder. A writer that wrote in
//! place, or without a temporary, never stops at those stages and fails these tests.
//!
//! At random moments: `gallery add` and `gallery build` are killed with SIGKILL at seeded
//! moments over a whole run (model loading, detection, embedding, the write), half of them
//! from the last 30% of the run on; the file on disk must always be the complete old or the
//! complete new gallery (byte for byte, and it reads back), and enrolment must keep every
//! existing case untouched. Few of these kills land inside the write: a run takes seconds (the
//! models), the write microseconds. `gallery import` of a 2,000-image synthetic gallery (2 MB,
//! no models) goes through the same write in a fraction of a second and is killed many more
//! times; still only a part of its kills land between the temporary's creation and the rename
//! (`stale_temps`: 12 of 52 runs in one measured run on a loaded 2-core machine; the rest hit
//! the parsing before it or the time after it), which is why the stage tests exist.
//! The temporaries they leave are not removed by the test: the next run of the command sweeps
//! them, and a last complete run must leave none. Each part keeps to a time budget and prints
//! its outcome counts (run with `--nocapture`).

use crate::util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::gallery_locks::{curate_cmd, is_stopped, signal, temporaries, wait_for, Writer};
use gestalt_edge::gallery::Gallery;
use util::*;

/// Deterministic kill moments: a 64-bit LCG.
struct Lcg(u64);

impl Lcg {
    fn unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug, Default)]
struct Tally {
    runs: usize,
    old: usize,
    new: usize,
    absent: usize,
    /// Kills after which a temporary file was found (the kill landed inside the write).
    stale_temps: usize,
}

fn add_cmd(gallery: &Path) -> Command {
    let mut c = cmd();
    c.args(["gallery", "add", "--bundle"])
        .arg(demo_bundle())
        .arg("--gallery")
        .arg(gallery)
        .arg("--image")
        .arg(demo_photo("person_a_2.jpg"))
        .args(["--label", "Demo identity A", "--subject", "person_a"]);
    c
}

fn build_cmd(labels: &Path, out: &Path) -> Command {
    let mut c = cmd();
    c.args(["gallery", "build", "--bundle"])
        .arg(demo_bundle())
        .arg("--labels")
        .arg(labels)
        .arg("--out")
        .arg(out);
    c
}

/// Runs `c` to the end; returns its duration.
fn full_run(mut c: Command) -> Duration {
    let t = Instant::now();
    let o = c.output().unwrap();
    let (code, out, err) = parts(&o);
    assert_eq!(code, 0, "{out}\n{err}");
    t.elapsed()
}

/// Temporary files a killed writer left next to `target` (left in place: the next run of the
/// command must sweep them).
fn stale_temps(target: &Path) -> Vec<PathBuf> {
    temporaries(target)
}

/// One kill experiment.
struct Scenario<'a> {
    /// Seed of the kill moments.
    seed: u64,
    /// Keep killing until this much time is spent...
    budget: Duration,
    /// ...and at least this many runs.
    min_runs: usize,
    /// Duration of one uninterrupted run.
    typical: Duration,
    /// The gallery file the command writes.
    target: &'a Path,
    /// Its content before the command (None: it does not exist).
    old: Option<&'a [u8]>,
    /// Its content after an uninterrupted run.
    new: &'a [u8],
}

/// Kills `make()` at seeded moments until the budget is spent (at least `min_runs` runs);
/// before each run `reset()` puts the old state back. After each kill the target must be
/// `old` (or absent when `old` is None) or `new`, byte for byte, and read back.
fn kill_loop(s: &Scenario, reset: &dyn Fn(), make: &dyn Fn() -> Command) -> Tally {
    let Scenario {
        seed,
        budget,
        min_runs,
        typical,
        target,
        old,
        new,
    } = *s;
    let mut rng = Lcg(seed);
    let mut t = Tally::default();
    let start = Instant::now();
    while t.runs < min_runs || start.elapsed() < budget {
        reset();
        let u = rng.unit();
        // half the kills anywhere in a typical run, half from its last 30% on to well past
        // its end (a loaded machine runs slower than the measured run)
        let frac = if t.runs % 2 == 0 {
            u * 1.2
        } else {
            0.7 + u * 1.3
        };
        let delay = typical.mul_f64(frac);
        let mut child = make()
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL on Unix
        let _ = child.wait();
        t.runs += 1;
        let left = stale_temps(target);
        // one writer at a time, and each sweeps what an earlier kill left before writing
        assert!(left.len() <= 1, "run {}: {left:?}", t.runs);
        if !left.is_empty() {
            t.stale_temps += 1;
            // killed inside its write, before the rename: the gallery is still the old one
            assert_eq!(
                std::fs::read(target).ok().as_deref(),
                old,
                "run {}: a temporary is left, so the rename had not happened",
                t.runs
            );
        }
        match std::fs::read(target) {
            Ok(bytes) if bytes == new => t.new += 1,
            Ok(bytes) if Some(bytes.as_slice()) == old => t.old += 1,
            Ok(bytes) => panic!(
                "run {} (killed after {delay:?}): {} holds {} bytes, neither the old ({:?}) nor the new ({}) gallery",
                t.runs,
                target.display(),
                bytes.len(),
                old.map(|o| o.len()),
                new.len()
            ),
            Err(e) if old.is_none() && e.kind() == std::io::ErrorKind::NotFound => t.absent += 1,
            Err(e) => panic!("run {}: {}: {e}", t.runs, target.display()),
        }
        if target.exists() {
            Gallery::read(target).expect("what is on disk reads back");
        }
    }
    // a complete run sweeps what the kills left
    reset();
    let o = make().output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(target).unwrap(), new);
    assert_eq!(stale_temps(target), Vec::<PathBuf>::new());
    t
}

#[test]
fn killed_gallery_add_leaves_the_old_or_the_new_gallery() {
    let d = tempdir();
    let old_path = d.path().join("old.gallery");
    std::fs::copy(demo_gallery(), &old_path).unwrap();
    let old = std::fs::read(&old_path).unwrap();

    // the complete new gallery: one uninterrupted run on a copy
    let new_path = d.path().join("new.gallery");
    std::fs::copy(&old_path, &new_path).unwrap();
    let typical = full_run(add_cmd(&new_path));
    let new = std::fs::read(&new_path).unwrap();
    assert_ne!(old, new);

    // enrolment keeps the existing cases untouched
    let (a, b) = (
        Gallery::read(&old_path).unwrap(),
        Gallery::read(&new_path).unwrap(),
    );
    assert_eq!(b.len(), a.len() + 1);
    assert_eq!(&b.images()[..a.len()], a.images());
    assert_eq!(&b.syndromes()[..a.syndromes().len()], a.syndromes());
    assert_eq!(&b.subjects()[..a.subjects().len()], a.subjects());
    for i in 0..a.len() {
        assert_eq!(b.embeddings(i), a.embeddings(i), "image {i} changed");
    }
    assert_eq!(b.revision(), a.revision() + 1);

    let target = d.path().join("device.gallery");
    let reset = || {
        std::fs::copy(&old_path, &target).unwrap();
    };
    let s = Scenario {
        seed: 0x5EED_0006,
        budget: Duration::from_secs(12),
        min_runs: 6,
        typical,
        target: &target,
        old: Some(&old),
        new: &new,
    };
    let t = kill_loop(&s, &reset, &|| add_cmd(&target));
    eprintln!("gallery add: one run {typical:?}; {t:?}");
    // every outcome was checked in the loop; the counts depend on the machine's speed
    assert!(t.runs >= 6 && t.old + t.new == t.runs, "{t:?}");
}

#[test]
fn killed_gallery_build_leaves_the_old_gallery_nothing_or_the_new_one() {
    let d = tempdir();
    let photos = root().join("models/demo/photos");
    let labels = d.path().join("labels.csv");
    std::fs::write(
        &labels,
        format!(
            "image,label,subject\n{0}/person_b_2.jpg,Demo identity B,person_b\n{0}/impostor_2.jpg,Demo identity D,impostor_2\n",
            photos.display()
        ),
    )
    .unwrap();
    let new_path = d.path().join("new.gallery");
    let typical = full_run(build_cmd(&labels, &new_path));
    let new = std::fs::read(&new_path).unwrap();
    let old = std::fs::read(demo_gallery()).unwrap();

    // replacing an existing gallery
    let target: PathBuf = d.path().join("device.gallery");
    let reset = || {
        std::fs::copy(demo_gallery(), &target).unwrap();
    };
    let s = Scenario {
        seed: 0x5EED_0106,
        budget: Duration::from_secs(8),
        min_runs: 4,
        typical,
        target: &target,
        old: Some(&old),
        new: &new,
    };
    let t = kill_loop(&s, &reset, &|| build_cmd(&labels, &target));
    eprintln!("gallery build over a gallery: one run {typical:?}; {t:?}");
    assert!(t.old > 0, "{t:?}");

    // writing a new file: absent or complete
    let fresh = d.path().join("fresh.gallery");
    let reset = || {
        let _ = std::fs::remove_file(&fresh);
    };
    let s = Scenario {
        seed: 0x5EED_0206,
        budget: Duration::from_secs(8),
        min_runs: 4,
        typical,
        target: &fresh,
        old: None,
        new: &new,
    };
    let t = kill_loop(&s, &reset, &|| build_cmd(&labels, &fresh));
    eprintln!("gallery build to a new file: {t:?}");
    assert!(t.absent > 0, "{t:?}");
}

/// A synthetic encodings CSV of `n` images x 2 views x 256 values, with its image list and
/// syndromes table, in `dir`.
fn synthetic_reference(dir: &Path, n: usize) -> [PathBuf; 3] {
    use std::fmt::Write;
    let mut enc = String::from("img_name;model;flip;gray;class_conf;representations\n");
    let mut list = String::from("image_id,subject,label\n");
    let mut rng = Lcg(7);
    for i in 0..n {
        for flip in 0..2 {
            let v: Vec<String> = (0..256)
                .map(|_| format!("{:.4}", rng.unit() - 0.5))
                .collect();
            let _ = writeln!(enc, "{i}_x.jpg;m0;{flip};0;[];[{}]", v.join(","));
        }
        let _ = writeln!(list, "{i},s{i},{}", i % 20);
    }
    let mut syn = String::from("syndrome_id\tsyndrome_name\tOMIM\n");
    for k in 0..20 {
        let _ = writeln!(syn, "{k}\tSyndrome {k}\t{}", 100_000 + k);
    }
    let paths = ["enc.csv", "images.csv", "syndromes.tsv"].map(|f| dir.join(f));
    std::fs::write(&paths[0], enc).unwrap();
    std::fs::write(&paths[1], list).unwrap();
    std::fs::write(&paths[2], syn).unwrap();
    paths
}

fn import_cmd(reference: &[PathBuf; 3], out: &Path, version: &str) -> Command {
    let mut c = cmd();
    c.args(["gallery", "import", "--encodings"])
        .arg(&reference[0])
        .arg("--images")
        .arg(&reference[1])
        .arg("--syndromes")
        .arg(&reference[2])
        .arg("--out")
        .arg(out)
        .args(["--gallery-version", version]);
    c
}

#[test]
fn killed_gallery_import_of_a_large_gallery_leaves_the_old_or_the_new_one() {
    let d = tempdir();
    let reference = synthetic_reference(d.path(), 2000);
    let old_path = d.path().join("old.gallery");
    full_run(import_cmd(&reference, &old_path, "1"));
    let new_path = d.path().join("new.gallery");
    let typical = full_run(import_cmd(&reference, &new_path, "2"));
    let (old, new) = (
        std::fs::read(&old_path).unwrap(),
        std::fs::read(&new_path).unwrap(),
    );
    assert!(new.len() > 2_000_000 && old != new, "{} bytes", new.len());
    let target = d.path().join("device.gallery");
    let reset = || {
        std::fs::copy(&old_path, &target).unwrap();
    };
    let s = Scenario {
        seed: 0x5EED_0306,
        budget: Duration::from_secs(12),
        min_runs: 30,
        typical,
        target: &target,
        old: Some(&old),
        new: &new,
    };
    let t = kill_loop(&s, &reset, &|| import_cmd(&reference, &target, "2"));
    eprintln!(
        "gallery import ({} bytes): one run {typical:?}; {t:?}",
        new.len()
    );
    assert!(
        t.runs >= 30 && t.old + t.new == t.runs && t.old > 0,
        "{t:?}"
    );
}

/// The demo gallery in `dir` as `name`, with its bytes.
fn demo_copy(dir: &Path, name: &str) -> (PathBuf, Vec<u8>) {
    let g = dir.join(name);
    std::fs::copy(demo_gallery(), &g).unwrap();
    let bytes = std::fs::read(&g).unwrap();
    (g, bytes)
}

/// Every file in `dir` whose bytes contain `needle` (a subject id as the gallery stores it).
fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            std::fs::read(p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect();
    v.sort();
    v
}

/// Starts `c` with the test stop at `stage` and waits until it is stopped there.
fn stopped_at(mut c: Command, stage: &str) -> Writer {
    c.env("GESTALT_EDGE_TEST_PAUSE", stage);
    let mut w = Writer::spawn(c);
    let pid = w.pid();
    wait_for(&format!("the writer to stop at {stage}"), || {
        assert!(!w.exited(), "never stopped at {stage}: {}", w.stderr());
        is_stopped(pid)
    });
    w
}

/// Kills a stopped writer with `sig` (resuming it for a catchable signal); returns the signal
/// that ended it.
fn kill_stopped(mut w: Writer, sig: i32) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    signal(w.pid(), sig);
    if sig != libc::SIGKILL {
        signal(w.pid(), libc::SIGCONT);
    }
    let (status, _, err) = w.finish();
    assert!(!err.contains("panicked"), "{err}");
    status.signal()
}

#[test]
fn a_write_killed_at_each_stage_leaves_no_copy_of_a_removed_subject() {
    let t0 = Instant::now();
    let stages = ["locked", "created", "written", "synced", "renamed"];
    let mut cases: Vec<(&str, i32)> = Vec::new();
    for stage in stages {
        cases.push((stage, libc::SIGKILL));
        cases.push((stage, libc::SIGTERM));
    }
    cases.push(("written", libc::SIGINT));
    for (stage, sig) in cases {
        let d = tempdir();
        let (g, old) = demo_copy(d.path(), "clinic.gallery");
        let what = format!("{stage}, signal {sig}");
        // the killed writer: a relabel, so its temporary holds person_a's data
        let w = stopped_at(
            curate_cmd(
                &g,
                &["relabel", "--subject", "person_a", "--label", "Revised"],
            ),
            stage,
        );
        // stopped inside the write: the temporary exists (before the rename) or has become
        // the gallery (after it)
        let temps = temporaries(&g);
        let now = std::fs::read(&g).unwrap();
        match stage {
            "locked" => assert!(temps.is_empty() && now == old, "{what}"),
            "renamed" => {
                assert!(temps.is_empty() && now != old, "{what}");
                Gallery::read(&g).unwrap();
            }
            _ => {
                assert_eq!(temps.len(), 1, "{what}");
                assert_eq!(now, old, "{what}: the gallery changed before the rename");
                let tmp = std::fs::read(&temps[0]).unwrap();
                if stage == "created" {
                    assert!(tmp.is_empty(), "{what}");
                } else {
                    let back = Gallery::from_bytes(&tmp, &temps[0]).unwrap();
                    assert!(back.subjects().contains(&"person_a".to_string()), "{what}");
                }
            }
        }
        assert_eq!(
            kill_stopped(w, sig),
            Some(sig),
            "{what}: ended by the signal"
        );
        let after = temporaries(&g);
        if sig == libc::SIGKILL {
            assert_eq!(after, temps, "{what}: SIGKILL cannot be caught");
        } else {
            assert!(
                after.is_empty(),
                "{what}: the handler removes the temporary: {after:?}"
            );
        }
        let bytes = std::fs::read(&g).unwrap();
        assert!(
            (stage == "renamed" && bytes == now) || (stage != "renamed" && bytes == old),
            "{what}: neither the old nor the new gallery"
        );
        // consent withdrawn: the next writer (the lock died with the killed one) removes
        // person_a, and no file in the folder holds the id any more
        ok(
            &curate_cmd(&g, &["remove", "--subject", "person_a", "--lock-wait", "0"])
                .output()
                .unwrap(),
        );
        assert!(temporaries(&g).is_empty(), "{what}");
        assert_eq!(
            files_holding(d.path(), "person_a"),
            Vec::<PathBuf>::new(),
            "{what}"
        );
    }
    eprintln!("11 kills at write stages: {:?}", t0.elapsed());
}

#[test]
fn a_killed_add_leaves_no_copy_once_the_subject_is_removed() {
    let d = tempdir();
    let (g, old) = demo_copy(d.path(), "clinic.gallery");
    let mut add = cmd();
    add.args(["gallery", "add", "--single-pass", "--bundle"])
        .arg(demo_bundle())
        .arg("--gallery")
        .arg(&g)
        .arg("--image")
        .arg(demo_photo("person_b_2.jpg"))
        .args(["--label", "Demo identity B", "--subject", "person_b"])
        .args(["--image-id", "second_visit.jpg"]);
    let w = stopped_at(add, "synced");
    let temps = temporaries(&g);
    assert_eq!(temps.len(), 1);
    assert_eq!(std::fs::read(&g).unwrap(), old);
    // the complete new gallery, with the new image, only in the temporary
    assert_eq!(files_holding(d.path(), "second_visit"), temps);
    assert_eq!(kill_stopped(w, libc::SIGKILL), Some(libc::SIGKILL));
    assert_eq!(temporaries(&g), temps);
    // person_b withdraws consent: success means no copy of their data is left in the folder,
    // the killed add's leftover included
    ok(&curate_cmd(&g, &["remove", "--subject", "person_b"])
        .output()
        .unwrap());
    assert!(temporaries(&g).is_empty());
    assert_eq!(files_holding(d.path(), "person_b"), Vec::<PathBuf>::new());
    assert_eq!(
        files_holding(d.path(), "second_visit"),
        Vec::<PathBuf>::new()
    );
}
