//! Command-line arguments (clap derive): every subcommand's struct and every value enum, and
//! nothing else. The doc comment on each flag is its help text. Values that must be at least
//! 1 are `NonZeroUsize`, so clap refuses 0 before any command runs. Flags whose default
//! depends on the board profile or the machine are `Option`s: [`super::resolve`] applies the
//! precedence flag > board profile > bundle manifest > compiled default, once.

use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod curate;
pub use curate::{ListArgs, RelabelArgs, RemoveArgs};

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
    Eval(EvalArgs),
    /// The device loop: camera or file frames, quality gate, ensemble, top-5 on a screen.
    Run(RunArgs),
    /// Time every stage of the pipeline on a bundle (JSON for machines).
    Bench(BenchArgs),
    /// Make, prepare and quantize models.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Sign a bundle manifest or a gallery with an ed25519 key (on a workstation).
    Sign(SignArgs),
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
    Import(ImportArgs),
    /// Remove a subject (consent withdrawn) or one image; rewritten atomically, revision + 1.
    Remove(RemoveArgs),
    /// Give a subject's images a revised diagnosis; rewritten atomically, revision + 1.
    Relabel(RelabelArgs),
    /// List the subjects with their labels and image counts.
    List(ListArgs),
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
#[derive(Debug, Default, Args)]
pub struct AnalyseArgs {
    /// Model-bundle manifest (TOML).
    #[arg(long, value_name = "MANIFEST")]
    pub bundle: PathBuf,
    /// Face to analyse when a photo shows several [default: best].
    #[arg(long, value_enum)]
    pub face: Option<FaceArg>,
    /// Detect once only (skip the reference's second, eye-levelled detection pass).
    #[arg(long)]
    pub single_pass: bool,
    /// Worker threads for the embedding passes [default: the board profile's, else all
    /// cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<NonZeroUsize>,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Largest photo accepted, in megapixels (checked from the header before decoding)
    /// [default: 50].
    #[arg(long, value_name = "MP")]
    pub max_megapixels: Option<f64>,
    /// Most pixel memory one photo may take while decoding, in MiB: the decoder's buffer at
    /// the file's bit depth, its 8-bit RGB copy and the rotated copy an EXIF orientation
    /// needs (checked from the header; over it: exit 4) [default: 256].
    #[arg(long, value_name = "MB")]
    pub max_decode_mb: Option<NonZeroU64>,
    /// Folder of the rollback marks (the highest signed revision seen per bundle and
    /// gallery): with --public-key, an older signed bundle or gallery is exit 8
    /// [`run`: default $XDG_STATE_HOME/gestalt-edge; other commands: none].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Accept a signed bundle or gallery older than one already seen (the marks stay).
    #[arg(long)]
    pub allow_older_revision: bool,
    /// Trusted ed25519 public key (from `sign --generate-key`): the bundle manifest and the
    /// gallery must carry valid detached signatures (FILE.sig) made with it, or exit 7.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    #[command(flatten)]
    pub cache: CacheArgs,
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
    #[arg(long, value_name = "N", default_value = "5")]
    pub top: NonZeroUsize,
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
    /// Revision counter of the new gallery. Start above the one it replaces: a device keeps
    /// the highest signed revision it saw per bundle id, whatever --gallery-version, and
    /// refuses a lower one (exit 8).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub revision: u32,
    #[command(flatten)]
    pub lock: LockArgs,
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
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Gallery file.
    pub file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `eval`.
#[derive(Debug, Args)]
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
    pub threads: Option<NonZeroUsize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Patient-grouped: fuse each test subject's images into one query (one outcome per
    /// patient), as the authors' multi-image evaluation.
    #[arg(long, conflicts_with = "pairs")]
    pub group_by_subject: bool,
}

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Board profile: rpi4, rpi5, rpi4-spi, jetson-orin-nano, x86-dev, or the path of a .toml profile.
    #[arg(long, value_name = "BOARD")]
    pub board: String,
    #[command(flatten)]
    pub analyse: AnalyseArgs,
    /// Gallery file (made with the same bundle).
    #[arg(long, value_name = "FILE")]
    pub gallery: PathBuf,
    /// Frames from: `camera` (the board's device), `camera:/dev/videoN`, `synthetic`, a photo
    /// or a folder of photos.
    #[arg(long, value_name = "camera|PATH", default_value = "camera")]
    pub source: String,
    /// Screen: png:FILE, fb:/dev/fbN, window, spi or none [default: the board's].
    #[arg(long, value_name = "SCREEN")]
    pub screen: Option<String>,
    /// Screen size in pixels, WIDTHxHEIGHT [default: the board's].
    #[arg(long, value_name = "WxH")]
    pub screen_size: Option<String>,
    /// Process one capture, print it and exit (exit 3 when no face passed the gate).
    #[arg(long)]
    pub once: bool,
    /// Seconds a result stays on the screen [default: the board's].
    #[arg(long, value_name = "S")]
    pub result_seconds: Option<f32>,
    /// Append one JSON line per result: time, bundle id, gallery version, top-5 (never
    /// pixels or embeddings).
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Save each captured photo as PNG in this folder. Off by default: no photo is written.
    #[arg(long, value_name = "DIR")]
    pub save_captures: Option<PathBuf>,
    /// Print each result as one JSON line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Print the full result (photo path, face box and landmarks, nearest gallery images and
    /// subjects), as `predict` does. Off by default: the journal gets the top-5 syndromes and
    /// the versions only, like the audit log.
    #[arg(long)]
    pub verbose: bool,
    /// Stop after N failed attempts to reach the camera [default: retry for ever].
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
    /// Stop after N frames (for tests and soak runs).
    #[arg(long, value_name = "N")]
    pub max_frames: Option<u64>,
    /// Patient session on the camera: take N separate gated photos of one patient, then
    /// rank them fused as one query (at most the board's max_session_captures).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub session: u32,
}

