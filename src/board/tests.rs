//! The device loop against a synthetic source, a fake analyzer and a
//! recording screen.

use std::sync::mpsc;
use std::time::Duration;

use super::device::{self, Analyzer, Backoff, Command, End, Event, LoopIo, LoopSettings};
use crate::capture::quality::QualityThresholds;
use crate::capture::{Frame, SyntheticEvent, SyntheticSource};
use crate::detect::Detection;
use crate::display::{Scene, Screen};
use crate::pipeline::{FaceReport, Prediction, StageTimings};
use crate::rank::SyndromeHit;
use crate::Error;

/// The class of a loop error, for event logs.
fn class(e: &Error) -> &'static str {
    match e {
        Error::NoFace { .. } => "no face",
        Error::Image { .. } => "image",
        _ => "other",
    }
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let b = Backoff {
        first: Duration::from_millis(500),
        max: Duration::from_secs(4),
    };
    let d: Vec<u128> = (1..=6).map(|a| b.delay(a).as_millis()).collect();
    assert_eq!(d, vec![500, 1000, 2000, 4000, 4000, 4000]);
    assert_eq!(b.delay(200), Duration::from_secs(4));
}

/// A frontal face in the middle of the frame (or none).
struct Fake {
    face: bool,
    /// frames with no face (1-based frame numbers)
    faceless: Vec<u64>,
    seen: u64,
    predictions: u32,
}

fn face() -> Detection {
    crate::detect::test_util::template_face()
}

fn prediction() -> Prediction {
    Prediction {
        image: "synthetic".into(),
        model_version: "test 1".into(),
        gallery_version: "g1".into(),
        bundle_id: "0123".into(),
        faces_found: 1,
        face: FaceReport {
            bbox_px: face().bbox_px,
            score: 0.9,
            landmarks_px: face().landmarks_px,
        },
        suggested_syndromes_list: vec![SyndromeHit {
            syndrome_name: "Test syndrome".into(),
            omim_id: Some(1),
            distance: 0.3,
            gestalt_score: 1.0,
            image_id: "i".into(),
            subject_id: "s".into(),
            acmg_pp4: "moderate".into(),
            acmg_pp4_support: "Yes".into(),
            probability: None,
            ci_lower: None,
            ci_upper: None,
        }],
        suggested_genes_list: vec![],
        suggested_patients_list: vec![],
        images_compared: 1,
        timings_ms: StageTimings::default(),
        explanation: None,
        query: Default::default(),
    }
}

impl Analyzer for Fake {
    fn detect(&mut self, _frame: &Frame) -> crate::Result<Vec<Detection>> {
        self.seen += 1;
        Ok(if self.face && !self.faceless.contains(&self.seen) {
            vec![face()]
        } else {
            vec![]
        })
    }
    fn analyse(&mut self, _frame: &Frame) -> crate::Result<crate::pipeline::FaceAnalysis> {
        Ok(crate::pipeline::FaceAnalysis {
            faces_found: 1,
            detection: face(),
            aligned: crate::align::AlignedFace {
                rgb: image::RgbImage::new(112, 112),
                transform: crate::align::Similarity::IDENTITY,
            },
            embeddings: Default::default(),
            timings: StageTimings::default(),
        })
    }
    fn predict_session(
        &mut self,
        photos: Vec<(String, crate::pipeline::FaceAnalysis)>,
    ) -> crate::Result<Prediction> {
        self.predictions += 1;
        let mut p = prediction();
        p.suggested_syndromes_list[0].syndrome_name = format!("fused {}", photos.len());
        Ok(p)
    }
    fn predict(&mut self, frame: &Frame) -> crate::Result<Prediction> {
        self.predictions += 1;
        if self.face {
            Ok(prediction())
        } else {
            Err(crate::Error::NoFace {
                path: frame.source.clone(),
                detail: String::new(),
            })
        }
    }
}

#[derive(Default)]
struct Recorder {
    scenes: Vec<String>,
    fail: bool,
}

impl Screen for Recorder {
    fn show(&mut self, scene: &Scene) -> crate::Result<()> {
        self.scenes.push(match scene {
            Scene::Preview(p) => format!("preview {}/{}", p.steady.0, p.steady.1),
            Scene::Result(r) => match &r.advice {
                None => format!("result {}", r.rows[0].name),
                Some(a) => format!("result {} [{a}]", r.rows[0].name),
            },
            Scene::Message { title, .. } => format!("message {title}"),
        });
        if self.fail {
            return Err(crate::Error::Usage("screen unplugged".into()));
        }
        Ok(())
    }
    fn size(&self) -> (u32, u32) {
        (320, 240)
    }
    fn describe(&self) -> String {
        "recorder".into()
    }
}

