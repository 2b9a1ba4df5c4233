//! `gestalt-edge gallery remove | relabel | list`: a clinic corrects its gallery (consent
//! withdrawn, diagnosis revised) and sees who is in it. The edits are
//! `gestalt_edge::gallery::curate`; this file parses flags, writes the file atomically with
//! the revision one higher, and says what changed.

use crate::cli::out::outln;
use std::path::PathBuf;

use gestalt_edge::gallery::curate::Removed;
use gestalt_edge::gallery::lock::WriteLock;
use gestalt_edge::gallery::Gallery;
use gestalt_edge::{Error, Result};

use crate::cli::args::{ListArgs, RelabelArgs, RemoveArgs};
use crate::cli::report;

/// Writes the edited gallery with the revision one higher under its write lock, and
/// succeeds only when no temporary copy of the earlier content is left beside it; a signature
/// beside it no longer matches, which the operator is told.
fn save(g: &mut Gallery, lock: &WriteLock) -> Result<()> {
    g.bump_revision()?;
    lock.write(g)?;
    lock.check_no_copies_left()?;
    let sig = PathBuf::from(format!("{}.sig", lock.path().display()));
    if sig.exists() {
        eprintln!(
            "note: {} was made for the previous content and no longer matches; sign the gallery again (gestalt-edge sign) before deploying it",
            sig.display()
        );
    }
    Ok(())
}

fn describe(r: &Removed) -> String {
    let mut s = format!("{} image{}", r.images, if r.images == 1 { "" } else { "s" });
    if r.subjects > 0 {
        s += &format!(", {} subject(s)", r.subjects);
    }
    if !r.syndromes.is_empty() {
        s += &format!(
            ", syndrome(s) left without images: {}",
            r.syndromes.join(", ")
        );
    }
    s
}

pub fn remove(a: RemoveArgs) -> Result<i32> {
    let lock = super::writer::lock(&a.gallery, &a.lock)?;
    let mut g = Gallery::read(&a.gallery)?;
    let removed = match (&a.subject, &a.image) {
        (Some(s), None) => g.remove_subject(s)?,
        (None, Some(i)) => g.remove_image(i)?,
        _ => return Err(Error::Usage("give --subject or --image".into())),
    };
    save(&mut g, &lock)?;
    drop(lock);
    outln!(
        "removed {} from {}: now {} images, {} subjects, revision {}",
        describe(&removed),
        a.gallery.display(),
        g.len(),
        g.subjects().len(),
        g.revision()
    );
    Ok(0)
}

pub fn relabel(a: RelabelArgs) -> Result<i32> {
    let lock = super::writer::lock(&a.gallery, &a.lock)?;
    let mut g = Gallery::read(&a.gallery)?;
    let gene = a.gene.as_deref().map(|n| (n, a.entrez));
    let removed = g.relabel(&a.subject, &a.label, a.omim, gene)?;
    save(&mut g, &lock)?;
    drop(lock);
    let omim = g
        .syndromes()
        .iter()
        .find(|s| s.name == a.label)
        .and_then(|s| s.omim)
        .map_or_else(|| "no OMIM".to_string(), |o| format!("OMIM {o}"));
    let mut line = format!(
        "relabelled subject {} as {} ({omim}) in {}: revision {}",
        a.subject,
        a.label,
        a.gallery.display(),
        g.revision()
    );
    if !removed.syndromes.is_empty() {
        line += &format!(
            "; left without images and removed: {}",
            removed.syndromes.join(", ")
        );
    }
    outln!("{line}");
    Ok(0)
}

pub fn list(a: ListArgs) -> Result<i32> {
    let g = Gallery::read(&a.gallery)?;
    let subjects = g.subject_summaries();
    if a.json {
        let v = serde_json::json!({
            "gallery_version": g.gallery_version(),
            "revision": g.revision(),
            "images": g.len(),
            "subjects": subjects,
        });
        outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
    outln!("{:<24} {:>6}  labels (OMIM)", "subject", "images");
    for s in &subjects {
        let labels: Vec<String> = s
            .labels
            .iter()
            .zip(&s.omim_ids)
            .map(|(l, o)| match o {
                Some(o) => format!("{} ({o})", report::clean(l)),
                None => report::clean(l).into_owned(),
            })
            .collect();
        outln!(
            "{:<24} {:>6}  {}",
            report::clean(&s.subject_id),
            s.images,
            labels.join("; ")
        );
    }
    outln!(
        "{} subjects, {} images, revision {}",
        subjects.len(),
        g.len(),
        g.revision()
    );
    Ok(0)
}
