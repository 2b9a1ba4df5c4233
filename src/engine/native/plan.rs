//! Planning: an imported [`Model`] -> a runnable [`Plan`]: weights packed once for the
//! chosen kernels, every feature map placed in one activation arena (offsets reused once a
//! map is dead), work split into pixel chunks and weight-row parts for the threads.
//!
//! Consumes the IR and a kernel choice; produces the plan [`super::exec`] runs. Everything
//! sized here is fixed for the life of the plan: a pass allocates nothing.

use tract_data::prelude::*;
use tract_linalg::mmm::MMMInputValue;

use super::ir::{Concat, Conv, InputQuant, Model, Op, Post, Resize, Shape, ValueId, Weights};
use super::kernels::{Kernel, Precision};
use super::NativeError;

/// Bytes of activation panels one work item may fill (fits a core's L2 beside the weights).
const PANEL_BUDGET: usize = 384 * 1024;

/// One slice of a convolution's output rows (channels), with its packed weights.
pub struct Part {
    /// Group of the rows.
    pub group: usize,
    /// First row inside the group.
    pub r0: usize,
    /// Rows in this part.
    pub rows: usize,
    /// Packed weights of these rows.
    pub a: Box<dyn MMMInputValue>,
    /// Bias of these rows (f32 products: fused into the kernel's epilogue).
    pub bias: Tensor,
}

/// The reference's integer requantization of a QLinearConv output:
/// `q = clamp(round_even(|t| * abc[c]) * sign(t) + zero)`, `t = acc + corr[c] + bias[c]`,
/// then `y = (q - zero) * scale`.
pub struct Exact {
    /// Per channel: weight scale x input scale / output scale (f32, in that order).
    pub abc: Vec<f32>,
    /// Integer bias.
    pub bias: Vec<i32>,
    /// Output scale.
    pub scale: f32,
    /// Output zero point.
    pub zero: i32,
    /// Smallest code.
    pub lo: i32,
    /// Largest code.
    pub hi: i32,
}

/// Integer epilogue of an int8 convolution: real output = `(acc + corr[c]) * mul[c] + bias[c]`.
pub struct IntEpilogue {
    /// Input quantization.
    pub q: InputQuant,
    /// Offset subtracted from input codes to make them i8 (128 for u8 codes).
    pub off: i32,
    /// Per output channel: `(off - zero) * sum(w)`.
    pub corr: Vec<i32>,
    /// Per output channel: input scale times weight scale.
    pub mul: Vec<f32>,
    /// Input affine applied before quantization.
    pub pre: Option<(Vec<f32>, Vec<f32>)>,
    /// Exact requantization (then `post[0]`, the requantization, is skipped).
    pub exact: Option<Exact>,
}

/// Geometry of a convolution or pooling window.
#[derive(Debug, Clone, Copy)]
pub struct Geom {
    /// Input map (channels = all input channels).
    pub input: Shape,
    /// Output map.
    pub output: Shape,
    /// Kernel height, width.
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Padding top, left (bottom/right follow from the sizes).
    pub pad: [usize; 2],
}

/// A convolution run as matrix products.
pub struct GemmStep {
    /// Node name.
    pub name: String,
    /// Input and output values.
    pub input: ValueId,
    /// Output value.
    pub output: ValueId,
    /// Geometry.
    pub geom: Geom,
    /// Groups and channels per group.
    pub groups: usize,
    /// Input channels per group.
    pub cin_g: usize,
    /// Output channels per group.
    pub cout_g: usize,
    /// Index of the kernel in [`Plan::kernels`].
    pub kernel: usize,
    /// Row parts (all groups).
    pub parts: Vec<Part>,
    /// Pixels per chunk (a multiple of the panel width).
    pub chunk: usize,
    /// Padding value per input channel (f32 products).
    pub pad: Vec<f32>,
    /// Padding code per input channel (int8 products: the zero point, as staged).
    pub pad_i8: Vec<i8>,
    /// int8 epilogue.
    pub int: Option<IntEpilogue>,
    /// Bias per output channel (int8 epilogue; f32 uses [`Part::bias`]).
    pub bias: Vec<f32>,
    /// Steps after the bias.
    pub post: Vec<Post>,
}

