//! `gestalt-edge eval`: the paper's top-k mean accuracy from reference encodings or from
//! photos (encoded with a bundle), and identity verification on photo pairs (`--pairs`).
//!
//! Nothing is printed or written until the whole evaluation has succeeded.

use crate::cli::out::{out, outln};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;

use gestalt_edge::bundle::input::resize_bilinear;
use gestalt_edge::embed::Embeddings;
use gestalt_edge::eval::photos::{Found, PhotoIndex};
use gestalt_edge::eval::{plot, protocol, verify, EvalOptions, EvalReport, PAPER_KS};
use gestalt_edge::gallery::Storage;
use gestalt_edge::gmdb::reference::{self, EncodingTable, ImageList, SyndromeTable};
use gestalt_edge::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::args::{EvalArgs, StorageArg};
use crate::cli::report;
use crate::cli::resolve::{Session, Settings};

fn bar(len: usize, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len as u64);
    let template = format!("{{bar:30}} {{pos}}/{{len}} {what}, {{elapsed}} elapsed, {{eta}} left");
    b.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b
}

/// Embeds one photo: the full pipeline, or (aligned crops) the embedders only.
fn embed_photo(an: &Session, path: &Path, aligned: bool) -> Result<Embeddings> {
    if !aligned {
        return Ok(an.analyse(path)?.embeddings);
    }
    let frame = gestalt_edge::capture::load_image(path, &an.settings.limits)?;
    let spec = an.bundle.manifest.embedders.first().map(|e| &e.input);
    let (w, h) = spec.map_or((112, 112), |s| (s.width, s.height));
    let (fw, fh) = frame.rgb.dimensions();
    let crop = if (fw, fh) == (w, h) {
        frame.rgb
    } else {
        resize_bilinear(
            &frame.rgb,
            w,
            h,
            f64::from(w) / f64::from(fw),
            f64::from(h) / f64::from(fh),
        )
    };
    an.bundle.embed(&crop)
}

/// Every listed image in list order, first listing wins: (list, line, image id).
fn listed<'a>(lists: &[&'a ImageList]) -> Vec<(&'a ImageList, u64, &'a str)> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for l in lists {
        for r in &l.rows {
            if seen.insert(r.image_id.as_str()) {
                out.push((*l, r.line, r.image_id.as_str()));
            }
        }
    }
    out
}

fn from_encodings(path: &Path, lists: &[&ImageList]) -> Result<HashMap<String, Embeddings>> {
    let table = EncodingTable::read(path)?;
    let mut out = HashMap::new();
    for (list, line, id) in listed(lists) {
        let image = table.find(id)?.ok_or_else(|| {
            Error::gallery(
                &list.path,
                format!(
                    "line {line}: image {id} is not in the encodings file {}",
                    path.display()
                ),
            )
        })?;
        out.insert(id.to_string(), image.embeddings.clone());
    }
    Ok(out)
}

