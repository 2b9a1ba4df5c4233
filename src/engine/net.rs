//! A loaded network ([`Net`]), whatever engine holds it, and the tract engine: load an ONNX
//! file with pinned input facts (through the model cache when there is one), optimise it
//! once, and run it on f32 tensors. Stages see plain slices; tract's API is used here, in
//! `cache.rs` (NNEF) and by the workstation tools (`crate::tools`), nowhere on the photo path.
//!
//! Consumes model bytes (already checked against the manifest's sha256) and NCHW f32 data;
//! produces named f32 outputs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::prelude::*;

use super::cache::{self, CacheKey, CacheReport, CacheStatus, Lookup, ModelCache};
use crate::{Error, Result};

/// A loaded, optimised network with a fixed input shape `[1, 3, height, width]`.
pub struct Net {
    runtime: Runtime,
    shape: [usize; 4],
    outputs: Vec<(String, Vec<usize>)>,
    path: PathBuf,
    macs: u64,
    /// Why the network runs on another engine than the one asked for.
    note: Option<String>,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("path", &self.path)
            .field("shape", &self.shape)
            .finish()
    }
}

/// The engine holding a network: tract's plan, the native engine's plan with the indices of
/// the selected outputs, or onnxruntime sessions (feature `ort`).
enum Runtime {
    Native(Box<super::native::NativeNet>, Vec<usize>),
    Tract(Arc<TypedRunnableModel>),
    #[cfg(feature = "ort")]
    Ort(super::ort_net::OrtNet),
}

fn tract_err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    // tract errors carry a chain; the first line is the useful part for a deployer
    let text = format!("{e:#}");
    let first = text.lines().next().unwrap_or("").trim().to_string();
    Error::bundle(path, format!("{what}: {first}"))
}

impl Net {
    /// Loads `bytes` as ONNX, pins the input to `[1, 3, height, width]` f32, selects `outputs`
    /// by name (all model outputs when empty), optimises, and checks every output is f32 with a
    /// fully known shape.
    pub fn load(
        path: &Path,
        bytes: &[u8],
        width: u32,
        height: u32,
        outputs: &[String],
    ) -> Result<Net> {
        Net::load_batched(path, bytes, width, height, outputs, 1)
    }

    /// [`Net::load`] with the input pinned to `[batch, 3, height, width]` (batch >= 1).
    pub fn load_batched(
        path: &Path,
        bytes: &[u8],
        width: u32,
        height: u32,
        outputs: &[String],
        batch: usize,
    ) -> Result<Net> {
        Ok(Net::load_cached(path, bytes, None, width, height, outputs, batch)?.0)
    }

    /// [`Net::load_batched`] through a model cache: with `cache = Some((cache, sha256))`
    /// (`sha256`: the model's verified hex digest), a valid entry for this model, shape and
    /// outputs replaces parsing and decluttering the ONNX bytes; a missing or corrupt entry is
    /// (re)built after the ONNX load. Cache problems never fail the load: they are reported.
    pub fn load_cached(
        path: &Path,
        bytes: &[u8],
        cache: Option<(&ModelCache, &str)>,
        width: u32,
        height: u32,
        outputs: &[String],
        batch: usize,
    ) -> Result<(Net, CacheReport)> {
        let shape = [batch.max(1), 3, height as usize, width as usize];
        let mut report = CacheReport {
            model: path.to_path_buf(),
            entry: None,
            status: CacheStatus::Disabled,
            bytes: 0,
        };
        let Some((cache, sha256)) = cache else {
            let model = decluttered(path, bytes, shape, outputs)?;
            return Ok((Net::from_decluttered(path, model, shape, outputs)?, report));
        };
        let key = CacheKey::new(sha256, shape, outputs);
        report.entry = Some(cache.entry_path(&key));
        let mut built = CacheStatus::Written;
        match cache.read(&key) {
            Lookup::Hit(tar) => {
                // an entry that passes its checksum but not tract's reader is rebuilt too
                let loaded = cache::from_nnef(&tar)
                    .map_err(|e| tract_err(path, "cached model", e))
                    .and_then(|m| Net::from_decluttered(path, m, shape, outputs));
                if let Ok(net) = loaded {
                    report.status = CacheStatus::Hit;
                    report.bytes = tar.len() as u64;
                    return Ok((net, report));
                }
                built = CacheStatus::Rebuilt;
            }
            Lookup::Missing => {}
            Lookup::Corrupt(_) => built = CacheStatus::Rebuilt,
        }
        let model = decluttered(path, bytes, shape, outputs)?;
        report.status = match cache::to_nnef(&model) {
            Ok(tar) => match cache.write(&key, &tar) {
                Ok(_) => {
                    report.bytes = tar.len() as u64;
                    built
                }
                Err(e) => CacheStatus::NotWritten(format!(
                    "cannot write {}: {e}",
                    cache.entry_path(&key).display()
                )),
            },
            Err(e) => CacheStatus::NotWritten(format!(
                "tract cannot store this model as NNEF: {}",
                format!("{e:#}").lines().next().unwrap_or("")
            )),
        };
        Ok((Net::from_decluttered(path, model, shape, outputs)?, report))
    }

