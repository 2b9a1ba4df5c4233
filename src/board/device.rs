//! The device loop: preview, quality gate, capture, ensemble, top-5, back to preview.
//!
//! Consumes a [`FrameSource`], an [`Analyzer`] (the pipeline with a gallery, or a fake in
//! tests), a [`Screen`] and operator [`Command`]s; produces scenes on the screen and
//! [`Event`]s for the caller to log. Every frame is run through the detector; a face that
//! passes the [`QualityThresholds`] for `steady_frames` frames in a row without moving is
//! captured automatically (or at once on [`Command::Capture`]); photos from files
//! ([`LoopSettings::stills`]) are analysed each once, the gate's verdict shown as advice; a
//! patient session ([`LoopSettings::session_captures`]) fuses several separate captures.
//! Trouble never ends the loop:
//! a missing or unplugged camera is retried with exponential back-off and a message on the
//! screen, a bad frame is skipped, a screen that fails is reported once and the loop goes on.

use std::time::{Duration, Instant};

pub use super::trigger::CommandSource;
use crate::capture::quality::{self, QualityReport, QualityThresholds, Steadiness};
use crate::capture::{Frame, FrameSource, SourceError};
use crate::detect::{self, Detection, FaceChoice};
use crate::display::{PreviewView, ResultView, Scene, Screen};
use crate::pipeline::{FaceAnalysis, Prediction};
use crate::{Error, Result};

/// What the loop needs from the models.
pub trait Analyzer {
    /// Faces in the frame (the preview runs this on every frame).
    fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>>;
    /// The full pipeline and ranking on a captured frame.
    fn predict(&mut self, frame: &Frame) -> Result<Prediction>;
    /// Detection, alignment and embedding of a captured frame (one photo of a session).
    fn analyse(&mut self, frame: &Frame) -> Result<FaceAnalysis> {
        Err(Error::Usage(format!(
            "{}: this analyser cannot run patient sessions",
            frame.source.display()
        )))
    }
    /// The ranking of a session's photos fused into one query ([`crate::fuse`]), as a
    /// [`Prediction`] whose face is that of the last photo.
    fn predict_session(&mut self, photos: Vec<(String, FaceAnalysis)>) -> Result<Prediction> {
        let _ = photos;
        Err(Error::Usage(
            "this analyser cannot run patient sessions".into(),
        ))
    }
}

/// The real pipeline against a gallery.
pub struct PipelineAnalyzer<'a> {
    /// Loaded models.
    pub bundle: &'a crate::bundle::Bundle,
    /// The gallery (made with `bundle`), ready to search.
    pub matcher: &'a crate::rank::Matcher<'a>,
    /// Detection passes and face choice.
    pub options: crate::pipeline::PipelineOptions,
    /// List lengths and the same-patient filter.
    pub rank: crate::rank::RankOptions,
}

impl Analyzer for PipelineAnalyzer<'_> {
    fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>> {
        self.bundle.detect(&frame.rgb)
    }
    fn predict(&mut self, frame: &Frame) -> Result<Prediction> {
        crate::pipeline::predict(self.bundle, self.matcher, frame, &self.options, &self.rank)
    }
    fn analyse(&mut self, frame: &Frame) -> Result<FaceAnalysis> {
        crate::pipeline::analyse(self.bundle, frame, &self.options)
    }
    fn predict_session(&mut self, photos: Vec<(String, FaceAnalysis)>) -> Result<Prediction> {
        let n = photos.len();
        let last = photos.last().map(|(_, a)| a.detection);
        let fused = crate::pipeline::predict_fused(
            self.bundle,
            self.matcher,
            photos,
            Vec::new(),
            &self.rank,
            crate::fuse::DEFAULT_CONSISTENCY_DISTANCE,
        )?;
        let face = last.ok_or_else(|| Error::Usage("an empty session".into()))?;
        Ok(Prediction {
            image: format!("patient session of {n} photos"),
            model_version: fused.model_version,
            gallery_version: fused.gallery_version,
            bundle_id: fused.bundle_id,
            faces_found: 1,
            face: crate::pipeline::FaceReport {
                bbox_px: face.bbox_px,
                score: face.score,
                landmarks_px: face.landmarks_px,
            },
            suggested_syndromes_list: fused.suggested_syndromes_list,
            suggested_genes_list: fused.suggested_genes_list,
            suggested_patients_list: fused.suggested_patients_list,
            images_compared: fused.images_compared,
            timings_ms: fused.timings_ms,
            explanation: None,
            query: fused.query,
        })
    }
}

