//! `gestalt-edge predict --fuse`: several photos of one patient as one query.
//!
//! Each photo is analysed as `predict` analyses one; `gestalt_edge::pipeline::predict_fused`
//! fuses and ranks them. Prints one table or one JSON object; warns on stderr when the
//! photos may not show one person. Exit 0 when at least one photo was fused, else the code
//! of the first failure.

use std::io::Write;

use gestalt_edge::pipeline;
use gestalt_edge::rank::{Matcher, RankOptions};
use gestalt_edge::Result;

use crate::cli::args::PredictArgs;
use crate::cli::exit;
use crate::cli::report;
use crate::cli::resolve::Session;

pub fn run(
    a: &PredictArgs,
    session: &Session,
    matcher: &Matcher<'_>,
    rank_opts: &RankOptions,
) -> Result<i32> {
    let photos = a
        .images
        .iter()
        .map(|p| (p.display().to_string(), session.analyse(p)))
        .collect();
    let threshold = a
        .consistency_distance
        .unwrap_or(gestalt_edge::fuse::DEFAULT_CONSISTENCY_DISTANCE);
    let mut p =
        match pipeline::predict_fused(&session.bundle, matcher, photos, rank_opts, threshold) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: no photo could be fused; the first failure: {e}");
                return Ok(exit::code(&e));
            }
        };
    for s in &p.skipped {
        eprintln!("skipped: {}", s.error);
    }
    if !p.consistency.consistent {
        eprintln!(
            "warning: these photos may not show one person (largest distance between two of them {:.3}, above {:.3}); check that they belong to the same patient",
            p.consistency.max_distance, p.consistency.threshold
        );
    }
    if a.explain {
        pipeline::explain_fused(&mut p, matcher.gallery());
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if a.json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&p).unwrap_or_default()
        );
    } else {
        let _ = write!(out, "{}", report::fused_table(&p));
    }
    Ok(0)
}
