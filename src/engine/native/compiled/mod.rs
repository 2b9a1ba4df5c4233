//! The compiled model file: the imported [`Model`] (canonical weights, f32 or i8 with
//! per-channel scales, biases, activation scales, the plan's operations) in a versioned
//! binary form, the same bytes on every device. Packing for the kernels happens at load.
//!
//! Consumes a model and the identity of its source (ONNX sha256, input size); produces
//! bytes, and back. Layout: magic `GENATIVE`, format version (u32), source sha256 (32
//! bytes), input width and height (u32), body length (u64), body, CRC-32 of the body.
//!
//! The decoder streams (the checksum and the caller's sha256 are known only at the end), so
//! it sizes everything from bytes, never from a count: every count is checked against the
//! bytes left in the body (each item takes at least so many bytes) and the memory its items
//! take in the decoded model is charged to a budget of [`MEMORY_FACTOR`] times the body's
//! length plus [`MEMORY_SLACK`] before anything is allocated. A damaged or crafted file is a
//! typed error, never a panic or an allocation beyond that budget.

use super::ir::{
    Act, Axis, Concat, Conv, InputQuant, Model, Op, Output, Post, Resize, Shape, Weights,
};
use check::check;
use std::io::Read;

mod check;

/// File magic.
pub const MAGIC: &[u8; 8] = b"GENATIVE";
/// The format version this build writes. Version 2 added the detectors' operations
/// (Resize, Concat, Softmax); a version 1 file (which cannot hold them) still reads.
pub const VERSION: u32 = 2;
/// The oldest format version this build reads.
pub const OLDEST: u32 = 1;

/// The decoded model may take at most this many times the body's length in memory (plus
/// [`MEMORY_SLACK`]). A real model needs about 1x: its weights, stored as they are decoded.
pub const MEMORY_FACTOR: u64 = 2;

/// Fixed allowance for the per-operation structures of small models: 1 MiB.
pub const MEMORY_SLACK: u64 = 1 << 20;

/// Why a compiled file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompiledError {
    /// Not a compiled model, or cut short.
    #[error("not a complete compiled model file ({0})")]
    Damaged(String),
    /// Written by another format version.
    #[error(
        "compiled model format version {found}, this build reads versions {OLDEST} to {VERSION}"
    )]
    Version {
        /// Version in the file.
        found: u32,
    },
    /// Compiled from another model or for another input size.
    #[error("compiled from another model (source sha256 {found}, expected {expected})")]
    OtherModel {
        /// The file's source identity.
        found: String,
        /// The expected one.
        expected: String,
    },
}

/// The identity of a compiled model's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// sha256 of the ONNX file it was compiled from.
    pub sha256: [u8; 32],
    /// Input width.
    pub width: u32,
    /// Input height.
    pub height: u32,
}

