//! `gestalt-edge predict --fuse`: several photos of one patient as one query.
//!
//! Each photo is analysed as `predict` analyses one; `gestalt_edge::pipeline::predict_fused`
//! fuses and ranks them. Prints one table or one JSON object; warns on stderr when the
//! photos may not show one person. Exit 0 when at least one photo was fused, else the code
//! of the first failure.

use std::io::Write;

use gestalt_edge::pipeline::{self, FusedPrediction};
use gestalt_edge::rank::{Matcher, RankOptions};
use gestalt_edge::Result;

use super::args::PredictArgs;
use super::Analyser;

pub fn run(
    a: &PredictArgs,
    analyser: &Analyser,
    matcher: &Matcher<'_>,
    rank_opts: &RankOptions,
) -> Result<i32> {
    let photos = a
        .images
        .iter()
        .map(|p| (p.display().to_string(), analyser.analyse(p)))
        .collect();
    let threshold = a
        .consistency_distance
        .unwrap_or(gestalt_edge::fuse::DEFAULT_CONSISTENCY_DISTANCE);
    let mut p =
        match pipeline::predict_fused(&analyser.bundle, matcher, photos, rank_opts, threshold) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: no photo could be fused; the first failure: {e}");
                return Ok(e.exit_code());
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
        let _ = write!(out, "{}", table(&p));
    }
    Ok(0)
}

/// The human-readable fused result.
fn table(p: &FusedPrediction) -> String {
    let mut s = format!(
        "{} photos fused ({} skipped); model {} [bundle {}], gallery {}, {} images compared\n",
        p.images.len(),
        p.skipped.len(),
        p.model_version,
        p.bundle_id,
        p.gallery_version,
        p.images_compared
    );
    for im in &p.images {
        s += &format!("  photo: {} (face score {:.2})\n", im.image, im.face.score);
    }
    s += &format!(
        "  {:>2}  {:<32} {:>8} {:>9} {:>8}  {}\n",
        "#", "syndrome", "OMIM", "distance", "gestalt", "nearest gallery image (subject)"
    );
    for (i, h) in p.suggested_syndromes_list.iter().enumerate() {
        s += &format!(
            "  {:>2}  {:<32} {:>8} {:>9.4} {:>8.4}  {} ({})\n",
            i + 1,
            h.syndrome_name,
            h.omim_id.map_or_else(|| "-".to_string(), |o| o.to_string()),
            h.distance,
            h.gestalt_score,
            h.image_id,
            h.subject_id
        );
    }
    if p.images.len() > 1 {
        s += "  ACMG PP4: withheld (thresholds are calibrated on single photos)\n";
    }
    s += &super::predict_cmd::explanation_lines(p.explanation.as_deref());
    s += "  Decision support only: similarity to diagnosed cases, not a diagnosis.\n\n";
    s
}
