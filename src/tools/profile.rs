//! What tract makes of one model: the optimised graph's operators, the matrix kernels it
//! picked, and where the time of a forward pass goes.
//!
//! Consumes ONNX bytes and a pinned input shape `[1, 3, height, width]`; produces a
//! [`Profile`] (operator counts of the decluttered and optimised graphs, the kernel each
//! matrix product runs on, and the mean wall time per operator kind over a few passes on a
//! constant input). It is the tool for "check what the optimised graph holds": whether an
//! int8 model reaches integer kernels, and which operators cost what.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use tract_onnx::prelude::*;

use crate::engine::native::{ByFeatures, NativeNet, StepTime};

use crate::{Error, Result};

/// One operator kind of the optimised graph.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OpTime {
    /// tract's operator name (e.g. `OptMatMul`, `LazyIm2col`).
    pub op: String,
    /// Nodes of this kind in the optimised graph.
    pub nodes: usize,
    /// Mean time per forward pass spent in these nodes, milliseconds.
    pub ms: f64,
}

/// What [`profile`] found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Profile {
    /// Operator kinds of the decluttered graph (before kernel selection), with counts.
    pub decluttered: BTreeMap<String, usize>,
    /// Operator kinds of the optimised graph, slowest first.
    pub ops: Vec<OpTime>,
    /// The slowest single nodes: (node name, operator, ms per pass), slowest first, at most 12.
    pub slowest: Vec<(String, String, f64)>,
    /// Matrix kernels picked for the optimised graph's products, with how many products use each.
    pub kernels: BTreeMap<String, usize>,
    /// Seconds spent parsing, typing + decluttering, and optimising.
    pub load_s: [f64; 3],
    /// Mean wall time of one whole forward pass, milliseconds.
    pub pass_ms: f64,
}

fn err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    let text = format!("{e:#}");
    Error::bundle(
        path,
        format!("{what}: {}", text.lines().next().unwrap_or("").trim()),
    )
}

/// The kernel name inside a matrix product's description, e.g. `avx512_mmm_f32_16x12` from
/// `... with [avx512_mmm_f32_16x12] | ...`.
fn kernel_of(info: &str) -> Option<String> {
    let start = info.find("with [")? + "with [".len();
    let end = info[start..].find(']')? + start;
    Some(info[start..end].to_string())
}