/// A depthwise convolution, computed directly.
pub struct DepthwiseStep {
    /// Input value.
    pub input: ValueId,
    /// Output value.
    pub output: ValueId,
    /// Geometry.
    pub geom: Geom,
    /// Weights `[tap][c]` (f32, or the i8 codes as f32).
    pub w: Vec<f32>,
    /// Weights `[tap][c]` as i32 codes (int8).
    pub wi: Vec<i32>,
    /// Bias.
    pub bias: Vec<f32>,
    /// Padding value per channel (f32).
    pub pad: Vec<f32>,
    /// int8 epilogue.
    pub int: Option<IntEpilogue>,
    /// Steps after the bias.
    pub post: Vec<Post>,
}

/// One step of a pass.
pub enum Step {
    /// Matrix-product convolution.
    Gemm(GemmStep),
    /// Depthwise convolution.
    Depthwise(DepthwiseStep),
    /// Elementwise steps.
    Map {
        /// Input.
        input: ValueId,
        /// Output.
        output: ValueId,
        /// Steps.
        post: Vec<Post>,
    },
    /// Max pooling.
    MaxPool {
        /// Input.
        input: ValueId,
        /// Output.
        output: ValueId,
        /// Geometry.
        geom: Geom,
    },
    /// Nearest-neighbour resizing.
    Resize(Resize),
    /// Concatenation.
    Concat(Concat),
}

impl Plan {
    /// What `step` computes, for a profile: a label (kind, geometry, kernel, node) and its
    /// multiply-accumulates.
    pub fn describe(&self, step: &Step) -> (String, u64) {
        let conv = |g: &Geom, cin: usize| {
            let (o, [kh, kw], [sh, _]) = (g.output, g.kernel, g.stride);
            let macs = (o.pixels() * o.c * kh * kw * cin) as u64;
            let shape = format!("{kh}x{kw}/{sh} {}->{} at {}x{}", g.input.c, o.c, o.h, o.w);
            (shape, macs)
        };
        match step {
            Step::Gemm(g) => {
                let (shape, macs) = conv(&g.geom, g.cin_g);
                let int = if g.int.is_some() { " int8" } else { "" };
                let kernel = self.kernels[g.kernel].name();
                (format!("conv {shape}{int} [{kernel}] ({})", g.name), macs)
            }
            Step::Depthwise(d) => {
                let (shape, macs) = conv(&d.geom, 1);
                let int = if d.int.is_some() { " int8" } else { "" };
                (format!("depthwise {shape}{int}"), macs)
            }
            Step::Map { post, .. } => (format!("elementwise ({} steps)", post.len()), 0),
            Step::MaxPool { geom, .. } => {
                let o = geom.output;
                (format!("max pool to {}x{}x{}", o.h, o.w, o.c), 0)
            }
            Step::Resize(r) => {
                let o = self.values[r.output];
                (format!("resize to {}x{}x{}", o.h, o.w, o.c), 0)
            }
            Step::Concat(c) => {
                let o = self.values[c.output];
                let n = c.inputs.len();
                (format!("concat {n} to {}x{}x{}", o.h, o.w, o.c), 0)
            }
        }
    }
}

/// A runnable plan.
pub struct Plan {
    /// Value shapes.
    pub values: Vec<Shape>,
    /// Arena offset (in f32) of every value.
    pub offsets: Vec<usize>,
    /// Arena length in f32.
    pub arena: usize,
    /// Bytes of the shared i8 staging buffer (quantized inputs).
    pub staging: usize,
    /// Steps.
    pub steps: Vec<Step>,
    /// Kernels used.
    pub kernels: Vec<Kernel>,
    /// Per kernel: bytes of activation panels one work item needs at most.
    pub panel_bytes: Vec<usize>,
    /// i32 accumulators one work item needs at most.
    pub acc_len: usize,
    /// Threads the work is split for.
    pub threads: usize,
    /// Graph outputs.
    pub outputs: Vec<super::ir::Output>,
    /// Multiply-accumulates of one pass.
    pub macs: u64,
}

