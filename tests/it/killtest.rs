//! Crash safety of gallery writes: `gallery add` and `gallery build` are killed with SIGKILL at
//! seeded random moments, many times; the gallery file on disk must always be the complete
//! old or the complete new gallery (byte for byte, and it reads back). Enrolment must keep
//! every existing case untouched.
//!
//! The kill moments are spread over a whole run (model loading, detection, embedding, the
//! write), with half of them from the last 30% of the run on, where the write happens. A run of
//! `add` or `build` takes seconds (the models), so few kills land inside the write itself;
//! `gallery import` of a 2,000-image synthetic gallery (2 MB, no models) goes through the same
//! `Gallery::write_atomic` in a fraction of a second, so it is killed many more times, most
//! of them while the file is being written. Each part keeps to a time budget and prints its
//! outcome counts (run with `--nocapture`).

use crate::util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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

/// Temporary files a killed writer left next to `target` (removed, and counted).
fn sweep_temps(target: &Path) -> usize {
    let name = target.file_name().unwrap().to_string_lossy().into_owned();
    let mut n = 0;
    for e in std::fs::read_dir(target.parent().unwrap()).unwrap() {
        let e = e.unwrap();
        let f = e.file_name().to_string_lossy().into_owned();
        if f.starts_with(&format!(".{name}.")) && f.ends_with(".tmp") {
            std::fs::remove_file(e.path()).unwrap();
            n += 1;
        }
    }
    n
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
        t.stale_temps += sweep_temps(target);
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
