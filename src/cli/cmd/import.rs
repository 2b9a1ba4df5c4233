//! `gestalt-edge gallery import`: the reference's encodings CSV, image list and syndromes
//! TSV (what GMDB holders have) in, a gallery file out (written atomically).

use std::path::PathBuf;

use gestalt_edge::bundle;
use gestalt_edge::embed::Key;
use gestalt_edge::gmdb::reference::{EncodingTable, GeneTable, ImageList, SyndromeTable};
use gestalt_edge::gmdb::import::{import, parse_mapping, ImportRequest};
use gestalt_edge::gallery::{KeySpec, Storage};
use gestalt_edge::Result;

use crate::cli::args::StorageArg;

/// Bundle id stored in a gallery imported without `--bundle` (`predict` refuses it).
const UNBOUND: &str = "unbound";

/// Arguments of `gallery import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Reference encodings CSV, `;`-separated: img_name;model;flip;gray;class_conf;representations.
    #[arg(long, value_name = "CSV")]
    pub encodings: PathBuf,
    /// Image list CSV `image_id,subject,label[,split]`: the images to put in the gallery.
    #[arg(long, value_name = "CSV")]
    pub images: PathBuf,
    /// Syndromes TSV: syndrome_id, syndrome_name, OMIM (tab-separated).
    #[arg(long, value_name = "TSV")]
    pub syndromes: PathBuf,
    /// Gene metadata (CSV or TSV): image_id or syndrome_id, gene_name[, gene_entrez_id].
    #[arg(long, value_name = "FILE")]
    pub genes: Option<PathBuf>,
    /// Store reference model REF under embedder name EMB (repeatable, e.g. --map m0=r50).
    /// Models are matched by name only, never by position.
    #[arg(long = "map", value_name = "REF=EMB")]
    pub map: Vec<String>,
    /// Bind the gallery to this bundle: its id is stored and the keys and widths must be
    /// exactly the bundle's (only the manifest is read).
    #[arg(long, value_name = "MANIFEST")]
    pub bundle: Option<PathBuf>,
    /// Import only this split of a list with a split column (rows without a split too).
    #[arg(long, value_name = "N")]
    pub split: Option<u32>,
    /// Gallery file to write (replaced atomically).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Storage type of the embeddings.
    #[arg(long, value_enum, default_value = "f16")]
    pub storage: StorageArg,
    /// Version string reported as gallery_version.
    #[arg(long, value_name = "TEXT", default_value = "1")]
    pub gallery_version: String,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: ImportArgs) -> Result<i32> {
    let mapping = a
        .map
        .iter()
        .map(|m| parse_mapping(m))
        .collect::<Result<Vec<_>>>()?;
    let (bundle_id, bundle_keys) = match &a.bundle {
        Some(path) => {
            let m = bundle::read_manifest(path)?;
            let keys: Vec<KeySpec> = m
                .embedders
                .iter()
                .flat_map(|e| {
                    e.views.iter().map(move |v| KeySpec {
                        key: Key {
                            model: e.name.clone(),
                            flip: v[0],
                            gray: v[1],
                        },
                        width: e.width,
                    })
                })
                .collect();
            (bundle::bundle_id(&m), Some(keys))
        }
        None => (UNBOUND.to_string(), None),
    };
    let encodings = EncodingTable::read(&a.encodings)?;
    let images = ImageList::read(&a.images)?;
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
    gallery.write_atomic(&a.out)?;
    let s = gallery.summary();
    if a.json {
        let v = serde_json::json!({
            "gallery": a.out.display().to_string(),
            "summary": s,
            "import": report,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
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
    println!(
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
