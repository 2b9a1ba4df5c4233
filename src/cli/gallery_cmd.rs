//! `gestalt-edge gallery build | add | inspect`.

use std::path::{Path, PathBuf};

use gestalt_edge::gallery::{Case, Gallery, KeySpec, Storage};
use gestalt_edge::rank::pp4::{self, Pp4Thresholds};
use gestalt_edge::{pipeline, Error, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::args::{AddArgs, BuildArgs, InspectArgs, StorageArg};
use super::Analyser;

/// One row of a labels CSV.
struct Row {
    line: u64,
    image: String,
    case: Case,
}

/// PP4 thresholds per syndrome named in a labels CSV, with the line that gave them.
type Pp4ByLabel = std::collections::HashMap<String, (u64, Pp4Thresholds)>;

fn usage(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Usage(format!("{}: {msg}", path.display()))
}

fn read_labels(path: &Path) -> Result<(Vec<Row>, Pp4ByLabel)> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| usage(path, format!("cannot read the labels CSV: {e}")))?;
    let headers = reader
        .headers()
        .map_err(|e| usage(path, format!("cannot read the header: {e}")))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(image), Some(label)) = (col("image"), col("label")) else {
        return Err(usage(path, "the header must name the columns image and label (optional: subject, omim, gene, entrez, very_strong, strong, moderate, supporting)"));
    };
    let (subject, omim, gene, entrez) = (col("subject"), col("omim"), col("gene"), col("entrez"));
    let pp4_cols = pp4::columns(headers.iter());
    let mut thresholds = Pp4ByLabel::new();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| usage(path, format!("malformed CSV: {e}")))?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let field = |i: Option<usize>| {
            i.and_then(|i| record.get(i))
                .map(str::to_string)
                .filter(|s| !s.is_empty())
        };
        let number = |i: Option<usize>, what: &str| -> Result<Option<u32>> {
            field(i)
                .map(|s| {
                    s.parse::<u32>().map_err(|_| {
                        usage(
                            path,
                            format!("line {line}: {what} '{s}' is not a whole number"),
                        )
                    })
                })
                .transpose()
        };
        let img = field(Some(image))
            .ok_or_else(|| usage(path, format!("line {line}: empty image column")))?;
        let syndrome = field(Some(label))
            .ok_or_else(|| usage(path, format!("line {line}: empty label column")))?;
        let entrez_id = number(entrez, "entrez id")?;
        let genes = match field(gene) {
            Some(g) => vec![(g, entrez_id)],
            None if entrez_id.is_some() => {
                return Err(usage(
                    path,
                    format!("line {line}: an entrez id without a gene"),
                ))
            }
            None => vec![],
        };
        let t = pp4::from_row(&pp4_cols, |i| record.get(i))
            .map_err(|e| usage(path, format!("line {line}: {e}")))?;
        if let Some(t) = t {
            match thresholds.get(&syndrome) {
                Some((first, known)) if *known != t => {
                    return Err(usage(
                        path,
                        format!("line {line}: the PP4 thresholds of '{syndrome}' differ from those on line {first}"),
                    ))
                }
                Some(_) => {}
                None => {
                    thresholds.insert(syndrome.clone(), (line, t));
                }
            }
        }
        let case = Case {
            image_id: img.clone(),
            subject: field(subject),
            syndrome,
            omim: number(omim, "OMIM id")?,
            genes,
        };
        rows.push(Row {
            line,
            image: img,
            case,
        });
    }
    if rows.is_empty() {
        return Err(usage(path, "lists no photos"));
    }
    Ok((rows, thresholds))
}

fn storage(s: StorageArg) -> Storage {
    match s {
        StorageArg::F16 => Storage::F16,
        StorageArg::I8 => Storage::I8,
    }
}

fn key_specs(analyser: &Analyser) -> Vec<KeySpec> {
    analyser
        .bundle
        .keys()
        .into_iter()
        .map(|(key, width)| KeySpec { key, width })
        .collect()
}

