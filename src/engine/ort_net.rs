//! The onnxruntime engine (cargo feature `ort`): the only code that knows the `ort` crate.
//!
//! Consumes the path of an onnxruntime shared library (loaded once per process, never looked
//! up in the environment here), model bytes already checked against the manifest's sha256,
//! the pinned input shape `[batch, 3, height, width]` and NCHW f32 data; produces the same
//! named, flattened f32 outputs as the tract engine in `net.rs`, so the rest of the pipeline
//! cannot tell the engines apart.
//!
//! `ort` runs a session through `&mut`, so a network holds a small pool of sessions (one per
//! pass that may run at the same time, see [`super::OrtThreading`]); the pool shares
//! onnxruntime's pre-packed weights.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use ort::environment::Environment;
use ort::session::builder::{GraphOptimizationLevel, PrepackedWeights, SessionBuilder};
use ort::session::Session;
use ort::value::{Tensor, TensorElementType};

use super::OrtPlan;
use crate::{Error, Result};

/// The process's onnxruntime: where the library came from and its environment.
static RUNTIME: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

/// Loads the onnxruntime library at `library` (first call) and returns the environment;
/// a later call naming another file is refused (a process holds one onnxruntime).
fn environment(library: &Path) -> Result<Environment> {
    let lib_err = |what: String| Error::bundle(library, what);
    let mut rt = RUNTIME
        .lock()
        .map_err(|_| lib_err("onnxruntime state poisoned".into()))?;
    let wanted = std::path::absolute(library).unwrap_or_else(|_| library.to_path_buf());
    if let Some((loaded, env)) = rt.as_ref() {
        if *loaded != wanted {
            return Err(lib_err(format!(
                "onnxruntime is already loaded from {} in this process",
                loaded.display()
            )));
        }
        return Ok(env.clone());
    }
    if !wanted.is_file() {
        return Err(lib_err(
            "cannot load onnxruntime: no such file (give the libonnxruntime.so.* inside the onnxruntime Python wheel, folder onnxruntime/capi/)".into(),
        ));
    }
    let env = ort::init_from(&wanted)
        .map_err(|e| lib_err(format!("cannot load onnxruntime: {e}")))?
        .with_name("gestalt-edge")
        .with_telemetry(false)
        .build()
        .map_err(|e| lib_err(format!("cannot start onnxruntime: {e}")))?;
    *rt = Some((wanted, env.clone()));
    Ok(env)
}

/// One network on onnxruntime: a pool of identical sessions.
pub(crate) struct OrtNet {
    sessions: Vec<Mutex<Session>>,
    /// Round-robin start for the pool when every session is busy.
    next: AtomicUsize,
    /// The selected outputs, in order.
    outputs: Vec<String>,
}

/// Names and shapes of the selected outputs, in order.
pub(crate) type OutputFacts = Vec<(String, Vec<usize>)>;

fn ort_err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("").trim().to_string();
    Error::bundle(path, format!("{what} (onnxruntime): {first}"))
}

