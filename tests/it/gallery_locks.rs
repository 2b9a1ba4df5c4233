//! One writer per gallery: concurrent `gallery add` x `add` and `remove` x `add` on one file
//! keep every change that exited 0, with revisions strictly increasing, and a writer that
//! cannot get the lock in time exits 6 naming the holder.
//!
//! The race is made real, not left to timing: every writer runs with
//! `GESTALT_EDGE_TEST_PAUSE=written`, so the one holding the lock stops itself after writing
//! its temporary file and before the rename, holding the content it read. The test lets it go
//! only once the rival of the round says it is waiting for the lock: another add (add x add)
//! and a removal started just then (remove x add: the stopped add read the file with the
//! subject in it). A writer that did not lock would instead go on while the first is stopped,
//! and the first's rename would then drop its change; the test fails at once when two writers
//! are inside their write together or a rival ends while the holder is stopped. `add`
//! analyses its photo (the models, about a second) before taking the lock, so 21 adds with 3
//! analysing at a time and `--threads 1` give 20 add x add and 21 remove x add rounds for the
//! cost of 21 adds; the removals take milliseconds.

use crate::util;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gestalt_edge::gallery::Gallery;
use util::*;

/// Stage at which a paused writer stops (see `gestalt_edge::fsio`).
const PAUSE: &str = "GESTALT_EDGE_TEST_PAUSE";
/// Longest a step of a round may take on a loaded machine.
const STEP: Duration = Duration::from_secs(120);

/// A writer process with its stderr collected as it comes.
pub struct Writer {
    pub child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub fn spawn(mut c: Command) -> Writer {
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gestalt-edge");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(|l| l.ok()) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Writer {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits for the end: exit status, stdout, stderr.
    pub fn finish(&mut self) -> (std::process::ExitStatus, String, String) {
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            std::io::Read::read_to_string(&mut o, &mut out).unwrap();
        }
        let status = self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        (status, out, self.stderr())
    }
}

impl Drop for Writer {
    /// A test that fails leaves no writer stopped or waiting behind it.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether process `pid` is stopped (state T in /proc).
pub fn is_stopped(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // the state follows the command name's closing parenthesis
    stat.rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill takes a process id and a signal number, no pointers.
    assert_eq!(
        unsafe { libc::kill(pid as i32, sig) },
        0,
        "kill {pid} {sig}"
    );
}

/// Polls `cond` every 5 ms until it holds; panics with `what` after [`STEP`].
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < STEP, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The temporary files of `target` in its folder (`.NAME.XXXXXX.tmp`).
pub fn temporaries(target: &Path) -> Vec<PathBuf> {
    let prefix = format!(".{}.", target.file_name().unwrap().to_string_lossy());
    let mut v: Vec<PathBuf> = std::fs::read_dir(target.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(&prefix) && n.ends_with(".tmp")
        })
        .collect();
    v.sort();
    v
}

/// A gallery `remove` or `relabel` command (no models: milliseconds).
pub fn curate_cmd(gallery: &Path, args: &[&str]) -> Command {
    let mut c = cmd();
    c.arg("gallery").args(args).arg("--gallery").arg(gallery);
    c
}

/// `gallery add` of a demo photo as image `id` of subject `subject`.
fn add_cmd(gallery: &Path, id: &str, subject: &str) -> Command {
    let mut c = cmd();
    c.args([
        "gallery",
        "add",
        "--single-pass",
        "--threads",
        "1",
        "--bundle",
    ])
    .arg(demo_bundle())
    .arg("--gallery")
    .arg(gallery)
    .arg("--image")
    .arg(demo_photo("person_a_2.jpg"))
    .args(["--label", "Demo identity A", "--subject", subject])
    .args(["--image-id", id, "--lock-wait", "120"]);
    c
}

/// The revision a writer printed ("..., revision N").
fn printed_revision(out: &str) -> u32 {
    out.rsplit_once("revision ")
        .and_then(|(_, r)| r.trim().parse().ok())
        .unwrap_or_else(|| panic!("no revision in {out:?}"))
}

/// A writer of the pool: an add (image id, subject) or a removal (subject).
enum Job {
    Add(String),
    Remove(String),
}

struct Proc {
    job: Job,
    w: Writer,
    /// Its turn in the lock (the order writers stopped inside their write), once it had it.
    turn: Option<usize>,
    result: Option<(std::process::ExitStatus, String, String)>,
}