impl Source {
    /// The source of a model whose ONNX file has the lower-case hex digest `sha256` (64
    /// digits; `None` otherwise), for a `width` x `height` input.
    pub fn from_hex(sha256: &str, width: u32, height: u32) -> Option<Source> {
        if sha256.len() != 64 {
            return None;
        }
        let mut s = [0u8; 32];
        for (i, b) in s.iter_mut().enumerate() {
            *b = u8::from_str_radix(sha256.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Source {
            sha256: s,
            width,
            height,
        })
    }

    fn describe(&self) -> String {
        let hex: String = self.sha256.iter().map(|b| format!("{b:02x}")).collect();
        format!("{hex} at {}x{}", self.width, self.height)
    }
}

struct W(Vec<u8>);

impl W {
    fn u32(&mut self, v: usize) {
        self.0.extend_from_slice(&(v as u32).to_le_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f32(&mut self, v: f32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f32s(&mut self, v: &[f32]) {
        self.u32(v.len());
        v.iter().for_each(|x| self.f32(*x));
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn shape(&mut self, s: Shape) {
        [s.c, s.h, s.w].into_iter().for_each(|x| self.u32(x));
    }
    fn q(&mut self, q: &InputQuant) {
        self.f32(q.scale);
        [q.zero, q.lo, q.hi].into_iter().for_each(|x| self.i32(x));
    }
    fn post(&mut self, p: &Post) {
        match p {
            Post::Affine { scale, shift } => {
                self.0.push(0);
                self.f32s(scale);
                self.f32s(shift);
            }
            Post::Act(Act::Relu) => self.0.push(1),
            Post::Act(Act::Leaky(a)) => {
                self.0.push(2);
                self.f32(*a);
            }
            Post::Act(Act::Prelu(s)) => {
                self.0.push(3);
                self.f32s(s);
            }
            Post::Act(Act::Sigmoid) => self.0.push(4),
            Post::Add(v) => {
                self.0.push(5);
                self.u32(*v);
            }
            Post::Requant {
                scale,
                zero,
                lo,
                hi,
            } => {
                self.0.push(6);
                self.q(&InputQuant {
                    scale: *scale,
                    zero: *zero,
                    lo: *lo,
                    hi: *hi,
                });
            }
            Post::Softmax => self.0.push(7),
        }
    }
    fn posts(&mut self, p: &[Post]) {
        self.u32(p.len());
        p.iter().for_each(|x| self.post(x));
    }
}

/// Serialises `model` compiled from `source`.
pub fn write(model: &Model, source: &Source) -> Vec<u8> {
    let mut b = W(Vec::new());
    b.u32(model.values.len());
    model.values.iter().for_each(|s| b.shape(*s));
    b.u32(model.ops.len());
    for op in &model.ops {
        match op {
            Op::Conv(c) => {
                b.0.push(0);
                b.str(&c.name);
                [c.input, c.output, c.cin, c.cout]
                    .into_iter()
                    .for_each(|x| b.u32(x));
                c.kernel
                    .iter()
                    .chain(&c.stride)
                    .chain(&c.pads)
                    .for_each(|x| b.u32(*x));
                b.u32(c.groups);
                match &c.weights {
                    Weights::F32(w) => {
                        b.0.push(0);
                        b.f32s(w);
                    }
                    Weights::I8 {
                        w,
                        scale,
                        input,
                        bias,
                    } => {
                        b.0.push(1);
                        b.u32(w.len());
                        b.0.extend(w.iter().map(|x| *x as u8));
                        b.f32s(scale);
                        b.q(input);
                        match bias {
                            Some(v) => {
                                b.0.push(1);
                                b.u32(v.len());
                                v.iter().for_each(|x| b.i32(*x));
                            }
                            None => b.0.push(0),
                        }
                    }
                }
                b.f32s(&c.bias);
                match &c.pre {
                    Some((s, t)) => {
                        b.0.push(1);
                        b.f32s(s);
                        b.f32s(t);
                    }
                    None => b.0.push(0),
                }
                b.f32s(&c.pad_value);
                b.posts(&c.post);
            }
            Op::Map {
                input,
                output,
                post,
            } => {
                b.0.push(1);
                b.u32(*input);
                b.u32(*output);
                b.posts(post);
            }
            Op::MaxPool {
                input,
                output,
                kernel,
                stride,
                pads,
            } => {
                b.0.push(2);
                b.u32(*input);
                b.u32(*output);
                kernel
                    .iter()
                    .chain(stride)
                    .chain(pads)
                    .for_each(|x| b.u32(*x));
            }
            Op::Resize(r) => {
                b.0.push(3);
                b.u32(r.input);
                b.u32(r.output);
                for axis in [&r.rows, &r.cols] {
                    b.u32(axis.len());
                    axis.iter().for_each(|x| b.u32(*x));
                }
            }
            Op::Concat(c) => {
                b.0.push(4);
                b.0.push(matches!(c.axis, Axis::Pixels) as u8);
                b.u32(c.inputs.len());
                c.inputs.iter().for_each(|x| b.u32(*x));
                b.u32(c.output);
            }
        }
    }
    b.u32(model.outputs.len());
    for o in &model.outputs {
        b.str(&o.name);
        b.u32(o.value);
        b.u32(o.dims.len());
        o.dims.iter().for_each(|d| b.u32(*d));
        b.0.push(o.nchw as u8);
    }
    let body = b.0;
    let mut out = Vec::with_capacity(body.len() + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&source.sha256);
    out.extend_from_slice(&source.width.to_le_bytes());
    out.extend_from_slice(&source.height.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out
}

/// The body as it streams in: what is left of it, the CRC-32 of what was read, and the
/// memory the decoded model may still take.
struct R<'a> {
    src: &'a mut dyn Read,
    left: u64,
    crc: crc32fast::Hasher,
    budget: u64,
    /// Every count read so far ([`count_fields`]), its offset counted in the body.
    counts: Option<Vec<CountField>>,
    len: u64,
}

fn damaged(what: &str) -> CompiledError {
    CompiledError::Damaged(what.to_string())
}

fn read_error(e: std::io::Error) -> CompiledError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        damaged("cut short")
    } else {
        CompiledError::Damaged(format!("cannot read: {e}"))
    }
}

/// `N` bytes straight from `src` (the header, outside the body's checksum).
fn exact<const N: usize>(src: &mut dyn Read) -> Result<[u8; N], CompiledError> {
    let mut b = [0; N];
    src.read_exact(&mut b).map_err(read_error)?;
    Ok(b)
}

/// Least encoded bytes of one operation (a Concat: tag, axis, input count, output).
const MIN_OP: usize = 1 + 1 + 4 + 4;
/// Least encoded bytes of one output (empty name, value, dimension count, layout flag).
const MIN_OUTPUT: usize = 4 + 4 + 4 + 1;

impl R<'_> {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), CompiledError> {
        if buf.len() as u64 > self.left {
            return Err(damaged("cut short"));
        }
        self.src.read_exact(buf).map_err(read_error)?;
        self.left -= buf.len() as u64;
        self.crc.update(buf);
        Ok(())
    }
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], CompiledError> {
        let mut b = [0; N];
        self.fill(&mut b)?;
        Ok(b)
    }
    /// `n` bytes; callers take `n` from [`R::count`], so it is bounded by the body and
    /// already charged to the budget.
    fn take(&mut self, n: usize) -> Result<Vec<u8>, CompiledError> {
        let mut v = vec![0; n];
        self.fill(&mut v)?;
        Ok(v)
    }
    /// Reads what is left of the body into the checksum (after a decoding error).
    fn skip_rest(&mut self) -> Result<(), CompiledError> {
        let mut buf = vec![0; 1 << 16];
        while self.left > 0 {
            let k = (self.left.min(buf.len() as u64)) as usize;
            self.fill(&mut buf[..k])?;
        }
        Ok(())
    }
    fn u8(&mut self) -> Result<u8, CompiledError> {
        Ok(self.bytes::<1>()?[0])
    }
    fn u32(&mut self) -> Result<usize, CompiledError> {
        Ok(u32::from_le_bytes(self.bytes()?) as usize)
    }
    fn i32(&mut self) -> Result<i32, CompiledError> {
        Ok(i32::from_le_bytes(self.bytes()?))
    }
    fn f32(&mut self) -> Result<f32, CompiledError> {
        Ok(f32::from_le_bytes(self.bytes()?))
    }
    /// A count of items of at least `size` encoded bytes that take `T`'s size each in
    /// memory: refused when the bytes left cannot hold them or when their memory would
    /// overrun the budget, which is charged before the caller allocates.
    fn count<T>(&mut self, size: usize, what: &'static str) -> Result<usize, CompiledError> {
        let at = self.len - self.left;
        let n = self.u32()?;
        if let Some(c) = self.counts.as_mut() {
            c.push(CountField {
                at: at as usize,
                what,
                item_bytes: size.max(1),
            });
        }
        if (n as u64).saturating_mul(size.max(1) as u64) > self.left {
            return Err(CompiledError::Damaged(format!(
                "{what}: a length beyond the end of the file"
            )));
        }
        let memory = (n as u64).saturating_mul(std::mem::size_of::<T>().max(1) as u64);
        if memory > self.budget {
            return Err(CompiledError::Damaged(format!(
                "{what}: {n} items would take more memory than {MEMORY_FACTOR} times the \
                 file's size"
            )));
        }
        self.budget -= memory;
        Ok(n)
    }
    /// `n` items read by `item` into a vector allocated once (`n` comes from [`R::count`]).
    fn items<T>(
        &mut self,
        n: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, CompiledError>,
    ) -> Result<Vec<T>, CompiledError> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(item(self)?);
        }
        Ok(out)
    }
    fn f32s(&mut self, what: &'static str) -> Result<Vec<f32>, CompiledError> {
        let n = self.count::<f32>(4, what)?;
        let mut out = Vec::with_capacity(n);
        let mut buf = [0u8; 1 << 14];
        while out.len() < n {
            let k = ((n - out.len()) * 4).min(buf.len());
            self.fill(&mut buf[..k])?;
            out.extend(
                buf[..k]
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
        }
        Ok(out)
    }
    /// A count of u32 indices or sizes, each read into a `usize`.
    fn u32s(&mut self, what: &'static str) -> Result<Vec<usize>, CompiledError> {
        let n = self.count::<usize>(4, what)?;
        self.items(n, |r| r.u32())
    }
    fn str(&mut self, what: &'static str) -> Result<String, CompiledError> {
        let n = self.count::<u8>(1, what)?;
        String::from_utf8(self.take(n)?).map_err(|_| damaged("a name is not UTF-8"))
    }
    fn shape(&mut self) -> Result<Shape, CompiledError> {
        Ok(Shape {
            c: self.u32()?,
            h: self.u32()?,
            w: self.u32()?,
        })
    }
    fn q(&mut self) -> Result<InputQuant, CompiledError> {
        Ok(InputQuant {
            scale: self.f32()?,
            zero: self.i32()?,
            lo: self.i32()?,
            hi: self.i32()?,
        })
    }
    fn arr<const N: usize>(&mut self) -> Result<[usize; N], CompiledError> {
        let mut a = [0; N];
        for x in a.iter_mut() {
            *x = self.u32()?;
        }
        Ok(a)
    }
    fn post(&mut self) -> Result<Post, CompiledError> {
        Ok(match self.u8()? {
            0 => Post::Affine {
                scale: self.f32s("an affine step's scales")?,
                shift: self.f32s("an affine step's shifts")?,
            },
            1 => Post::Act(Act::Relu),
            2 => Post::Act(Act::Leaky(self.f32()?)),
            3 => Post::Act(Act::Prelu(self.f32s("a PReLU's slopes")?)),
            4 => Post::Act(Act::Sigmoid),
            5 => Post::Add(self.u32()?),
            6 => {
                let q = self.q()?;
                Post::Requant {
                    scale: q.scale,
                    zero: q.zero,
                    lo: q.lo,
                    hi: q.hi,
                }
            }
            7 => Post::Softmax,
            _ => return Err(damaged("unknown step")),
        })
    }
    fn posts(&mut self) -> Result<Vec<Post>, CompiledError> {
        let n = self.count::<Post>(1, "the steps of an operation")?;
        self.items(n, |r| r.post())
    }
}