/// An operator's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Capture the current frame now, whatever the gate says (or leave the result screen).
    Capture,
    /// Stop the loop.
    Quit,
}

/// Why a capture happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The face was steady and passed the gate.
    Steady,
    /// The operator asked.
    Key,
    /// A new photo from a file or folder source with a face (stills skip the gate).
    Still,
}

/// Something the caller may want to log.
#[derive(Debug)]
pub enum Event<'a> {
    /// The source is unavailable; the loop waits `retry_in` (attempt counts from 1).
    SourceUnavailable {
        /// What the source said.
        error: &'a SourceError,
        /// The wait before the next attempt.
        retry_in: Duration,
        /// Consecutive failed attempts.
        attempt: u32,
    },
    /// The source is back after failing.
    SourceRecovered,
    /// A frame was skipped; the loop waits `retry_in` before the next one.
    BadFrame {
        /// What was wrong.
        error: &'a SourceError,
        /// Consecutive bad frames, this one included.
        consecutive: u32,
        /// The wait before the next frame.
        retry_in: Duration,
    },
    /// The screen failed to show a scene (reported on the first failure only).
    ScreenFailed {
        /// The error.
        error: &'a Error,
    },
    /// Detection failed on a preview frame.
    DetectFailed {
        /// The error.
        error: &'a Error,
    },
    /// A frame was captured for analysis.
    Captured {
        /// Why.
        trigger: Trigger,
        /// The gate's measurements, when a face was seen.
        quality: Option<&'a QualityReport>,
    },
    /// The ranking for a capture.
    Result {
        /// The prediction.
        prediction: &'a Prediction,
        /// The captured frame (for a photo the operator asked to keep).
        frame: &'a Frame,
    },
    /// The analysis of a capture failed (no face on a key capture, model error).
    AnalysisFailed {
        /// The error.
        error: &'a Error,
    },
}

/// Exponential back-off: `first`, doubled per failed attempt, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first wait.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait after `attempt` consecutive failures (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// How the loop behaves.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    /// The capture gate.
    pub quality: QualityThresholds,
    /// Stop after the first capture (tests, acceptance checks).
    pub once: bool,
    /// Stop after this many frames (tests); `None` runs until the source ends or Quit.
    pub max_frames: Option<u64>,
    /// Shortest time between frames of a source that does not pace itself (files).
    pub frame_interval: Option<Duration>,
    /// How long the result stays on the screen before the preview returns.
    pub result_hold: Duration,
    /// Retry timing for an unavailable source.
    pub backoff: Backoff,
    /// Stop after this many consecutive failed attempts to reach the source, or consecutive
    /// bad frames (`None`: never, as a kiosk should).
    pub max_retries: Option<u32>,
    /// The source yields photos, not a live person: every photo with a face is analysed
    /// once, whatever the gate says (a photo cannot turn its head), and the gate's verdict
    /// goes on the result screen as advice. The live camera keeps the gate.
    pub stills: bool,
    /// Captures per patient session on a live source: each passes the gate and is a separate
    /// capture (the face must move or leave in between); after the last, the photos are
    /// fused and ranked as one query. 1 (or 0) ranks every capture on its own.
    pub session_captures: u32,
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `once` and a capture was analysed (or failed).
    Once,
    /// The source has no more frames.
    SourceEnded,
    /// The operator quit.
    Quit,
    /// `max_frames` reached.
    MaxFrames,
    /// `max_retries` consecutive failures to reach the source.
    SourceLost,
}

/// What happened during a run.
#[derive(Debug)]
pub struct LoopReport {
    /// Why it ended.
    pub end: End,
    /// Frames taken from the source.
    pub frames: u64,
    /// Frames the source delivered broken (skipped).
    pub bad_frames: u64,
    /// Captures analysed successfully.
    pub captures: u32,
    /// The last analysis error (with `once`, the reason the capture failed).
    pub last_error: Option<Error>,
    /// The gate's last verdict on the preview ("No face", "Move closer"...).
    pub last_verdict: String,
}

/// The side effects the loop needs: commands in, sleeping, events out.
pub struct LoopIo<'a> {
    /// Operator commands (keyboard, button, window keys; see [`super::trigger`]); `None`
    /// when there are none.
    pub commands: Option<&'a mut dyn CommandSource>,
    /// Waits (the real `thread::sleep`, or a recorder in tests).
    pub sleep: &'a mut dyn FnMut(Duration),
    /// Receives every event.
    pub events: &'a mut dyn FnMut(&Event),
}

