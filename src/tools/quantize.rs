//! Post-training int8 quantization of ONNX models, in the form tract runs on integer kernels.
//!
//! Consumes a float ONNX model and calibration inputs (NCHW f32 tensors the runtime itself
//! made: detector inputs of the calibration photos, and the aligned, augmented faces for
//! embedders); produces an int8 ONNX model where every `Conv` with constant weights is a
//! `QLinearConv` (u8 activations with a per-tensor range observed on the calibration set,
//! i8 weights with one symmetric scale per output channel, i32 bias) and every `Gemm`
//! (`transB = 1`) a `MatMulInteger` followed by a per-column rescale. Chains of quantized
//! convolutions stay quantized; float is restored (`DequantizeLinear`) only where a float op
//! reads the value. Optionally the first and last quantizable layers stay float.
//!
//! QuantizeLinear/DequantizeLinear pairs around float convolutions (QDQ) are *not* used:
//! tract folds them back into float convolutions.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use prost::Message;
use tract_onnx::pb;

use crate::engine::Net;
use crate::{Error, Result};

/// What [`quantize`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuantStats {
    /// Convolutions turned into `QLinearConv`.
    pub convs: usize,
    /// Fully connected layers turned into `MatMulInteger`.
    pub gemms: usize,
    /// Quantizable layers left in float (first/last when asked).
    pub kept_float: usize,
}

/// How [`quantize_with`] quantizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuantOptions {
    /// Keep the first and the last quantizable layer in float.
    pub keep_float_ends: bool,
    /// Activations as i8 with zero point 0 (range `[-max|v|, max|v|]`) instead of u8 with a
    /// zero point: with both zero points 0, no zero-point correction is needed.
    pub symmetric_activations: bool,
    /// Leave fully connected (`Gemm`) layers in float. tract sums and packs a
    /// `MatMulInteger`'s constant weights on every run (185 ms of an 876 ms iresnet100 pass,
    /// measured), while the float product of one face is a few milliseconds.
    pub float_gemm: bool,
    /// Leave depthwise convolutions (one input channel per group) in float: tract runs them
    /// in float as a dedicated depthwise kernel, but in int8 as im2col + one-row matrix
    /// products (the int8 RetinaFace-mnet0.25 detected 3.6x slower than the float one).
    pub float_depthwise: bool,
}

/// Observed `[min, max]` of each watched tensor.
pub type Ranges = HashMap<String, (f32, f32)>;

fn decode(bytes: &[u8], path: &Path) -> Result<pb::ModelProto> {
    pb::ModelProto::decode(bytes)
        .map_err(|e| Error::bundle(path, format!("not an ONNX model: {e}")))
}

fn f32_data(t: &pb::TensorProto) -> Option<Vec<f32>> {
    if t.data_type != pb::tensor_proto::DataType::Float as i32 {
        return None;
    }
    if !t.raw_data.is_empty() {
        if t.raw_data.len() % 4 != 0 {
            return None;
        }
        return Some(
            t.raw_data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        );
    }
    Some(t.float_data.clone())
}

fn attr<'a>(n: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

/// The layers worth quantizing: `Conv` with an initializer weight, `Gemm` with an
/// initializer weight, `transB = 1` and unit alpha/beta. Node indices in graph order.
fn quantizable(g: &pb::GraphProto) -> Vec<usize> {
    let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    g.node
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            let w_const = n.input.get(1).is_some_and(|w| inits.contains(w.as_str()));
            let bias_ok = n
                .input
                .get(2)
                .is_none_or(|b| b.is_empty() || inits.contains(b.as_str()));
            match n.op_type.as_str() {
                "Conv" => w_const && bias_ok,
                "Gemm" => {
                    w_const
                        && bias_ok
                        && attr(n, "transA").is_none_or(|a| a.i == 0)
                        && attr(n, "transB").is_some_and(|a| a.i == 1)
                        && attr(n, "alpha").is_none_or(|a| a.f == 1.0)
                        && attr(n, "beta").is_none_or(|a| a.f == 1.0)
                }
                _ => false,
            }
        })
        .map(|(i, _)| i)
        .collect()
}