/// Inference engine of `bench`: one, or each in its own process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchEngineArg {
    /// The native engine.
    Native,
    /// tract-onnx.
    Tract,
    /// onnxruntime, loaded at run time (builds with the `ort` cargo feature).
    Ort,
    /// tract and onnxruntime, each in its own process (tract, onnxruntime per-pass,
    /// onnxruntime intra-op), and the ratios tract / onnxruntime.
    Both,
    /// Every engine of this build, each in its own process (native, tract, and onnxruntime
    /// per-pass with the `ort` feature), and the ratios of each over onnxruntime (over tract
    /// without it).
    All,
}

/// Arguments of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model-bundle manifest (TOML).
    #[arg(long, value_name = "MANIFEST")]
    pub bundle: PathBuf,
    /// Inference engine [default: the manifest's `[bundle] engine`, else native]
    /// (`--backend` is the former name).
    #[arg(long, alias = "backend", value_enum)]
    pub engine: Option<BenchEngineArg>,
    #[command(flatten)]
    pub ort: OrtArgs,
    #[command(flatten)]
    pub native: NativeArgs,
    /// Worker threads for the embedding passes [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<NonZeroUsize>,
    /// Models loaded side by side during the cold start [default: --threads].
    #[arg(long, value_name = "N")]
    pub load_threads: Option<NonZeroUsize>,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Photo to analyse [default: a synthetic 640x480 frame; with it, detectors that find
    /// no face are timed on their own and the centre of the frame is embedded].
    #[arg(long, value_name = "IMG")]
    pub photo: Option<PathBuf>,
    /// Images in the synthetic gallery searched per photo.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub gallery_size: usize,
    /// Also write the synthetic gallery to FILE (atomically), bound to the bundle, so
    /// `predict --gallery FILE` can be measured against the same gallery.
    #[arg(long, value_name = "FILE")]
    pub save_gallery: Option<PathBuf>,
    #[command(flatten)]
    pub lock: LockArgs,
    /// Also time a capped gallery search (at most N exact scores; not proven, its recall
    /// against the flat scan is reported). Needs an indexed gallery (--gallery-size of at
    /// least 20000).
    #[arg(long, value_name = "N")]
    pub search_cap: Option<usize>,
    /// Timed photos (the median is reported), after one warm-up photo.
    #[arg(long, value_name = "N", default_value = "3")]
    pub repeat: NonZeroUsize,
    /// Also time the embeddings on 1 thread and as one batch per model (loads each
    /// embedder a second time).
    #[arg(long)]
    pub compare: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `gallery import`.
#[derive(Debug, Args)]
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
    #[command(flatten)]
    pub lock: LockArgs,
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

/// The write-lock flag of every command that writes a gallery file.
#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// Seconds to wait for another command writing the same gallery (one writer at a time,
    /// through a lock file `.NAME.lock` beside it); still locked after that: exit 6, naming
    /// the other process, nothing written.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub lock_wait: u64,
}

