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

/// A planned network with its buffers.
pub struct NativeNet {
    plan: plan::Plan,
    /// Idle workspaces: a pass takes one (or makes one when passes overlap) and puts it
    /// back, so steady state allocates nothing.
    workspaces: Mutex<Vec<exec::Workspace>>,
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
        let workspaces = Mutex::new(vec![exec::Workspace::new(&plan)?]);
        Ok(NativeNet { plan, workspaces })
    }

    /// Runs one NCHW f32 input; returns every output flattened (ONNX order), in output order.
    pub fn run(&self, input: &[f32]) -> Result<Vec<Vec<f32>>, NativeError> {
        let idle = self.workspaces.lock().ok().and_then(|mut w| w.pop());
        let mut ws = match idle {
            Some(ws) => ws,
            // every workspace is in use by a concurrent pass: one more, kept afterwards
            None => exec::Workspace::new(&self.plan)?,
        };
        let out = exec::run(&self.plan, &mut ws, input);
        if let Ok(mut w) = self.workspaces.lock() {
            w.push(ws);
        }
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