impl Proc {
    fn start(job: Job, c: Command) -> Proc {
        let mut c = c;
        c.env(PAUSE, "written");
        Proc {
            job,
            w: Writer::spawn(c),
            turn: None,
            result: None,
        }
    }

    fn live(&self) -> bool {
        self.result.is_none()
    }

    fn is_add(&self) -> bool {
        matches!(self.job, Job::Add(_))
    }

    /// Alive, has never had the lock, and said it waits for it.
    fn waiting(&mut self) -> bool {
        self.live()
            && self.turn.is_none()
            && !self.w.exited()
            && self.w.stderr().contains("waiting up to")
    }
}

/// Collects the results of the writers that ended.
fn reap(procs: &mut [Proc]) {
    for p in procs.iter_mut() {
        if p.result.is_none() && p.w.exited() {
            p.result = Some(p.w.finish());
        }
    }
}

#[test]
fn concurrent_adds_and_removals_lose_nothing() {
    // 21 adds, at most 3 analysing their photo at once; every writer stops itself between
    // its temporary and the rename (GESTALT_EDGE_TEST_PAUSE=written) and is let go by this
    // loop only when the race is on:
    //   add x add: while an add is stopped there, another add waits for the lock;
    //   remove x add: while an add is stopped there (holding the content it read, with the
    //   subject), a removal of a subject is started and must wait for the lock.
    // Two writers stopped at once, or a waiter that ends while the holder is stopped, is a
    // writer that did not take the lock: fail at once.
    const ADDS: usize = 21;
    const IN_FLIGHT: usize = 3;
    let d = tempdir();
    let g = d.path().join("clinic.gallery");
    // the demo gallery with one extra subject per add, to be withdrawn during that add
    {
        use gestalt_edge::gallery::Case;
        let mut base = Gallery::read(demo_gallery()).unwrap();
        let emb = base.embeddings(0).unwrap();
        for k in 0..ADDS {
            let case = Case {
                image_id: format!("w{k}.jpg"),
                subject: Some(format!("withdrawn{k}")),
                syndrome: "Demo identity A".into(),
                omim: None,
                genes: Vec::new(),
            };
            base.add(&case, &emb).unwrap();
        }
        base.write_atomic(&g).unwrap();
    }
    let base_revision = Gallery::read(&g).unwrap().revision();
    let t = Instant::now();
    let mut procs: Vec<Proc> = Vec::new();
    let (mut launched, mut withdrawn) = (0, 0);
    let (mut add_x_add, mut remove_x_add) = (0, 0);
    let mut turns: Vec<usize> = Vec::new();
    loop {
        reap(&mut procs);
        // keep up to IN_FLIGHT adds analysing (launched, not yet had the lock)
        while launched < ADDS
            && procs
                .iter()
                .filter(|p| p.is_add() && p.live() && p.turn.is_none())
                .count()
                < IN_FLIGHT
        {
            let id = format!("a{launched}.jpg");
            let c = add_cmd(&g, &id, &format!("p{launched}"));
            procs.push(Proc::start(Job::Add(id), c));
            launched += 1;
        }
        if launched == ADDS && procs.iter().all(|p| !p.live()) {
            break;
        }
        // the next holder: the one writer stopped inside its write
        let mut holder = None;
        wait_for("a writer to stop inside its write", || {
            reap(&mut procs);
            let stopped: Vec<usize> = (0..procs.len())
                .filter(|&i| procs[i].live() && is_stopped(procs[i].w.pid()))
                .collect();
            assert!(
                stopped.len() <= 1,
                "writers {stopped:?} are inside their write at once (no lock)"
            );
            holder = stopped.first().copied();
            holder.is_some() || (launched == ADDS && procs.iter().all(|p| !p.live()))
        });
        let Some(h) = holder else { break };
        procs[h].turn = Some(turns.len());
        turns.push(h);
        let pid = procs[h].w.pid();
        // nobody else may finish or enter its write while the holder is stopped
        let check_others = |procs: &mut Vec<Proc>| {
            for (i, p) in procs.iter_mut().enumerate() {
                if i != h && p.live() {
                    assert!(
                        !p.w.exited() && !is_stopped(p.w.pid()),
                        "writer {i} went on while writer {h} was inside its write: {}",
                        p.w.stderr()
                    );
                }
            }
        };
        if procs[h].is_add() {
            let subject = format!("withdrawn{withdrawn}");
            withdrawn += 1;
            let c = curate_cmd(&g, &["remove", "--subject", &subject, "--lock-wait", "120"]);
            procs.push(Proc::start(Job::Remove(subject), c));
            let r = procs.len() - 1;
            wait_for("a removal to wait for the lock", || {
                check_others(&mut procs);
                procs[r].waiting()
            });
            let said = procs[r].w.stderr();
            assert!(
                said.contains(&format!("for process {pid}, which is writing")),
                "{said}"
            );
            remove_x_add += 1;
            let more_adds = launched < ADDS
                || procs
                    .iter()
                    .any(|p| p.is_add() && p.live() && p.turn.is_none());
            if more_adds {
                wait_for("another add to wait for the lock", || {
                    check_others(&mut procs);
                    // start the next adds if the pool has room
                    procs.iter_mut().any(|p| p.is_add() && p.waiting())
                        || (launched < ADDS
                            && !procs
                                .iter()
                                .any(|p| p.is_add() && p.live() && p.turn.is_none()))
                });
                if procs.iter_mut().any(|p| p.is_add() && p.waiting()) {
                    add_x_add += 1;
                }
            }
        }
        signal(pid, libc::SIGCONT);
        wait_for("the holder to finish", || procs[h].w.exited());
        reap(&mut procs);
    }
    // every writer exited 0, and the revisions rose by one per write, in lock order
    let mut expected = base_revision;
    for &i in &turns {
        let (status, out, err) = procs[i].result.as_ref().unwrap();
        assert!(status.success(), "writer {i}: {status}\n{out}\n{err}");
        expected += 1;
        assert_eq!(
            printed_revision(out),
            expected,
            "writer {i}: revisions must strictly increase"
        );
    }
    assert_eq!(turns.len(), procs.len(), "every writer had the lock once");
    let file = Gallery::read(&g).unwrap();
    assert_eq!(file.revision(), expected);
    let ids: Vec<String> = file.images().iter().map(|i| i.image_id.clone()).collect();
    for p in &procs {
        match &p.job {
            Job::Add(id) => assert!(ids.contains(id), "add of {id} exited 0 but is lost"),
            Job::Remove(s) => assert!(
                !file.subjects().contains(s),
                "removal of {s} exited 0 but it is back"
            ),
        }
    }
    assert!(temporaries(&g).is_empty());
    eprintln!(
        "{ADDS} adds, {withdrawn} removals: {add_x_add} add x add and {remove_x_add} remove x add \
         rounds in {:?}",
        t.elapsed()
    );
    assert!(
        add_x_add >= 20 && remove_x_add >= 20,
        "{add_x_add} {remove_x_add}"
    );
}