/// Which kernel runs a convolution: given the precision and the product's `(m, k, n)`.
pub trait KernelChooser {
    /// The kernel for a product of `m` rows, depth `k` and `n` columns.
    fn choose(
        &mut self,
        precision: Precision,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<Kernel, NativeError>;
}

fn input_shape(model: &Model, c: &Conv) -> Result<Shape, NativeError> {
    let s = model.values[c.input];
    if s.c == c.cin {
        return Ok(s);
    }
    if s.len() == c.cin && c.kernel == [1, 1] {
        return Ok(Shape {
            c: c.cin,
            h: 1,
            w: 1,
        });
    }
    Err(NativeError::Invalid {
        node: c.name.clone(),
        what: format!("input {s:?} for {} channels", c.cin),
    })
}

fn readers(op: &Op) -> Vec<ValueId> {
    let (input, post): (ValueId, &[Post]) = match op {
        Op::Conv(c) => (c.input, &c.post),
        Op::Map { input, post, .. } => (*input, post),
        Op::MaxPool { input, .. } => (*input, &[]),
        Op::Resize(r) => (r.input, &[]),
        Op::Concat(c) => return c.inputs.clone(),
    };
    let mut v = vec![input];
    v.extend(
        post.iter()
            .filter_map(|p| if let Post::Add(x) = p { Some(*x) } else { None }),
    );
    v
}

/// Places every value in the arena: first fit among the values alive at the same time.
fn place(model: &Model) -> (Vec<usize>, usize) {
    let n = model.values.len();
    let ops = model.ops.len();
    let mut first = vec![0usize; n];
    let mut last = vec![0usize; n];
    for (i, op) in model.ops.iter().enumerate() {
        let w = op.output();
        first[w] = i + 1;
        last[w] = last[w].max(i + 1);
        for r in readers(op) {
            last[r] = last[r].max(i + 1);
        }
    }
    for o in &model.outputs {
        last[o.value] = ops + 1;
    }
    let align = |x: usize| x.div_ceil(16) * 16;
    let mut offsets = vec![0usize; n];
    let mut placed: Vec<(usize, usize, usize, usize)> = Vec::new(); // first, last, off, len
    let mut total = 0;
    for v in 0..n {
        let len = align(model.values[v].len().max(1));
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|p| p.0 <= last[v] && first[v] <= p.1)
            .map(|p| (p.2, p.2 + p.3))
            .collect();
        busy.sort_unstable();
        let mut off = 0;
        for (a, b) in busy {
            if off + len <= a {
                break;
            }
            off = off.max(b);
        }
        offsets[v] = off;
        total = total.max(off + len);
        placed.push((first[v], last[v], off, len));
    }
    (offsets, total)
}

// the integer layer's parts, each from a different place in the import; a struct for one
// private call site would only rename them
#[allow(clippy::too_many_arguments)]
fn epilogue(
    w: &[i8],
    rows: usize,
    k: usize,
    scale: &[f32],
    q: InputQuant,
    pre: Option<(Vec<f32>, Vec<f32>)>,
    bias: Option<&[i32]>,
    post: &[Post],
) -> IntEpilogue {
    let off = if q.lo >= 0 { 128 } else { 0 };
    let corr = (0..rows)
        .map(|r| {
            let s: i32 = w[r * k..(r + 1) * k].iter().map(|&x| x as i32).sum();
            (off - q.zero).wrapping_mul(s)
        })
        .collect();
    let exact = match (bias, post.first()) {
        (
            Some(bias),
            Some(&Post::Requant {
                scale: ys,
                zero,
                lo,
                hi,
            }),
        ) if bias.len() == rows => Some(Exact {
            abc: scale.iter().map(|s| s * q.scale / ys).collect(),
            bias: bias.to_vec(),
            scale: ys,
            zero,
            lo,
            hi,
        }),
        _ => None,
    };
    IntEpilogue {
        q,
        off,
        corr,
        mul: scale.iter().map(|s| s * q.scale).collect(),
        pre,
        exact,
    }
}