fn from_photos(
    a: &EvalArgs,
    bundle: &Path,
    lists: &[&ImageList],
) -> Result<HashMap<String, Embeddings>> {
    let dir = a.photos.as_deref().ok_or_else(|| {
        Error::Usage("--bundle needs --photos DIR (the folder of the listed photos)".into())
    })?;
    let index = PhotoIndex::new(dir)?;
    let mut jobs = Vec::new();
    for (list, line, id) in listed(lists) {
        let at = format!("listed on line {line} of {}", list.path.display());
        let path = match index.find(id) {
            Found::One(p) => p,
            Found::None => {
                return Err(Error::image(
                    dir.join(id),
                    format!("no photo for image {id} ({at})"),
                ))
            }
            Found::Ambiguous => {
                return Err(Error::image(
                    dir.join(id),
                    format!("several photos in the folder match image {id} ({at})"),
                ))
            }
        };
        jobs.push((id.to_string(), path));
    }
    let an = Settings::defaults(bundle, a.threads)?.load()?;
    let pb = bar(jobs.len(), "photos encoded");
    let mut out = HashMap::new();
    for (id, path) in jobs {
        pb.set_message(id.clone());
        let emb = embed_photo(&an, &path, a.aligned)?;
        out.insert(id, emb);
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(out)
}

fn pct_map(v: &[f64; 4]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (k, x) in PAPER_KS.iter().zip(v) {
        m.insert(k.to_string(), serde_json::json!(round2(*x)));
    }
    serde_json::Value::Object(m)
}

fn round2(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

fn size(x: f64) -> serde_json::Value {
    if x.fract() == 0.0 {
        serde_json::json!(x as u64)
    } else {
        serde_json::json!(x)
    }
}

fn report_json(r: &EvalReport, source: &str) -> serde_json::Value {
    let splits: Vec<serde_json::Value> = r
        .splits
        .iter()
        .map(|s| {
            serde_json::json!({
                "split": s.split,
                "gallery_images": s.gallery_images,
                "gallery_syndromes": s.gallery_syndromes,
                "test_images": s.test_images,
                "test_queries": s.test_queries,
                "test_syndromes": s.test_syndromes,
                "test_syndromes_not_in_gallery": s.test_syndromes_not_in_gallery,
                "top_k_mean_accuracy": pct_map(&s.top_k),
            })
        })
        .collect();
    serde_json::json!({
        "source": source,
        "top_k_mean_accuracy": pct_map(&r.top_k),
        "gallery_images": size(r.gallery_images),
        "test_images": size(r.test_images),
        "splits": splits,
        "curve_k_1_to_30": r.curve.iter().map(|x| round2(*x)).collect::<Vec<_>>(),
    })
}

fn usage(msg: &str) -> Error {
    Error::Usage(msg.into())
}

/// The paper's protocol (or verification with `--pairs`); prints a table or JSON.
pub fn run(a: EvalArgs) -> Result<i32> {
    if let Some(pairs) = &a.pairs {
        return run_verify(&a, pairs);
    }
    let (Some(test), Some(synd)) = (&a.test_images, &a.syndromes) else {
        return Err(usage("eval needs --gallery-images, --test-images and --syndromes (or --pairs for verification)"));
    };
    if a.gallery_images.is_empty() {
        return Err(usage("eval needs at least one --gallery-images CSV"));
    }
    match (&a.encodings, &a.bundle) {
        (Some(_), Some(_)) => {
            return Err(usage(
                "give --encodings or --bundle with --photos, not both",
            ))
        }
        (None, None) => {
            return Err(usage(
                "give --encodings FILE, or --bundle MANIFEST with --photos DIR",
            ))
        }
        _ => {}
    }
    let galleries = a
        .gallery_images
        .iter()
        .map(|p| ImageList::read(p))
        .collect::<Result<Vec<_>>>()?;
    let test_list = ImageList::read(test)?;
    let syndromes = SyndromeTable::read(synd)?;
    protocol::check_labels(&galleries, &test_list, &syndromes)?;
    let mut lists: Vec<&ImageList> = galleries.iter().collect();
    lists.push(&test_list);
    let (embeddings, source) = match (&a.encodings, &a.bundle) {
        (Some(enc), _) => (from_encodings(enc, &lists)?, "encodings"),
        (None, Some(b)) => (from_photos(&a, b, &lists)?, "photos"),
        (None, None) => {
            return Err(usage(
                "give --encodings FILE, or --bundle MANIFEST with --photos DIR",
            ))
        }
    };
    let opts = EvalOptions {
        storage: match a.storage {
            StorageArg::F16 => Storage::F16,
            StorageArg::I8 => Storage::I8,
        },
        group_by_subject: a.group_by_subject,
    };
    let pb = bar(0, "test images ranked");
    let report = protocol::evaluate(
        &galleries,
        &test_list,
        &syndromes,
        &embeddings,
        &opts,
        &mut |done, total| {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        },
    )?;
    pb.finish_and_clear();

    // Files first (atomic), then stdout: a failure leaves no partial output.
    if let Some(path) = &a.plot {
        let others: Vec<Vec<f64>> = if report.splits.len() > 1 {
            report.splits.iter().map(|s| s.curve.clone()).collect()
        } else {
            Vec::new()
        };
        plot::write_png(path, &report.curve, &others)?;
    }
    if let Some(path) = &a.save_encodings {
        let mut all: Vec<(String, Embeddings)> = listed(&lists)
            .into_iter()
            .filter_map(|(_, _, id)| Some((id.to_string(), embeddings.get(id)?.clone())))
            .collect();
        all.sort_by(|x, y| x.0.cmp(&y.0));
        reference::write_encodings(path, &all)?;
    }
    if a.json {
        let mut v = report_json(&report, source);
        v["group_by_subject"] = serde_json::json!(a.group_by_subject);
        outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        let names: Vec<String> = a
            .gallery_images
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let title = format!(
            "gallery: {}; test: {}{}; from {source}",
            names.join(" + "),
            test.display(),
            if a.group_by_subject {
                " (one fused query per patient)"
            } else {
                ""
            }
        );
        out!("{}", report::eval_table(&report, &title));
    }
    Ok(0)
}

fn run_verify(a: &EvalArgs, pairs_path: &Path) -> Result<i32> {
    let bundle = a
        .bundle
        .as_deref()
        .ok_or_else(|| usage("--pairs needs --bundle"))?;
    let pairs = verify::read_pairs(pairs_path)?;
    let dir = match &a.photos {
        Some(d) => d.clone(),
        None => pairs_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    let mut names: Vec<&str> = pairs
        .iter()
        .flat_map(|p| [p.a.as_str(), p.b.as_str()])
        .collect();
    names.sort();
    names.dedup();
    let an = Settings::defaults(bundle, a.threads)?.load()?;
    let pb = bar(names.len(), "photos encoded");
    let mut cache: HashMap<String, Embeddings> = HashMap::new();
    for n in names {
        let emb = embed_photo(&an, &dir.join(n), a.aligned)?;
        cache.insert(n.to_string(), emb);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let lookup = |n: &str| {
        cache
            .get(n)
            .cloned()
            .ok_or_else(|| Error::image(dir.join(n), "photo was not encoded"))
    };
    let r = verify::verify(pairs_path, &pairs, &lookup)?;
    if let Some(path) = &a.save_encodings {
        let mut all: Vec<(String, Embeddings)> = cache.into_iter().collect();
        all.sort_by(|x, y| x.0.cmp(&y.0));
        reference::write_encodings(path, &all)?;
    }
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
        return Ok(0);
    }
    outln!(
        "verification on {} pairs ({} same person, {} different), bundle {}",
        r.pairs,
        r.positives,
        r.negatives,
        an.bundle.id
    );
    outln!("ROC AUC:                   {:.4}", r.roc_auc);
    outln!(
        "accuracy at best threshold: {:.2} % (similarity >= {:.4} means same person)",
        r.accuracy_at_best_threshold,
        r.best_threshold
    );
    outln!(
        "{:<28} {:<28} {:>5} {:>10}",
        "image_a",
        "image_b",
        "same",
        "similarity"
    );
    for s in &r.scores {
        outln!(
            "{:<28} {:<28} {:>5} {:>10.4}",
            s.image_a,
            s.image_b,
            s.same as u8,
            s.similarity
        );
    }
    Ok(0)
}
