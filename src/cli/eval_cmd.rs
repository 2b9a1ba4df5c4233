//! `gestalt-edge eval`: the paper's top-k mean accuracy from reference encodings or from
//! photos (encoded with a bundle), and identity verification on photo pairs (`--pairs`).
//!
//! Nothing is printed or written until the whole evaluation has succeeded.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use gestalt_edge::bundle::input::resize_bilinear;
use gestalt_edge::embed::Embeddings;
use gestalt_edge::eval::reference::{self, id_prefix, EncodingTable, ImageList, SyndromeTable};
use gestalt_edge::eval::{plot, protocol, verify, EvalOptions, EvalReport, PAPER_KS};
use gestalt_edge::gallery::Storage;
use gestalt_edge::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::args::{AnalyseArgs, StorageArg};
use super::Analyser;

/// Arguments of `eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Reference encodings CSV (img_name;model;flip;gray;class_conf;representations).
    #[arg(long, value_name = "FILE", conflicts_with = "pairs")]
    pub encodings: Option<PathBuf>,
    /// Gallery image list `image_id,subject,label[,split]`. Repeatable: pass the frequent
    /// gallery next to the rare one (which has splits) for the unified setting.
    #[arg(long, value_name = "CSV", conflicts_with = "pairs")]
    pub gallery_images: Vec<PathBuf>,
    /// Test image list `image_id,subject,label[,split]`. With splits, each split is
    /// evaluated on its own and the results averaged (the rare setting).
    #[arg(long, value_name = "CSV", conflicts_with = "pairs")]
    pub test_images: Option<PathBuf>,
    /// Syndromes TSV: syndrome_id, syndrome_name, OMIM.
    #[arg(long, value_name = "TSV", conflicts_with = "pairs")]
    pub syndromes: Option<PathBuf>,
    /// Encode photos with this bundle instead of reading --encodings.
    #[arg(long, value_name = "MANIFEST")]
    pub bundle: Option<PathBuf>,
    /// Folder of the photos: `ID.jpg`/`ID.png` or `ID_anything.ext` per image id (with
    /// --pairs: the folder the pair names are relative to; default: the pairs file's).
    #[arg(long, value_name = "DIR")]
    pub photos: Option<PathBuf>,
    /// The photos are already aligned face crops (as the reference's gmdb_align): embed
    /// them directly, resized to the embedder input, without detection.
    #[arg(long)]
    pub aligned: bool,
    /// Also write the photos' embeddings as a reference encodings CSV (reusable with
    /// --encodings).
    #[arg(long, value_name = "FILE", requires = "bundle")]
    pub save_encodings: Option<PathBuf>,
    /// Identity verification: pairs file `image_a,image_b,same` (needs --bundle).
    #[arg(long, value_name = "CSV", requires = "bundle")]
    pub pairs: Option<PathBuf>,
    /// Storage of the in-memory galleries (as the device stores them).
    #[arg(long, value_enum, default_value = "f16")]
    pub storage: StorageArg,
    /// Write a PNG plot of the top-k curves (k = 1..30).
    #[arg(long, value_name = "FILE.png", conflicts_with = "pairs")]
    pub plot: Option<PathBuf>,
    /// Worker threads for the embedding passes [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Patient-grouped: fuse each test subject's images into one query (one outcome per
    /// patient), as the authors' multi-image evaluation.
    #[arg(long, conflicts_with = "pairs")]
    pub group_by_subject: bool,
}

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

/// The analysis settings `predict` would use by default for `bundle` (parsed through clap so
/// every default of [`AnalyseArgs`] applies), with `--threads` from the eval arguments.
fn analyser(a: &EvalArgs, bundle: &Path) -> Result<Analyser> {
    #[derive(clap::Parser)]
    struct Defaults {
        #[command(flatten)]
        analyse: AnalyseArgs,
    }
    let mut argv = vec![
        std::ffi::OsString::from("eval"),
        "--bundle".into(),
        bundle.as_os_str().to_os_string(),
    ];
    if let Some(t) = a.threads {
        argv.push("--threads".into());
        argv.push(t.to_string().into());
    }
    let d = <Defaults as clap::Parser>::try_parse_from(argv)
        .map_err(|e| Error::Usage(format!("cannot set up the analysis: {e}")))?;
    Analyser::new(&d.analyse)
}

