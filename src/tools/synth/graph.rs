//! A small ONNX graph writer: layers in, `ModelProto` bytes out.
//!
//! Consumes layer calls (conv, batch norm, activations, heads) made by the architecture
//! builders; produces an ONNX model (opset 13, IR 7) with seeded weights stored as raw
//! little-endian initialisers, plus the architecture's parameter and multiply-accumulate
//! counts (counted as PyTorch does: BN running statistics are buffers, not parameters).

use prost::Message;
use tract_onnx::pb;

/// ONNX opset the writer targets (QLinearConv, Resize with sizes, Softmax on any axis).
pub const OPSET: i64 = 13;

/// Deterministic random numbers: splitmix64 (uniform) and Box-Muller (normal).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal.
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// A feature map flowing through the graph: tensor name, channels, height, width.
#[derive(Debug, Clone)]
pub struct T {
    /// ONNX value name.
    pub name: String,
    /// Channels.
    pub c: usize,
    /// Height in cells.
    pub h: usize,
    /// Width in cells.
    pub w: usize,
}

/// Convolution settings.
#[derive(Debug, Clone, Copy)]
pub struct ConvCfg {
    /// Output channels.
    pub cout: usize,
    /// Square kernel size.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Symmetric padding.
    pub pad: usize,
    /// Groups (channels for depthwise).
    pub groups: usize,
    /// Add a bias.
    pub bias: bool,
    /// Weight standard deviation multiplier on the He value `sqrt(2 / fan_in)`.
    pub gain: f64,
    /// Added to the bias of even output channels (a detector's background logits).
    pub even_bias: f32,
}

impl ConvCfg {
    /// A plain bias-free convolution with "same" padding.
    pub fn new(cout: usize, k: usize, stride: usize) -> ConvCfg {
        ConvCfg {
            cout,
            k,
            stride,
            pad: k / 2,
            groups: 1,
            bias: false,
            gain: 1.0,
            even_bias: 0.0,
        }
    }
}

/// Builds one graph.
pub struct Graph {
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
    outputs: Vec<pb::ValueInfoProto>,
    input: pb::ValueInfoProto,
    next: usize,
    rng: Rng,
    /// Parameters (weights, biases, BN affine, PReLU slopes).
    pub params: u64,
    /// Multiply-accumulates of one forward pass (convolutions and matrix products).
    pub macs: u64,
}

fn attr_int(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn attr_ints(name: &str, ints: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn attr_float(name: &str, f: f32) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}

fn attr_str(name: &str, s: &str) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::String as i32,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// A float tensor value description with a fixed shape (`None` = symbolic dimension).
pub fn value_info(name: &str, dims: &[Option<i64>]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            denotation: String::new(),
            value: Some(match d {
                Some(v) => Value::DimValue(*v),
                None => Value::DimParam("batch".into()),
            }),
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
        }),
        doc_string: String::new(),
    }
}