    /// Optimises a decluttered model pinned to `shape`, checks its outputs and plans it.
    fn from_decluttered(
        path: &Path,
        model: TypedModel,
        shape: [usize; 4],
        outputs: &[String],
    ) -> Result<Net> {
        let model = model.into_optimized().map_err(|e| {
            tract_err(
                path,
                "cannot optimise the model for the manifest's input size",
                e,
            )
        })?;
        let mut out_facts = Vec::new();
        for (i, outlet) in model
            .output_outlets()
            .map_err(|e| tract_err(path, "outputs", e))?
            .iter()
            .enumerate()
        {
            let fact = model
                .outlet_fact(*outlet)
                .map_err(|e| tract_err(path, "outputs", e))?;
            if fact.datum_type != f32::datum_type() {
                return Err(Error::bundle(
                    path,
                    format!("output {i} is {:?}, expected f32", fact.datum_type),
                ));
            }
            let dims = fact
                .shape
                .as_concrete()
                .ok_or_else(|| Error::bundle(path, format!("output {i} has no fixed shape")))?
                .to_vec();
            let name = outputs
                .get(i)
                .cloned()
                .unwrap_or_else(|| model.node(outlet.node).name.clone());
            out_facts.push((name, dims));
        }
        let macs = count_macs(&model);
        let plan = model
            .into_runnable()
            .map_err(|e| tract_err(path, "cannot plan the model", e))?;
        Ok(Net {
            runtime: Runtime::Tract(plan),
            shape,
            outputs: out_facts,
            path: path.to_path_buf(),
            macs,
            note: None,
        })
    }

    /// Wraps a planned native network, selecting `outputs` by name (all when empty) for a
    /// `batch` of inputs run one after the other. `Err` says why it cannot stand for the
    /// model (an output it does not produce): the caller then loads it on tract.
    pub fn from_native(
        path: &Path,
        net: super::native::NativeNet,
        outputs: &[String],
        batch: usize,
    ) -> std::result::Result<Net, String> {
        let all = net.outputs();
        let pick: Vec<usize> = if outputs.is_empty() {
            (0..all.len()).collect()
        } else {
            outputs
                .iter()
                .map(|want| {
                    all.iter().position(|(n, _)| n == want).ok_or_else(|| {
                        format!("the native engine does not produce output '{want}'")
                    })
                })
                .collect::<std::result::Result<_, _>>()?
        };
        let (w, h) = net.input_size();
        let batch = batch.max(1);
        let out_facts = pick
            .iter()
            .map(|&i| {
                let (name, mut dims) = all[i].clone();
                if let Some(d) = dims.first_mut() {
                    *d *= batch;
                }
                (name, dims)
            })
            .collect();
        Ok(Net {
            macs: net.macs() * batch as u64,
            runtime: Runtime::Native(Box::new(net), pick),
            shape: [batch, 3, h, w],
            outputs: out_facts,
            path: path.to_path_buf(),
            note: None,
        })
    }

    /// Why this network runs on another engine than the one asked for (the native engine's
    /// reason for leaving it to tract), if it does.
    pub fn engine_note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// Records why this network runs on another engine than the one asked for.
    pub fn set_engine_note(&mut self, why: String) {
        self.note = Some(why);
    }

    /// The native engine's kernel names, empty on the other engines.
    pub fn kernels(&self) -> Vec<String> {
        match &self.runtime {
            Runtime::Native(net, _) => net.kernels(),
            _ => Vec::new(),
        }
    }

    /// Loads `bytes` on onnxruntime (the shared library at `library`) with the input pinned to
    /// `[batch, 3, height, width]`; same checks and outputs as [`Net::load_batched`].
    #[cfg(feature = "ort")]
    #[allow(clippy::too_many_arguments)]
    pub fn load_ort(
        library: &Path,
        path: &Path,
        bytes: &[u8],
        width: u32,
        height: u32,
        outputs: &[String],
        batch: usize,
        plan: super::OrtPlan,
    ) -> Result<Net> {
        let shape = [batch.max(1), 3, height as usize, width as usize];
        let (net, outputs) =
            super::ort_net::OrtNet::load(library, path, bytes, shape, outputs, plan)?;
        Ok(Net {
            runtime: Runtime::Ort(net),
            shape,
            outputs,
            path: path.to_path_buf(),
            macs: 0,
            note: None,
        })
    }