impl LoopIo<'_> {
    fn poll(&mut self) -> Option<Command> {
        self.commands.as_mut().and_then(|c| c.poll())
    }

    /// Waits `total`, in slices of at most 100 ms, returning early on a command.
    fn wait(&mut self, total: Duration) -> Option<Command> {
        let slice = Duration::from_millis(100);
        let mut left = total;
        loop {
            if let Some(c) = self.poll() {
                return Some(c);
            }
            if left.is_zero() {
                return None;
            }
            let step = left.min(slice);
            (self.sleep)(step);
            left -= step;
        }
    }
}

struct ScreenGuard<'a> {
    screen: &'a mut dyn Screen,
    failed: bool,
}

impl ScreenGuard<'_> {
    fn show(&mut self, scene: &Scene, io: &mut LoopIo) {
        match self.screen.show(scene) {
            Ok(()) => self.failed = false,
            Err(e) => {
                if !self.failed {
                    (io.events)(&Event::ScreenFailed { error: &e });
                }
                self.failed = true;
            }
        }
    }
}

/// The result-screen advice for a photo the gate would have refused.
pub fn still_advice(verdict: &str) -> String {
    format!("Photo quality: {verdict}. A better photo may give a more reliable result.")
}

/// Runs the device loop until the source ends, the operator quits, or (with `once`) one
/// capture was analysed.
pub fn run(
    source: &mut dyn FrameSource,
    analyzer: &mut dyn Analyzer,
    screen: &mut dyn Screen,
    settings: &LoopSettings,
    io: &mut LoopIo,
) -> LoopReport {
    let q = &settings.quality;
    let need = q.steady_frames.max(1);
    let mut screen = ScreenGuard {
        screen,
        failed: false,
    };
    let mut report = LoopReport {
        end: End::SourceEnded,
        frames: 0,
        bad_frames: 0,
        captures: 0,
        last_error: None,
        last_verdict: "No frame yet".into(),
    };
    let mut steady = Steadiness::default();
    let mut attempt = 0u32;
    // consecutive bad frames
    let mut bad = 0u32;
    // after a capture, wait for the face to go or move (or a new photo) before the next one
    let mut captured: Option<(std::path::PathBuf, [f32; 4])> = None;
    // stills: the photo last analysed (each file once)
    let mut analysed: Option<std::path::PathBuf> = None;
    // a patient session's photos so far
    let mut session: Vec<(String, FaceAnalysis)> = Vec::new();

    loop {
        if settings.max_frames.is_some_and(|m| report.frames >= m) {
            report.end = End::MaxFrames;
            return report;
        }
        let mut forced = false;
        match io.poll() {
            Some(Command::Quit) => {
                report.end = End::Quit;
                return report;
            }
            Some(Command::Capture) => forced = true,
            None => {}
        }
        let started = Instant::now();
        let frame = match source.next_frame() {
            Ok(Some(f)) => {
                if attempt > 0 {
                    (io.events)(&Event::SourceRecovered);
                }
                attempt = 0;
                bad = 0;
                f
            }
            Ok(None) => {
                report.end = End::SourceEnded;
                return report;
            }
            Err(e @ SourceError::BadFrame { .. }) => {
                // counted, and backed off like an unavailable source: a camera that only
                // sends broken frames must not spin the loop
                bad += 1;
                report.bad_frames += 1;
                let wait = settings.backoff.delay(bad);
                (io.events)(&Event::BadFrame {
                    error: &e,
                    consecutive: bad,
                    retry_in: wait,
                });
                if settings.max_retries.is_some_and(|m| bad > m) {
                    report.end = End::SourceLost;
                    report.last_error = Some(e.into());
                    return report;
                }
                if io.wait(wait) == Some(Command::Quit) {
                    report.end = End::Quit;
                    return report;
                }
                continue;
            }
            Err(e @ SourceError::Unavailable { .. }) => {
                // one reopen per back-off: wait, reopen once; a failed reopen is the next
                // attempt (longer wait), and frames are read only once the source reopened
                let mut error = e;
                loop {
                    attempt += 1;
                    if settings.max_retries.is_some_and(|m| attempt > m) {
                        report.end = End::SourceLost;
                        report.last_error = Some(error.into());
                        return report;
                    }
                    let wait = settings.backoff.delay(attempt);
                    (io.events)(&Event::SourceUnavailable {
                        error: &error,
                        retry_in: wait,
                        attempt,
                    });
                    let detail = format!(
                        "{error}. Check the cable. Retrying in {:.1} s (attempt {attempt}).",
                        wait.as_secs_f32()
                    );
                    screen.show(
                        &Scene::Message {
                            title: "Camera not available",
                            detail: &detail,
                        },
                        io,
                    );
                    if io.wait(wait) == Some(Command::Quit) {
                        report.end = End::Quit;
                        return report;
                    }
                    match source.reopen() {
                        Ok(()) => break,
                        Err(e) => error = e,
                    }
                }
                continue;
            }
        };
        report.frames += 1;

        let faces = match analyzer.detect(&frame) {
            Ok(f) => f,
            Err(e) => {
                (io.events)(&Event::DetectFailed { error: &e });
                Vec::new()
            }
        };
        let face = detect::choose(&faces, FaceChoice::HighestScore);
        let quality = face.map(|d| quality::assess(&frame.rgb, &d, q));
        let passes = quality.as_ref().is_some_and(|r| r.passes());
        if let Some((src, bbox)) = &captured {
            let moved = match &face {
                None => true,
                Some(d) => *src != frame.source || quality::iou(bbox, &d.bbox_px) < 0.5,
            };
            if moved {
                captured = None;
                steady.reset();
            }
        }
        let count = if captured.is_some() {
            0
        } else {
            steady.update(face.as_ref().map(|d| &d.bbox_px), passes, q.steady_iou)
        };
        report.last_verdict = match (&quality, captured.is_some()) {
            (None, _) => "No face: look at the camera".into(),
            (Some(_), true) => "Done: next person, please".into(),
            (Some(r), false) if r.passes() => "Good: hold still".into(),
            (Some(r), false) => r.verdict().into(),
        };

        let new_still =
            settings.stills && face.is_some() && analysed.as_ref() != Some(&frame.source);
        let trigger = if forced {
            Some(Trigger::Key)
        } else if new_still {
            Some(Trigger::Still)
        } else if count >= need {
            Some(Trigger::Steady)
        } else {
            None
        };
        let Some(trigger) = trigger else {
            screen.show(
                &Scene::Preview(PreviewView {
                    frame: &frame.rgb,
                    face,
                    verdict: report.last_verdict.clone(),
                    ok: passes && captured.is_none(),
                    steady: (count, need),
                }),
                io,
            );
            if let (Some(min), true) = (settings.frame_interval, source.is_unpaced()) {
                let spent = started.elapsed();
                if spent < min && io.wait(min - spent) == Some(Command::Quit) {
                    report.end = End::Quit;
                    return report;
                }
            }
            continue;
        };

        (io.events)(&Event::Captured {
            trigger,
            quality: quality.as_ref(),
        });
        screen.show(
            &Scene::Message {
                title: "Analysing...",
                detail: "Comparing the face with the gallery.",
            },
            io,
        );
        steady.reset();
        if settings.stills {
            analysed = Some(frame.source.clone());
        }
        let result = if settings.session_captures > 1 && !settings.stills {
            match analyzer.analyse(&frame) {
                Ok(a) => {
                    let bbox = a.detection.bbox_px;
                    let n = session.len() + 1;
                    session.push((format!("capture {n}"), a));
                    if session.len() < settings.session_captures as usize {
                        let detail = format!(
                            "Photo {n} of {} taken. Turn the head a little or step out and back; the next photo is taken when the face is steady again.",
                            settings.session_captures
                        );
                        screen.show(
                            &Scene::Message {
                                title: "Patient session",
                                detail: &detail,
                            },
                            io,
                        );
                        captured = Some((frame.source.clone(), bbox));
                        continue;
                    }
                    analyzer.predict_session(std::mem::take(&mut session))
                }
                Err(e) => Err(e),
            }
        } else {
            analyzer.predict(&frame)
        };
        match result {
            Ok(p) => {
                report.captures += 1;
                (io.events)(&Event::Result {
                    prediction: &p,
                    frame: &frame,
                });
                let mut view = ResultView::from_prediction(&p, &frame.rgb);
                if settings.stills {
                    view.advice = quality
                        .as_ref()
                        .filter(|r| !r.passes())
                        .map(|r| still_advice(r.verdict()));
                }
                screen.show(&Scene::Result(&view), io);
                captured = Some((frame.source.clone(), p.face.bbox_px));
            }
            Err(e) => {
                (io.events)(&Event::AnalysisFailed { error: &e });
                let detail = e.to_string();
                screen.show(
                    &Scene::Message {
                        title: "No result",
                        detail: &detail,
                    },
                    io,
                );
                report.last_error = Some(e);
                if let Some(d) = face {
                    captured = Some((frame.source.clone(), d.bbox_px));
                }
            }
        }
        if settings.once {
            report.end = End::Once;
            return report;
        }
        if io.wait(settings.result_hold) == Some(Command::Quit) {
            report.end = End::Quit;
            return report;
        }
    }
}
