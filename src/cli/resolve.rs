//! From parsed flags to the settings a command runs with, resolved once per process.
//!
//! Consumes the clap structs of [`super::args`], a board profile when the command has one
//! (`run`), and the environment; produces [`Settings`] (plain values: bundle path, threads,
//! engine, cache folder, trusted key, pipeline options, photo limits) and from them a loaded
//! [`Session`]. Precedence, everywhere: command-line flag > board profile > bundle manifest >
//! compiled default (the manifest holds the model facts, which no flag overrides). This is
//! the only place that counts cores and reads the environment (`ORT_DYLIB_PATH`,
//! `XDG_CACHE_HOME`, `XDG_STATE_HOME`, `HOME`); the library never does. `bench` builds its child processes'
//! flags from the same settings ([`child_args`]), so nothing resolved here is lost on the way.

use std::ffi::OsString;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use gestalt_edge::board::Board;
use gestalt_edge::bundle::EngineName;
use gestalt_edge::bundle::{Bundle, LoadOptions};
use gestalt_edge::capture::Limits;
use gestalt_edge::detect::FaceChoice;
use gestalt_edge::engine::native::KernelMode;
use gestalt_edge::engine::{Engine, NativeOptions, OrtOptions, OrtThreading};
use gestalt_edge::gallery::Gallery;
use gestalt_edge::pipeline::{FaceAnalysis, PipelineOptions};
use gestalt_edge::rollback::{RevisionState, Subject, Verdict};
use gestalt_edge::sign::PublicKey;
use gestalt_edge::{Error, Result};

use super::args::{
    AnalyseArgs, CacheArgs, EngineArg, FaceArg, KernelsArg, NativeArgs, OrtArgs, OrtThreadingArg,
};

/// Environment variable naming the onnxruntime shared library when `--ort-lib` is absent
/// (the name the `ort` crate documents).
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// Largest photo accepted by default, in megapixels.
pub const DEFAULT_MAX_MEGAPIXELS: f64 = 50.0;

/// Folder under the user's cache and state folders that holds the model cache and the
/// rollback marks.
const CACHE_SUBDIR: &str = "gestalt-edge";

/// Worker threads: the flag, else the board profile's, else every core of this machine.
pub fn threads(flag: Option<NonZeroUsize>, board: Option<usize>) -> usize {
    flag.map(NonZeroUsize::get)
        .or(board.filter(|&n| n > 0))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get))
}

/// The per-user model cache folder: `$XDG_CACHE_HOME/gestalt-edge`, else
/// `$HOME/.cache/gestalt-edge` (relative values are ignored); `None` when neither is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let home = || {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .map(|h| h.join(".cache"))
    };
    xdg.or_else(home).map(|d| d.join(CACHE_SUBDIR))
}

/// The per-user state folder (rollback marks): `$XDG_STATE_HOME/gestalt-edge`, else
/// `$HOME/.local/state/gestalt-edge` (relative values are ignored).
pub fn default_state_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let home = || {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .map(|h| h.join(".local/state"))
    };
    xdg.or_else(home).map(|d| d.join(CACHE_SUBDIR))
}

/// The model cache folder: `--no-cache` (none) > `--cache-dir` > the board profile's >
/// [`default_cache_dir`].
pub fn cache_dir(a: &CacheArgs, board: Option<&Path>) -> Option<PathBuf> {
    if a.no_cache {
        return None;
    }
    a.cache_dir
        .clone()
        .or_else(|| board.map(Path::to_path_buf))
        .or_else(default_cache_dir)
}

/// `--ort-lib`, else `$ORT_DYLIB_PATH`; exit 5 when neither names a library.
pub fn ort_library(a: &OrtArgs) -> Result<PathBuf> {
    if let Some(p) = &a.ort_lib {
        return Ok(p.clone());
    }
    match std::env::var_os(ORT_DYLIB_ENV) {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(Error::bundle(
            "onnxruntime",
            format!(
                "no onnxruntime library given: pass --ort-lib FILE or set {ORT_DYLIB_ENV} (python3 -m pip install onnxruntime puts libonnxruntime.so.* in site-packages/onnxruntime/capi/)"
            ),
        )),
    }
}