/// The model with every input and output of a quantizable layer added as a graph output
/// (the graph input excluded), and the names of those outputs in order.
pub fn calibration_model(bytes: &[u8], path: &Path) -> Result<(Vec<u8>, Vec<String>)> {
    let mut m = decode(bytes, path)?;
    let g = m
        .graph
        .as_mut()
        .ok_or_else(|| Error::bundle(path, "the ONNX model has no graph"))?;
    let inputs: HashSet<String> = g.input.iter().map(|i| i.name.clone()).collect();
    let mut watched = Vec::new();
    let mut seen: HashSet<String> = g.output.iter().map(|o| o.name.clone()).collect();
    for i in quantizable(g) {
        let n = &g.node[i];
        for name in [&n.input[0], &n.output[0]] {
            if !inputs.contains(name) && seen.insert(name.clone()) {
                watched.push(name.clone());
            }
        }
    }
    let originals: Vec<String> = g.output.iter().map(|o| o.name.clone()).collect();
    for name in &watched {
        g.output.push(pb::ValueInfoProto {
            name: name.clone(),
            r#type: Some(pb::TypeProto {
                denotation: String::new(),
                value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                    elem_type: pb::tensor_proto::DataType::Float as i32,
                    shape: None,
                })),
            }),
            doc_string: String::new(),
        });
    }
    let mut names = originals;
    names.extend(watched);
    Ok((m.encode_to_vec(), names))
}

/// Runs the calibration model on every input and records the range of every watched
/// tensor (and of the graph input under `input_name`): per input, the `clip` and `1 - clip`
/// quantiles of the values (`clip` = 0: min and max), widened over the inputs.
pub fn observe(
    net: &Net,
    names: &[String],
    input_name: &str,
    inputs: &[Vec<f32>],
    clip: f64,
) -> Result<Ranges> {
    let mut ranges = Ranges::new();
    let mut scratch = Vec::new();
    let mut widen = |name: &str, v: &[f32]| {
        let (lo, hi) = clipped_range(v, clip, &mut scratch);
        let e = ranges.entry(name.to_string()).or_insert((lo, hi));
        e.0 = e.0.min(lo);
        e.1 = e.1.max(hi);
    };
    for x in inputs {
        widen(input_name, x);
        let outs = net.run(x.clone())?;
        for (name, v) in names.iter().zip(&outs) {
            widen(name, v);
        }
    }
    Ok(ranges)
}

/// The `clip` and `1 - clip` quantiles of `v` (min and max when `clip` is 0).
fn clipped_range(v: &[f32], clip: f64, scratch: &mut Vec<f32>) -> (f32, f32) {
    let k = (v.len() as f64 * clip).floor() as usize;
    if k == 0 || v.len() < 3 {
        return v
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| {
                (l.min(x), h.max(x))
            });
    }
    scratch.clear();
    scratch.extend_from_slice(v);
    let n = scratch.len();
    let lo = *scratch.select_nth_unstable_by(k, f32::total_cmp).1;
    let hi = *scratch.select_nth_unstable_by(n - 1 - k, f32::total_cmp).1;
    (lo, hi)
}

/// u8 asymmetric parameters for a range (the range is widened to include 0).
/// Scale and zero point of an activation range: u8 with a zero point, or (symmetric) i8
/// with zero point 0. The zero point is returned as its raw byte.
fn act_params(lo: f32, hi: f32, symmetric: bool) -> (f32, u8) {
    if symmetric {
        let m = lo.abs().max(hi.abs());
        ((m / 127.0).max(1e-8), 0)
    } else {
        u8_params(lo, hi)
    }
}

fn u8_params(lo: f32, hi: f32) -> (f32, u8) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = ((hi - lo) / 255.0).max(1e-8);
    let zp = (-lo / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zp)
}

/// Per-row symmetric i8 quantization of a `[rows, cols]` matrix: (values, scales).
fn i8_rows(w: &[f32], rows: usize) -> (Vec<i8>, Vec<f32>) {
    let cols = w.len() / rows.max(1);
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(rows);
    for r in w.chunks(cols.max(1)) {
        let max = r.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = if max > 0.0 { max / 127.0 } else { 1.0 };
        scales.push(s);
        q.extend(r.iter().map(|v| (v / s).round().clamp(-127.0, 127.0) as i8));
    }
    (q, scales)
}

fn tensor(
    name: &str,
    dims: &[i64],
    dt: pb::tensor_proto::DataType,
    raw: Vec<u8>,
) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: dt as i32,
        raw_data: raw,
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attrs: Vec<pb::AttributeProto>) -> pb::NodeProto {
    pb::NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: format!("{output}_{op}"),
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    }
}

/// Rewrites the float model `bytes` with the calibration `ranges` (see the module docs).
/// `keep_float_ends` leaves the first and the last quantizable layer in float.
pub fn quantize(
    bytes: &[u8],
    path: &Path,
    ranges: &Ranges,
    keep_float_ends: bool,
) -> Result<(Vec<u8>, QuantStats)> {
    quantize_with(
        bytes,
        path,
        ranges,
        &QuantOptions {
            keep_float_ends,
            ..QuantOptions::default()
        },
    )
}