#[test]
fn a_writer_that_cannot_lock_in_time_exits_6_naming_the_holder() {
    let d = tempdir();
    let g = d.path().join("clinic.gallery");
    std::fs::copy(demo_gallery(), &g).unwrap();
    let before = std::fs::read(&g).unwrap();
    // the holder stops right after taking the lock
    let mut holder = curate_cmd(&g, &["remove", "--subject", "impostor_1"]);
    holder.env(PAUSE, "locked");
    let mut holder = Writer::spawn(holder);
    let pid = holder.pid();
    wait_for("the holder to stop with the lock", || is_stopped(pid));
    let t = Instant::now();
    let o = curate_cmd(
        &g,
        &["remove", "--subject", "impostor_2", "--lock-wait", "0"],
    )
    .output()
    .unwrap();
    let err = expect_failure(
        &o,
        6,
        &[
            &format!("process {pid} is writing this gallery"),
            "nothing written",
            "--lock-wait",
        ],
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(std::fs::read(&g).unwrap(), before, "{err}");
    // a short wait runs out the same way, after waiting
    let o = curate_cmd(&g, &["relabel", "--subject", "impostor_2", "--label", "X"])
        .args(["--lock-wait", "1"])
        .output()
        .unwrap();
    let err = expect_failure(&o, 6, &[&format!("process {pid} is writing")]);
    assert!(err.contains("waiting up to 1 s"), "{err}");
    assert_eq!(std::fs::read(&g).unwrap(), before);
    signal(pid, libc::SIGCONT);
    let (status, out, err) = holder.finish();
    assert!(status.success(), "{out}\n{err}");
    // the lock file is 0644 and names no one once released
    let lock = d.path().join(".clinic.gallery.lock");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&lock).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o644);
    assert_eq!(std::fs::read(&lock).unwrap(), b"");
    // and the next writer goes straight on
    ok(&curate_cmd(
        &g,
        &["remove", "--subject", "impostor_2", "--lock-wait", "0"],
    )
    .output()
    .unwrap());
}
