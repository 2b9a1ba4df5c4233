//! Human output: the tables and notes the commands print. Plain functions from library
//! results to text (or lines on stderr); JSON is printed where the command is.

use gestalt_edge::bundle::Bundle;
use gestalt_edge::engine::cache::CacheStatus;
use gestalt_edge::eval::EvalReport;
use gestalt_edge::pipeline::Prediction;
use gestalt_edge::Error;

/// Warns on stderr about model-cache entries (and the native kernel-choice file) that were
/// damaged or could not be written.
pub fn cache_warnings(bundle: &Bundle) {
    for r in bundle.cache_reports() {
        match &r.status {
            CacheStatus::NotWritten(why) => eprintln!(
                "warning: model cache not used for {}: {why}",
                r.model.display()
            ),
            CacheStatus::Rebuilt => eprintln!(
                "warning: model cache entry for {} was damaged or stale; rebuilt",
                r.model.display()
            ),
            _ => {}
        }
    }
    // the cache folder also keeps the native engine's measured kernel choices
    if let Some(why) = bundle.kernel_report().and_then(|r| r.rebuilt.as_ref()) {
        eprintln!("warning: model cache not used for the native kernel choices: {why}");
    }
}

/// The model cache over a whole load: "off" (no cache folder), "cold" (no model came from the
/// cache), "warm" (every model did) or "partial".
pub fn cache_state(bundle: &Bundle) -> &'static str {
    let r = bundle.cache_reports();
    let hits = r.iter().filter(|r| r.status.is_hit()).count();
    if r.iter().all(|r| r.status == CacheStatus::Disabled) {
        "off"
    } else if hits == r.len() {
        "warm"
    } else if hits == 0 {
        "cold"
    } else {
        "partial"
    }
}

/// `text` safe for a terminal: control characters (escape sequences among them) and the
/// bidirectional overrides, embeddings, isolates and marks (U+202A-E, U+2066-9, U+200E-F,
/// U+061C), which could make a table show another name than the gallery holds, are written
/// escaped (`\u{1b}`, `\u{202e}`); everything else as it is.
pub fn clean(text: &str) -> std::borrow::Cow<'_, str> {
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
    };
    if !text.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// An error as `run` prints it: in full with `verbose`, else without anything that can name
/// a patient (a photo's path or file name; clinics name files after patients). Errors about
/// the bundle, the gallery or the device name only the deployment's files and stay whole.
pub fn error_brief(e: &Error, verbose: bool) -> String {
    if verbose {
        return e.to_string();
    }
    match e {
        Error::NoFace { .. } => "no face found (--verbose names the photo)".into(),
        Error::Image { .. } => "the photo could not be used (--verbose says why)".into(),
        Error::Io { source, .. } => format!("{source} (--verbose names the file)"),
        Error::Usage(_) => "the input was refused (--verbose says why)".into(),
        other => other.to_string(),
    }
}

fn opt(v: Option<u32>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// The syndrome rows with their PP4 level (`-`: no thresholds; `none`: none reached).
fn syndrome_rows(list: &[gestalt_edge::rank::SyndromeHit]) -> String {
    let mut s = format!(
        "  {:>2}  {:<32} {:>8} {:>9} {:>8} {:>11}  {}\n",
        "#",
        "syndrome",
        "OMIM",
        "distance",
        "gestalt",
        "ACMG PP4",
        "nearest gallery image (subject)"
    );
    for (i, h) in list.iter().enumerate() {
        let pp4 = match (h.acmg_pp4.as_str(), h.acmg_pp4_support.as_str()) {
            ("", "Yes") => "none",
            ("", _) => "-",
            (level, _) => level,
        };
        s += &format!(
            "  {:>2}  {:<32} {:>8} {:>9.4} {:>8.4} {:>11}  {} ({})\n",
            i + 1,
            clean(&h.syndrome_name),
            opt(h.omim_id),
            h.distance,
            h.gestalt_score,
            pp4,
            clean(&h.image_id),
            clean(&h.subject_id)
        );
    }
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
            clean(&x.syndrome_name),
            clean(&x.image_id),
            models.join(", "),
            views.join(", ")
        );
    }
    s
}