/// Embeds one photo: the full pipeline, or (aligned crops) the embedders only.
fn embed_photo(an: &Analyser, path: &Path, aligned: bool) -> Result<Embeddings> {
    if !aligned {
        return Ok(an.analyse(path)?.embeddings);
    }
    let frame = gestalt_edge::capture::load_image(path, &an.limits)?;
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

/// Where the photo of an image id is: the file named exactly so, else the one file whose
/// stem is the id (`person_a_1.jpg`), else the one file whose name starts with `ID_` or
/// `ID.` (the reference's `1234_crop_square.jpg`).
struct PhotoIndex {
    by_name: HashMap<String, PathBuf>,
    /// `None` marks a stem or prefix shared by several files.
    by_stem: HashMap<String, Option<PathBuf>>,
    by_prefix: HashMap<String, Option<PathBuf>>,
}

impl PhotoIndex {
    fn new(dir: &Path) -> Result<PhotoIndex> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::image(dir, format!("cannot read the photo folder: {e}")))?;
        let mut names: Vec<(String, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .filter_map(|p| Some((p.file_name()?.to_string_lossy().into_owned(), p)))
            .collect();
        names.sort();
        let mut ix = PhotoIndex {
            by_name: HashMap::new(),
            by_stem: HashMap::new(),
            by_prefix: HashMap::new(),
        };
        let add = |m: &mut HashMap<String, Option<PathBuf>>, k: String, p: &PathBuf| {
            m.entry(k)
                .and_modify(|e| *e = None)
                .or_insert(Some(p.clone()));
        };
        for (n, p) in names {
            if let Some(stem) = p.file_stem() {
                add(&mut ix.by_stem, stem.to_string_lossy().into_owned(), &p);
            }
            add(&mut ix.by_prefix, id_prefix(&n).to_string(), &p);
            ix.by_name.insert(n, p);
        }
        Ok(ix)
    }

    /// `Ok(None)` when nothing matches, `Err(())` when the match is ambiguous.
    fn find(&self, id: &str) -> std::result::Result<Option<PathBuf>, ()> {
        if let Some(p) = self.by_name.get(id) {
            return Ok(Some(p.clone()));
        }
        for m in [&self.by_stem, &self.by_prefix] {
            match m.get(id) {
                Some(Some(p)) => return Ok(Some(p.clone())),
                Some(None) => return Err(()),
                None => {}
            }
        }
        Ok(None)
    }
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
            Ok(Some(p)) => p,
            Ok(None) => {
                return Err(Error::image(
                    dir.join(id),
                    format!("no photo for image {id} ({at})"),
                ))
            }
            Err(()) => {
                return Err(Error::image(
                    dir.join(id),
                    format!("several photos in the folder match image {id} ({at})"),
                ))
            }
        };
        jobs.push((id.to_string(), path));
    }
    let an = analyser(a, bundle)?;
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

fn report_table(r: &EvalReport, title: &str) -> String {
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

fn usage(msg: &str) -> Error {
    Error::Usage(msg.into())
}

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
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
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
        print!("{}", report_table(&report, &title));
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
    let an = analyser(a, bundle)?;
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
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
        return Ok(0);
    }
    println!(
        "verification on {} pairs ({} same person, {} different), bundle {}",
        r.pairs, r.positives, r.negatives, an.bundle.id
    );
    println!("ROC AUC:                   {:.4}", r.roc_auc);
    println!(
        "accuracy at best threshold: {:.2} % (similarity >= {:.4} means same person)",
        r.accuracy_at_best_threshold, r.best_threshold
    );
    println!(
        "{:<28} {:<28} {:>5} {:>10}",
        "image_a", "image_b", "same", "similarity"
    );
    for s in &r.scores {
        println!(
            "{:<28} {:<28} {:>5} {:>10.4}",
            s.image_a, s.image_b, s.same as u8, s.similarity
        );
    }
    Ok(0)
}