/// Loads `bytes`, pins the input to `[1, 3, height, width]` f32, optimises, and times
/// `passes` forward passes (after one warm-up) on a constant input.
pub fn profile(
    path: &Path,
    bytes: &[u8],
    width: u32,
    height: u32,
    passes: usize,
) -> Result<Profile> {
    let t0 = Instant::now();
    let model = tract_onnx::onnx()
        .with_ignore_output_shapes(true)
        .with_ignore_value_info(true)
        .model_for_read(&mut std::io::Cursor::new(bytes))
        .map_err(|e| err(path, "not a loadable ONNX model", e))?;
    let t1 = Instant::now();
    let shape = [1usize, 3, height as usize, width as usize];
    let decluttered = model
        .with_input_fact(0, f32::fact(shape).into())
        .and_then(|m| m.into_typed())
        .and_then(|m| m.into_decluttered())
        .map_err(|e| err(path, "cannot type the model for this input size", e))?;
    let t2 = Instant::now();
    let mut declutter_counts = BTreeMap::new();
    for n in decluttered.nodes() {
        *declutter_counts.entry(n.op.name().to_string()).or_insert(0) += 1;
    }
    let optimised = decluttered
        .into_optimized()
        .map_err(|e| err(path, "cannot optimise", e))?;
    let t3 = Instant::now();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut kernels = BTreeMap::new();
    for n in optimised.nodes() {
        *counts.entry(n.op.name().to_string()).or_insert(0) += 1;
        if let Ok(info) = n.op.info() {
            if let Some(k) = info.iter().find_map(|l| kernel_of(l)) {
                *kernels.entry(k).or_insert(0) += 1;
            }
        }
    }
    let plan = optimised
        .into_runnable()
        .map_err(|e| err(path, "cannot plan", e))?;
    let input: Tensor = tract_ndarray::Array4::<f32>::from_elem(shape, 0.1).into();
    let mut state = plan.spawn().map_err(|e| err(path, "cannot plan", e))?;
    state
        .run(tvec!(input.clone().into()))
        .map_err(|e| err(path, "inference failed", e))?;
    let passes = passes.max(1);
    let mut per_op: BTreeMap<String, Duration> = BTreeMap::new();
    let mut per_node: BTreeMap<(String, String), Duration> = BTreeMap::new();
    let t4 = Instant::now();
    for _ in 0..passes {
        state
            .run_plan_with_eval(tvec!(input.clone().into()), |ctx, s, node, inputs| {
                let t = Instant::now();
                let r = tract_onnx::tract_core::plan::eval(ctx, s, node, inputs);
                let dt = t.elapsed();
                *per_op.entry(node.op.name().to_string()).or_default() += dt;
                *per_node
                    .entry((node.name.clone(), node.op.name().to_string()))
                    .or_default() += dt;
                r
            })
            .map_err(|e| err(path, "inference failed", e))?;
    }
    let pass_ms = t4.elapsed().as_secs_f64() * 1e3 / passes as f64;
    let mut ops: Vec<OpTime> = counts
        .iter()
        .map(|(op, &nodes)| OpTime {
            op: op.clone(),
            nodes,
            ms: per_op
                .get(op)
                .map_or(0.0, |d| d.as_secs_f64() * 1e3 / passes as f64),
        })
        .collect();
    ops.sort_by(|a, b| b.ms.total_cmp(&a.ms).then_with(|| a.op.cmp(&b.op)));
    let mut slowest: Vec<(String, String, f64)> = per_node
        .into_iter()
        .map(|((n, op), d)| (n, op, d.as_secs_f64() * 1e3 / passes as f64))
        .collect();
    slowest.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    slowest.truncate(12);
    Ok(Profile {
        slowest,
        decluttered: declutter_counts,
        ops,
        kernels,
        load_s: [
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64(),
        ],
        pass_ms,
    })
}

/// Steps of one kind and geometry (a [`StepTime`] label without its node name).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepGroup {
    /// Kind, geometry and kernel.
    pub label: String,
    /// Steps in the group.
    pub steps: usize,
    /// Their multiply-accumulates per pass.
    pub macs: u64,
    /// Their wall time per pass, milliseconds.
    pub ms: f64,
}

impl StepGroup {
    /// The group's rate, GMAC/s (0 for groups without products or time).
    pub fn gmac_per_s(&self) -> f64 {
        if self.ms > 0.0 {
            self.macs as f64 / self.ms / 1e6
        } else {
            0.0
        }
    }
}

/// What [`profile_native`] found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NativeProfile {
    /// Threads per pass.
    pub threads: usize,
    /// Kernels the plan uses (picked by CPU features: the deterministic choice).
    pub kernels: Vec<String>,
    /// Seconds to import and plan.
    pub load_s: f64,
    /// Sum of the steps' wall times, milliseconds per pass.
    pub pass_ms: f64,
    /// Multiply-accumulates of one pass.
    pub macs: u64,
    /// Steps grouped by kind and geometry, slowest first.
    pub groups: Vec<StepGroup>,
    /// Every step in plan order.
    pub steps: Vec<StepTime>,
}