/// `--ort-threading`, default per-pass.
pub fn ort_threading(a: &OrtArgs) -> OrtThreadingArg {
    a.ort_threading.unwrap_or(OrtThreadingArg::PerPass)
}

/// The engine for `kind`; onnxruntime in a build without the `ort` feature is a usage error
/// (exit 2), a missing library exit 5.
pub fn engine(kind: EngineArg, ort: &OrtArgs, native: &NativeArgs) -> Result<Engine> {
    match kind {
        EngineArg::Native => Ok(Engine::Native(NativeOptions {
            kernels: match native.kernels.unwrap_or(KernelsArg::Measured) {
                KernelsArg::Measured => KernelMode::Measured,
                KernelsArg::Features => KernelMode::Features,
            },
        })),
        EngineArg::Tract => Ok(Engine::Tract),
        EngineArg::Ort if !cfg!(feature = "ort") => Err(Error::Usage(
            "--engine ort needs a build with the `ort` cargo feature (cargo build --features ort)"
                .into(),
        )),
        EngineArg::Ort => Ok(Engine::Ort(OrtOptions {
            library: ort_library(ort)?,
            threading: match ort_threading(ort) {
                OrtThreadingArg::PerPass => OrtThreading::PerPass,
                OrtThreadingArg::IntraOp => OrtThreading::IntraOp,
            },
        })),
    }
}

/// The engine asked for: the flag, else the board profile's `[bundle] engine`, else the
/// manifest's `[bundle] engine`, else native. A manifest that cannot be read here is
/// reported when the bundle loads.
pub fn engine_kind(flag: Option<EngineArg>, board: Option<&Board>, manifest: &Path) -> EngineArg {
    let named = |n: EngineName| match n {
        EngineName::Native => EngineArg::Native,
        EngineName::Tract => EngineArg::Tract,
        EngineName::Ort => EngineArg::Ort,
    };
    flag.or_else(|| board.and_then(|b| b.bundle.engine).map(named))
        .or_else(|| {
            gestalt_edge::bundle::read_manifest(manifest)
                .ok()
                .and_then(|m| m.bundle.engine)
                .map(named)
        })
        .unwrap_or(EngineArg::Native)
}

impl OrtThreadingArg {
    /// The flag's spelling.
    pub fn flag(self) -> &'static str {
        match self {
            OrtThreadingArg::PerPass => "per-pass",
            OrtThreadingArg::IntraOp => "intra-op",
        }
    }
}

/// Everything a photo command runs with, resolved from flags, the board profile and defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The bundle manifest.
    pub bundle: PathBuf,
    /// Worker threads (embedding passes, parallel model loading, gallery search), >= 1.
    pub threads: usize,
    /// The engine every network runs on.
    pub engine: Engine,
    /// Model cache folder (`None`: no cache).
    pub cache_dir: Option<PathBuf>,
    /// Trusted public key file: signatures are then required on bundle and gallery.
    pub public_key: Option<PathBuf>,
    /// Face choice and detection passes.
    pub pipeline: PipelineOptions,
    /// Photo size limits.
    pub limits: Limits,
    /// Folder of the rollback marks (`None`: revisions are not checked).
    pub state_dir: Option<PathBuf>,
    /// Accept a signed file older than a revision already seen (with a warning).
    pub allow_older_revision: bool,
}