/// Builds the plan of `model` for `threads` threads with kernels from `chooser`.
pub fn build(
    mut model: Model,
    threads: usize,
    chooser: &mut dyn KernelChooser,
) -> Result<Plan, NativeError> {
    let threads = threads.clamp(1, 64);
    let (offsets, arena) = place(&model);
    let mut plan = Plan {
        values: model.values.clone(),
        offsets,
        arena,
        staging: 1,
        steps: Vec::new(),
        kernels: Vec::new(),
        panel_bytes: Vec::new(),
        acc_len: 1,
        threads,
        outputs: model.outputs.clone(),
        macs: model.macs(),
    };
    for i in 0..model.ops.len() {
        let step = match &model.ops[i] {
            Op::Map {
                input,
                output,
                post,
            } => Step::Map {
                input: *input,
                output: *output,
                post: post.clone(),
            },
            Op::MaxPool {
                input,
                output,
                kernel,
                stride,
                pads,
            } => Step::MaxPool {
                input: *input,
                output: *output,
                geom: Geom {
                    input: model.values[*input],
                    output: model.values[*output],
                    kernel: *kernel,
                    stride: *stride,
                    pad: [pads[0], pads[1]],
                },
            },
            Op::Resize(r) => Step::Resize(r.clone()),
            Op::Concat(c) => Step::Concat(c.clone()),
            Op::Conv(c) => conv_step(&model, c, &mut plan, chooser)?,
        };
        if let Op::Conv(c) = &mut model.ops[i] {
            // packed into the step: the canonical copy goes now
            c.weights = Weights::F32(Vec::new());
        }
        plan.steps.push(step);
    }
    Ok(plan)
}

