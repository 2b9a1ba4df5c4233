//! The native inference engine: convolutional networks run directly on tract-linalg's
//! matrix kernels, without tract-onnx's graph.
//!
//! Consumes ONNX bytes (float, or the int8 forms `model quantize` writes) or a compiled
//! model; produces a [`NativeNet`] that runs NCHW f32 inputs of a fixed size and returns the
//! outputs as f32 vectors, like the tract-onnx engine. Stages: [`import`] (ONNX -> [`ir`]:
//! batch norms, biases, activations and residual additions folded), [`plan`] (weights
//! packed once, one arena, work split for threads), [`exec`] (one pass, no allocation).
//! A model with an operation outside the set fails with [`NativeError::Unsupported`]; the
//! caller then runs it on tract-onnx.

pub mod choose;
pub mod compiled;
pub mod exec;
pub mod fold;
pub mod im2col;
pub mod import;
pub mod ir;
pub mod kernels;
pub mod onnx;
pub mod plan;

use std::sync::Mutex;

use kernels::{Kernel, Precision};

/// What can go wrong importing, planning or running a native network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NativeError {
    /// An operation (or a form of it) outside the native set: run the model on tract-onnx.
    #[error("operation {op} (node '{node}') is not supported by the native engine: {why}")]
    Unsupported {
        /// ONNX op type.
        op: String,
        /// Node name.
        node: String,
        /// Which form is missing.
        why: String,
    },
    /// The model is malformed.
    #[error("node '{node}': {what}")]
    Invalid {
        /// Node name (empty for the graph).
        node: String,
        /// What is wrong.
        what: String,
    },
    /// The input has the wrong number of values.
    #[error("input of {got} values, expected {expected}")]
    Input {
        /// Values expected.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// tract-linalg refused a product or a packing.
    #[error("matrix kernel: {0}")]
    Kernel(String),
    /// A compiled model file was refused.
    #[error(transparent)]
    Compiled(#[from] compiled::CompiledError),
}

/// Picks kernels by CPU features alone (deterministic: the same choice on every run).
#[derive(Debug, Default, Clone, Copy)]
pub struct ByFeatures;

impl plan::KernelChooser for ByFeatures {
    fn choose(
        &mut self,
        precision: Precision,
        _m: usize,
        _k: usize,
        _n: usize,
    ) -> Result<Kernel, NativeError> {
        kernels::by_features(precision)
    }
}

/// How the native engine picks its matrix kernels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KernelMode {
    /// Time the candidates per product shape once per device and remember the fastest in
    /// the cache folder ([`choose::Measured`]); without a cache folder, by features.
    #[default]
    Measured,
    /// By CPU features alone ([`ByFeatures`]): deterministic, for emulators and tests.
    Features,
}

/// A kernel chooser shared by the threads that load a bundle's models.
#[derive(Debug)]
pub enum Chooser {
    /// Timed choices remembered in a file.
    Measured(choose::Measured),
    /// By CPU features.
    Features(ByFeatures),
}

/// Name of the kernel-choice file in the cache folder.
pub const CHOICE_FILE: &str = "native-kernels.txt";

impl Chooser {
    /// The chooser for `mode`, remembering timed choices in `cache_dir` (none: by features).
    pub fn new(mode: KernelMode, cache_dir: Option<&std::path::Path>) -> Chooser {
        match (mode, cache_dir) {
            (KernelMode::Measured, Some(dir)) => {
                Chooser::Measured(choose::Measured::open(Some(&dir.join(CHOICE_FILE))))
            }
            _ => Chooser::Features(ByFeatures),
        }
    }

    /// Writes newly measured choices (a no-op by features); what happened to the file.
    pub fn finish(&mut self) -> Option<choose::ChoiceReport> {
        match self {
            Chooser::Measured(m) => {
                if let Err(e) = m.save() {
                    m.report.rebuilt.get_or_insert(format!("not saved: {e}"));
                }
                Some(m.report.clone())
            }
            Chooser::Features(_) => None,
        }
    }
}