impl Settings {
    /// Resolves `a` over `board` (flag > board > default).
    pub fn resolve(a: &AnalyseArgs, board: Option<&Board>) -> Result<Settings> {
        let mp = a.max_megapixels.unwrap_or(DEFAULT_MAX_MEGAPIXELS);
        if !(mp.is_finite() && mp > 0.0) {
            return Err(Error::Usage(
                "--max-megapixels must be a positive number".into(),
            ));
        }
        let kind = engine_kind(a.engine.engine, board, &a.bundle);
        Ok(Settings {
            bundle: a.bundle.clone(),
            threads: threads(a.threads, board.and_then(|b| b.board.threads)),
            engine: engine(kind, &a.engine.ort, &a.engine.native)?,
            cache_dir: cache_dir(&a.cache, board.and_then(|b| b.bundle.cache_dir.as_deref())),
            public_key: a
                .public_key
                .clone()
                .or_else(|| board.and_then(|b| b.bundle.public_key.clone())),
            pipeline: PipelineOptions {
                face_choice: match a.face.unwrap_or(FaceArg::Best) {
                    FaceArg::Best => FaceChoice::HighestScore,
                    FaceArg::Largest => FaceChoice::Largest,
                },
                two_pass: !a.single_pass,
                ..PipelineOptions::default()
            },
            limits: Limits {
                max_pixels: (mp * 1e6) as u64,
                max_decode_bytes: a
                    .max_decode_mb
                    .map_or(Limits::default().max_decode_bytes, |mb| {
                        mb.get().saturating_mul(1 << 20)
                    }),
                ..Limits::default()
            },
            // a device (a board profile) keeps its rollback marks by default; other
            // commands only where asked
            state_dir: a
                .state_dir
                .clone()
                .or_else(|| board.and_then(|_| default_state_dir())),
            allow_older_revision: a.allow_older_revision,
        })
    }

    /// The defaults `predict` uses for `bundle`, with `threads` (eval encodes photos so).
    pub fn defaults(bundle: &Path, threads: Option<NonZeroUsize>) -> Result<Settings> {
        let a = AnalyseArgs {
            bundle: bundle.to_path_buf(),
            threads,
            ..AnalyseArgs::default()
        };
        Settings::resolve(&a, None)
    }

    /// The trusted public key, read from its file.
    pub fn public_key(&self) -> Result<Option<PublicKey>> {
        self.public_key
            .as_deref()
            .map(gestalt_edge::sign::read_public_key)
            .transpose()
    }

    /// Reads a gallery with the size limit, and its signature when a key is trusted; then,
    /// signed and with a state folder, checks and records its revision (exit 8 when older).
    pub fn read_gallery(&self, path: &Path) -> Result<Gallery> {
        let options = gestalt_edge::gallery::io::ReadOptions {
            public_key: self.public_key()?,
            ..Default::default()
        };
        let gallery = Gallery::read_checked(path, &options)?;
        if options.public_key.is_some() {
            let subject = Subject::Gallery {
                bundle_id: gallery.bundle_id().to_string(),
                gallery_version: gallery.gallery_version().to_string(),
            };
            self.check_revision(&subject, gallery.revision())?;
        }
        Ok(gallery)
    }

    /// The rollback check of a signed file against the state folder (none: not checked).
    fn check_revision(&self, subject: &Subject, revision: u32) -> Result<()> {
        let Some(dir) = &self.state_dir else {
            return Ok(());
        };
        let state = RevisionState::new(dir);
        if let Verdict::OlderAllowed { seen } =
            state.check(subject, revision, self.allow_older_revision)?
        {
            eprintln!(
                "warning: {subject} revision {revision} is older than revision {seen} already seen; \
                 accepted because of --allow-older-revision"
            );
        }
        Ok(())
    }

    /// Loads the bundle (sha256 of every model, the manifest's signature when a key is
    /// trusted), reports what the model cache did, and hands back the memory loading freed.
    pub fn load(self) -> Result<Session> {
        let key = self.public_key()?;
        let bundle = Bundle::load_checked(
            &self.bundle,
            LoadOptions {
                threads: self.threads,
                engine: self.engine.clone(),
                cache_dir: self.cache_dir.clone(),
            },
            key.as_ref(),
        )?;
        if key.is_some() {
            let subject = Subject::Bundle {
                name: bundle.manifest.bundle.name.clone(),
            };
            self.check_revision(&subject, bundle.manifest.bundle.revision)?;
        }
        super::report::cache_warnings(&bundle);
        gestalt_edge::bundle::release_freed_memory();
        Ok(Session {
            bundle,
            settings: self,
        })
    }
}

