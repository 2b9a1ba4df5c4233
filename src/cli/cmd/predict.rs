//! `gestalt-edge predict`: photos in, ranked syndromes out (table or JSON).

use gestalt_edge::pipeline;
use gestalt_edge::rank::{Matcher, RankOptions};
use gestalt_edge::{Error, Result};

use crate::cli::args::PredictArgs;
use crate::cli::exit;
use crate::cli::out::{out, outln};
use crate::cli::report;
use crate::cli::resolve::Settings;

/// Ranks every photo; a photo that fails is reported and the batch goes on.
pub fn run(a: PredictArgs) -> Result<i32> {
    if let Some(t) = a.same_patient_threshold {
        if !(t.is_finite() && (0.0..=2.0).contains(&t)) {
            return Err(Error::Usage(
                "--same-patient-threshold must be a distance in 0..=2".into(),
            ));
        }
    }
    let settings = Settings::resolve(&a.analyse, None)?;
    let session = settings.load()?;
    let gallery = session.settings.read_gallery(&a.gallery)?;
    pipeline::check_gallery(&session.bundle, &gallery)?;
    // one-shot: deriving the index costs more than it saves (30k images: built in ~0.8 s,
    // then ~28 ms per search against ~32 ms flat), so predict scans; `run` indexes
    let matcher = Matcher::flat(&gallery, session.settings.threads);
    let rank_opts = RankOptions {
        top: a.top.get(),
        patients: a.patients,
        same_patient_threshold: a.same_patient_threshold,
    };
    if let Some(d) = a.consistency_distance {
        if !(d.is_finite() && (0.0..=2.0).contains(&d)) {
            return Err(Error::Usage(
                "--consistency-distance must be a distance in 0..=2".into(),
            ));
        }
    }
    if a.fuse {
        return super::fuse::run(&a, &session, &matcher, &rank_opts);
    }

    let mut first_failure = exit::OK;
    let mut json = Vec::new();
    for path in &a.images {
        let result =
            gestalt_edge::capture::load_image(path, &session.settings.limits).and_then(|frame| {
                pipeline::predict(
                    &session.bundle,
                    &matcher,
                    &frame,
                    &session.settings.pipeline,
                    &rank_opts,
                )
            });
        match result {
            Ok(mut p) => {
                if a.explain {
                    pipeline::explain(&mut p, &gallery);
                }
                if a.json {
                    json.push(serde_json::to_value(&p).unwrap_or_default());
                } else {
                    out!("{}", report::prediction_table(&p));
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                if first_failure == exit::OK {
                    first_failure = exit::code(&e);
                }
                if a.json {
                    json.push(serde_json::json!({
                        "image": path.display().to_string(),
                        "error": e.to_string(),
                        "exit_code": exit::code(&e),
                    }));
                }
            }
        }
    }
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        );
    }
    Ok(first_failure)
}