/// Model-cache flags shared by the commands that load a bundle.
#[derive(Debug, Clone, Default, Args)]
pub struct CacheArgs {
    /// Model cache folder: each model is stored decluttered (NNEF) on first load, so later
    /// starts skip ONNX parsing [default: board profile's cache_dir, else
    /// $XDG_CACHE_HOME/gestalt-edge, else ~/.cache/gestalt-edge].
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Load every model from its ONNX file; read and write no model cache.
    #[arg(long)]
    pub no_cache: bool,
}

/// Arguments of `model compile`.
#[derive(Debug, Args)]
pub struct CompileArgs {
    /// Model-bundle manifest (TOML).
    #[arg(long, value_name = "MANIFEST")]
    pub bundle: PathBuf,
    /// Cache folder to fill [default: $XDG_CACHE_HOME/gestalt-edge, else
    /// ~/.cache/gestalt-edge].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Models loaded side by side [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<NonZeroUsize>,
    /// Only fill the model cache: write no compiled files and leave the manifest as it is.
    #[arg(long, conflicts_with = "no_cache")]
    pub no_native: bool,
    /// Only compile for the native engine: leave the model cache alone.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Model tools.
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Write an architecture-exact ONNX graph with seeded (random, untrained) weights.
    Synth(SynthArgs),
    /// Post-training int8: calibrate on faces the bundle itself finds, write an int8 bundle
    /// (QLinearConv / MatMulInteger) and report its agreement with the float bundle.
    Quantize(QuantizeArgs),
    /// Show what tract makes of one model: optimised operators, matrix kernels, time per
    /// operator kind.
    Profile(ProfileArgs),
    /// Compile every model the native engine covers into a file beside it and pin it in the
    /// manifest (rewritten in place: sign it again), and fill the model cache for the rest
    /// (decluttered models as NNEF), so a device starts without parsing ONNX.
    Compile(CompileArgs),
    /// The native engine's matrix kernels on this CPU: every candidate, and the ones the
    /// deterministic mode (`--kernels features`) picks for f32 and int8.
    Kernels(KernelsListArgs),
}

/// Arguments of `model kernels`.
#[derive(Debug, Args)]
pub struct KernelsListArgs {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `model profile`.
#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// ONNX model file.
    #[arg(long, value_name = "FILE.onnx")]
    pub model: PathBuf,
    /// Input width in pixels.
    #[arg(long, default_value_t = 112)]
    pub width: u32,
    /// Input height in pixels.
    #[arg(long, default_value_t = 112)]
    pub height: u32,
    /// Timed forward passes (after one warm-up).
    #[arg(long, default_value_t = 3)]
    pub passes: usize,
    /// Profile the native engine instead of tract: wall time per step (layer) with its
    /// geometry and matrix kernel (picked by CPU features), grouped, slowest first.
    #[arg(long)]
    pub native: bool,
    /// Threads per pass of the native engine.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `model synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Architecture: iresnet50, iresnet100, retinaface-mnet025 or retinaface-r50.
    #[arg(long, value_name = "NAME")]
    pub arch: String,
    /// ONNX file to write (replaced atomically).
    #[arg(long, value_name = "FILE.onnx")]
    pub out: PathBuf,
    /// Seed of the random weights (same seed, same bytes).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
}

