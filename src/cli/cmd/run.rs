//! `gestalt-edge run`: the device loop on a board (camera or files in, screen out).
//!
//! Resolves settings with the precedence command-line flag > board profile > bundle
//! manifest > compiled defaults, opens the source and the screen, then hands over to
//! `gestalt_edge::board::device::run`. Prints each result (table or JSON line) on stdout and
//! every incident (camera lost, frame skipped, screen failed) on stderr.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gestalt_edge::board::audit::{self, AuditRecord};
use gestalt_edge::board::device::{self, Command, End, Event, LoopIo, LoopSettings, Trigger};
use gestalt_edge::board::trigger::{Merged, ScreenCommands};
use gestalt_edge::board::Board;
use gestalt_edge::capture::{
    DirectorySource, FrameSource, SourceSpec, StillSource, SyntheticSource,
};
use gestalt_edge::display::{self, NoScreen, Screen, ScreenSpec};
use gestalt_edge::fsio::Access;
use gestalt_edge::rank::{Matcher, RankOptions};
use gestalt_edge::{pipeline, Error, Result};

use crate::cli::args::RunArgs;
use crate::cli::exit;
use crate::cli::out::out;
use crate::cli::report;
use crate::cli::resolve::Settings;

fn parse_size(text: &str) -> Result<(u32, u32)> {
    let bad = || {
        Error::Usage(format!(
            "--screen-size `{text}`: expected WIDTHxHEIGHT, e.g. 320x240"
        ))
    };
    let (w, h) = text.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if w == 0 || h == 0 || w > 8192 || h > 8192 {
        return Err(bad());
    }
    Ok((w, h))
}

fn open_source(
    a: &RunArgs,
    board: &Board,
    limits: &gestalt_edge::capture::Limits,
) -> Result<Box<dyn FrameSource>> {
    let need = u64::from(board.quality.steady_frames.max(1));
    Ok(match SourceSpec::parse(&a.source) {
        SourceSpec::Synthetic => Box::new(SyntheticSource::new(
            board.camera.width,
            board.camera.height,
            &[],
        )),
        SourceSpec::Path(p) if p.is_dir() => Box::new(DirectorySource::open(&p, limits, need + 1)?),
        SourceSpec::Path(p) => {
            // a photo held up to the camera: for ever, or just long enough to settle
            let repeat = a.once.then_some(need + 3);
            Box::new(StillSource::open(&p, limits, repeat)?)
        }
        SourceSpec::Camera(dev) => {
            camera(dev.unwrap_or_else(|| board.camera.device.clone()), board)?
        }
    })
}

#[cfg(feature = "camera")]
fn camera(device: PathBuf, board: &Board) -> Result<Box<dyn FrameSource>> {
    let c = &board.camera;
    Ok(Box::new(gestalt_edge::capture::camera::CameraSource::new(
        &device, c.width, c.height, c.fps,
    )?))
}

#[cfg(not(feature = "camera"))]
fn camera(device: PathBuf, _board: &Board) -> Result<Box<dyn FrameSource>> {
    Err(Error::Usage(format!(
        "this build has no camera support (for {}): rebuild with `--features camera` (needs libclang), or use --source PHOTO|FOLDER|synthetic",
        device.display()
    )))
}

/// The capture triggers besides the automatic one: Enter on a terminal, the window's keys,
/// the board's GPIO button (feature `gpio`). One that cannot be opened is reported and left
/// out; the loop then still captures a steady face on its own.
fn triggers(board: &Board, screen: &mut dyn Screen) -> Merged<'static> {
    let mut m = Merged::new();
    if std::io::stdin().is_terminal() {
        m.push(Box::new(keyboard()));
    }
    if let Some(keys) = screen.keys() {
        m.push(Box::new(ScreenCommands(keys)));
    }
    if let Some(b) = &board.button {
        button(b, &mut m);
    }
    m
}

#[cfg(feature = "gpio")]
fn button(b: &gestalt_edge::board::trigger::ButtonSettings, m: &mut Merged) {
    match gestalt_edge::board::button::GpioButton::open(b) {
        Ok(btn) => {
            eprintln!("capture button: {}", btn.describe());
            m.push(Box::new(btn));
        }
        Err(e) => eprintln!(
            "warning: the capture button cannot be used: {e}; capturing when a steady face passes the quality gate"
        ),
    }
}

#[cfg(not(feature = "gpio"))]
fn button(b: &gestalt_edge::board::trigger::ButtonSettings, _m: &mut Merged) {
    eprintln!(
        "warning: the board has a capture button ({} line {}) but this build has no GPIO support (rebuild with `--features gpio`); capturing when a steady face passes the quality gate",
        b.chip.display(),
        b.line
    );
}