fn conv_step(
    model: &Model,
    c: &Conv,
    plan: &mut Plan,
    chooser: &mut dyn KernelChooser,
) -> Result<Step, NativeError> {
    let geom = Geom {
        input: input_shape(model, c)?,
        output: model.values[c.output],
        kernel: c.kernel,
        stride: c.stride,
        pad: [c.pads[0], c.pads[1]],
    };
    if geom.output.c != c.cout {
        return Err(NativeError::Invalid {
            node: c.name.clone(),
            what: "output shape".into(),
        });
    }
    let taps = c.kernel[0] * c.kernel[1];
    let int8 = matches!(c.weights, Weights::I8 { .. });
    if int8 {
        plan.staging = plan.staging.max(geom.input.len());
    }
    if c.is_depthwise() {
        let mut w = vec![0f32; taps * c.cout];
        let mut wi = Vec::new();
        let int = match &c.weights {
            Weights::F32(src) => {
                for ch in 0..c.cout {
                    for t in 0..taps {
                        w[t * c.cout + ch] = src[ch * taps + t];
                    }
                }
                None
            }
            Weights::I8 {
                w: src,
                scale,
                input,
                ..
            } => {
                wi = vec![0i32; taps * c.cout];
                for ch in 0..c.cout {
                    for t in 0..taps {
                        wi[t * c.cout + ch] = src[ch * taps + t] as i32;
                    }
                }
                let mut e = epilogue(
                    src,
                    c.cout,
                    taps,
                    scale,
                    *input,
                    c.pre.clone(),
                    None,
                    &c.post,
                );
                e.corr = vec![0; c.cout];
                Some(e)
            }
        };
        return Ok(Step::Depthwise(DepthwiseStep {
            input: c.input,
            output: c.output,
            geom,
            w,
            wi,
            bias: c.bias.clone(),
            pad: c.pad_value.clone(),
            int,
            post: c.post.clone(),
        }));
    }
    let (cin_g, cout_g, k) = (c.cin_g(), c.cout_g(), c.k());
    let pixels = geom.output.pixels();
    let precision = if int8 { Precision::I8 } else { Precision::F32 };
    let kernel = chooser.choose(precision, cout_g, k, pixels)?;
    let kix = match plan
        .kernels
        .iter()
        .position(|x| x.name() == kernel.name() && x.packing == kernel.packing)
    {
        Some(i) => i,
        None => {
            plan.kernels.push(kernel);
            plan.panel_bytes.push(0);
            plan.kernels.len() - 1
        }
    };
    let kernel = &plan.kernels[kix];
    let (mr, r) = (kernel.mmm.mr(), kernel.layout.r());
    let elem = if int8 { 1 } else { 4 };
    let mut chunk = (PANEL_BUDGET / (k * elem).max(1)).clamp(2 * r, 1024) / r * r;
    // weights too large to stay in the core's cache from one chunk to the next are streamed
    // again for every chunk: fewer, larger chunks (as even as the panels allow) while the
    // panels still fit beside one weight panel (512 x 4608 f32 at 7x7 on 1 thread: 5.6 ->
    // 4.2 ms; 512 x 2304 at 14x14: 8.1 -> 6.3 ms)
    let l2 = tract_linalg::cache::cache_info().l2;
    if l2 > 0 && cout_g * k * elem > l2 / 2 {
        let budget = (l2 * 3 / 4).max(PANEL_BUDGET);
        let chunks = (pixels * k * elem).div_ceil(budget).max(1);
        chunk = chunk
            .max(pixels.div_ceil(chunks).div_ceil(r) * r)
            .min(1024 / r * r);
    }
    let chunks = pixels.div_ceil(chunk);
    // too few chunks to keep every thread busy: the pixels split evenly over the threads
    // while each share still fills two panels, else the weight rows split
    let even = pixels.div_ceil(plan.threads).div_ceil(r) * r;
    let split = if chunks * c.groups >= 2 * plan.threads {
        1
    } else if c.groups == 1 && plan.threads > 1 && even >= 2 * r {
        chunk = chunk.min(even);
        1
    } else {
        plan.threads
    };
    let rows_per = cout_g.div_ceil(split).div_ceil(mr) * mr;
    let mut parts = Vec::new();
    for g in 0..c.groups {
        let mut r0 = 0;
        while r0 < cout_g {
            let rows = rows_per.min(cout_g - r0);
            let row0 = g * cout_g + r0;
            let a = match &c.weights {
                Weights::F32(w) => kernel.pack_f32(&w[row0 * k..(row0 + rows) * k], rows, k)?,
                Weights::I8 { w, .. } => {
                    kernel.pack_i8(&w[row0 * k..(row0 + rows) * k], rows, k)?
                }
            };
            let bias = Tensor::from_shape(&[rows], &c.bias[row0..row0 + rows])
                .map_err(|e| NativeError::Kernel(format!("{e:#}")))?;
            parts.push(Part {
                group: g,
                r0,
                rows,
                a,
                bias,
            });
            r0 += rows;
        }
    }
    let panels = chunk.div_ceil(r);
    plan.panel_bytes[kix] = plan.panel_bytes[kix].max(panels * kernel.panel_bytes(k));
    if int8 {
        plan.acc_len = plan.acc_len.max(chunk * rows_per.min(cout_g));
    }
    let int = match &c.weights {
        Weights::I8 {
            w,
            scale,
            input,
            bias,
        } => Some(epilogue(
            w,
            c.cout,
            k,
            scale,
            *input,
            c.pre.clone(),
            bias.as_deref(),
            &c.post,
        )),
        Weights::F32(_) => None,
    };
    let pad_i8 = match &int {
        Some(e) => vec![(e.q.zero - e.off).clamp(-128, 127) as i8; geom.input.c],
        None => Vec::new(),
    };
    Ok(Step::Gemm(GemmStep {
        pad_i8,
        name: c.name.clone(),
        input: c.input,
        output: c.output,
        geom,
        groups: c.groups,
        cin_g,
        cout_g,
        kernel: kix,
        parts,
        chunk,
        pad: c.pad_value.clone(),
        int,
        bias: c.bias.clone(),
        post: c.post.clone(),
    }))
}
