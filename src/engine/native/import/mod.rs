//! ONNX -> [`Model`]: the supported operations, with batch normalisations, biases,
//! activations and residual additions folded into the convolutions they follow or precede.
//!
//! Consumes ONNX model bytes (float graphs, and the int8 graphs `model quantize` writes:
//! QuantizeLinear / QLinearConv / DequantizeLinear / MatMulInteger); produces the IR or a
//! [`NativeError::Unsupported`] naming the first operation outside the set (the caller then
//! runs the model on tract-onnx). Shape arithmetic on constants (Shape, Slice, Gather,
//! Unsqueeze, Concat, Constant, Identity, Dropout, Cast) folds away here. The detectors'
//! operations (nearest Resize, Concat of maps, and the heads' Transpose to NHWC, Reshape to
//! `[1, n, k]`, Softmax over `k`) are in [`maps`].

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;
use tract_onnx::pb;

use super::fold::fold_output_affine;
use super::ir::{Act, InputQuant, Model, Op, Output, Post, Shape, ValueId};
use super::onnx::{attr_f, attr_i, tensor, Const, ConstRef, Data};
use super::NativeError;
use layers::unreachable_const;

mod layers;
mod maps;

/// What an ONNX value name stands for during import.
#[derive(Debug, Clone)]
enum Sym {
    Const(ConstRef),
    /// A feature map; `flat` is the map a vector was flattened from (NCHW order in ONNX).
    Val {
        v: ValueId,
        flat: Option<Shape>,
    },
    /// A per-channel affine of `v` not yet applied (folded into the consumer if it can).
    Affine {
        v: ValueId,
        scale: Vec<f32>,
        shift: Vec<f32>,
    },
    /// A quantized view of `v` (after QuantizeLinear, or a QLinearConv output when `exact`:
    /// `v` then already holds the dequantized codes).
    Quant {
        v: ValueId,
        flat: Option<Shape>,
        pre: Option<(Vec<f32>, Vec<f32>)>,
        q: InputQuant,
        exact: bool,
    },
    /// `v` transposed to NHWC (ONNX `[1, h, w, c]`): the stored buffer as it is, waiting
    /// for the Reshape to `[1, n, k]` of a detector head.
    Nhwc {
        v: ValueId,
    },
}

struct Importer {
    syms: HashMap<String, Sym>,
    /// Whether the op that last wrote a value may take more steps (one reader only).
    owner: HashMap<ValueId, usize>,
    pinned: std::collections::HashSet<ValueId>,
    uses: HashMap<String, usize>,
    /// Values that are `[1, n, k]` sequences (stored as `k` channels of `n` pixels).
    seq: std::collections::HashSet<ValueId>,
    model: Model,
}

fn unsupported(n: &pb::NodeProto, why: &str) -> NativeError {
    NativeError::Unsupported {
        op: n.op_type.clone(),
        node: n.name.clone(),
        why: why.to_string(),
    }
}

fn invalid(n: &pb::NodeProto, what: impl Into<String>) -> NativeError {
    NativeError::Invalid {
        node: n.name.clone(),
        what: what.into(),
    }
}