/// Operator keys on a terminal: Enter (or `c`) captures, `q` quits. Ends quietly at end
/// of input.
fn keyboard() -> mpsc::Receiver<Command> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let cmd = match line.trim() {
                "" | "c" | "C" => Command::Capture,
                "q" | "Q" => Command::Quit,
                _ => continue,
            };
            if tx.send(cmd).is_err() {
                break;
            }
        }
    });
    rx
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs the device loop until it ends; the exit code says how it ended.
pub fn run(a: RunArgs) -> Result<i32> {
    let board = Board::load(&a.board)?;
    let most = board.run.max_session_captures.max(1);
    if a.session == 0 || a.session > most {
        return Err(Error::Usage(format!(
            "--session {}: board {} allows 1 to {most} captures per session (max_session_captures)",
            a.session, board.board.name
        )));
    }
    if a.session > 1 && matches!(SourceSpec::parse(&a.source), SourceSpec::Path(_)) {
        return Err(Error::Usage(
            "--session fuses live captures of one patient; photos from files are analysed one by one (use predict --fuse for photos)".into(),
        ));
    }
    if let Some(s) = a.result_seconds {
        if !(s.is_finite() && s >= 0.0) {
            return Err(Error::Usage("--result-seconds must be zero or more".into()));
        }
    }
    let size = match &a.screen_size {
        Some(s) => parse_size(s)?,
        None => (board.screen.width, board.screen.height),
    };
    let screen_spec = match &a.screen {
        Some(s) => ScreenSpec::parse(s)?,
        None => board.screen.spec()?,
    };
    if let Some(dir) = &a.save_captures {
        if !dir.is_dir() {
            return Err(Error::Usage(format!(
                "--save-captures {}: not an existing folder",
                dir.display()
            )));
        }
    }
    let arch = std::env::consts::ARCH;
    if !board.board.target.starts_with(arch) {
        eprintln!(
            "warning: board {} expects {}, this binary is {arch}",
            board.board.name, board.board.target
        );
    }
    // flag > board profile > default: threads, trusted key, model cache folder, state folder
    let session = Settings::resolve(&a.analyse, Some(&board))?.load()?;
    gestalt_edge::board::check_precision(
        &board,
        session.bundle.manifest.bundle.precision,
        &session.settings.bundle,
    )?;
    let gallery = session.settings.read_gallery(&a.gallery)?;
    pipeline::check_gallery(&session.bundle, &gallery)?;
    let matcher = Matcher::new(&gallery, session.settings.threads);
    // a device runs for days: hand back what loading the gallery and its index freed
    gestalt_edge::bundle::release_freed_memory();
    let mut source = open_source(&a, &board, &session.settings.limits)?;

    let mut screen: Box<dyn Screen> = match display::open_with(
        &screen_spec,
        size,
        board.screen.format,
        board.screen.spi.as_ref(),
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("warning: screen {screen_spec:?} cannot be opened: {e}; running without a screen (results on stdout)");
            Box::new(NoScreen)
        }
    };
    eprintln!(
        "gestalt-edge run: board {} ({}), {} bundle {} [{}], gallery {} ({} images), {}, {}",
        board.board.name,
        board.board.target,
        session.bundle.manifest.bundle.precision,
        session.bundle.model_version(),
        session.bundle.id,
        gallery.gallery_version(),
        gallery.len(),
        source.describe(),
        screen.describe()
    );

    if let Some(ix) = matcher.index() {
        eprintln!(
            "gallery search index: {} int8 values per image, built in {:.1} s",
            ix.index().dims(),
            ix.build_ms / 1000.0
        );
    }
    let mut analyzer = device::PipelineAnalyzer {
        bundle: &session.bundle,
        matcher: &matcher,
        options: session.settings.pipeline,
        rank: RankOptions {
            top: 5,
            patients: 5,
            same_patient_threshold: None,
        },
    };
    let settings = LoopSettings {
        quality: board.quality,
        once: a.once,
        max_frames: a.max_frames,
        frame_interval: (!a.once).then(|| Duration::from_secs_f32(1.0 / board.run.preview_fps)),
        result_hold: Duration::from_secs_f32(a.result_seconds.unwrap_or(board.run.result_seconds)),
        backoff: device::Backoff::default(),
        max_retries: a.max_retries,
        // photos cannot follow the gate's instructions: analyse each, advise on quality
        stills: matches!(SourceSpec::parse(&a.source), SourceSpec::Path(_)),
        session_captures: a.session,
    };
    let mut triggers = triggers(&board, screen.as_mut());
    let mut sleep = std::thread::sleep;
    let mut log = |e: &Event| report_event(e, &a);
    let mut io = LoopIo {
        commands: Some(&mut triggers),
        sleep: &mut sleep,
        events: &mut log,
    };
    let report = device::run(
        source.as_mut(),
        &mut analyzer,
        screen.as_mut(),
        &settings,
        &mut io,
    );
    Ok(match report.end {
        End::Once => match report.last_error {
            Some(e) if report.captures == 0 => exit::code(&e),
            _ => exit::OK,
        },
        End::SourceEnded if a.once => {
            eprintln!(
                "error: no capture: the source ended before a face passed the quality gate (last verdict: {})",
                report.last_verdict
            );
            exit::NO_FACE
        }
        End::SourceLost => {
            let e = report.last_error.map(|e| e.to_string()).unwrap_or_default();
            eprintln!(
                "error: gave up on the camera after {} attempts: {e}",
                a.max_retries.unwrap_or(0)
            );
            exit::IMAGE
        }
        End::SourceEnded | End::Quit | End::MaxFrames => exit::OK,
    })
}

