//! `--backend`, `--ort-lib`, `--ort-threading`: which inference engine runs the models, and
//! where the onnxruntime shared library is. The only place that reads `ORT_DYLIB_PATH` (the
//! library never reads the environment).

use std::path::PathBuf;

use gestalt_edge::engine::{Engine, OrtOptions, OrtThreading};
use gestalt_edge::{Error, Result};

/// Environment variable naming the onnxruntime shared library when `--ort-lib` is absent
/// (the name the `ort` crate documents).
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// Inference engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineArg {
    /// tract (pure Rust, the default engine).
    Tract,
    /// onnxruntime, loaded at run time (builds with the `ort` cargo feature).
    Ort,
}

/// How onnxruntime uses the threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OrtThreadingArg {
    /// The passes run side by side like tract's, one 1-thread session per concurrent pass.
    PerPass,
    /// One session per model with all threads inside each pass; passes one at a time.
    IntraOp,
}

impl OrtThreadingArg {
    /// The library's value.
    pub fn threading(self) -> OrtThreading {
        match self {
            OrtThreadingArg::PerPass => OrtThreading::PerPass,
            OrtThreadingArg::IntraOp => OrtThreading::IntraOp,
        }
    }

    /// The flag's spelling.
    pub fn flag(self) -> &'static str {
        match self {
            OrtThreadingArg::PerPass => "per-pass",
            OrtThreadingArg::IntraOp => "intra-op",
        }
    }
}

/// onnxruntime settings.
#[derive(Debug, Clone, clap::Args)]
pub struct OrtArgs {
    /// onnxruntime shared library for `--backend ort`: the libonnxruntime.so.* inside the
    /// onnxruntime Python wheel (site-packages/onnxruntime/capi/) [default: $ORT_DYLIB_PATH].
    #[arg(long, value_name = "FILE")]
    pub ort_lib: Option<PathBuf>,
    /// How onnxruntime uses the threads (`--threads`).
    #[arg(long, value_enum, value_name = "MODE", default_value = "per-pass")]
    pub ort_threading: OrtThreadingArg,
}

impl OrtArgs {
    /// `--ort-lib`, else `$ORT_DYLIB_PATH`; exit 5 when neither names a library.
    pub fn library(&self) -> Result<PathBuf> {
        if let Some(p) = &self.ort_lib {
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

    /// The backend for `engine`; onnxruntime in a build without the `ort` feature is a usage
    /// error (exit 2), a missing library exit 5.
    pub fn backend(&self, engine: EngineArg) -> Result<Engine> {
        match engine {
            EngineArg::Tract => Ok(Engine::Tract),
            EngineArg::Ort if !cfg!(feature = "ort") => Err(Error::Usage(
                "--backend ort needs a build with the `ort` cargo feature (cargo build --features ort)".into(),
            )),
            EngineArg::Ort => Ok(Engine::Ort(OrtOptions {
                library: self.library()?,
                threading: self.ort_threading.threading(),
            })),
        }
    }
}

/// `--backend` and the onnxruntime settings, for commands that analyse photos.
#[derive(Debug, Clone, clap::Args)]
pub struct EngineArgs {
    /// Inference engine for every model.
    #[arg(long, value_enum, default_value = "tract")]
    pub backend: EngineArg,
    #[command(flatten)]
    pub ort: OrtArgs,
}

impl EngineArgs {
    /// The resolved backend.
    pub fn backend(&self) -> Result<Engine> {
        self.ort.backend(self.backend)
    }
}
