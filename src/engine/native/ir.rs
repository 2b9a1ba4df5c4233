//! The native engine's intermediate representation: a straight list of operations over
//! NHWC feature maps, with batch normalisation, biases and activations already folded in.
//!
//! Consumes nothing (plain data built by [`super::import`]); produces the description the
//! planner ([`super::plan`]) packs and runs. Weights are canonical: f32 `[cout][ky][kx][cin_g]`
//! or i8 in the same order with one scale per output channel, so the same bytes describe the
//! model on every device; packing for a kernel happens at load.

/// Index of a value (a feature map) in [`Model::values`].
pub type ValueId = usize;

/// A feature map stored NHWC (batch 1): `h * w * c` f32, channel fastest.
/// A vector (after Flatten / Gemm) is `h = w = 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Channels.
    pub c: usize,
    /// Height in cells.
    pub h: usize,
    /// Width in cells.
    pub w: usize,
}

impl Shape {
    /// Number of f32 values.
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Whether the map holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of pixels (`h * w`).
    pub fn pixels(&self) -> usize {
        self.h * self.w
    }
}

/// An elementwise activation.
#[derive(Debug, Clone, PartialEq)]
pub enum Act {
    /// `max(x, 0)`.
    Relu,
    /// `x` if positive, else `alpha * x`.
    Leaky(f32),
    /// Per-channel slope for negative values.
    Prelu(Vec<f32>),
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
}

/// How a [`Op::Concat`] joins its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// Along the channels: every input has the output's pixels (ONNX axis 1 of NCHW maps).
    Channels,
    /// One buffer after the other: every input has the output's channels (ONNX axis 1 of
    /// `[1, n, k]` sequences, stored as `k` channels of `n` pixels).
    Pixels,
}

/// One step applied to each output pixel of a convolution (channel vector), in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Post {
    /// `y = y * scale[c] + shift[c]` (a batch normalisation or a constant Mul/Add/Sub/Div).
    Affine {
        /// Per-channel factor.
        scale: Vec<f32>,
        /// Per-channel offset.
        shift: Vec<f32>,
    },
    /// An activation.
    Act(Act),
    /// `y += value` (residual connection); `value` has the output's shape.
    Add(ValueId),
    /// `y = exp(y - max) / sum(exp(y - max))` over the channels of each pixel (the last axis
    /// of a `[1, n, k]` sequence). Only in [`Op::Map`], whose rows are whole pixels.
    Softmax,
    /// Round trip through a quantized tensor (QLinearConv's output): `q = clamp(round(y /
    /// scale) + zero, lo, hi)`, `y = (q - zero) * scale`.
    Requant {
        /// Quantization step.
        scale: f32,
        /// Zero point.
        zero: i32,
        /// Smallest code (0 for u8, -128 for i8).
        lo: i32,
        /// Largest code.
        hi: i32,
    },
}

/// How a convolution's input is quantized before the integer product.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputQuant {
    /// Quantization step of the input.
    pub scale: f32,
    /// Zero point.
    pub zero: i32,
    /// Smallest code (0 for u8 activations, -128 for i8).
    pub lo: i32,
    /// Largest code.
    pub hi: i32,
}

/// Convolution weights in canonical order `[cout][ky][kx][cin_g]`.
#[derive(Debug, Clone, PartialEq)]
pub enum Weights {
    /// Float weights.
    F32(Vec<f32>),
    /// i8 weights: real weight = `w * scale[cout]`; the input is quantized by `input`.
    I8 {
        /// The codes.
        w: Vec<i8>,
        /// One scale per output channel.
        scale: Vec<f32>,
        /// The input's quantization.
        input: InputQuant,
        /// Integer bias in units of input scale x weight scale (QLinearConv): with the
        /// output requantization first in `post`, the epilogue reproduces the reference's
        /// integer rounding exactly.
        bias: Option<Vec<i32>>,
    },
}