/// An f32 initialiser.
pub fn tensor_f32(name: &str, dims: &[i64], data: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// An i64 initialiser.
pub fn tensor_i64(name: &str, dims: &[i64], data: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: pb::tensor_proto::DataType::Int64 as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

impl Graph {
    /// A graph with one NCHW f32 input `name` of `c` x `h` x `w` (batch 1) and weights from `seed`.
    pub fn new(name: &str, c: usize, h: usize, w: usize, seed: u64) -> (Graph, T) {
        let g = Graph {
            nodes: Vec::new(),
            inits: Vec::new(),
            outputs: Vec::new(),
            input: value_info(
                name,
                &[Some(1), Some(c as i64), Some(h as i64), Some(w as i64)],
            ),
            next: 0,
            rng: Rng::new(seed),
            params: 0,
            macs: 0,
        };
        let t = T {
            name: name.into(),
            c,
            h,
            w,
        };
        (g, t)
    }

    /// A fresh value name with `prefix`.
    pub fn fresh(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}_{}", self.next)
    }

    /// Adds a node; returns its (first) output name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<pb::AttributeProto>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.node_named(op, inputs, attrs, &out);
        out
    }

    /// Adds a node writing to the value `out`.
    pub fn node_named(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<pb::AttributeProto>,
        out: &str,
    ) {
        self.nodes.push(pb::NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.to_string()],
            name: format!("{op}_{out}"),
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
    }

    /// Adds an f32 initialiser (counted as parameters when `count`).
    pub fn init_f32(&mut self, prefix: &str, dims: &[i64], data: Vec<f32>, count: bool) -> String {
        let name = self.fresh(prefix);
        if count {
            self.params += data.len() as u64;
        }
        self.inits.push(tensor_f32(&name, dims, &data));
        name
    }

    /// Adds an i64 initialiser (shapes, axes).
    pub fn init_i64(&mut self, prefix: &str, data: &[i64]) -> String {
        let name = self.fresh(prefix);
        self.inits
            .push(tensor_i64(&name, &[data.len() as i64], data));
        name
    }

    fn normal_vec(&mut self, n: usize, mean: f64, std: f64) -> Vec<f32> {
        (0..n)
            .map(|_| (mean + std * self.rng.normal()) as f32)
            .collect()
    }

    /// Convolution (NCHW, square kernel).
    pub fn conv(&mut self, x: &T, c: ConvCfg) -> T {
        let cin_g = x.c / c.groups;
        let fan_in = (cin_g * c.k * c.k) as f64;
        let std = c.gain * (2.0 / fan_in).sqrt();
        let w = self.normal_vec(c.cout * cin_g * c.k * c.k, 0.0, std);
        let wname = self.init_f32(
            "w",
            &[c.cout as i64, cin_g as i64, c.k as i64, c.k as i64],
            w,
            true,
        );
        let mut inputs = vec![x.name.clone(), wname];
        if c.bias {
            let mut b = self.normal_vec(c.cout, 0.0, 0.01);
            for v in b.iter_mut().step_by(2) {
                *v += c.even_bias;
            }
            inputs.push(self.init_f32("b", &[c.cout as i64], b, true));
        }
        let h = (x.h + 2 * c.pad - c.k) / c.stride + 1;
        let wd = (x.w + 2 * c.pad - c.k) / c.stride + 1;
        self.macs += (c.cout * cin_g * c.k * c.k * h * wd) as u64;
        let p = c.pad as i64;
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let name = self.node(
            "Conv",
            &refs,
            vec![
                attr_ints("kernel_shape", &[c.k as i64, c.k as i64]),
                attr_ints("strides", &[c.stride as i64, c.stride as i64]),
                attr_ints("pads", &[p, p, p, p]),
                attr_ints("dilations", &[1, 1]),
                attr_int("group", c.groups as i64),
            ],
        );
        T {
            name,
            c: c.cout,
            h,
            w: wd,
        }
    }

    /// Batch normalisation (inference form) on a `[N, C, ...]` tensor; `gamma` scales the
    /// seeded affine weight (small values keep deep residual stacks bounded).
    pub fn bn_named(&mut self, x: &str, c: usize, gamma: f64) -> String {
        let scale = self
            .normal_vec(c, gamma, 0.1 * gamma.abs())
            .into_iter()
            .collect();
        let bias = self.normal_vec(c, 0.0, 0.05);
        let mean = self.normal_vec(c, 0.0, 0.05);
        let var: Vec<f32> = (0..c)
            .map(|_| (0.8 + 0.4 * self.rng.uniform()) as f32)
            .collect();
        let d = [c as i64];
        let s = self.init_f32("bn_scale", &d, scale, true);
        let b = self.init_f32("bn_bias", &d, bias, true);
        let m = self.init_f32("bn_mean", &d, mean, false);
        let v = self.init_f32("bn_var", &d, var, false);
        self.node(
            "BatchNormalization",
            &[x, &s, &b, &m, &v],
            vec![attr_float("epsilon", 1e-5)],
        )
    }

    /// Batch normalisation on a feature map.
    pub fn bn(&mut self, x: &T, gamma: f64) -> T {
        let name = self.bn_named(&x.name, x.c, gamma);
        T { name, ..x.clone() }
    }

    /// PReLU with one slope per channel (initialised at 0.25 as PyTorch does).
    pub fn prelu(&mut self, x: &T) -> T {
        let slope = self.normal_vec(x.c, 0.25, 0.01);
        let s = self.init_f32("prelu", &[x.c as i64, 1, 1], slope, true);
        let name = self.node("PRelu", &[&x.name, &s], vec![]);
        T { name, ..x.clone() }
    }

    /// LeakyReLU (`alpha` = 0 is emitted as Relu).
    pub fn leaky(&mut self, x: &T, alpha: f32) -> T {
        let name = if alpha == 0.0 {
            self.node("Relu", &[&x.name], vec![])
        } else {
            self.node("LeakyRelu", &[&x.name], vec![attr_float("alpha", alpha)])
        };
        T { name, ..x.clone() }
    }

    /// Elementwise sum of two maps of the same shape.
    pub fn add(&mut self, a: &T, b: &T) -> T {
        let name = self.node("Add", &[&a.name, &b.name], vec![]);
        T { name, ..a.clone() }
    }

    /// Max pooling, square kernel.
    pub fn maxpool(&mut self, x: &T, k: usize, stride: usize, pad: usize) -> T {
        let p = pad as i64;
        let name = self.node(
            "MaxPool",
            &[&x.name],
            vec![
                attr_ints("kernel_shape", &[k as i64, k as i64]),
                attr_ints("strides", &[stride as i64, stride as i64]),
                attr_ints("pads", &[p, p, p, p]),
            ],
        );
        T {
            name,
            c: x.c,
            h: (x.h + 2 * pad - k) / stride + 1,
            w: (x.w + 2 * pad - k) / stride + 1,
        }
    }

    /// Nearest-neighbour resize of `x` to the spatial size of `like` (PyTorch
    /// `F.interpolate(mode="nearest", size=...)`: asymmetric coordinates, floor).
    pub fn resize_like(&mut self, x: &T, like: &T) -> T {
        let sx = self.node("Shape", &[&x.name], vec![]);
        let sl = self.node("Shape", &[&like.name], vec![]);
        let (s0, s2, s4) = (
            self.init_i64("i", &[0]),
            self.init_i64("i", &[2]),
            self.init_i64("i", &[4]),
        );
        let nc = self.node("Slice", &[&sx, &s0, &s2], vec![]);
        let hw = self.node("Slice", &[&sl, &s2, &s4], vec![]);
        let sizes = self.node("Concat", &[&nc, &hw], vec![attr_int("axis", 0)]);
        let name = self.node(
            "Resize",
            &[&x.name, "", "", &sizes],
            vec![
                attr_str("mode", "nearest"),
                attr_str("coordinate_transformation_mode", "asymmetric"),
                attr_str("nearest_mode", "floor"),
            ],
        );
        T {
            name,
            c: x.c,
            h: like.h,
            w: like.w,
        }
    }

    /// Concatenation along channels.
    pub fn concat_c(&mut self, xs: &[&T]) -> T {
        let names: Vec<&str> = xs.iter().map(|t| t.name.as_str()).collect();
        let name = self.node("Concat", &names, vec![attr_int("axis", 1)]);
        T {
            name,
            c: xs.iter().map(|t| t.c).sum(),
            ..xs[0].clone()
        }
    }

    /// `[1, C, H, W]` -> `[1, H*W*C/per, per]` (NHWC order, as `permute(0,2,3,1).view`).
    pub fn rows(&mut self, x: &T, per: usize) -> String {
        let t = self.node(
            "Transpose",
            &[&x.name],
            vec![attr_ints("perm", &[0, 2, 3, 1])],
        );
        let shape = self.init_i64("shape", &[1, -1, per as i64]);
        self.node("Reshape", &[&t, &shape], vec![])
    }

    /// Fully connected `y = x W^T + b` on a `[1, inputs]` value.
    pub fn gemm(&mut self, x: &str, inputs: usize, outputs: usize) -> String {
        let std = (1.0 / inputs as f64).sqrt();
        let w = self.normal_vec(outputs * inputs, 0.0, std);
        let w = self.init_f32("fc_w", &[outputs as i64, inputs as i64], w, true);
        let b = self.normal_vec(outputs, 0.0, 0.01);
        let b = self.init_f32("fc_b", &[outputs as i64], b, true);
        self.macs += (inputs * outputs) as u64;
        self.node("Gemm", &[x, &w, &b], vec![attr_int("transB", 1)])
    }

    /// Declares `value` as a graph output named `name` (an Identity node renames it).
    pub fn output(&mut self, value: &str, name: &str, dims: &[i64]) {
        self.node_named("Identity", &[value], vec![], name);
        let d: Vec<Option<i64>> = dims.iter().map(|&v| Some(v)).collect();
        self.outputs.push(value_info(name, &d));
    }

    /// Serialises the model.
    pub fn finish(self, graph_name: &str, doc: &str) -> Vec<u8> {
        let model = pb::ModelProto {
            ir_version: 7,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "gestalt-edge model synth".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.into(),
            graph: Some(pb::GraphProto {
                node: self.nodes,
                name: graph_name.into(),
                initializer: self.inits,
                input: vec![self.input],
                output: self.outputs,
                ..Default::default()
            }),
            ..Default::default()
        };
        model.encode_to_vec()
    }
}