fn lax() -> QualityThresholds {
    QualityThresholds {
        min_face_fraction: 0.0,
        min_sharpness: 0.0,
        brightness_range: [0.0, 255.0],
        max_clipped: 1.0,
        steady_frames: 3,
        ..QualityThresholds::default()
    }
}

fn settings(once: bool, max_frames: Option<u64>) -> LoopSettings {
    LoopSettings {
        quality: lax(),
        once,
        max_frames,
        frame_interval: None,
        result_hold: Duration::ZERO,
        backoff: Backoff::default(),
        max_retries: None,
        stills: false,
        session_captures: 1,
    }
}

#[test]
fn a_patient_session_fuses_separate_gated_captures() {
    let s = LoopSettings {
        session_captures: 2,
        ..settings(true, Some(40))
    };
    let mut src = SyntheticSource::new(200, 200, &[]);
    // the face leaves at frame 4 (and at 5): the second photo is a new capture
    let mut f = Fake {
        faceless: vec![4, 5],
        ..fake(true)
    };
    let mut screen = Recorder::default();
    let (r, events, _) = drive(&mut src, &mut f, &mut screen, &s, None);
    assert_eq!(r.end, End::Once);
    assert_eq!((r.frames, r.captures), (8, 1));
    assert_eq!(
        events,
        vec!["captured Steady", "captured Steady", "result fused 2"]
    );
    assert!(screen
        .scenes
        .contains(&"message Patient session".to_string()));
    // without the face leaving, the session never takes a second photo of the same pose
    let mut src = SyntheticSource::new(200, 200, &[]);
    let (mut f, mut screen) = (fake(true), Recorder::default());
    let (r, events, _) = drive(&mut src, &mut f, &mut screen, &s, None);
    assert_eq!(r.captures, 0);
    assert_eq!(events, vec!["captured Steady"]);
}

#[test]
fn stills_are_analysed_once_each_with_the_gate_as_advice() {
    // a gate no face passes: the face would have to fill the frame
    let strict = QualityThresholds {
        min_face_fraction: 0.99,
        ..lax()
    };
    let live = LoopSettings {
        quality: strict,
        ..settings(false, Some(6))
    };
    let mut src = SyntheticSource::new(200, 200, &[]);
    let (mut f, mut screen) = (fake(true), Recorder::default());
    let (r, events, _) = drive(&mut src, &mut f, &mut screen, &live, None);
    assert_eq!(r.captures, 0, "the live camera keeps the gate: {events:?}");

    let stills = LoopSettings {
        stills: true,
        ..live
    };
    let mut src = SyntheticSource::new(200, 200, &[]);
    let (mut f, mut screen) = (fake(true), Recorder::default());
    let (r, events, _) = drive(&mut src, &mut f, &mut screen, &stills, None);
    // every frame has the same source: one photo, analysed once
    assert_eq!((r.frames, r.captures), (6, 1));
    assert_eq!(events, vec!["captured Still", "result Test syndrome"]);
    let result = &screen.scenes[1];
    assert!(
        result.starts_with("result Test syndrome [Photo quality: ") && result.len() > 40,
        "{:?}",
        screen.scenes
    );
    // a photo the gate accepts gets no advice
    let fine = LoopSettings {
        stills: true,
        ..settings(true, Some(6))
    };
    let mut src = SyntheticSource::new(200, 200, &[]);
    let (mut f, mut screen) = (fake(true), Recorder::default());
    drive(&mut src, &mut f, &mut screen, &fine, None);
    assert_eq!(
        screen.scenes,
        vec!["message Analysing...", "result Test syndrome"]
    );
}