impl OrtNet {
    /// Loads `bytes` into `plan.sessions` sessions with `plan.intra_threads` threads each,
    /// checks the single f32 image input against `shape` and selects `outputs` by name (all
    /// model outputs when empty; each must be f32). Output shapes that the model leaves
    /// symbolic are read from one run on a zero input.
    pub(crate) fn load(
        library: &Path,
        path: &Path,
        bytes: &[u8],
        shape: [usize; 4],
        outputs: &[String],
        plan: OrtPlan,
    ) -> Result<(OrtNet, OutputFacts)> {
        let env = environment(library)?;
        let packed = PrepackedWeights::new();
        let mut sessions = Vec::new();
        for _ in 0..plan.sessions.max(1) {
            let opt = |e: ort::Error<SessionBuilder>| ort_err(path, "session options", e);
            let mut builder = Session::builder(&env)
                .map_err(|e| ort_err(path, "session", e))?
                .with_optimization_level(GraphOptimizationLevel::All)
                .map_err(opt)?
                .with_intra_threads(plan.intra_threads.max(1))
                .map_err(opt)?
                .with_inter_threads(1)
                .map_err(opt)?
                .with_prepacked_weights(&packed)
                .map_err(opt)?;
            let session = builder
                .commit_from_memory(bytes)
                .map_err(|e| ort_err(path, "not a loadable ONNX model", e))?;
            sessions.push(Mutex::new(session));
        }
        let first = sessions
            .first()
            .ok_or_else(|| Error::bundle(path, "no onnxruntime session"))?
            .lock()
            .map_err(|_| Error::bundle(path, "onnxruntime session poisoned"))?;
        let inputs = first.inputs();
        let [input] = inputs else {
            return Err(Error::bundle(
                path,
                format!(
                    "the model must have exactly one input (the image); it has {}",
                    inputs.len()
                ),
            ));
        };
        let dtype = input.dtype();
        if dtype.tensor_type() != Some(TensorElementType::Float32) {
            return Err(Error::bundle(
                path,
                format!("input '{}' is {dtype}, expected f32", input.name()),
            ));
        }
        if let Some(dims) = dtype.tensor_shape() {
            let fits = dims.len() == 4
                && dims
                    .iter()
                    .zip(shape)
                    .all(|(&d, s)| d < 0 || d as usize == s);
            if !fits {
                return Err(Error::bundle(
                    path,
                    format!(
                        "input '{}' has shape {:?}, the manifest needs {shape:?}",
                        input.name(),
                        dims.iter().collect::<Vec<_>>()
                    ),
                ));
            }
        }
        let available: Vec<String> = first
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        let selected: Vec<String> = if outputs.is_empty() {
            available.clone()
        } else {
            outputs.to_vec()
        };
        let mut facts = Vec::new();
        let mut symbolic = false;
        for name in &selected {
            let Some(outlet) = first.outputs().iter().find(|o| o.name() == name) else {
                return Err(Error::bundle(
                    path,
                    format!(
                        "missing output '{name}' (the model has: {})",
                        available.join(", ")
                    ),
                ));
            };
            let dtype = outlet.dtype();
            if dtype.tensor_type() != Some(TensorElementType::Float32) {
                return Err(Error::bundle(
                    path,
                    format!("output '{name}' is {dtype}, expected f32"),
                ));
            }
            let dims: Vec<i64> = dtype
                .tensor_shape()
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            symbolic |= dims.is_empty() || dims.iter().any(|&d| d < 0);
            facts.push((
                name.clone(),
                dims.iter().map(|&d| d.max(0) as usize).collect(),
            ));
        }
        drop(first);
        let net = OrtNet {
            sessions,
            next: AtomicUsize::new(0),
            outputs: selected,
        };
        if symbolic {
            let zeros = vec![0f32; shape.iter().product()];
            let shaped = net.run_shaped(path, shape, zeros)?;
            for (fact, (_, dims)) in facts.iter_mut().zip(shaped) {
                fact.1 = dims;
            }
        }
        Ok((net, facts))
    }

    /// A free session of the pool, or (all busy) the next one in turn, waited for.
    fn session(&self, path: &Path) -> Result<MutexGuard<'_, Session>> {
        for s in &self.sessions {
            match s.try_lock() {
                Ok(g) => return Ok(g),
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Poisoned(p)) => return Ok(p.into_inner()),
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.sessions.len().max(1);
        let s = self
            .sessions
            .get(i)
            .ok_or_else(|| Error::bundle(path, "no onnxruntime session"))?;
        Ok(s.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs one NCHW f32 input of `shape`; returns every selected output flattened, in order.
    pub(crate) fn run(
        &self,
        path: &Path,
        shape: [usize; 4],
        data: Vec<f32>,
    ) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .run_shaped(path, shape, data)?
            .into_iter()
            .map(|(v, _)| v)
            .collect())
    }

    fn run_shaped(
        &self,
        path: &Path,
        shape: [usize; 4],
        data: Vec<f32>,
    ) -> Result<Vec<(Vec<f32>, Vec<usize>)>> {
        if data.len() != shape.iter().product::<usize>() {
            return Err(Error::bundle(
                path,
                format!("input tensor: {} values for shape {shape:?}", data.len()),
            ));
        }
        let tensor =
            Tensor::from_array((shape, data)).map_err(|e| ort_err(path, "input tensor", e))?;
        let mut session = self.session(path)?;
        let result = session
            .run(ort::inputs![tensor])
            .map_err(|e| ort_err(path, "inference failed", e))?;
        self.outputs
            .iter()
            .map(|name| {
                let value = result.get(name).ok_or_else(|| {
                    Error::bundle(path, format!("output '{name}' missing from the run"))
                })?;
                let (dims, values) = value
                    .try_extract_tensor::<f32>()
                    .map_err(|e| ort_err(path, "output", e))?;
                let dims = dims.iter().map(|&d| d.max(0) as usize).collect();
                Ok((values.to_vec(), dims))
            })
            .collect()
    }
}