/// Imports ONNX `bytes` whose single input is `[1, 3, height, width]` f32.
pub fn import(bytes: &[u8], width: usize, height: usize) -> Result<Model, NativeError> {
    let m = pb::ModelProto::decode(bytes).map_err(|e| NativeError::Invalid {
        node: String::new(),
        what: format!("not an ONNX model: {e}"),
    })?;
    let g = m.graph.ok_or_else(|| NativeError::Invalid {
        node: String::new(),
        what: "the model has no graph".into(),
    })?;
    let mut im = Importer {
        syms: HashMap::new(),
        owner: HashMap::new(),
        pinned: Default::default(),
        uses: HashMap::new(),
        seq: Default::default(),
        model: Model {
            values: Vec::new(),
            ops: Vec::new(),
            outputs: Vec::new(),
        },
    };
    for t in &g.initializer {
        let c = tensor(t, &t.name)?;
        im.syms.insert(t.name.clone(), Sym::Const(Arc::new(c)));
    }
    let inputs: Vec<&pb::ValueInfoProto> = g
        .input
        .iter()
        .filter(|i| !im.syms.contains_key(&i.name))
        .collect();
    if inputs.len() != 1 {
        return Err(NativeError::Invalid {
            node: String::new(),
            what: format!("the model has {} inputs, expected 1", inputs.len()),
        });
    }
    let input = im.value(Shape {
        c: 3,
        h: height,
        w: width,
    });
    im.syms.insert(
        inputs[0].name.clone(),
        Sym::Val {
            v: input,
            flat: None,
        },
    );
    for n in &g.node {
        for i in &n.input {
            *im.uses.entry(i.clone()).or_default() += 1;
        }
    }
    for o in &g.output {
        *im.uses.entry(o.name.clone()).or_default() += 2;
    }
    for n in &g.node {
        im.node(n)?;
    }
    for o in &g.output {
        let sym = im
            .syms
            .get(&o.name)
            .cloned()
            .ok_or_else(|| NativeError::Invalid {
                node: String::new(),
                what: format!("output '{}' is never computed", o.name),
            })?;
        let (v, flat) = match sym {
            Sym::Val { v, flat } => (v, flat),
            Sym::Affine { .. } | Sym::Quant { .. } => (im.materialize(&o.name, sym)?, None),
            Sym::Const(_) => {
                return Err(NativeError::Invalid {
                    node: String::new(),
                    what: format!("output '{}' is a constant", o.name),
                })
            }
            Sym::Nhwc { .. } => {
                return Err(NativeError::Unsupported {
                    op: "Transpose".into(),
                    node: o.name.clone(),
                    why: "a transposed map as a graph output".into(),
                })
            }
        };
        let s = im.model.values[v];
        let (dims, nchw) = if im.seq.contains(&v) {
            (vec![1, s.pixels(), s.c], false)
        } else if flat.is_some() || (s.h == 1 && s.w == 1) {
            (vec![1, s.len()], false)
        } else {
            (vec![1, s.c, s.h, s.w], true)
        };
        im.model.outputs.push(Output {
            name: o.name.clone(),
            value: v,
            dims,
            nchw,
        });
    }
    Ok(im.model)
}

impl Importer {
    fn value(&mut self, s: Shape) -> ValueId {
        self.model.values.push(s);
        self.model.values.len() - 1
    }