/// Runs the loop; returns the report, the events (as text) and the total slept time.
fn drive(
    source: &mut SyntheticSource,
    fake: &mut Fake,
    screen: &mut Recorder,
    s: &LoopSettings,
    commands: Option<&mut (dyn device::CommandSource + 'static)>,
) -> (device::LoopReport, Vec<String>, Vec<Duration>) {
    let mut events = Vec::new();
    let mut sleeps = Vec::new();
    let report = {
        let mut sleep = |d: Duration| sleeps.push(d);
        let mut log = |e: &Event| {
            events.push(match e {
                Event::SourceUnavailable {
                    retry_in, attempt, ..
                } => format!("unavailable {attempt} {}ms", retry_in.as_millis()),
                Event::SourceRecovered => "recovered".into(),
                Event::BadFrame { .. } => "bad frame".into(),
                Event::ScreenFailed { .. } => "screen failed".into(),
                Event::DetectFailed { .. } => "detect failed".into(),
                Event::Captured { trigger, .. } => format!("captured {trigger:?}"),
                Event::Result { prediction, .. } => {
                    format!(
                        "result {}",
                        prediction.suggested_syndromes_list[0].syndrome_name
                    )
                }
                Event::AnalysisFailed { error } => format!("failed {}", class(error)),
            })
        };
        let mut io = LoopIo {
            commands: commands.map(|c| c as &mut dyn device::CommandSource),
            sleep: &mut sleep,
            events: &mut log,
        };
        device::run(source, fake, screen, s, &mut io)
    };
    (report, events, sleeps)
}

fn fake(face: bool) -> Fake {
    Fake {
        face,
        faceless: vec![],
        seen: 0,
        predictions: 0,
    }
}

#[test]
fn steady_face_is_captured_once() {
    let mut src = SyntheticSource::new(200, 200, &[]);
    let (mut f, mut screen) = (fake(true), Recorder::default());
    let (r, events, _) = drive(
        &mut src,
        &mut f,
        &mut screen,
        &settings(true, Some(50)),
        None,
    );
    assert_eq!(r.end, End::Once);
    assert_eq!((r.frames, r.captures), (3, 1));
    assert_eq!(events, vec!["captured Steady", "result Test syndrome"]);
    assert_eq!(
        screen.scenes,
        vec![
            "preview 1/3",
            "preview 2/3",
            "message Analysing...",
            "result Test syndrome"
        ]
    );
}

#[test]
fn camera_unplugged_is_retried_with_backoff() {
    use SyntheticEvent::*;
    let mut src = SyntheticSource::new(200, 200, &[Unplugged, Unplugged, Unplugged, Frame]);
    let (mut f, mut screen) = (fake(false), Recorder::default());
    let (r, events, sleeps) = drive(
        &mut src,
        &mut f,
        &mut screen,
        &settings(false, Some(2)),
        None,
    );
    assert_eq!(r.end, device::End::MaxFrames);
    assert_eq!(
        events,
        vec![
            "unavailable 1 500ms",
            "unavailable 2 1000ms",
            "unavailable 3 2000ms",
            "recovered"
        ]
    );
    assert_eq!(src.reopened, 3);
    let slept: Duration = sleeps.iter().sum();
    assert_eq!(slept, Duration::from_millis(3500));
    assert!(sleeps.iter().all(|d| *d <= Duration::from_millis(100)));
    assert_eq!(screen.scenes[0], "message Camera not available");
    assert_eq!(screen.scenes.last().unwrap(), "preview 0/3");
}

#[test]
fn a_failed_reopen_waits_a_longer_back_off_before_the_next_one() {
    use SyntheticEvent::*;
    let mut src = SyntheticSource::new(200, 200, &[Unplugged, Frame]);
    src.failing_reopens = 2;
    let (mut f, mut screen) = (fake(false), Recorder::default());
    let (r, events, sleeps) = drive(
        &mut src,
        &mut f,
        &mut screen,
        &settings(false, Some(1)),
        None,
    );
    assert_eq!(r.end, device::End::MaxFrames);
    // one event, one wait and one reopen per attempt, and no read until a reopen succeeded
    assert_eq!(
        events,
        vec![
            "unavailable 1 500ms",
            "unavailable 2 1000ms",
            "unavailable 3 2000ms",
            "recovered"
        ]
    );
    assert_eq!((src.reopened, src.reads), (3, 2));
    let slept: Duration = sleeps.iter().sum();
    assert_eq!(slept, Duration::from_millis(3500));
    let messages: Vec<_> = screen
        .scenes
        .iter()
        .filter(|s| s.starts_with("message Camera"))
        .collect();
    assert_eq!(messages.len(), 3);
}

#[test]
fn bad_frames_are_counted_and_backed_off() {
    use SyntheticEvent::*;
    let mut src = SyntheticSource::new(200, 200, &[BadFrame, BadFrame, BadFrame, Frame]);
    let (mut f, mut screen) = (fake(false), Recorder::default());
    let (r, events, sleeps) = drive(
        &mut src,
        &mut f,
        &mut screen,
        &settings(false, Some(1)),
        None,
    );
    assert_eq!((r.frames, r.bad_frames), (1, 3));
    assert_eq!(events, vec!["bad frame", "bad frame", "bad frame"]);
    let slept: Duration = sleeps.iter().sum();
    assert_eq!(slept, Duration::from_millis(3500));
    // and a source that only sends bad frames is lost when retries are limited
    let mut src = SyntheticSource::new(10, 10, &[BadFrame; 5]);
    let mut s = settings(false, None);
    s.max_retries = Some(2);
    let (r, _, _) = drive(
        &mut src,
        &mut fake(false),
        &mut Recorder::default(),
        &s,
        None,
    );
    assert_eq!((r.end, r.bad_frames), (device::End::SourceLost, 3));
}

#[test]
fn a_lost_source_can_end_the_loop_when_asked() {
    let mut src = SyntheticSource::new(10, 10, &[SyntheticEvent::Unplugged; 5]);
    let (mut f, mut screen) = (fake(false), Recorder::default());
    let mut s = settings(false, None);
    s.max_retries = Some(2);
    let (r, events, _) = drive(&mut src, &mut f, &mut screen, &s, None);
    assert_eq!(r.end, End::SourceLost);
    assert_eq!(events.len(), 2);
    assert!(matches!(r.last_error, Some(Error::Image { .. })));
}

#[test]
fn bad_frames_are_skipped_and_a_broken_screen_is_reported_once() {
    use SyntheticEvent::*;
    let mut src = SyntheticSource::new(200, 200, &[BadFrame, Frame, BadFrame]);
    let (mut f, mut screen) = (
        fake(true),
        Recorder {
            fail: true,
            ..Default::default()
        },
    );
    let (r, events, _) = drive(
        &mut src,
        &mut f,
        &mut screen,
        &settings(true, Some(50)),
        None,
    );
    assert_eq!(r.end, device::End::Once);
    assert_eq!(r.captures, 1);
    assert_eq!(
        events,
        vec![
            "bad frame",
            "screen failed",
            "bad frame",
            "captured Steady",
            "result Test syndrome"
        ]
    );
    assert_eq!(screen.scenes.len(), 4, "the loop kept drawing");
}

#[test]
fn a_key_captures_even_without_a_face() {
    let (tx, mut rx) = mpsc::channel();
    tx.send(Command::Capture).unwrap();
    let mut src = SyntheticSource::new(64, 48, &[]);
    let (mut f, mut screen) = (fake(false), Recorder::default());
    let (r, events, _) = drive(
        &mut src,
        &mut f,
        &mut screen,
        &settings(true, Some(50)),
        Some(&mut rx),
    );
    assert_eq!(r.end, End::Once);
    assert_eq!(events, vec!["captured Key", "failed no face"]);
    assert!(matches!(r.last_error, Some(Error::NoFace { .. })));
    assert_eq!(screen.scenes.last().unwrap(), "message No result");
}

#[test]
fn the_same_face_is_not_captured_twice_until_it_leaves() {
    let mut src = SyntheticSource::new(200, 200, &[]);
    let (mut f, mut screen) = (fake(true), Recorder::default());
    let (r, _, _) = drive(
        &mut src,
        &mut f,
        &mut screen,
        &settings(false, Some(12)),
        None,
    );
    assert_eq!(r.captures, 1);
    assert_eq!(r.last_verdict, "Done: next person, please");

    // the face leaves at frame 5: a new steady run captures again
    let mut src = SyntheticSource::new(200, 200, &[]);
    let mut f = fake(true);
    f.faceless = vec![5];
    let (r, _, _) = drive(
        &mut src,
        &mut f,
        &mut Recorder::default(),
        &settings(false, Some(12)),
        None,
    );
    assert_eq!(r.captures, 2);
    assert_eq!(f.predictions, 2);
}

#[test]
fn quit_stops_the_loop() {
    let (tx, mut rx) = mpsc::channel();
    tx.send(Command::Quit).unwrap();
    let mut src = SyntheticSource::new(8, 8, &[]);
    let (r, _, _) = drive(
        &mut src,
        &mut fake(true),
        &mut Recorder::default(),
        &settings(false, None),
        Some(&mut rx),
    );
    assert_eq!((r.end, r.frames), (End::Quit, 0));
}

/// A button that is pressed at the `at`-th poll.
struct FakeButton {
    polls: u32,
    at: u32,
}

impl device::CommandSource for FakeButton {
    fn poll(&mut self) -> Option<Command> {
        self.polls += 1;
        (self.polls == self.at).then_some(Command::Capture)
    }
}

#[test]
fn a_trigger_source_captures_when_pressed() {
    // no face ever: only the button can capture, at its third poll (the third frame)
    let mut src = SyntheticSource::new(64, 48, &[]);
    let (mut f, mut screen) = (fake(false), Recorder::default());
    let mut button = FakeButton { polls: 0, at: 3 };
    let (r, events, _) = drive(
        &mut src,
        &mut f,
        &mut screen,
        &settings(true, Some(50)),
        Some(&mut button),
    );
    assert_eq!(r.end, End::Once);
    assert_eq!(r.frames, 3, "two preview frames, then the capture");
    assert_eq!(events, vec!["captured Key", "failed no face"]);
    assert_eq!(f.predictions, 1);
}
