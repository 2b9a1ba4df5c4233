//! `gestalt-edge gallery import`: the reference's encodings CSV, image list and syndromes
//! TSV (what GMDB holders have) in, a gallery file out (written atomically).

use crate::cli::out::outln;
use gestalt_edge::bundle;
use gestalt_edge::gallery::{KeySpec, Storage};
use gestalt_edge::gmdb::import::{import, parse_mapping, ImportRequest};
use gestalt_edge::gmdb::reference::{EncodingTable, GeneTable, ImageList, SyndromeTable};
use gestalt_edge::{Error, Result};

use crate::cli::args::{ImportArgs, StorageArg};

/// Bundle id stored in a gallery imported without `--bundle` (`predict` refuses it).
const UNBOUND: &str = "unbound";

/// Imports the reference files into a gallery file.
pub fn run(a: ImportArgs) -> Result<i32> {
    let mapping = a
        .map
        .iter()
        .map(|m| parse_mapping(m).map_err(|e| Error::Usage(format!("--map: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    let (bundle_id, bundle_keys) = match &a.bundle {
        Some(path) => {
            let m = bundle::read_manifest(path)?;
            let keys: Vec<KeySpec> = gestalt_edge::embed::manifest_keys(&m)
                .into_iter()
                .map(|(key, width)| KeySpec { key, width })
                .collect();
            (bundle::bundle_id(&m), Some(keys))
        }
        None => (UNBOUND.to_string(), None),
    };
    let encodings = EncodingTable::read(&a.encodings)?;
    let images = ImageList::read(&a.images)?;
    if images.has_split && a.split.is_none() {
        return Err(Error::Usage(format!(
            "{} has a split column: choose the split to import with --split N",
            images.path.display()
        )));
    }
    let syndromes = SyndromeTable::read(&a.syndromes)?;
    let genes = a.genes.as_deref().map(GeneTable::read).transpose()?;
    let req = ImportRequest {
        encodings: &encodings,
        images: &images,
        syndromes: &syndromes,
        genes: genes.as_ref(),
        mapping: &mapping,
        bundle_id,
        bundle_keys,
        split: a.split,
        storage: match a.storage {
            StorageArg::F16 => Storage::F16,
            StorageArg::I8 => Storage::I8,
        },
        gallery_version: a.gallery_version.clone(),
    };
    let (gallery, report) = import(&req)?;
    let lock = super::writer::lock(&a.out, &a.lock)?;
    lock.write(&gallery)?;
    drop(lock);
    let s = gallery.summary();
    if a.json {
        let v = serde_json::json!({
            "gallery": a.out.display().to_string(),
            "summary": s,
            "import": report,
        });
        outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
    for m in &report.ignored_models {
        eprintln!("note: reference model {m} is not mapped to an embedder of the bundle; left out");
    }
    if !report.ignored_keys.is_empty() {
        eprintln!(
            "note: views the bundle does not compute were left out: {}",
            report.ignored_keys.join(", ")
        );
    }
    for r in &report.renamed_syndromes {
        eprintln!("note: syndrome name shared by several ids, stored as '{r}'");
    }
    outln!(
        "wrote {}: {} images, {} subjects, {} syndromes, {} genes; {} keys per image; bundle {}, {} storage, {} bytes",
        a.out.display(),
        s.images,
        s.subjects,
        s.syndromes,
        s.genes,
        report.keys,
        s.bundle_id,
        s.storage,
        s.file_size_bytes
    );
    if a.bundle.is_none() {
        eprintln!("note: imported without --bundle: `predict` will refuse this gallery until it is imported with the bundle it was made for");
    }
    Ok(0)
}
