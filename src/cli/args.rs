//! Command-line arguments (clap derive). The doc comment on each flag is its help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Offline facial-phenotype matching (GestaltMatcher-Arc): a photo in, the most similar
/// syndromes of an on-device gallery out. Decision support, not a diagnosis.
#[derive(Debug, Parser)]
#[command(name = "gestalt-edge", version = env!("GESTALT_EDGE_VERSION"), about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Rank the syndromes of a gallery by similarity to the face in each photo.
    Predict(PredictArgs),
    /// Build, extend and inspect gallery files.
    #[command(subcommand)]
    Gallery(GalleryCommand),
    /// The paper's evaluation protocol (top-k mean accuracy) and identity verification.
    Eval(super::eval_cmd::EvalArgs),
    /// The device loop: camera or file frames, quality gate, ensemble, top-5 on a screen.
    Run(super::run_cmd::RunArgs),
    /// Time every stage of the pipeline on a bundle (JSON for machines).
    Bench(super::bench_cmd::BenchArgs),
    /// Make, prepare and quantize models.
    #[command(subcommand)]
    Model(super::model_cmd::ModelCommand),
    /// Sign a bundle manifest or a gallery with an ed25519 key (on a workstation).
    Sign(super::sign_cmd::SignArgs),
}

#[derive(Debug, Subcommand)]
pub enum GalleryCommand {
    /// Build a gallery from diagnosed photos listed in a CSV file.
    Build(BuildArgs),
    /// Enrol one diagnosed photo into an existing gallery (rewritten atomically).
    Add(AddArgs),
    /// Show a gallery's counts, bundle id, format version and storage type.
    Inspect(InspectArgs),
    /// Import reference encodings (GestaltMatcher CSV files) into a gallery.
    Import(super::import_cmd::ImportArgs),
    /// Remove a subject (consent withdrawn) or one image; rewritten atomically, revision + 1.
    Remove(super::curate_cmd::RemoveArgs),
    /// Give a subject's images a revised diagnosis; rewritten atomically, revision + 1.
    Relabel(super::curate_cmd::RelabelArgs),
    /// List the subjects with their labels and image counts.
    List(super::curate_cmd::ListArgs),
}

/// Which face to analyse when a photo holds several.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FaceArg {
    /// The highest detector score (the reference).
    Best,
    /// The largest face.
    Largest,
}

/// How gallery embeddings are stored.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StorageArg {
    /// Half precision, 2 bytes per value.
    F16,
    /// 8-bit with one scale per vector, 1 byte per value.
    I8,
}

/// Settings shared by every command that analyses photos.
#[derive(Debug, Args)]
pub struct AnalyseArgs {
    /// Model-bundle manifest (TOML).
    #[arg(long, value_name = "MANIFEST")]
    pub bundle: PathBuf,
    /// Face to analyse when a photo shows several.
    #[arg(long, value_enum, default_value = "best")]
    pub face: FaceArg,
    /// Detect once only (skip the reference's second, eye-levelled detection pass).
    #[arg(long)]
    pub single_pass: bool,
    /// Worker threads for the embedding passes [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub engine: super::engine::EngineArgs,
    /// Largest photo accepted, in megapixels (checked from the header before decoding).
    #[arg(long, value_name = "MP", default_value_t = 50.0)]
    pub max_megapixels: f64,
    /// Trusted ed25519 public key (from `sign --generate-key`): the bundle manifest and the
    /// gallery must carry valid detached signatures (FILE.sig) made with it, or exit 7.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    #[command(flatten)]
    pub cache: super::compile_cmd::CacheArgs,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    #[command(flatten)]
    pub analyse: AnalyseArgs,
    /// Gallery file (made with the same bundle).
    #[arg(long, value_name = "FILE")]
    pub gallery: PathBuf,
    /// Print a JSON array, one object per photo, instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Number of syndromes and genes to list.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub top: usize,
    /// Number of unique gallery patients to list (the service lists 100).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub patients: usize,
    /// Ignore gallery images closer than this cosine distance (probable same patient).
    #[arg(long, value_name = "DISTANCE")]
    pub same_patient_threshold: Option<f32>,
    /// The photos show one patient: fuse them into one query and print one result (photos
    /// without a usable face are skipped and listed).
    #[arg(long)]
    pub fuse: bool,
    /// With --fuse: warn when two photos are farther apart than this mean cosine distance
    /// (they may not show one person) [default: 0.6].
    #[arg(long, value_name = "DISTANCE", requires = "fuse")]
    pub consistency_distance: Option<f32>,
    /// For each of the top-5 syndromes, the distance per model and per view of its nearest
    /// gallery image.
    #[arg(long)]
    pub explain: bool,
    /// Photos (JPEG or PNG).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub analyse: AnalyseArgs,
    /// CSV with a header: columns image,label and optionally subject,omim,gene,entrez.
    /// Image paths are relative to the CSV's folder.
    #[arg(long, value_name = "CSV")]
    pub labels: PathBuf,
    /// Gallery file to write (replaced atomically).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Storage type of the embeddings.
    #[arg(long, value_enum, default_value = "f16")]
    pub storage: StorageArg,
    /// Version string reported as gallery_version.
    #[arg(long, value_name = "TEXT", default_value = "1")]
    pub gallery_version: String,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[command(flatten)]
    pub analyse: AnalyseArgs,
    /// Gallery file to extend.
    #[arg(long, value_name = "FILE")]
    pub gallery: PathBuf,
    /// The diagnosed photo.
    #[arg(long, value_name = "IMG")]
    pub image: PathBuf,
    /// Syndrome (diagnosis) label.
    #[arg(long, value_name = "L")]
    pub label: String,
    /// Patient id (default: the image id).
    #[arg(long, value_name = "S")]
    pub subject: Option<String>,
    /// OMIM id of the syndrome.
    #[arg(long)]
    pub omim: Option<u32>,
    /// Gene name.
    #[arg(long)]
    pub gene: Option<String>,
    /// Entrez id of the gene.
    #[arg(long, requires = "gene")]
    pub entrez: Option<u32>,
    /// Image id stored in the gallery (default: the file name).
    #[arg(long)]
    pub image_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Gallery file.
    pub file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}