    fn sym(&self, n: &pb::NodeProto, ix: usize) -> Result<Sym, NativeError> {
        let name = n
            .input
            .get(ix)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid(n, format!("input {ix} is missing")))?;
        self.syms
            .get(name)
            .cloned()
            .ok_or_else(|| invalid(n, format!("input '{name}' is not computed before it")))
    }

    fn konst(&self, n: &pb::NodeProto, ix: usize) -> Result<ConstRef, NativeError> {
        match self.sym(n, ix)? {
            Sym::Const(c) => Ok(c),
            _ => Err(unsupported(n, &format!("input {ix} is not a constant"))),
        }
    }

    fn opt_konst(&self, n: &pb::NodeProto, ix: usize) -> Result<Option<ConstRef>, NativeError> {
        if n.input.get(ix).is_none_or(|s| s.is_empty()) {
            return Ok(None);
        }
        self.konst(n, ix).map(Some)
    }

    fn out(&mut self, n: &pb::NodeProto, sym: Sym) {
        if let Some(o) = n.output.first() {
            self.syms.insert(o.clone(), sym);
        }
    }

    /// Whether the value behind input `ix` of `n` is read by `n` only, so its producer may
    /// absorb `n`'s step.
    fn sole_reader(&self, n: &pb::NodeProto, ix: usize) -> bool {
        let pinned = match n.input.get(ix).and_then(|i| self.syms.get(i)) {
            Some(
                Sym::Val { v, .. } | Sym::Affine { v, .. } | Sym::Quant { v, .. } | Sym::Nhwc { v },
            ) => self.pinned.contains(v),
            _ => false,
        };
        !pinned
            && n.input
                .get(ix)
                .is_some_and(|i| self.uses.get(i).copied().unwrap_or(0) == 1)
    }

    /// Input 0 of an aliasing node (its output names the same value): a value read elsewhere
    /// through the old name is pinned (no producer may absorb later steps).
    fn alias_from(&mut self, n: &pb::NodeProto) {
        if self.sole_reader(n, 0) {
            return;
        }
        if let Some(
            Sym::Val { v, .. } | Sym::Affine { v, .. } | Sym::Quant { v, .. } | Sym::Nhwc { v },
        ) = n.input.first().and_then(|i| self.syms.get(i))
        {
            self.pinned.insert(*v);
        }
    }

    /// Turns a pending affine or quantization into a stored value.
    fn materialize(&mut self, name: &str, sym: Sym) -> Result<ValueId, NativeError> {
        let (v, post) = match sym {
            Sym::Val { v, .. } => return Ok(v),
            Sym::Affine { v, scale, shift } => (v, vec![Post::Affine { scale, shift }]),
            Sym::Quant {
                v, pre, q, exact, ..
            } => {
                if exact {
                    return Ok(v);
                }
                let mut post = Vec::new();
                if let Some((scale, shift)) = pre {
                    post.push(Post::Affine { scale, shift });
                }
                post.push(Post::Requant {
                    scale: q.scale,
                    zero: q.zero,
                    lo: q.lo,
                    hi: q.hi,
                });
                (v, post)
            }
            Sym::Const(_) => {
                return Err(NativeError::Unsupported {
                    op: "Constant".into(),
                    node: name.into(),
                    why: "a constant used as a feature map".into(),
                })
            }
            Sym::Nhwc { .. } => {
                return Err(NativeError::Unsupported {
                    op: "Transpose".into(),
                    node: name.into(),
                    why: "a transposed map read other than by a Reshape to [1, n, k]".into(),
                })
            }
        };
        let out = self.value(self.model.values[v]);
        if self.seq.contains(&v) {
            self.seq.insert(out);
        }
        self.model.ops.push(Op::Map {
            input: v,
            output: out,
            post,
        });
        self.owner.insert(out, self.model.ops.len() - 1);
        Ok(out)
    }

    /// A stored feature map for input `ix` (pending steps applied).
    fn map_in(
        &mut self,
        n: &pb::NodeProto,
        ix: usize,
    ) -> Result<(ValueId, Option<Shape>), NativeError> {
        match self.sym(n, ix)? {
            Sym::Val { v, flat } => Ok((v, flat)),
            s @ (Sym::Affine { .. } | Sym::Quant { .. }) => {
                Ok((self.materialize(&n.name, s)?, None))
            }
            Sym::Const(_) => Err(unsupported(n, "a constant where a feature map is expected")),
            Sym::Nhwc { .. } => Err(unsupported(
                n,
                "a transposed map read other than by a Reshape to [1, n, k]",
            )),
        }
    }

    /// Appends `post` to the op producing input 0 of `n` when it may, else adds a Map op.
    fn elementwise(&mut self, n: &pb::NodeProto, post: Post) -> Result<(), NativeError> {
        let (v, flat) = self.map_in(n, 0)?;
        let sole = self.sole_reader(n, 0);
        if let (true, Some(&op)) = (sole, self.owner.get(&v)) {
            match &mut self.model.ops[op] {
                Op::Conv(c) if c.output == v => {
                    if !fold_output_affine(c, &post) {
                        c.post.push(post)
                    }
                }
                Op::Map {
                    output, post: p, ..
                } if *output == v => p.push(post),
                _ => return self.map_op(n, v, flat, post),
            }
            self.out(n, Sym::Val { v, flat });
            return Ok(());
        }
        self.map_op(n, v, flat, post)
    }

    fn map_op(
        &mut self,
        n: &pb::NodeProto,
        v: ValueId,
        flat: Option<Shape>,
        post: Post,
    ) -> Result<(), NativeError> {
        let out = self.value(self.model.values[v]);
        if self.seq.contains(&v) {
            self.seq.insert(out);
        }
        let map = Op::Map {
            input: v,
            output: out,
            post: vec![post],
        };
        self.push_op(n, map, flat);
        Ok(())
    }

    /// Appends `op`, records it as the writer of its output (so later steps may fuse into
    /// it) and names that value after `n`'s output.
    fn push_op(&mut self, n: &pb::NodeProto, op: Op, flat: Option<Shape>) {
        let out = op.output();
        self.model.ops.push(op);
        self.owner.insert(out, self.model.ops.len() - 1);
        self.out(n, Sym::Val { v: out, flat });
    }

    /// Per-channel vector of a constant broadcast against a map of `c` channels.
    fn per_channel(
        &self,
        n: &pb::NodeProto,
        k: &ConstRef,
        c: usize,
    ) -> Result<Vec<f32>, NativeError> {
        let v = k.f32s();
        let ok_dims = k.dims.iter().filter(|&&d| d != 1).count() <= 1;
        match v.len() {
            1 => Ok(vec![v[0]; c]),
            l if l == c && ok_dims => Ok(v),
            _ => Err(unsupported(
                n,
                &format!("constant of dims {:?} on {c} channels", k.dims),
            )),
        }
    }

    /// A per-channel affine `x * scale + shift` on input 0 of `n`: pending when its producer
    /// cannot take it (a convolution reading it folds it), else appended to the producer.
    fn affine(
        &mut self,
        n: &pb::NodeProto,
        scale: Vec<f32>,
        shift: Vec<f32>,
    ) -> Result<(), NativeError> {
        match self.sym(n, 0)? {
            Sym::Affine {
                v,
                scale: s0,
                shift: t0,
            } => {
                let s = s0.iter().zip(&scale).map(|(a, b)| a * b).collect();
                let t = t0
                    .iter()
                    .zip(&scale)
                    .zip(&shift)
                    .map(|((a, b), c)| a * b + c)
                    .collect();
                self.out(
                    n,
                    Sym::Affine {
                        v,
                        scale: s,
                        shift: t,
                    },
                );
                Ok(())
            }
            Sym::Val { v, flat: None }
                if !(self.seq.contains(&v)
                    || self.sole_reader(n, 0) && self.owner.contains_key(&v)) =>
            {
                self.out(n, Sym::Affine { v, scale, shift });
                Ok(())
            }
            _ => self.elementwise(n, Post::Affine { scale, shift }),
        }
    }

    fn channels(&self, n: &pb::NodeProto) -> Result<usize, NativeError> {
        match self.sym(n, 0)? {
            Sym::Val { v, .. } | Sym::Affine { v, .. } | Sym::Quant { v, .. }
                if !self.seq.contains(&v) =>
            {
                Ok(self.model.values[v].c)
            }
            Sym::Const(_) => Err(unsupported(n, "a constant input")),
            _ => Err(unsupported(
                n,
                "a per-channel constant on a transposed or [1, n, k] value",
            )),
        }
    }

    fn node(&mut self, n: &pb::NodeProto) -> Result<(), NativeError> {
        let op = n.op_type.as_str();
        if !n.domain.is_empty() && n.domain != "ai.onnx" {
            return Err(unsupported(n, "operator domain"));
        }
        // a [1, n, k] sequence goes only where its layout means what ONNX means
        let seq_ok = matches!(
            op,
            "Relu"
                | "LeakyRelu"
                | "Sigmoid"
                | "Add"
                | "Sub"
                | "Mul"
                | "Div"
                | "Concat"
                | "Softmax"
                | "Identity"
                | "Dropout"
                | "Cast"
        );
        let reads_seq = n.input.iter().any(|i| {
            matches!(self.syms.get(i),
                Some(Sym::Val { v, .. } | Sym::Affine { v, .. } | Sym::Quant { v, .. })
                    if self.seq.contains(v))
        });
        if reads_seq && !seq_ok {
            return Err(unsupported(n, "a [1, n, k] sequence as input"));
        }
        // constant folding and aliases first
        let all_const = !n.input.is_empty()
            && n.input
                .iter()
                .filter(|i| !i.is_empty())
                .all(|i| matches!(self.syms.get(i), Some(Sym::Const(_))));
        match op {
            "Constant" => {
                let t = n
                    .attribute
                    .iter()
                    .find(|a| a.name == "value")
                    .and_then(|a| a.t.as_ref())
                    .ok_or_else(|| unsupported(n, "Constant without a tensor value"))?;
                let c = tensor(t, &n.name)?;
                self.out(n, Sym::Const(Arc::new(c)));
                return Ok(());
            }
            "Identity" | "Dropout" => {
                self.alias_from(n);
                let s = self.sym(n, 0)?;
                self.out(n, s);
                return Ok(());
            }
            "Cast" => {
                let s = self.sym(n, 0)?;
                if let Sym::Const(c) = &s {
                    let to = attr_i(n, "to", 1);
                    let data = if to == 1 {
                        Data::F32(c.f32s())
                    } else {
                        Data::I64(c.i64s())
                    };
                    self.out(
                        n,
                        Sym::Const(Arc::new(Const {
                            dims: c.dims.clone(),
                            data,
                        })),
                    );
                } else {
                    self.alias_from(n);
                    self.out(n, s);
                }
                return Ok(());
            }
            "Shape" => {
                let s = match self.sym(n, 0)? {
                    Sym::Val { v, flat: None } | Sym::Affine { v, .. } => {
                        let s = self.model.values[v];
                        vec![1, s.c as i64, s.h as i64, s.w as i64]
                    }
                    Sym::Val { v, flat: Some(_) } => vec![1, self.model.values[v].len() as i64],
                    Sym::Const(c) => c.dims.iter().map(|&d| d as i64).collect(),
                    Sym::Quant { .. } | Sym::Nhwc { .. } => {
                        return Err(unsupported(n, "Shape of a quantized or transposed value"))
                    }
                };
                self.out(n, Sym::Const(Arc::new(Const::ints(s))));
                return Ok(());
            }
            _ => {}
        }
        if all_const {
            let c = super::fold::const_op(n, |ix| self.konst(n, ix))?;
            self.out(n, Sym::Const(Arc::new(c)));
            return Ok(());
        }
        match op {
            "Conv" => self.conv(n),
            "Gemm" | "MatMul" => self.gemm(n),
            "BatchNormalization" => {
                let c = self.channels(n)?;
                let eps = attr_f(n, "epsilon", 1e-5);
                let g = self.per_channel(n, &self.konst(n, 1)?, c)?;
                let b = self.per_channel(n, &self.konst(n, 2)?, c)?;
                let m = self.per_channel(n, &self.konst(n, 3)?, c)?;
                let var = self.per_channel(n, &self.konst(n, 4)?, c)?;
                let scale: Vec<f32> = (0..c).map(|i| g[i] / (var[i] + eps).sqrt()).collect();
                let shift = (0..c).map(|i| b[i] - m[i] * scale[i]).collect();
                self.affine(n, scale, shift)
            }
            "Add" | "Sub" | "Mul" | "Div" => self.arith(n),
            "Relu" => self.elementwise(n, Post::Act(Act::Relu)),
            "LeakyRelu" => self.elementwise(n, Post::Act(Act::Leaky(attr_f(n, "alpha", 0.01)))),
            "Sigmoid" => self.elementwise(n, Post::Act(Act::Sigmoid)),
            "PRelu" => {
                let c = self.channels(n)?;
                let slope = self.per_channel(n, &self.konst(n, 1)?, c)?;
                self.elementwise(n, Post::Act(Act::Prelu(slope)))
            }
            "Reshape" if matches!(self.sym(n, 0)?, Sym::Nhwc { .. }) => self.head_reshape(n),
            "Transpose" => self.transpose(n),
            "Resize" => self.resize(n),
            "Concat" => self.concat(n),
            "Softmax" => self.softmax(n),
            "Flatten" | "Reshape" => {
                let (v, _) = self.map_in(n, 0)?;
                if self.seq.contains(&v) {
                    return Err(unsupported(n, "reshaping a [1, n, k] sequence"));
                }
                let s = self.model.values[v];
                if op == "Reshape" {
                    let target = self.konst(n, 1)?.i64s();
                    let ok = matches!(target.as_slice(), [1, -1] | [-1])
                        || (target.len() == 2 && target[0] == 1 && target[1] as usize == s.len());
                    if !ok {
                        return Err(unsupported(n, &format!("reshape to {target:?}")));
                    }
                } else if attr_i(n, "axis", 1) != 1 {
                    return Err(unsupported(n, "flatten axis other than 1"));
                }
                let flat = (s.pixels() > 1).then_some(s);
                self.alias_from(n);
                self.out(n, Sym::Val { v, flat });
                Ok(())
            }
            "MaxPool" => self.maxpool(n),
            "QuantizeLinear" => {
                let scale = self.konst(n, 1)?.f32s();
                let zp = self.opt_konst(n, 2)?;
                if scale.len() != 1 || zp.as_ref().is_some_and(|z| z.len() != 1) {
                    return Err(unsupported(n, "per-axis activation quantization"));
                }
                let (lo, hi) = zp.as_ref().map_or((0, 255), |z| z.code_range());
                let zero = zp.map_or(0, |z| z.i64s()[0] as i32);
                let q = InputQuant {
                    scale: scale[0],
                    zero,
                    lo,
                    hi,
                };
                self.alias_from(n);
                let sym = match self.sym(n, 0)? {
                    Sym::Val { v, flat } => Sym::Quant {
                        v,
                        flat,
                        pre: None,
                        q,
                        exact: false,
                    },
                    Sym::Affine { v, scale, shift } => Sym::Quant {
                        v,
                        flat: None,
                        pre: Some((scale, shift)),
                        q,
                        exact: false,
                    },
                    _ => return Err(unsupported(n, "quantizing a quantized value")),
                };
                self.out(n, sym);
                Ok(())
            }
            "DequantizeLinear" => {
                self.alias_from(n);
                let s = self.sym(n, 0)?;
                let v = self.materialize(&n.name, s)?;
                self.out(n, Sym::Val { v, flat: None });
                Ok(())
            }
            "QLinearConv" => self.qconv(n),
            "MatMulInteger" => self.matmul_integer(n),
            _ => Err(unsupported(n, "operation outside the native set")),
        }
    }

    fn arith(&mut self, n: &pb::NodeProto) -> Result<(), NativeError> {
        let op = n.op_type.as_str();
        let (a, b) = (self.sym(n, 0)?, self.sym(n, 1)?);
        match (&a, &b) {
            (Sym::Const(_), Sym::Const(_)) => unreachable_const(n),
            (_, Sym::Const(k)) => {
                let c = self.channels(n)?;
                let k = self.per_channel(n, k, c)?;
                let (s, t) = match op {
                    "Add" => (vec![1.0; c], k),
                    "Sub" => (vec![1.0; c], k.iter().map(|x| -x).collect()),
                    "Mul" => (k, vec![0.0; c]),
                    _ => (k.iter().map(|x| 1.0 / x).collect(), vec![0.0; c]),
                };
                self.affine(n, s, t)
            }
            (Sym::Const(k), _) if op != "Div" => {
                // constant first: move it second
                let mut swapped = n.clone();
                swapped.input.swap(0, 1);
                let c = self.channels(&swapped)?;
                let k = self.per_channel(n, k, c)?;
                let (s, t) = match op {
                    "Add" => (vec![1.0; c], k),
                    "Sub" => (vec![-1.0; c], k),
                    _ => (k, vec![0.0; c]),
                };
                self.affine(&swapped, s, t)
            }
            _ if op == "Add" => self.residual(n),
            _ => Err(unsupported(n, "two feature maps")),
        }
    }
}