impl plan::KernelChooser for Chooser {
    fn choose(
        &mut self,
        precision: Precision,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<Kernel, NativeError> {
        match self {
            Chooser::Measured(c) => c.choose(precision, m, k, n),
            Chooser::Features(c) => c.choose(precision, m, k, n),
        }
    }
}

/// One step of a [`NativeNet::profile`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepTime {
    /// What the step computes (kind, geometry, node name).
    pub label: String,
    /// Multiply-accumulates of the step (0 for steps without products).
    pub macs: u64,
    /// Mean wall time per pass, milliseconds.
    pub ms: f64,
}

/// Idle workspaces, shared by every network of the process: a pass takes the largest (or
/// makes one when passes overlap), fits it to its plan and puts it back. The process so
/// holds as many workspaces as passes ever ran at once, each sized for the largest network
/// it served, instead of one per network and concurrent pass; steady state allocates
/// nothing.
static IDLE: Mutex<Vec<exec::Workspace>> = Mutex::new(Vec::new());

fn take_workspace(plan: &plan::Plan) -> Result<exec::Workspace, NativeError> {
    let idle = IDLE.lock().ok().and_then(|mut w| {
        let i = (0..w.len()).max_by_key(|&i| w[i].bytes())?;
        Some(w.swap_remove(i))
    });
    match idle {
        Some(mut ws) => {
            ws.fit(plan)?;
            Ok(ws)
        }
        None => exec::Workspace::new(plan),
    }
}

fn put_workspace(ws: exec::Workspace) {
    if let Ok(mut w) = IDLE.lock() {
        w.push(ws);
    }
}

/// A planned network (its buffers come from the process's shared workspaces).
pub struct NativeNet {
    plan: plan::Plan,
}

impl std::fmt::Debug for NativeNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeNet")
            .field("steps", &self.plan.steps.len())
            .field("threads", &self.plan.threads)
            .finish()
    }
}

impl NativeNet {
    /// Imports ONNX `bytes` with the input pinned to `[1, 3, height, width]` and plans it for
    /// `threads` threads with kernels picked by `chooser`.
    pub fn from_onnx(
        bytes: &[u8],
        width: usize,
        height: usize,
        threads: usize,
        chooser: &mut dyn plan::KernelChooser,
    ) -> Result<NativeNet, NativeError> {
        let model = import::import(bytes, width, height)?;
        NativeNet::from_model(model, threads, chooser)
    }

    /// The compiled file of ONNX `bytes` for a `width` x `height` input: the imported model
    /// (see [`compiled`]), tagged with `source` (the ONNX file's sha256 and the size).
    pub fn compile(bytes: &[u8], source: &compiled::Source) -> Result<Vec<u8>, NativeError> {
        let model = import::import(bytes, source.width as usize, source.height as usize)?;
        Ok(compiled::write(&model, source))
    }

    /// Loads a compiled file made from `source` and plans it (packing happens here).
    pub fn from_compiled(
        bytes: &[u8],
        source: &compiled::Source,
        threads: usize,
        chooser: &mut dyn plan::KernelChooser,
    ) -> Result<NativeNet, NativeError> {
        let model = compiled::read(bytes, source)?;
        NativeNet::from_model(model, threads, chooser)
    }

    /// Plans an imported model (each layer's weights are freed once packed, so the
    /// canonical and the packed copy of the whole network never coexist).
    pub fn from_model(
        model: ir::Model,
        threads: usize,
        chooser: &mut dyn plan::KernelChooser,
    ) -> Result<NativeNet, NativeError> {
        let plan = plan::build(model, threads, chooser)?;
        // the buffers a pass needs are made (or grown) now, not at the first pass
        put_workspace(take_workspace(&plan)?);
        Ok(NativeNet { plan })
    }