/// [`quantize`] with every option.
pub fn quantize_with(
    bytes: &[u8],
    path: &Path,
    ranges: &Ranges,
    options: &QuantOptions,
) -> Result<(Vec<u8>, QuantStats)> {
    use pb::tensor_proto::DataType as Dt;
    let keep_float_ends = options.keep_float_ends;
    let symmetric = options.symmetric_activations;
    let act_dt = if symmetric { Dt::Int8 } else { Dt::Uint8 };
    let mut m = decode(bytes, path)?;
    let g = m
        .graph
        .as_mut()
        .ok_or_else(|| Error::bundle(path, "the ONNX model has no graph"))?;
    let mut targets = quantizable(g);
    if options.float_gemm {
        targets.retain(|&i| g.node[i].op_type != "Gemm");
    }
    if options.float_depthwise {
        let depthwise: HashSet<&str> = g
            .initializer
            .iter()
            .filter(|t| t.dims.len() == 4 && t.dims[1] == 1)
            .map(|t| t.name.as_str())
            .collect();
        targets.retain(|&i| {
            let n = &g.node[i];
            let groups = attr(n, "group").map_or(1, |a| a.i);
            !(n.op_type == "Conv"
                && groups > 1
                && n.input
                    .get(1)
                    .is_some_and(|w| depthwise.contains(w.as_str())))
        });
    }
    let mut stats = QuantStats::default();
    if keep_float_ends && !targets.is_empty() {
        let before = targets.len();
        targets.remove(0);
        targets.pop();
        stats.kept_float = before - targets.len();
    }
    let targets: HashSet<usize> = targets.into_iter().collect();
    let mut inits: HashMap<String, pb::TensorProto> = std::mem::take(&mut g.initializer)
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    let graph_outputs: HashSet<String> = g.output.iter().map(|o| o.name.clone()).collect();
    // consumers that read a value in float
    let mut float_readers: HashMap<String, usize> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        for (k, inp) in n.input.iter().enumerate() {
            if !(targets.contains(&i) && k == 0) {
                *float_readers.entry(inp.clone()).or_default() += 1;
            }
        }
    }
    let range = |name: &str| {
        ranges
            .get(name)
            .copied()
            .ok_or_else(|| Error::bundle(path, format!("no calibration range for tensor '{name}'")))
    };
    // float value -> (u8 value, scale name, zero-point name)
    let mut quantized: HashMap<String, (String, String, String)> = HashMap::new();
    let mut new_inits: Vec<pb::TensorProto> = Vec::new();
    let mut out_nodes = Vec::new();
    let scalar = |name: String, v: f32, zp: u8, new_inits: &mut Vec<pb::TensorProto>| {
        new_inits.push(tensor(
            &format!("{name}_scale"),
            &[],
            Dt::Float,
            v.to_le_bytes().to_vec(),
        ));
        new_inits.push(tensor(&format!("{name}_zp"), &[], act_dt, vec![zp]));
        (format!("{name}_scale"), format!("{name}_zp"))
    };
    let nodes = std::mem::take(&mut g.node);
    for (i, n) in nodes.into_iter().enumerate() {
        if !targets.contains(&i) {
            out_nodes.push(n);
            continue;
        }
        let x = n.input[0].clone();
        let y = n.output[0].clone();
        let (xq, xs, xz) = match quantized.get(&x) {
            Some(q) => q.clone(),
            None => {
                let (lo, hi) = range(&x)?;
                let (s, z) = act_params(lo, hi, symmetric);
                let (sn, zn) = scalar(format!("{x}_q"), s, z, &mut new_inits);
                let xq = format!("{x}_u8");
                out_nodes.push(node("QuantizeLinear", &[&x, &sn, &zn], &xq, vec![]));
                let q = (xq, sn, zn);
                quantized.insert(x.clone(), q.clone());
                q
            }
        };
        let x_scale = f32::from_le_bytes(
            new_inits
                .iter()
                .find(|t| t.name == xs)
                .and_then(|t| t.raw_data.get(..4))
                .and_then(|b| b.try_into().ok())
                .unwrap_or([0, 0, 128, 63]),
        );
        let w = inits
            .get(&n.input[1])
            .cloned()
            .ok_or_else(|| Error::bundle(path, format!("weight '{}' is missing", n.input[1])))?;
        let wdata = f32_data(&w).ok_or_else(|| {
            Error::bundle(path, format!("weight '{}' is not stored as f32", w.name))
        })?;
        let rows = *w.dims.first().unwrap_or(&1) as usize;
        let (wq, wscales) = i8_rows(&wdata, rows);
        let bias: Vec<f32> = match n.input.get(2).filter(|b| !b.is_empty()) {
            Some(b) => inits.get(b).and_then(f32_data).unwrap_or_default(),
            None => Vec::new(),
        };
        let bias_q: Vec<u8> = (0..rows)
            .flat_map(|r| {
                let b = bias.get(r).copied().unwrap_or(0.0);
                let q = (b as f64 / (x_scale as f64 * wscales[r] as f64)).round();
                (q.clamp(i32::MIN as f64, i32::MAX as f64) as i32).to_le_bytes()
            })
            .collect();
        let base = format!("{y}_int8");
        let wq_raw: Vec<u8> = wq.iter().map(|v| *v as u8).collect();
        if n.op_type == "Conv" {
            let (lo, hi) = range(&y)?;
            let (s, z) = act_params(lo, hi, symmetric);
            let (ysn, yzn) = scalar(format!("{y}_q"), s, z, &mut new_inits);
            new_inits.push(tensor(&format!("{base}_w"), &w.dims, Dt::Int8, wq_raw));
            new_inits.push(tensor(
                &format!("{base}_ws"),
                &[rows as i64],
                Dt::Float,
                wscales.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ));
            new_inits.push(tensor(
                &format!("{base}_wz"),
                &[rows as i64],
                Dt::Int8,
                vec![0; rows],
            ));
            new_inits.push(tensor(
                &format!("{base}_b"),
                &[rows as i64],
                Dt::Int32,
                bias_q,
            ));
            let yq = format!("{y}_u8");
            out_nodes.push(node(
                "QLinearConv",
                &[
                    &xq,
                    &xs,
                    &xz,
                    &format!("{base}_w"),
                    &format!("{base}_ws"),
                    &format!("{base}_wz"),
                    &ysn,
                    &yzn,
                    &format!("{base}_b"),
                ],
                &yq,
                n.attribute.clone(),
            ));
            if float_readers.contains_key(&y) || graph_outputs.contains(&y) {
                out_nodes.push(node("DequantizeLinear", &[&yq, &ysn, &yzn], &y, vec![]));
            }
            quantized.insert(y, (yq, ysn, yzn));
            stats.convs += 1;
        } else {
            // Gemm, transB = 1: y = x W^T + b  ->  MatMulInteger(xq, Wq^T) * (sx * sw) + b
            let cols = wdata.len() / rows.max(1);
            let mut wt = vec![0u8; wq_raw.len()];
            for r in 0..rows {
                for c in 0..cols {
                    wt[c * rows + r] = wq_raw[r * cols + c];
                }
            }
            new_inits.push(tensor(
                &format!("{base}_wt"),
                &[cols as i64, rows as i64],
                Dt::Int8,
                wt,
            ));
            new_inits.push(tensor(&format!("{base}_wz"), &[], Dt::Int8, vec![0]));
            let mult: Vec<u8> = wscales
                .iter()
                .flat_map(|s| (s * x_scale).to_le_bytes())
                .collect();
            new_inits.push(tensor(
                &format!("{base}_mult"),
                &[rows as i64],
                Dt::Float,
                mult,
            ));
            let bias_f: Vec<u8> = (0..rows)
                .flat_map(|r| bias.get(r).copied().unwrap_or(0.0).to_le_bytes())
                .collect();
            new_inits.push(tensor(
                &format!("{base}_bias"),
                &[rows as i64],
                Dt::Float,
                bias_f,
            ));
            let acc = format!("{base}_acc");
            out_nodes.push(node(
                "MatMulInteger",
                &[&xq, &format!("{base}_wt"), &xz, &format!("{base}_wz")],
                &acc,
                vec![],
            ));
            let accf = format!("{base}_accf");
            out_nodes.push(node(
                "Cast",
                &[&acc],
                &accf,
                vec![pb::AttributeProto {
                    name: "to".into(),
                    r#type: pb::attribute_proto::AttributeType::Int as i32,
                    i: Dt::Float as i64,
                    ..Default::default()
                }],
            ));
            let scaled = format!("{base}_scaled");
            out_nodes.push(node(
                "Mul",
                &[&accf, &format!("{base}_mult")],
                &scaled,
                vec![],
            ));
            out_nodes.push(node("Add", &[&scaled, &format!("{base}_bias")], &y, vec![]));
            stats.gemms += 1;
        }
        // the float weight is no longer read by this node
        if let Some(c) = float_readers.get_mut(&n.input[1]) {
            *c = c.saturating_sub(1);
        }
    }
    // keep only initializers something still reads
    let read: HashSet<&str> = out_nodes
        .iter()
        .flat_map(|n: &pb::NodeProto| n.input.iter().map(String::as_str))
        .collect();
    let mut kept: Vec<pb::TensorProto> = inits
        .drain()
        .map(|(_, t)| t)
        .filter(|t| read.contains(t.name.as_str()))
        .collect();
    kept.sort_by(|a, b| a.name.cmp(&b.name));
    kept.extend(new_inits);
    g.initializer = kept;
    g.node = out_nodes;
    g.value_info.clear();
    for o in m.opset_import.iter_mut() {
        if o.domain.is_empty() && o.version < 13 {
            o.version = 13;
        }
    }
    m.producer_name = "gestalt-edge model quantize".into();
    Ok((m.encode_to_vec(), stats))
}

#[cfg(test)]
#[path = "quantize_tests.rs"]
mod tests;
