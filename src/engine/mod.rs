//! Engines: what runs a network. The native engine (tract-linalg's kernels called directly,
//! [`native`], the default), tract-onnx (pure Rust, `net.rs`: the reference, and the
//! fallback for models with an operation outside the native set) and onnxruntime (cargo
//! feature `ort`, a shared library loaded at run time, `ort_net.rs`); every network of a
//! bundle runs on the [`Engine`] its [`crate::bundle::LoadOptions`] name.
//!
//! Consumes ONNX bytes already checked against the manifest, a pinned input shape and NCHW
//! f32 data; produces a loaded [`Net`] and its named f32 outputs, so stages never see an
//! engine's API. This file holds the choice itself (plain data: it compiles, and onnxruntime
//! is refused with a clear error, without the feature): per network, how many sessions and
//! intra-op threads onnxruntime gets, and how many worker threads run the embedding passes.
//! [`cache`] stores tract's decluttered models (NNEF) so a device starts fast. [`native`] is
//! the engine on tract-linalg's kernels called directly (ONNX import to an NHWC plan, f32 and
//! int8 execution, kernels chosen by measurement, versioned compiled files).
//!
//! Adding an engine: a module beside `net.rs` and `ort_net.rs` (its own cargo feature if it
//! pulls a dependency), a variant of [`Engine`] and of [`NetEngine`], an arm in [`load_net`]
//! and one in `Net`'s runtime; nothing outside this folder changes.

use std::path::{Path, PathBuf};

pub mod cache;
pub mod native;
mod net;
#[cfg(feature = "ort")]
mod ort_net;
pub(crate) mod queue;

pub use net::Net;

use crate::Result;

/// The inference engine that runs every network of a bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Engine {
    /// The native engine; a model with an operation outside its set runs on tract.
    Native(NativeOptions),
    /// tract (pure Rust).
    #[default]
    Tract,
    /// onnxruntime through its C API, loaded at run time (cargo feature `ort`).
    Ort(OrtOptions),
}

/// The former name of [`Engine`] (the `--backend` flag is now `--engine`, which keeps
/// `--backend` as an alias); kept for one release.
pub type Backend = Engine;

/// How the native engine runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NativeOptions {
    /// How its matrix kernels are picked.
    pub kernels: native::KernelMode,
}

impl Engine {
    /// The native engine with kernels chosen by measurement.
    pub fn native() -> Engine {
        Engine::Native(NativeOptions::default())
    }
}

/// How to load and thread onnxruntime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrtOptions {
    /// The onnxruntime shared library (`libonnxruntime.so.1.22.1` inside the onnxruntime
    /// Python wheel, folder `onnxruntime/capi/`). It is loaded once per process.
    pub library: PathBuf,
    /// How the pipeline's threads are used.
    pub threading: OrtThreading,
}

/// How onnxruntime uses the pipeline's `threads`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OrtThreading {
    /// The embedding passes run side by side on `threads` workers (like tract); each
    /// embedder gets one session per concurrent pass, each session 1 intra-op thread.
    #[default]
    PerPass,
    /// One session per network with `threads` intra-op threads; passes run one at a time.
    IntraOp,
}

/// Sessions and intra-op threads of one onnxruntime network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrtPlan {
    /// Sessions (independent copies that can run at the same time), >= 1.
    pub sessions: usize,
    /// Intra-op threads of each session, >= 1.
    pub intra_threads: usize,
}

impl OrtThreading {
    /// Sessions and threads of the detector (one pass at a time).
    pub fn detector(self, threads: usize) -> OrtPlan {
        OrtPlan {
            sessions: 1,
            intra_threads: match self {
                OrtThreading::PerPass => 1,
                OrtThreading::IntraOp => threads.max(1),
            },
        }
    }

    /// Sessions and threads of an embedder run for `views` TTA views.
    pub fn embedder(self, threads: usize, views: usize) -> OrtPlan {
        match self {
            OrtThreading::PerPass => OrtPlan {
                sessions: threads.clamp(1, views.max(1)),
                intra_threads: 1,
            },
            OrtThreading::IntraOp => OrtPlan {
                sessions: 1,
                intra_threads: threads.max(1),
            },
        }
    }

    /// Worker threads that run the embedding passes.
    pub fn workers(self, threads: usize) -> usize {
        match self {
            OrtThreading::PerPass => threads.max(1),
            OrtThreading::IntraOp => 1,
        }
    }
}

impl Engine {
    /// Short engine name for reports: `native`, `tract` or `ort`.
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Native(_) => "native",
            Engine::Tract => "tract",
            Engine::Ort(_) => "ort",
        }
    }

    /// Worker threads that run the embedding passes for a pipeline of `threads` threads.
    pub fn workers(&self, threads: usize) -> usize {
        match self {
            Engine::Native(_) | Engine::Tract => threads.max(1),
            Engine::Ort(o) => o.threading.workers(threads),
        }
    }
}