    /// Runs one NCHW f32 input; returns every output flattened (ONNX order), in output order.
    pub fn run(&self, input: &[f32]) -> Result<Vec<Vec<f32>>, NativeError> {
        let mut ws = take_workspace(&self.plan)?;
        let out = exec::run(&self.plan, &mut ws, input);
        put_workspace(ws);
        out
    }

    /// Runs `passes` passes of `input` and returns each step's label, multiply-accumulates
    /// and mean wall time, in plan order.
    pub fn profile(&self, input: &[f32], passes: usize) -> Result<Vec<StepTime>, NativeError> {
        let mut ws = exec::Workspace::new(&self.plan)?;
        let mut times = vec![0.0; self.plan.steps.len()];
        exec::run(&self.plan, &mut ws, input)?; // warm-up
        for _ in 0..passes.max(1) {
            exec::run_timed(&self.plan, &mut ws, input, Some(&mut times))?;
        }
        Ok(self
            .plan
            .steps
            .iter()
            .zip(times)
            .map(|(step, t)| {
                let (label, macs) = self.plan.describe(step);
                StepTime {
                    label,
                    macs,
                    ms: t * 1e3 / passes.max(1) as f64,
                }
            })
            .collect())
    }

    /// The input size `(width, height)` the network is planned for.
    pub fn input_size(&self) -> (usize, usize) {
        let s = self.plan.values[0];
        (s.w, s.h)
    }

    /// Output names and ONNX shapes.
    pub fn outputs(&self) -> Vec<(String, Vec<usize>)> {
        self.plan
            .outputs
            .iter()
            .map(|o| (o.name.clone(), o.dims.clone()))
            .collect()
    }

    /// Multiply-accumulates of one pass.
    pub fn macs(&self) -> u64 {
        self.plan.macs
    }

    /// Names of the kernels the plan uses.
    pub fn kernels(&self) -> Vec<String> {
        self.plan
            .kernels
            .iter()
            .map(|k| k.name().to_string())
            .collect()
    }

    /// Bytes of the activation arena.
    pub fn arena_bytes(&self) -> usize {
        self.plan.arena * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::synth::{iresnet, retinaface, Rng};

    fn image(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| rng.uniform() as f32 * 2.0 - 1.0).collect()
    }

    fn planned(bytes: &[u8], side: usize, threads: usize) -> plan::Plan {
        let model = import::import(bytes, side, side).unwrap();
        plan::build(model, threads, &mut ByFeatures).unwrap()
    }

    /// A workspace another network's passes left dirty (and sized) gives each network the
    /// outputs a fresh one gives, and alternating the two networks grows it only once.
    #[test]
    fn a_shared_workspace_gives_each_network_its_own_outputs() {
        let a = planned(&iresnet::build([1, 1, 1, 1], 3).finish("a", ""), 112, 2);
        let b = planned(
            &retinaface::build(retinaface::Backbone::Mobilenet025, 96, 96, 1).finish("b", ""),
            96,
            1,
        );
        let (xa, xb) = (image(3 * 112 * 112, 1), image(3 * 96 * 96, 2));
        let fresh_a = exec::run(&a, &mut exec::Workspace::new(&a).unwrap(), &xa).unwrap();
        let fresh_b = exec::run(&b, &mut exec::Workspace::new(&b).unwrap(), &xb).unwrap();
        let mut ws = exec::Workspace::new(&b).unwrap();
        let mut sizes = Vec::new();
        for _ in 0..3 {
            assert_eq!(exec::run(&a, &mut ws, &xa).unwrap(), fresh_a);
            assert_eq!(exec::run(&b, &mut ws, &xb).unwrap(), fresh_b);
            sizes.push(ws.bytes());
        }
        assert!(sizes.iter().all(|&s| s == sizes[0]), "{sizes:?}");
        let own = exec::Workspace::new(&a).unwrap().bytes();
        assert!(sizes[0] >= own, "{} < {own}", sizes[0]);
    }
}