fn report_event(e: &Event, a: &RunArgs) {
    match e {
        Event::SourceUnavailable {
            error,
            retry_in,
            attempt,
        } => eprintln!(
            "warning: {error}; retrying in {:.1} s (attempt {attempt})",
            retry_in.as_secs_f32()
        ),
        Event::SourceRecovered => eprintln!("note: the camera is back"),
        Event::BadFrame {
            error,
            consecutive,
            retry_in,
        } => {
            // a photo folder's frames are named after their files: only --verbose shows them
            let error = if a.verbose {
                error.to_string()
            } else {
                "unusable frame (--verbose names it)".to_string()
            };
            eprintln!(
                "warning: skipped a frame ({consecutive} in a row): {error}; next frame in {:.1} s",
                retry_in.as_secs_f32()
            )
        }
        Event::ScreenFailed { error } => {
            eprintln!("warning: the screen failed: {error}; going on (results on stdout)")
        }
        Event::DetectFailed { error } => eprintln!(
            "warning: detection failed: {}",
            report::error_brief(error, a.verbose)
        ),
        Event::Captured { trigger, quality } => {
            let why = match trigger {
                Trigger::Steady => "steady face passed the quality gate",
                Trigger::Key => "key pressed",
                Trigger::Still => "a new photo with a face",
            };
            if let (Trigger::Still, Some(q)) = (trigger, quality) {
                if !q.passes() {
                    eprintln!("advice: {}", device::still_advice(q.verdict()));
                }
            }
            match quality {
                Some(q) => eprintln!(
                    "capture: {why} (face {:.0}% of the height, sharpness {:.0}, yaw {:.2}, pitch {:.2}, roll {:.1} deg, brightness {:.0})",
                    q.face_fraction * 100.0,
                    q.sharpness,
                    q.yaw,
                    q.pitch,
                    q.roll_deg,
                    q.brightness
                ),
                None => eprintln!("capture: {why} (no face seen in the preview)"),
            }
        }
        Event::Result { prediction, frame } => {
            let now = unix_now();
            let brief = AuditRecord::new(prediction, now);
            let text = match (a.verbose, a.json) {
                (true, true) => serde_json::to_string(prediction).unwrap_or_default() + "\n",
                (true, false) => report::prediction_table(prediction),
                (false, true) => serde_json::to_string(&brief).unwrap_or_default() + "\n",
                (false, false) => brief_table(&brief),
            };
            out!("{text}");
            if let Some(log) = &a.audit_log {
                if let Err(err) = audit::append(log, &AuditRecord::new(prediction, now)) {
                    eprintln!("warning: audit log: {err}");
                }
            }
            if let Some(dir) = &a.save_captures {
                static SAVED: AtomicU32 = AtomicU32::new(0);
                let n = SAVED.fetch_add(1, Ordering::Relaxed);
                let path = dir.join(format!("capture-{now}-{}-{n}.png", std::process::id()));
                match display::canvas::write_png_atomic(&frame.rgb, &path, Access::Private) {
                    Ok(()) => eprintln!("saved the captured photo to {}", path.display()),
                    Err(err) => eprintln!("warning: cannot save the photo: {err}"),
                }
            }
        }
        Event::AnalysisFailed { error } => {
            eprintln!("error: {}", report::error_brief(error, a.verbose))
        }
    }
}

/// The result as the journal sees it without `--verbose`: the top-5 syndromes and the
/// versions, as in the audit log; no photo path, face geometry, gallery image or subject id.
fn brief_table(r: &AuditRecord) -> String {
    let mut s = format!(
        "result {}: model {} [bundle {}], gallery {}\n",
        r.time,
        report::clean(&r.model_version),
        r.bundle_id,
        report::clean(&r.gallery_version)
    );
    s += &format!(
        "  {:>2}  {:<32} {:>8} {:>9} {:>8}\n",
        "#", "syndrome", "OMIM", "distance", "gestalt"
    );
    for (i, h) in r.top5.iter().enumerate() {
        s += &format!(
            "  {:>2}  {:<32} {:>8} {:>9.4} {:>8.4}\n",
            i + 1,
            report::clean(&h.syndrome_name),
            h.omim_id.map_or_else(|| "-".to_string(), |n| n.to_string()),
            h.distance,
            h.gestalt_score
        );
    }
    s += "  Decision support only: similarity to diagnosed cases, not a diagnosis.\n\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screen_sizes() {
        assert_eq!(parse_size("320x240").unwrap(), (320, 240));
        assert_eq!(parse_size("800X480").unwrap(), (800, 480));
        for bad in ["320", "0x240", "axb", "99999x2"] {
            assert_eq!(
                exit::code(&parse_size(bad).unwrap_err()),
                exit::USAGE,
                "{bad}"
            );
        }
    }
}