/// Arguments of `model quantize`.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// Float model-bundle manifest to quantize.
    #[arg(long, value_name = "MANIFEST")]
    pub bundle: PathBuf,
    /// Folder of calibration photos (JPEG/PNG) showing faces.
    #[arg(long, value_name = "DIR")]
    pub calib: PathBuf,
    /// Manifest of the int8 bundle to write; its model files go next to it.
    #[arg(long, value_name = "MANIFEST")]
    pub out: PathBuf,
    /// Keep the first and the last quantizable layer of every model in float.
    #[arg(long)]
    pub keep_float_ends: bool,
    /// Activations as symmetric i8 (zero point 0) instead of u8 with a zero point: tract then
    /// needs no zero-point correction around the integer products.
    #[arg(long)]
    pub symmetric: bool,
    /// Keep fully connected (Gemm) layers in float: tract re-sums and re-packs integer
    /// Gemm weights on every run.
    #[arg(long)]
    pub float_fc: bool,
    /// Keep depthwise convolutions in float (tract's float depthwise kernel beats its int8
    /// im2col path).
    #[arg(long)]
    pub float_depthwise: bool,
    /// Fraction of each calibration tensor's values left outside its int8 range, per tail
    /// (0 = min/max).
    #[arg(long, value_name = "FRACTION", default_value_t = 3e-5)]
    pub clip: f64,
    /// Worker threads for the embedding passes [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<NonZeroUsize>,
}

/// Arguments of `sign`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["generate_key", "key", "verify"])))]
pub struct SignArgs {
    /// Make a new key pair: writes the secret key to OUT (owner-only permissions) and the
    /// public key to OUT.pub. Refuses to overwrite existing files.
    #[arg(long, value_name = "OUT")]
    pub generate_key: Option<PathBuf>,
    /// Secret key file to sign with (made by --generate-key).
    #[arg(long, value_name = "SECRET", requires = "file")]
    pub key: Option<PathBuf>,
    /// Check FILE.sig against this public key instead of signing (exit 7 when it fails).
    #[arg(long, value_name = "PUBLIC", requires = "file", conflicts_with = "key")]
    pub verify: Option<PathBuf>,
    /// File to sign or check (a bundle manifest or a gallery); the signature is FILE.sig.
    #[arg(long, value_name = "F", num_args = 1.., action = clap::ArgAction::Append)]
    pub file: Vec<PathBuf>,
}

/// Inference engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// The native engine on tract-linalg's kernels (the default; a model with an operation
    /// outside its set runs on tract).
    Native,
    /// tract-onnx (pure Rust; the reference).
    Tract,
    /// onnxruntime, loaded at run time (builds with the `ort` cargo feature).
    Ort,
}

/// How onnxruntime uses the threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OrtThreadingArg {
    /// The passes run side by side like tract's, one 1-thread session per concurrent pass.
    PerPass,
    /// One session per model with all threads inside each pass; passes one at a time.
    IntraOp,
}

/// onnxruntime settings.
#[derive(Debug, Clone, Default, Args)]
pub struct OrtArgs {
    /// onnxruntime shared library for `--engine ort`: the libonnxruntime.so.* inside the
    /// onnxruntime Python wheel (site-packages/onnxruntime/capi/) [default: $ORT_DYLIB_PATH].
    #[arg(long, value_name = "FILE")]
    pub ort_lib: Option<PathBuf>,
    /// How onnxruntime uses the threads (`--threads`) [default: per-pass].
    #[arg(long, value_enum, value_name = "MODE")]
    pub ort_threading: Option<OrtThreadingArg>,
}

/// `--engine` and the onnxruntime settings, for commands that analyse photos.
#[derive(Debug, Clone, Default, Args)]
pub struct EngineArgs {
    /// Inference engine for every model [default: the board profile's, else the manifest's
    /// `[bundle] engine`, else native] (`--backend` is the former name).
    #[arg(long, alias = "backend", value_enum)]
    pub engine: Option<EngineArg>,
    #[command(flatten)]
    pub ort: OrtArgs,
    #[command(flatten)]
    pub native: NativeArgs,
}

/// The native engine's settings.
#[derive(Debug, Clone, Default, Args)]
pub struct NativeArgs {
    /// How the native engine picks its matrix kernels: `measured` (timed once per device and
    /// remembered in the cache folder; by features without one) or `features` (by CPU
    /// features alone: deterministic, for emulators) [default: measured].
    #[arg(long, value_enum, value_name = "MODE")]
    pub kernels: Option<KernelsArg>,
}

/// How the native engine picks its matrix kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KernelsArg {
    /// Timed on this device, remembered in the cache folder.
    Measured,
    /// By CPU features alone.
    Features,
}