    /// The engine running this network: `native`, `tract` or `ort`.
    pub fn engine(&self) -> &'static str {
        match self.runtime {
            Runtime::Native(..) => "native",
            Runtime::Tract(_) => "tract",
            #[cfg(feature = "ort")]
            Runtime::Ort(_) => "ort",
        }
    }

    /// Multiply-accumulates of one run (all of the batch), as tract's cost model counts them
    /// on the optimised graph or the native plan counts them (0 on onnxruntime, which has no
    /// cost model).
    pub fn macs(&self) -> u64 {
        self.macs
    }

    /// The pinned input shape `[batch, 3, height, width]`.
    pub fn input_shape(&self) -> [usize; 4] {
        self.shape
    }

    /// Output names and shapes, in output order.
    pub fn outputs(&self) -> &[(String, Vec<usize>)] {
        &self.outputs
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs one NCHW f32 input of the pinned shape; returns every output flattened, in order.
    pub fn run(&self, data: Vec<f32>) -> Result<Vec<Vec<f32>>> {
        let plan = match &self.runtime {
            Runtime::Tract(plan) => plan,
            Runtime::Native(net, pick) => return self.run_native(net, pick, &data),
            #[cfg(feature = "ort")]
            Runtime::Ort(net) => return net.run(&self.path, self.shape, data),
        };
        let tensor = tract_ndarray::Array4::from_shape_vec(self.shape, data)
            .map_err(|e| Error::bundle(&self.path, format!("input tensor: {e}")))?;
        let result = plan
            .run(tvec!(Tensor::from(tensor).into()))
            .map_err(|e| tract_err(&self.path, "inference failed", e))?;
        result
            .iter()
            .map(|t| {
                t.to_plain_array_view::<f32>()
                    .map(|v| v.iter().copied().collect())
                    .map_err(|e| tract_err(&self.path, "output", e))
            })
            .collect()
    }
}

impl Net {
    /// Runs each input of the batch on the native plan; the selected outputs of the items,
    /// concatenated in batch order.
    fn run_native(
        &self,
        net: &super::native::NativeNet,
        pick: &[usize],
        data: &[f32],
    ) -> Result<Vec<Vec<f32>>> {
        let one: usize = self.shape[1..].iter().product();
        if data.len() != one * self.shape[0] {
            return Err(Error::bundle(
                &self.path,
                format!(
                    "input tensor: {} values, expected {}",
                    data.len(),
                    one * self.shape[0]
                ),
            ));
        }
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); pick.len()];
        for item in data.chunks(one) {
            let mut all = net
                .run(item)
                .map_err(|e| Error::bundle(&self.path, format!("inference failed: {e}")))?;
            for (o, &i) in out.iter_mut().zip(pick) {
                o.append(&mut all[i]);
            }
        }
        Ok(out)
    }
}

/// Parses ONNX `bytes`, pins the input to `shape` f32, selects `outputs` (all when empty)
/// and declutters: the stage the model cache stores.
fn decluttered(
    path: &Path,
    bytes: &[u8],
    shape: [usize; 4],
    outputs: &[String],
) -> Result<TypedModel> {
    let mut model = tract_onnx::onnx()
        .with_ignore_output_shapes(true)
        .with_ignore_value_info(true)
        .model_for_read(&mut std::io::Cursor::new(bytes))
        .map_err(|e| tract_err(path, "not a loadable ONNX model", e))?;
    if model.input_outlets().map(|i| i.len()).unwrap_or(0) != 1 {
        return Err(Error::bundle(
            path,
            "the model must have exactly one input (the image)",
        ));
    }
    if !outputs.is_empty() {
        model
            .select_outputs_by_name(outputs)
            .map_err(|e| tract_err(path, "missing output", e))?;
    }
    model
        .with_input_fact(0, f32::fact(shape).into())
        .map_err(|e| tract_err(path, "input", e))?
        .into_typed()
        .and_then(|m| m.into_decluttered())
        .map_err(|e| {
            tract_err(
                path,
                "cannot optimise the model for the manifest's input size",
                e,
            )
        })
}

/// Sum of the fused multiply-adds every node reports (0 for nodes without a cost model).
fn count_macs(model: &TypedModel) -> u64 {
    let mut total = 0u64;
    for node in model.nodes() {
        let Ok(inputs) = model.node_input_facts(node.id) else {
            continue;
        };
        let Ok(costs) = node.op.cost(&inputs) else {
            continue;
        };
        for (cost, n) in costs {
            if let (tract_onnx::tract_core::ops::Cost::FMA(_), Ok(n)) = (cost, n.to_i64()) {
                total = total.saturating_add(n.max(0) as u64);
            }
        }
    }
    total
}