/// A 2-D convolution (also a fully connected layer: 1x1 on a 1x1 map).
#[derive(Debug, Clone, PartialEq)]
pub struct Conv {
    /// ONNX node name (for messages).
    pub name: String,
    /// Input value.
    pub input: ValueId,
    /// Output value.
    pub output: ValueId,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Vertical and horizontal stride.
    pub stride: [usize; 2],
    /// Padding top, left, bottom, right.
    pub pads: [usize; 4],
    /// Groups (`cin` for depthwise).
    pub groups: usize,
    /// Weights.
    pub weights: Weights,
    /// Per-channel bias added to the product (real units).
    pub bias: Vec<f32>,
    /// Per-input-channel affine applied before the product (a batch normalisation in front
    /// of the convolution that could not be folded into the weights).
    pub pre: Option<(Vec<f32>, Vec<f32>)>,
    /// Per-input-channel value of the padding (f32 weights only): a batch normalisation
    /// folded from in front of a padded convolution pads with `-shift / scale`, which is the
    /// zero the original graph padded with.
    pub pad_value: Vec<f32>,
    /// Steps applied to every output pixel after the bias.
    pub post: Vec<Post>,
}

impl Conv {
    /// Input channels of one group.
    pub fn cin_g(&self) -> usize {
        self.cin / self.groups.max(1)
    }

    /// Output channels of one group.
    pub fn cout_g(&self) -> usize {
        self.cout / self.groups.max(1)
    }

    /// Length of one output channel's weights (`ky * kx * cin_g`).
    pub fn k(&self) -> usize {
        self.kernel[0] * self.kernel[1] * self.cin_g()
    }

    /// Whether every group has one input and one output channel.
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.cin_g() == 1 && self.cout_g() == 1
    }

    /// Multiply-accumulates for an output of `pixels` cells.
    pub fn macs(&self, pixels: usize) -> u64 {
        (self.k() * self.cout * pixels) as u64
    }
}

/// One operation of the plan.
// a plan holds a few hundred ops, built once at load: boxing the convolution would save
// nothing that matters and cost an indirection per layer
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A convolution with its folded steps.
    Conv(Conv),
    /// Elementwise steps on a value without a convolution to fuse into.
    Map {
        /// Input.
        input: ValueId,
        /// Output.
        output: ValueId,
        /// The steps (per channel).
        post: Vec<Post>,
    },
    /// Max pooling.
    MaxPool {
        /// Input.
        input: ValueId,
        /// Output.
        output: ValueId,
        /// Window height and width.
        kernel: [usize; 2],
        /// Stride.
        stride: [usize; 2],
        /// Padding top, left, bottom, right.
        pads: [usize; 4],
    },
    /// Nearest-neighbour resizing.
    Resize(Resize),
    /// Concatenation of feature maps or sequences.
    Concat(Concat),
}

impl Op {
    /// The value the operation writes.
    pub fn output(&self) -> ValueId {
        match self {
            Op::Conv(c) => c.output,
            Op::Map { output, .. } | Op::MaxPool { output, .. } => *output,
            Op::Resize(r) => r.output,
            Op::Concat(c) => c.output,
        }
    }
}

/// Nearest-neighbour resizing: output cell `(y, x)` copies input cell `(rows[y], cols[x])`.
#[derive(Debug, Clone, PartialEq)]
pub struct Resize {
    /// Input.
    pub input: ValueId,
    /// Output.
    pub output: ValueId,
    /// Source row of every output row.
    pub rows: Vec<usize>,
    /// Source column of every output column.
    pub cols: Vec<usize>,
}

/// Concatenation of feature maps (along the channels) or of `[1, n, k]` sequences.
#[derive(Debug, Clone, PartialEq)]
pub struct Concat {
    /// Inputs, in order.
    pub inputs: Vec<ValueId>,
    /// Output.
    pub output: ValueId,
    /// How they are joined.
    pub axis: Axis,
}

/// A graph output: its name and the value, with the layout the caller expects (a
/// `[1, n, k]` sequence is stored as `k` channels of `n` pixels, in ONNX order already).
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// ONNX output name.
    pub name: String,
    /// The value.
    pub value: ValueId,
    /// ONNX shape of the output.
    pub dims: Vec<usize>,
    /// Whether the ONNX tensor is NCHW (the NHWC value is transposed on the way out);
    /// false when it is a vector or already in NHWC order.
    pub nchw: bool,
}

/// An imported network.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Shapes of every value; value 0 is the input.
    pub values: Vec<Shape>,
    /// Operations in execution order.
    pub ops: Vec<Op>,
    /// Graph outputs.
    pub outputs: Vec<Output>,
}

impl Model {
    /// Total multiply-accumulates of one pass.
    pub fn macs(&self) -> u64 {
        self.ops
            .iter()
            .map(|op| match op {
                Op::Conv(c) => c.macs(self.values[c.output].pixels()),
                _ => 0,
            })
            .sum()
    }

    /// The input shape (value 0).
    pub fn input(&self) -> Shape {
        self.values[0]
    }
}