/// Groups steps by label without the trailing node name, slowest group first.
pub fn group_steps(steps: &[StepTime]) -> Vec<StepGroup> {
    let mut groups: Vec<StepGroup> = Vec::new();
    for st in steps {
        let label = st.label.split(" (").next().unwrap_or("").to_string();
        match groups.iter_mut().find(|g| g.label == label) {
            Some(g) => {
                g.steps += 1;
                g.macs += st.macs;
                g.ms += st.ms;
            }
            None => groups.push(StepGroup {
                label,
                steps: 1,
                macs: st.macs,
                ms: st.ms,
            }),
        }
    }
    groups.sort_by(|a, b| b.ms.total_cmp(&a.ms).then_with(|| a.label.cmp(&b.label)));
    groups
}

/// Imports `bytes` into the native engine for a `width` x `height` input, plans it for
/// `threads` threads and times each step over `passes` passes (after one warm-up).
pub fn profile_native(
    path: &Path,
    bytes: &[u8],
    width: u32,
    height: u32,
    passes: usize,
    threads: usize,
) -> Result<NativeProfile> {
    let t0 = Instant::now();
    let net = NativeNet::from_onnx(
        bytes,
        width as usize,
        height as usize,
        threads,
        &mut ByFeatures,
    )
    .map_err(|e| err(path, "the native engine cannot run it", e))?;
    let load_s = t0.elapsed().as_secs_f64();
    let n = 3 * width as usize * height as usize;
    let input: Vec<f32> = (0..n)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let steps = net
        .profile(&input, passes)
        .map_err(|e| err(path, "inference failed", e))?;
    Ok(NativeProfile {
        threads,
        kernels: net.kernels(),
        load_s,
        pass_ms: steps.iter().map(|s| s.ms).sum(),
        macs: net.macs(),
        groups: group_steps(&steps),
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_are_read_from_the_description() {
        let info = "Mult: m:64 k:576 n:12544 with [avx512_mmm_f32_16x12] | Ops: matmul";
        assert_eq!(kernel_of(info).as_deref(), Some("avx512_mmm_f32_16x12"));
        assert_eq!(kernel_of("c_shape:1,1,64"), None);
    }

    #[test]
    fn a_synthesized_net_is_profiled() {
        let s = crate::tools::synth::synth(crate::tools::synth::Arch::RetinafaceMnet025, 1);
        let p = profile(Path::new("r.onnx"), &s.onnx, 64, 64, 1).unwrap();
        assert!(p.ops.iter().any(|o| o.op == "OptMatMul" && o.nodes > 0));
        assert!(!p.kernels.is_empty(), "no matrix kernel named");
        let nodes: usize = p.ops.iter().map(|o| o.nodes).sum();
        assert!(nodes > 50, "{nodes} nodes");
        assert!(p.pass_ms > 0.0);
        assert!(p.decluttered.get("Conv").copied().unwrap_or(0) > 10);
    }

    #[test]
    fn a_synthesized_net_is_profiled_natively() {
        let s = crate::tools::synth::synth(crate::tools::synth::Arch::Iresnet50, 1);
        let p = profile_native(Path::new("m.onnx"), &s.onnx, 112, 112, 1, 2).unwrap();
        assert_eq!(p.macs, s.macs, "the plan's products are the architecture's");
        let step_macs: u64 = p.steps.iter().map(|st| st.macs).sum();
        assert_eq!(step_macs, s.macs, "every product is in one step");
        let convs = p
            .steps
            .iter()
            .filter(|st| st.label.starts_with("conv "))
            .count();
        assert!(convs > 40, "{convs} convolutions");
        assert!(p.steps.iter().all(|st| st.ms >= 0.0) && p.pass_ms > 0.0);
        let grouped: usize = p.groups.iter().map(|g| g.steps).sum();
        assert_eq!(grouped, p.steps.len());
        assert!(
            p.groups.windows(2).all(|w| w[0].ms >= w[1].ms),
            "slowest first"
        );
        assert!(p.groups[0].label.contains('['), "the kernel is named");
        assert!(p
            .kernels
            .iter()
            .all(|k| p.groups.iter().any(|g| g.label.contains(k.as_str()))));
    }
}