/// The table `predict --fuse` prints: one result for several photos of one patient.
pub fn fused_table(p: &gestalt_edge::pipeline::FusedPrediction) -> String {
    let mut s = format!(
        "{} photos fused ({} skipped); model {} [bundle {}], gallery {}, {} images compared\n",
        p.images.len(),
        p.skipped.len(),
        clean(&p.model_version),
        p.bundle_id,
        clean(&p.gallery_version),
        p.images_compared
    );
    for im in &p.images {
        s += &format!(
            "  photo: {} (face score {:.2})\n",
            clean(&im.image),
            im.face.score
        );
    }
    s += &syndrome_rows(&p.suggested_syndromes_list);
    if p.images.len() > 1 {
        s += "  ACMG PP4: withheld (thresholds are calibrated on single photos)\n";
    }
    s += &explanation_lines(p.explanation.as_deref());
    s += "  Decision support only: similarity to diagnosed cases, not a diagnosis.\n\n";
    s
}

/// The table `predict` and `run` print for one photo.
pub fn prediction_table(p: &Prediction) -> String {
    let mut s = String::new();
    let faces = if p.faces_found == 1 {
        "1 face".to_string()
    } else {
        format!("{} faces", p.faces_found)
    };
    s += &format!(
        "{}: {faces} found (analysed score {:.2}); model {} [bundle {}], gallery {}, {} images compared\n",
        clean(&p.image),
        p.face.score,
        clean(&p.model_version),
        p.bundle_id,
        clean(&p.gallery_version),
        p.images_compared
    );
    s += &syndrome_rows(&p.suggested_syndromes_list);
    s += &explanation_lines(p.explanation.as_deref());
    if !p.suggested_genes_list.is_empty() {
        let genes: Vec<String> = p
            .suggested_genes_list
            .iter()
            .map(|g| format!("{} ({:.4})", clean(&g.gene_name), g.distance))
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

/// The table of an evaluation (`eval` without `--json`).
pub fn eval_table(r: &EvalReport, title: &str) -> String {
    let mut s = format!("{title}\n");
    s += &format!(
        "{:<10} {:>9} {:>7} {:>10} {:>7} {:>7} {:>7} {:>7}\n",
        "test set", "gallery", "test", "syndromes", "top-1", "top-5", "top-10", "top-30"
    );
    let row = |name: String, g: String, t: String, syn: String, k: &[f64; 4]| {
        format!(
            "{name:<10} {g:>9} {t:>7} {syn:>10} {:>7.2} {:>7.2} {:>7.2} {:>7.2}\n",
            k[0], k[1], k[2], k[3]
        )
    };
    for sp in &r.splits {
        let name = sp.split.map_or("all".to_string(), |x| format!("split {x}"));
        s += &row(
            name,
            sp.gallery_images.to_string(),
            sp.test_images.to_string(),
            sp.test_syndromes.to_string(),
            &sp.top_k,
        );
    }
    if r.splits.len() > 1 {
        s += &row(
            "mean".into(),
            format!("{:.1}", r.gallery_images),
            format!("{:.1}", r.test_images),
            String::new(),
            &r.top_k,
        );
    }
    let missing: usize = r
        .splits
        .iter()
        .map(|x| x.test_syndromes_not_in_gallery)
        .sum();
    if missing > 0 {
        s += &format!("note: {missing} test syndrome(s) have no gallery image (always a miss)\n");
    }
    s += "top-k mean accuracy in percent (per syndrome, then the mean over syndromes)\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_cannot_move_the_cursor_or_reverse_the_table() {
        assert_eq!(clean("Kabuki syndrome 1"), "Kabuki syndrome 1");
        assert_eq!(clean("Ångström-Syndrom é"), "Ångström-Syndrom é");
        assert_eq!(clean("x\u{1b}[2Jy"), "x\\u{1b}[2Jy");
        assert_eq!(clean("a\nb\tc\r"), "a\\nb\\tc\\r");
        assert_eq!(clean("\u{202e}evil\u{2066}"), "\\u{202e}evil\\u{2066}");
        assert_eq!(clean("\u{9b}31m"), "\\u{9b}31m");
        for c in [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{2067}', '\u{2068}', '\u{2069}',
            '\u{200e}', '\u{200f}', '\u{61c}',
        ] {
            let s = clean(&format!("a{c}b")).into_owned();
            assert!(!s.contains(c), "{c:?} left in {s:?}");
        }
    }
}