pub fn build(a: BuildArgs) -> Result<i32> {
    let (rows, thresholds) = read_labels(&a.labels)?;
    let analyser = Analyser::new(&a.analyse)?;
    let mut gallery = Gallery::new(
        analyser.bundle.id.clone(),
        a.gallery_version.clone(),
        key_specs(&analyser),
        storage(a.storage),
    )?;
    let base = a.labels.parent().map(Path::to_path_buf).unwrap_or_default();
    let bar = ProgressBar::new(rows.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} photos, {elapsed} elapsed, {eta} left {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut skipped: Vec<(PathBuf, String)> = Vec::new();
    for row in &rows {
        let path = base.join(&row.image);
        bar.set_message(row.image.clone());
        match analyser.analyse(&path) {
            Ok(face) => {
                gallery
                    .add(&row.case, &face.embeddings)
                    .map_err(|e| match e {
                        Error::Usage(m) => usage(&a.labels, format!("line {}: {m}", row.line)),
                        other => other,
                    })?;
            }
            Err(e @ (Error::NoFace { .. } | Error::Image { .. })) => {
                skipped.push((path, e.to_string()))
            }
            Err(e) => return Err(e),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    for (_, why) in &skipped {
        eprintln!("skipped: {why}");
    }
    if gallery.is_empty() {
        return Err(Error::NoFace {
            path: a.labels.clone(),
            detail: format!(
                ": none of the {} listed photos has a usable face; no gallery written",
                rows.len()
            ),
        });
    }
    for (label, (_, t)) in &thresholds {
        // a syndrome all of whose photos were skipped is not in the gallery
        if gallery.syndromes().iter().any(|s| &s.name == label) {
            gallery.set_pp4(label, *t)?;
        }
    }
    gallery.write_atomic(&a.out)?;
    let s = gallery.summary();
    println!(
        "wrote {}: {} images, {} subjects, {} syndromes, {} genes ({} skipped); bundle {}, {} storage, {} bytes",
        a.out.display(),
        s.images,
        s.subjects,
        s.syndromes,
        s.genes,
        skipped.len(),
        s.bundle_id,
        s.storage,
        s.file_size_bytes
    );
    Ok(0)
}

pub fn add(a: AddArgs) -> Result<i32> {
    let mut gallery = super::read_gallery(&a.gallery, &a.analyse)?;
    let analyser = Analyser::new(&a.analyse)?;
    pipeline::check_gallery(&analyser.bundle, &gallery)?;
    let face = analyser.analyse(&a.image)?;
    let image_id = a.image_id.clone().unwrap_or_else(|| {
        a.image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| a.image.display().to_string())
    });
    let case = Case {
        image_id: image_id.clone(),
        subject: a.subject.clone(),
        syndrome: a.label.clone(),
        omim: a.omim,
        genes: a
            .gene
            .clone()
            .map(|g| vec![(g, a.entrez)])
            .unwrap_or_default(),
    };
    gallery.add(&case, &face.embeddings)?;
    gallery.set_revision(gallery.revision() + 1);
    gallery.write_atomic(&a.gallery)?;
    println!(
        "added {image_id} ({}) to {}: now {} images, revision {}",
        a.label,
        a.gallery.display(),
        gallery.len(),
        gallery.revision()
    );
    Ok(0)
}

pub fn inspect(a: InspectArgs) -> Result<i32> {
    let gallery = Gallery::read(&a.file)?;
    let s = gallery.summary();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
        return Ok(0);
    }
    println!("gallery:         {}", a.file.display());
    println!("format version:  {}", s.format_version);
    println!(
        "gallery version: {} (revision {})",
        s.gallery_version, s.revision
    );
    println!("bundle id:       {}", s.bundle_id);
    println!("storage:         {}", s.storage);
    println!("images:          {}", s.images);
    println!("subjects:        {}", s.subjects);
    println!("syndromes:       {}", s.syndromes);
    println!("genes:           {}", s.genes);
    let keys: Vec<String> = s
        .keys
        .iter()
        .map(|k| format!("{} ({})", k.key, k.width))
        .collect();
    println!("keys:            {}", keys.join(", "));
    println!("file size:       {} bytes", s.file_size_bytes);
    Ok(0)
}