/// Bytes before the body: magic, version, source sha256, width, height, body length.
const HEADER: u64 = 8 + 4 + 32 + 4 + 4 + 8;

/// Reads a compiled model, checking it was compiled from `expected`.
pub fn read(bytes: &[u8], expected: &Source) -> Result<Model, CompiledError> {
    read_from(&mut &bytes[..], bytes.len() as u64, expected)
}

/// [`read`] of a file of `size` bytes as it streams from `src`: the weights are decoded as
/// they arrive, so the file's bytes are never held beside the model. The checksum covers
/// the body and is checked before the model is returned; a damaged body reports the
/// checksum mismatch rather than what decoding it tripped over.
pub fn read_from(src: &mut dyn Read, size: u64, expected: &Source) -> Result<Model, CompiledError> {
    if exact::<8>(src).ok().as_ref() != Some(MAGIC) {
        return Err(damaged("no GENATIVE magic"));
    }
    let version = u32::from_le_bytes(exact(src)?);
    if !(OLDEST..=VERSION).contains(&version) {
        return Err(CompiledError::Version { found: version });
    }
    let found = Source {
        sha256: exact(src)?,
        width: u32::from_le_bytes(exact(src)?),
        height: u32::from_le_bytes(exact(src)?),
    };
    if &found != expected {
        return Err(CompiledError::OtherModel {
            found: found.describe(),
            expected: expected.describe(),
        });
    }
    let len = u64::from_le_bytes(exact(src)?);
    if len.checked_add(4 + HEADER) != Some(size) {
        return Err(damaged("body length does not match the file size"));
    }
    let mut r = R {
        src,
        left: len,
        crc: crc32fast::Hasher::new(),
        budget: len
            .saturating_mul(MEMORY_FACTOR)
            .saturating_add(MEMORY_SLACK),
        counts: None,
        len,
    };
    let model = body_model(&mut r);
    if model.is_err() {
        r.skip_rest()?;
    }
    let crc = u32::from_le_bytes(exact(r.src)?);
    if r.crc.finalize() != crc {
        return Err(damaged("checksum mismatch"));
    }
    let model = model?;
    check(&model)?;
    Ok(model)
}