/// The error for an onnxruntime engine in a build without the `ort` cargo feature (a usage
/// error: the build, not the input, lacks it).
#[cfg_attr(feature = "ort", allow(dead_code))]
pub(crate) fn ort_missing() -> crate::Error {
    crate::Error::Usage(
        "the onnxruntime engine needs a build with the `ort` cargo feature (cargo build --features ort)"
            .into(),
    )
}

/// The engine one network is loaded on.
#[derive(Debug, Clone, Copy)]
pub enum NetEngine<'a> {
    /// The native engine, each pass split over this many threads (tract when a model is
    /// outside its set).
    Native(NativeOptions, usize),
    /// tract (no model cache).
    Tract,
    /// onnxruntime from this shared library, with this session plan.
    Ort(&'a Path, OrtPlan),
}

impl Engine {
    /// The engine for the detector of a pipeline of `threads` threads.
    pub fn detector_engine(&self, threads: usize) -> NetEngine<'_> {
        match self {
            // one detector pass at a time: it gets every thread
            Engine::Native(o) => NetEngine::Native(*o, threads.max(1)),
            Engine::Tract => NetEngine::Tract,
            Engine::Ort(o) => NetEngine::Ort(&o.library, o.threading.detector(threads)),
        }
    }

    /// The engine for an embedder run for `views` TTA views.
    pub fn embedder_engine(&self, threads: usize, views: usize) -> NetEngine<'_> {
        match self {
            // the passes run side by side on the workers, one thread each
            Engine::Native(o) => NetEngine::Native(*o, 1),
            Engine::Tract => NetEngine::Tract,
            Engine::Ort(o) => NetEngine::Ort(&o.library, o.threading.embedder(threads, views)),
        }
    }
}

impl<'a> NetEngine<'a> {
    /// The onnxruntime library and session plan, `None` for tract.
    pub fn ort(&self) -> Option<(&'a Path, OrtPlan)> {
        match *self {
            NetEngine::Native(..) | NetEngine::Tract => None,
            NetEngine::Ort(library, plan) => Some((library, plan)),
        }
    }

    /// The native engine's options and pass threads, `None` for the others.
    pub fn native(&self) -> Option<(NativeOptions, usize)> {
        match *self {
            NetEngine::Native(o, threads) => Some((o, threads)),
            _ => None,
        }
    }
}

/// Loads ONNX `bytes` (from `path`) on `engine`, input pinned to
/// `[batch, 3, height, width]` with `(width, height)` = `size`, outputs selected by name (all
/// when empty). Without the `ort` feature, an onnxruntime engine is a usage error. On the
/// native engine (kernels by CPU features), a model outside its set runs on tract and
/// [`Net::engine_note`] says why.
pub fn load_net(
    engine: &NetEngine<'_>,
    path: &Path,
    bytes: &[u8],
    size: (u32, u32),
    outputs: &[String],
    batch: usize,
) -> Result<Net> {
    match *engine {
        NetEngine::Native(_, threads) => {
            let imported = native::NativeNet::from_onnx(
                bytes,
                size.0 as usize,
                size.1 as usize,
                threads,
                &mut native::ByFeatures,
            );
            match imported
                .map_err(|e| e.to_string())
                .and_then(|n| Net::from_native(path, n, outputs, batch))
            {
                Ok(net) => Ok(net),
                Err(why) => {
                    let mut net = Net::load_batched(path, bytes, size.0, size.1, outputs, batch)?;
                    net.set_engine_note(why);
                    Ok(net)
                }
            }
        }
        NetEngine::Tract => Net::load_batched(path, bytes, size.0, size.1, outputs, batch),
        #[cfg(feature = "ort")]
        NetEngine::Ort(library, plan) => {
            Net::load_ort(library, path, bytes, size.0, size.1, outputs, batch, plan)
        }
        #[cfg(not(feature = "ort"))]
        NetEngine::Ort(..) => Err(ort_missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_pass_gives_each_worker_a_session_of_one_thread() {
        let t = OrtThreading::PerPass;
        assert_eq!(
            t.embedder(2, 4),
            OrtPlan {
                sessions: 2,
                intra_threads: 1
            }
        );
        assert_eq!(
            t.embedder(8, 4).sessions,
            4,
            "never more sessions than views"
        );
        assert_eq!(t.embedder(0, 4).sessions, 1);
        assert_eq!(t.detector(4).intra_threads, 1);
        assert_eq!(t.workers(3), 3);
    }

    #[test]
    fn intra_op_gives_one_session_all_threads_and_one_worker() {
        let t = OrtThreading::IntraOp;
        assert_eq!(
            t.embedder(2, 4),
            OrtPlan {
                sessions: 1,
                intra_threads: 2
            }
        );
        assert_eq!(t.detector(2).intra_threads, 2);
        assert_eq!(t.workers(2), 1);
        let b = Engine::Ort(OrtOptions {
            library: PathBuf::from("x"),
            threading: t,
        });
        assert_eq!((b.name(), b.workers(4)), ("ort", 1));
        assert_eq!(
            (Engine::Tract.name(), Engine::Tract.workers(4)),
            ("tract", 4)
        );
    }
}
