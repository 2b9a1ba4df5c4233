//! `gestalt-edge gallery build | add | inspect`.

use crate::cli::out::outln;
use std::path::{Path, PathBuf};

use gestalt_edge::gallery::labels::{self, read_labels};
use gestalt_edge::gallery::{Case, Gallery, KeySpec, Storage};
use gestalt_edge::{pipeline, Error, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::args::{AddArgs, BuildArgs, InspectArgs, StorageArg};
use crate::cli::resolve::{Session, Settings};

fn usage(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Usage(format!("{}: {msg}", path.display()))
}

fn storage(s: StorageArg) -> Storage {
    match s {
        StorageArg::F16 => Storage::F16,
        StorageArg::I8 => Storage::I8,
    }
}

fn key_specs(session: &Session) -> Vec<KeySpec> {
    session
        .bundle
        .keys()
        .into_iter()
        .map(|(key, width)| KeySpec { key, width })
        .collect()
}

/// `gallery build`: every labelled photo with a usable face into a new gallery file.
pub fn build(a: BuildArgs) -> Result<i32> {
    let rows = read_labels(&a.labels)?;
    let session = Settings::resolve(&a.analyse, None)?.load()?;
    let mut gallery = Gallery::new(
        session.bundle.id.clone(),
        a.gallery_version.clone(),
        key_specs(&session),
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
        match session.analyse(&path) {
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
    gallery.set_revision(a.revision);
    for (label, t) in labels::thresholds(&rows) {
        // a syndrome all of whose photos were skipped is not in the gallery
        if gallery.syndromes().iter().any(|s| s.name == label) {
            gallery.set_pp4(label, t)?;
        }
    }
    // the lock only around the write: the photos were analysed without it
    let lock = super::writer::lock(&a.out, &a.lock)?;
    lock.write(&gallery)?;
    drop(lock);
    let s = gallery.summary();
    outln!(
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

/// `gallery add`: one diagnosed photo into an existing gallery (rewritten atomically).
///
/// The photo is analysed first, without the lock (a read of the gallery then only checks it
/// fits the bundle, before the models load); the gallery is then read again, extended and
/// written under its write lock, so an edit another writer made meanwhile is kept.
pub fn add(a: AddArgs) -> Result<i32> {
    let settings = Settings::resolve(&a.analyse, None)?;
    let first = settings.read_gallery(&a.gallery)?;
    let session = settings.load()?;
    pipeline::check_gallery(&session.bundle, &first)?;
    drop(first);
    let face = session.analyse(&a.image)?;
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
    let lock = super::writer::lock(&a.gallery, &a.lock)?;
    let mut gallery = session.settings.read_gallery(&a.gallery)?;
    pipeline::check_gallery(&session.bundle, &gallery)?;
    gallery.bump_revision()?;
    gallery.add(&case, &face.embeddings)?;
    lock.write(&gallery)?;
    drop(lock);
    outln!(
        "added {image_id} ({}) to {}: now {} images, revision {}",
        a.label,
        a.gallery.display(),
        gallery.len(),
        gallery.revision()
    );
    Ok(0)
}

/// `gallery inspect`: the gallery's summary, as a table or JSON.
pub fn inspect(a: InspectArgs) -> Result<i32> {
    let gallery = Gallery::read(&a.file)?;
    let s = gallery.summary();
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
        return Ok(0);
    }
    outln!("gallery:         {}", a.file.display());
    outln!("format version:  {}", s.format_version);
    outln!(
        "gallery version: {} (revision {})",
        crate::cli::report::clean(&s.gallery_version),
        s.revision
    );
    outln!("bundle id:       {}", s.bundle_id);
    outln!("storage:         {}", s.storage);
    outln!("images:          {}", s.images);
    outln!("subjects:        {}", s.subjects);
    outln!("syndromes:       {}", s.syndromes);
    outln!("genes:           {}", s.genes);
    let keys: Vec<String> = s
        .keys
        .iter()
        .map(|k| format!("{} ({})", k.key, k.width))
        .collect();
    outln!("keys:            {}", keys.join(", "));
    outln!("file size:       {} bytes", s.file_size_bytes);
    Ok(0)
}