/// A count in a compiled file (little-endian u32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountField {
    /// Offset in the file.
    pub at: usize,
    /// What it counts ("the operations", "a convolution's weights", ...).
    pub what: &'static str,
    /// Least encoded bytes of one item: the largest count the bytes after it could hold is
    /// their number divided by this.
    pub item_bytes: usize,
}

/// Every count of a compiled file (of maps, operations, steps, weights, name bytes, ...), in
/// file order. For tests that tamper with each count of a real file; `None` when the file
/// does not decode.
pub fn count_fields(bytes: &[u8]) -> Option<Vec<CountField>> {
    let body = bytes.get(HEADER as usize..bytes.len().checked_sub(4)?)?;
    let mut src = body;
    let mut r = R {
        src: &mut src,
        left: body.len() as u64,
        crc: crc32fast::Hasher::new(),
        budget: u64::MAX,
        counts: Some(Vec::new()),
        len: body.len() as u64,
    };
    body_model(&mut r).ok()?;
    let counts = r.counts.take()?;
    Some(
        counts
            .into_iter()
            .map(|c| CountField {
                at: HEADER as usize + c.at,
                ..c
            })
            .collect(),
    )
}

fn body_model(r: &mut R) -> Result<Model, CompiledError> {
    let nv = r.count::<Shape>(12, "the feature maps")?;
    let values = r.items(nv, |r| r.shape())?;
    let nops = r.count::<Op>(MIN_OP, "the operations")?;
    let mut ops = Vec::with_capacity(nops);
    for _ in 0..nops {
        ops.push(match r.u8()? {
            0 => {
                let name = r.str("a convolution's name")?;
                let [input, output, cin, cout] = r.arr::<4>()?;
                let kernel = r.arr::<2>()?;
                let stride = r.arr::<2>()?;
                let pads = r.arr::<4>()?;
                let groups = r.u32()?;
                let weights = match r.u8()? {
                    0 => Weights::F32(r.f32s("a convolution's weights")?),
                    1 => {
                        let n = r.count::<i8>(1, "a convolution's int8 weights")?;
                        let w = r.take(n)?.into_iter().map(|x| x as i8).collect();
                        let scale = r.f32s("a convolution's weight scales")?;
                        let input = r.q()?;
                        let bias = match r.u8()? {
                            0 => None,
                            _ => {
                                let n = r.count::<i32>(4, "a convolution's integer biases")?;
                                Some(r.items(n, |r| r.i32())?)
                            }
                        };
                        Weights::I8 {
                            w,
                            scale,
                            input,
                            bias,
                        }
                    }
                    _ => return Err(damaged("unknown weight kind")),
                };
                let bias = r.f32s("a convolution's biases")?;
                let pre = match r.u8()? {
                    0 => None,
                    _ => Some((
                        r.f32s("a convolution's input scales")?,
                        r.f32s("a convolution's input shifts")?,
                    )),
                };
                let pad_value = r.f32s("a convolution's padding values")?;
                let post = r.posts()?;
                Op::Conv(Conv {
                    name,
                    input,
                    output,
                    cin,
                    cout,
                    kernel,
                    stride,
                    pads,
                    groups,
                    weights,
                    bias,
                    pre,
                    pad_value,
                    post,
                })
            }
            1 => Op::Map {
                input: r.u32()?,
                output: r.u32()?,
                post: r.posts()?,
            },
            2 => {
                let (input, output) = (r.u32()?, r.u32()?);
                Op::MaxPool {
                    input,
                    output,
                    kernel: r.arr()?,
                    stride: r.arr()?,
                    pads: r.arr()?,
                }
            }
            3 => {
                let (input, output) = (r.u32()?, r.u32()?);
                let rows = r.u32s("a resize's rows")?;
                let cols = r.u32s("a resize's columns")?;
                Op::Resize(Resize {
                    input,
                    output,
                    rows,
                    cols,
                })
            }
            4 => {
                let axis = match r.u8()? {
                    0 => Axis::Channels,
                    1 => Axis::Pixels,
                    _ => return Err(damaged("unknown concatenation axis")),
                };
                let inputs = r.u32s("a concatenation's inputs")?;
                Op::Concat(Concat {
                    inputs,
                    output: r.u32()?,
                    axis,
                })
            }
            _ => return Err(damaged("unknown operation")),
        });
    }
    let no = r.count::<Output>(MIN_OUTPUT, "the outputs")?;
    let outputs = r.items(no, |r| {
        Ok(Output {
            name: r.str("an output's name")?,
            value: r.u32()?,
            dims: r.u32s("an output's dimensions")?,
            nchw: r.u8()? != 0,
        })
    })?;
    if r.left != 0 {
        return Err(damaged("trailing bytes"));
    }
    Ok(Model {
        values,
        ops,
        outputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> (Model, Source) {
        let onnx = crate::tools::synth::iresnet::build([1, 1, 1, 1], 5).finish("t", "");
        let m = super::super::import::import(&onnx, 112, 112).unwrap();
        let src = Source {
            sha256: [7; 32],
            width: 112,
            height: 112,
        };
        (m, src)
    }

    #[test]
    fn a_model_survives_the_round_trip() {
        let (m, src) = model();
        let bytes = write(&m, &src);
        assert_eq!(read(&bytes, &src).unwrap(), m);
    }

    #[test]
    fn damaged_files_are_refused_with_a_reason() {
        let (m, src) = model();
        let bytes = write(&m, &src);
        // cut anywhere: refused, never a panic
        for cut in (0..bytes.len())
            .step_by(bytes.len() / 97 + 1)
            .chain([bytes.len() - 1])
        {
            assert!(
                matches!(read(&bytes[..cut], &src), Err(CompiledError::Damaged(_))),
                "cut at {cut}"
            );
        }
        // a flipped bit anywhere in the body is the checksum's to report, also where the
        // decoder trips over it first (the body's first count, a weight, the last byte)
        let body = HEADER as usize;
        for at in [body, body + 1, bytes.len() / 2, bytes.len() - 5] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x40;
            assert_eq!(
                read(&flipped, &src),
                Err(damaged("checksum mismatch")),
                "flipped at {at}"
            );
        }
        // a stream that hands over a few bytes per read decodes the same model
        struct Trickle<'a>(&'a [u8]);
        impl std::io::Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(3);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let streamed = read_from(&mut Trickle(&bytes), bytes.len() as u64, &src);
        assert_eq!(streamed.unwrap(), m);
        // a size that is not the file's is refused before the body is read
        let short = read_from(&mut &bytes[..], bytes.len() as u64 + 1, &src);
        assert!(matches!(short, Err(CompiledError::Damaged(_))));
        // the next version and none are refused; the previous one (no detector ops) reads
        for v in [VERSION + 1, 0] {
            let mut other = bytes.clone();
            other[8..12].copy_from_slice(&v.to_le_bytes());
            assert_eq!(read(&other, &src), Err(CompiledError::Version { found: v }));
        }
        let mut v1 = bytes.clone();
        v1[8..12].copy_from_slice(&OLDEST.to_le_bytes());
        assert_eq!(read(&v1, &src).unwrap(), m);
        let other = Source {
            width: 96,
            ..src.clone()
        };
        assert!(matches!(
            read(&bytes, &other),
            Err(CompiledError::OtherModel { .. })
        ));
    }

    /// A synthesized RetinaFace imported at 64x64, and the source it is compiled for.
    fn detector_at_64() -> (Model, Source) {
        use crate::tools::synth::{synth, Arch};
        let onnx = synth(Arch::RetinafaceMnet025, 2).onnx;
        let m = super::super::import::import(&onnx, 64, 64).unwrap();
        let src = Source {
            sha256: [3; 32],
            width: 64,
            height: 64,
        };
        (m, src)
    }

    #[test]
    fn a_detector_survives_the_round_trip_and_its_ops_are_checked() {
        let (m, src) = detector_at_64();
        let count = |f: fn(&Op) -> bool| m.ops.iter().filter(|o| f(o)).count();
        assert_eq!(count(|o| matches!(o, Op::Resize(_))), 2);
        assert_eq!(count(|o| matches!(o, Op::Concat(_))), 6);
        let softmax = |o: &Op| matches!(o, Op::Map { post, .. } if post.contains(&Post::Softmax));
        assert_eq!(count(softmax), 1);
        assert_eq!(read(&write(&m, &src), &src).unwrap(), m);
        // a resize reading past its input, a concatenation that does not add up, a softmax
        // in a convolution's epilogue: refused
        let refused = |edit: &dyn Fn(&mut Model)| {
            let mut bad = m.clone();
            edit(&mut bad);
            matches!(
                read(&write(&bad, &src), &src),
                Err(CompiledError::Damaged(_))
            )
        };
        assert!(refused(&|m| {
            if let Some(Op::Resize(Resize { rows, .. })) =
                m.ops.iter_mut().find(|o| matches!(o, Op::Resize(_)))
            {
                rows[0] = 1 << 20;
            }
        }));
        assert!(refused(&|m| {
            if let Some(Op::Concat(Concat { inputs, .. })) =
                m.ops.iter_mut().find(|o| matches!(o, Op::Concat(_)))
            {
                inputs.pop();
            }
        }));
        assert!(refused(&|m| {
            if let Some(Op::Conv(c)) = m.ops.iter_mut().find(|o| matches!(o, Op::Conv(_))) {
                c.post.push(Post::Softmax);
            }
        }));
    }

    /// `bytes` with the u32 at `at` set to `v` and the checksum made right again.
    fn with_count(bytes: &[u8], at: usize, v: u32) -> Vec<u8> {
        let mut b = bytes.to_vec();
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        let n = b.len() - 4;
        let crc = crc32fast::hash(&b[HEADER as usize..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn counts_are_sized_from_the_bytes_and_charged_before_allocating() {
        let (m, src) = detector_at_64();
        let bytes = write(&m, &src);
        let fields = count_fields(&bytes).unwrap();
        let first = |what: &str| fields.iter().find(|f| f.what == what).unwrap();
        // the operation count at the largest value the bytes after it allow: each operation
        // would take hundreds of bytes in memory (the abort of issue 21), refused by the
        // budget before the vector is allocated
        let ops = first("the operations");
        let left = bytes.len() - 4 - (ops.at + 4);
        let n = (left / ops.item_bytes) as u32;
        let err = read(&with_count(&bytes, ops.at, n), &src).unwrap_err();
        assert!(
            err.to_string().contains("the operations") && err.to_string().contains("memory"),
            "{err}"
        );
        // a count of steps, at 1 byte each, is refused the same way
        let steps = first("the steps of an operation");
        let left = bytes.len() - 4 - (steps.at + 4);
        let err = read(&with_count(&bytes, steps.at, left as u32), &src).unwrap_err();
        assert!(err.to_string().contains("memory"), "{err}");
        // beyond the bytes left: refused by them
        let err = read(&with_count(&bytes, ops.at, u32::MAX), &src).unwrap_err();
        assert!(err.to_string().contains("beyond the end"), "{err}");
        // every count of the file is found, and rewriting one with its own value changes
        // nothing
        assert!(fields.len() > 3 * m.ops.len(), "{} counts", fields.len());
        for f in &fields {
            let v = u32::from_le_bytes(bytes[f.at..f.at + 4].try_into().unwrap());
            assert_eq!(with_count(&bytes, f.at, v), bytes);
        }
    }

    #[test]
    fn sizes_that_overflow_are_refused_not_a_panic() {
        // an output's dimensions whose product overflows (a panic in a debug build)
        let (mut m, src) = model();
        m.outputs[0].dims = vec![u32::MAX as usize; 4];
        assert!(matches!(
            read(&write(&m, &src), &src),
            Err(CompiledError::Damaged(_))
        ));
    }

    #[test]
    fn inconsistent_bodies_are_refused() {
        let (mut m, src) = model();
        if let Op::Conv(c) = &mut m.ops[0] {
            c.bias.pop();
        }
        assert!(matches!(
            read(&write(&m, &src), &src),
            Err(CompiledError::Damaged(_))
        ));
        // a convolution reading a map that does not exist (found by the compiled_model
        // fuzz seed's mutations: the geometry check indexed it)
        let (mut m, src) = model();
        if let Op::Conv(c) = &mut m.ops[0] {
            c.input = 61_697;
        }
        assert!(matches!(
            read(&write(&m, &src), &src),
            Err(CompiledError::Damaged(_))
        ));
        let (mut m, src) = model();
        m.outputs[0].value = 10_000;
        assert!(matches!(
            read(&write(&m, &src), &src),
            Err(CompiledError::Damaged(_))
        ));
    }
}