/// A loaded bundle and the settings it was loaded with: what analyses photos.
pub struct Session {
    pub bundle: Bundle,
    pub settings: Settings,
}

impl Session {
    /// Decodes and analyses one photo.
    pub fn analyse(&self, path: &Path) -> Result<FaceAnalysis> {
        let frame = gestalt_edge::capture::load_image(path, &self.settings.limits)?;
        gestalt_edge::pipeline::analyse(&self.bundle, &frame, &self.settings.pipeline)
    }
}

/// What `bench` runs with, resolved once; its child processes get the same values.
#[derive(Debug, Clone)]
pub struct BenchSettings {
    pub bundle: PathBuf,
    pub threads: usize,
    /// Models loaded side by side during the cold start (default: `threads`).
    pub load_threads: usize,
    pub cache_dir: Option<PathBuf>,
    pub photo: Option<PathBuf>,
    pub gallery_size: usize,
    pub search_cap: Option<usize>,
    pub repeat: usize,
    pub compare: bool,
}

impl BenchSettings {
    /// Resolves the flags of `bench`.
    pub fn resolve(a: &super::args::BenchArgs) -> Result<BenchSettings> {
        match a.search_cap {
            Some(0) => return Err(Error::Usage("--search-cap must be at least 1".into())),
            Some(_) if a.gallery_size < gestalt_edge::rank::indexed::INDEX_MIN_IMAGES => {
                return Err(Error::Usage(format!(
                    "--search-cap needs an indexed gallery: --gallery-size of at least {}",
                    gestalt_edge::rank::indexed::INDEX_MIN_IMAGES
                )))
            }
            _ => {}
        }
        let threads = threads(a.threads, None);
        Ok(BenchSettings {
            bundle: a.bundle.clone(),
            threads,
            load_threads: a.load_threads.map_or(threads, NonZeroUsize::get),
            cache_dir: cache_dir(&a.cache, None),
            photo: a.photo.clone(),
            gallery_size: a.gallery_size,
            search_cap: a.search_cap,
            repeat: a.repeat.get(),
            compare: a.compare,
        })
    }
}

