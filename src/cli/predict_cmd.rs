//! `gestalt-edge predict`: photos in, ranked syndromes out (table or JSON).

use std::io::Write;

use gestalt_edge::pipeline::{self, Prediction};
use gestalt_edge::rank::{Matcher, RankOptions};
use gestalt_edge::{Error, Result};

use super::args::PredictArgs;
use super::Analyser;

pub fn run(a: PredictArgs) -> Result<i32> {
    if a.top == 0 {
        return Err(Error::Usage("--top must be at least 1".into()));
    }
    if let Some(t) = a.same_patient_threshold {
        if !(t.is_finite() && (0.0..=2.0).contains(&t)) {
            return Err(Error::Usage(
                "--same-patient-threshold must be a distance in 0..=2".into(),
            ));
        }
    }
    let analyser = Analyser::new(&a.analyse)?;
    let gallery = super::read_gallery(&a.gallery, &a.analyse)?;
    pipeline::check_gallery(&analyser.bundle, &gallery)?;
    // one-shot: deriving the index costs more than it saves (30k images: built in ~0.8 s,
    // then ~28 ms per search against ~32 ms flat), so predict scans; `run` indexes
    let matcher = Matcher::flat(&gallery);
    let rank_opts = RankOptions {
        top: a.top,
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
        return super::fuse_cmd::run(&a, &analyser, &matcher, &rank_opts);
    }

    let mut exit = 0;
    let mut json = Vec::new();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for path in &a.images {
        let result = gestalt_edge::capture::load_image(path, &analyser.limits).and_then(|frame| {
            pipeline::predict(
                &analyser.bundle,
                &matcher,
                &frame,
                &analyser.pipeline,
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
                    let _ = write!(out, "{}", table(&p));
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                if exit == 0 {
                    exit = e.exit_code();
                }
                if a.json {
                    json.push(serde_json::json!({
                        "image": path.display().to_string(),
                        "error": e.to_string(),
                        "exit_code": e.exit_code(),
                    }));
                }
            }
        }
    }
    if a.json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        );
    }
    Ok(exit)
}

fn opt(v: Option<u32>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// The human-readable result for one photo.
pub fn table(p: &Prediction) -> String {
    let mut s = String::new();
    let faces = if p.faces_found == 1 {
        "1 face".to_string()
    } else {
        format!("{} faces", p.faces_found)
    };
    s += &format!(
        "{}: {faces} found (analysed score {:.2}); model {} [bundle {}], gallery {}, {} images compared\n",
        p.image, p.face.score, p.model_version, p.bundle_id, p.gallery_version, p.images_compared
    );
    s += &format!(
        "  {:>2}  {:<32} {:>8} {:>9} {:>8} {:>11}  {}\n",
        "#",
        "syndrome",
        "OMIM",
        "distance",
        "gestalt",
        "ACMG PP4",
        "nearest gallery image (subject)"
    );
    for (i, h) in p.suggested_syndromes_list.iter().enumerate() {
        let pp4 = match (h.acmg_pp4.as_str(), h.acmg_pp4_support.as_str()) {
            ("", "Yes") => "none",
            ("", _) => "-",
            (level, _) => level,
        };
        s += &format!(
            "  {:>2}  {:<32} {:>8} {:>9.4} {:>8.4} {:>11}  {} ({})\n",
            i + 1,
            h.syndrome_name,
            opt(h.omim_id),
            h.distance,
            h.gestalt_score,
            pp4,
            h.image_id,
            h.subject_id
        );
    }
    s += &explanation_lines(p.explanation.as_deref());
    if !p.suggested_genes_list.is_empty() {
        let genes: Vec<String> = p
            .suggested_genes_list
            .iter()
            .map(|g| format!("{} ({:.4})", g.gene_name, g.distance))
            .collect();
        s += &format!("  genes: {}\n", genes.join(", "));
    }
    let t = &p.timings_ms;
    s += &format!(
        "  time: detect {:.0} ms, align {:.1} ms, embed {:.0} ms, rank {:.2} ms\n",
        t.detect_ms, t.align_ms, t.embed_ms, t.rank_ms
    );
    s += "  Decision support only: similarity to diagnosed cases, not a diagnosis.\n\n";
    s
}

/// The `--explain` lines: per syndrome, the mean distance per model and each view's.
pub fn explanation_lines(e: Option<&[gestalt_edge::rank::explain::Explanation]>) -> String {
    let mut s = String::new();
    for x in e.unwrap_or_default() {
        let models: Vec<String> = x
            .per_model
            .iter()
            .map(|m| format!("{} {:.4}", m.model, m.distance))
            .collect();
        let views: Vec<String> = x
            .per_view
            .iter()
            .map(|v| {
                format!(
                    "{}{}{} {:.4}",
                    v.model,
                    if v.flip { "/flip" } else { "" },
                    if v.gray { "/gray" } else { "" },
                    v.distance
                )
            })
            .collect();
        s += &format!(
            "  why {} ({}): {}; views: {}\n",
            x.syndrome_name,
            x.image_id,
            models.join(", "),
            views.join(", ")
        );
    }
    s
}
