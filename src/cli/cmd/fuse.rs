//! `gestalt-edge predict --fuse`: several photos of one patient as one query.
//!
//! Each photo is analysed as `predict` analyses one; `gestalt_edge::pipeline::predict_fused`
//! fuses and ranks them. Prints one table or one JSON object; warns on stderr when the
//! photos may not show one person. Exit 0 when at least one photo was fused, else the code
//! of the first failure.

use gestalt_edge::pipeline;
use gestalt_edge::rank::{Matcher, RankOptions};
use gestalt_edge::Result;

use crate::cli::args::PredictArgs;
use crate::cli::exit;
use crate::cli::out::{out, outln};
use crate::cli::report;
use crate::cli::resolve::Session;

pub fn run(
    a: &PredictArgs,
    session: &Session,
    matcher: &Matcher<'_>,
    rank_opts: &RankOptions,
) -> Result<i32> {
    let mut photos = Vec::new();
    let mut skipped = Vec::new();
    let mut first_failure = None;
    for path in &a.images {
        let image = path.display().to_string();
        match session.analyse(path) {
            Ok(face) => photos.push((image, face)),
            Err(e) => {
                eprintln!("skipped: {e}");
                skipped.push(pipeline::SkippedPhoto {
                    image,
                    error: e.to_string(),
                    exit_code: exit::code(&e),
                });
                first_failure.get_or_insert(e);
            }
        }
    }
    if photos.is_empty() {
        if let Some(e) = first_failure {
            eprintln!("error: no photo could be fused; the first failure: {e}");
            return Ok(exit::code(&e));
        }
    }
    let threshold = a
        .consistency_distance
        .unwrap_or(gestalt_edge::fuse::DEFAULT_CONSISTENCY_DISTANCE);
    let mut p = pipeline::predict_fused(
        &session.bundle,
        matcher,
        photos,
        skipped,
        rank_opts,
        threshold,
    )?;
    if !p.consistency.consistent {
        eprintln!(
            "warning: these photos may not show one person (largest distance between two of them {:.3}, above {:.3}); check that they belong to the same patient",
            p.consistency.max_distance, p.consistency.threshold
        );
    }
    if a.explain {
        pipeline::explain_fused(&mut p, matcher.gallery());
    }
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&p).unwrap_or_default());
    } else {
        out!("{}", report::fused_table(&p));
    }
    Ok(0)
}