/// The flags of one `bench --json` child process: every resolved setting, then the engine.
pub fn child_args(
    s: &BenchSettings,
    engine: EngineArg,
    ort: Option<(&Path, OrtThreadingArg)>,
) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec!["bench".into(), "--json".into(), "--bundle".into()];
    v.push(s.bundle.clone().into_os_string());
    let mut flag = |name: &str, value: OsString| {
        v.push(name.into());
        v.push(value);
    };
    flag("--threads", s.threads.to_string().into());
    flag("--load-threads", s.load_threads.to_string().into());
    flag("--gallery-size", s.gallery_size.to_string().into());
    if let Some(cap) = s.search_cap {
        flag("--search-cap", cap.to_string().into());
    }
    flag("--repeat", s.repeat.to_string().into());
    if let Some(p) = &s.photo {
        flag("--photo", p.clone().into_os_string());
    }
    match &s.cache_dir {
        Some(d) => flag("--cache-dir", d.clone().into_os_string()),
        None => v.push("--no-cache".into()),
    }
    if s.compare {
        v.push("--compare".into());
    }
    v.push("--engine".into());
    v.push(
        match engine {
            EngineArg::Native => "native",
            EngineArg::Tract => "tract",
            EngineArg::Ort => "ort",
        }
        .into(),
    );
    if let Some((library, threading)) = ort {
        v.push("--ort-threading".into());
        v.push(threading.flag().into());
        v.push("--ort-lib".into());
        v.push(library.as_os_str().to_os_string());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Analyse {
        #[command(flatten)]
        a: AnalyseArgs,
    }

    #[test]
    fn flag_beats_board_beats_all_cores() {
        let two = NonZeroUsize::new(2);
        assert_eq!(threads(two, Some(3)), 2);
        assert_eq!(threads(None, Some(3)), 3);
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        assert_eq!(threads(None, None), cores);
        let no_cache = CacheArgs {
            cache_dir: Some("flag".into()),
            no_cache: true,
        };
        assert_eq!(cache_dir(&no_cache, Some(Path::new("board"))), None);
        let flag = CacheArgs {
            cache_dir: Some("flag".into()),
            no_cache: false,
        };
        assert_eq!(
            cache_dir(&flag, Some(Path::new("board"))),
            Some("flag".into())
        );
        let none = CacheArgs::default();
        assert_eq!(
            cache_dir(&none, Some(Path::new("board"))),
            Some("board".into())
        );
    }

    #[test]
    fn defaults_are_what_the_command_line_gives_without_flags() {
        let parsed = Analyse::parse_from(["x", "--bundle", "b.toml", "--threads", "3"]);
        let from_flags = Settings::resolve(&parsed.a, None).unwrap();
        let defaults = Settings::defaults(Path::new("b.toml"), NonZeroUsize::new(3)).unwrap();
        assert_eq!(format!("{from_flags:?}"), format!("{defaults:?}"));
        assert_eq!(defaults.threads, 3);
        assert_eq!(defaults.engine, Engine::native());
        assert_eq!(defaults.limits.max_pixels, 50_000_000);
        assert!(defaults.pipeline.two_pass);
    }

    #[test]
    fn the_engine_is_the_flag_else_the_board_else_the_manifest_else_native() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("bundle.toml");
        let demo = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo/bundle.toml"),
        )
        .unwrap();
        std::fs::write(&m, &demo).unwrap();
        assert_eq!(engine_kind(None, None, &m), EngineArg::Native);
        let tract = demo.replace("[bundle]\n", "[bundle]\nengine = \"tract\"\n");
        assert_ne!(tract, demo);
        std::fs::write(&m, &tract).unwrap();
        assert_eq!(engine_kind(None, None, &m), EngineArg::Tract);
        let mut board = gestalt_edge::board::Board::load("x86-dev").unwrap();
        board.bundle.engine = Some(EngineName::Native);
        assert_eq!(engine_kind(None, Some(&board), &m), EngineArg::Native);
        assert_eq!(
            engine_kind(Some(EngineArg::Ort), Some(&board), &m),
            EngineArg::Ort
        );
        // an unreadable manifest leaves the choice to the default (the load reports it)
        assert_eq!(
            engine_kind(None, None, &dir.path().join("missing.toml")),
            EngineArg::Native
        );
    }

    #[test]
    fn bench_children_get_every_resolved_flag() {
        let s = BenchSettings {
            bundle: "b.toml".into(),
            threads: 2,
            load_threads: 1,
            cache_dir: None,
            photo: Some("p.jpg".into()),
            gallery_size: 30_000,
            search_cap: Some(4096),
            repeat: 5,
            compare: true,
        };
        let args = child_args(
            &s,
            EngineArg::Ort,
            Some((Path::new("lib.so"), OrtThreadingArg::IntraOp)),
        );
        let text: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let text = text.join(" ");
        for want in [
            "--threads 2",
            "--load-threads 1",
            "--gallery-size 30000",
            "--search-cap 4096",
            "--repeat 5",
            "--photo p.jpg",
            "--no-cache",
            "--compare",
            "--engine ort",
            "--ort-threading intra-op",
            "--ort-lib lib.so",
        ] {
            assert!(text.contains(want), "{want} missing from {text}");
        }
        // and the child parses them
        let argv = std::iter::once(OsString::from("gestalt-edge")).chain(args);
        let cli = super::super::args::Cli::parse_from(argv);
        assert!(matches!(cli.command, super::super::args::Command::Bench(_)));
    }
}
