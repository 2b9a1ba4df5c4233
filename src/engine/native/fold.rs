//! Import-time arithmetic: weight reordering to the canonical layout, folding a batch
//! normalisation into the convolution it feeds, and constant shape arithmetic.
//!
//! Consumes ONNX-ordered weights and constants; produces canonical `[cout][ky][kx][cin_g]`
//! weights, fully connected weights with their columns in NHWC order, and folded constants.

use tract_onnx::pb;

use super::ir::{Conv, Shape, Weights};
use super::onnx::{attr_i, attr_ints, Const, ConstRef, Data};
use super::NativeError;

/// ONNX `[cout, cin_g, kh, kw]` -> canonical `[cout][kh][kw][cin_g]`.
pub fn conv_weights<T: Copy + Default>(w: &[T], dims: &[usize]) -> Vec<T> {
    let (co, ci, kh, kw) = (dims[0], dims[1], dims[2], dims[3]);
    let mut out = vec![T::default(); w.len()];
    for o in 0..co {
        for c in 0..ci {
            for y in 0..kh {
                for x in 0..kw {
                    out[((o * kh + y) * kw + x) * ci + c] = w[((o * ci + c) * kh + y) * kw + x];
                }
            }
        }
    }
    out
}

/// The map a fully connected layer's input vector was flattened from (ONNX order CHW), when
/// its columns need reordering to the NHWC memory order.
#[derive(Debug, Clone, Copy)]
pub struct Flat(Option<Shape>);

impl Flat {
    /// `flat` as recorded on the value (only maps with more than one pixel reorder).
    pub fn of(flat: Option<Shape>, _value: Shape) -> Flat {
        Flat(flat.filter(|s| s.pixels() > 1))
    }
}

/// Weights of `rows` outputs by `cols` inputs (`trans_b`: stored `[rows, cols]`, else
/// `[cols, rows]`) -> canonical `[rows][cols]` with columns in NHWC order.
pub fn gemm_weights<T: Copy + Default>(
    w: &[T],
    rows: usize,
    cols: usize,
    trans_b: bool,
    flat: Flat,
) -> Vec<T> {
    let mut out = vec![T::default(); rows * cols];
    for r in 0..rows {
        for j in 0..cols {
            // j: memory (NHWC) column; its ONNX column index
            let jo = match flat.0 {
                Some(s) => {
                    let (p, c) = (j / s.c, j % s.c);
                    c * s.pixels() + p
                }
                None => j,
            };
            out[r * cols + j] = if trans_b {
                w[r * cols + jo]
            } else {
                w[jo * rows + r]
            };
        }
    }
    out
}

/// Folds `x * scale + shift` (per input channel) in front of float convolution `conv`: the
/// weights take the scale, the bias takes the shift's products, and the padding becomes
/// `-shift / scale` (the original graph padded the affine's output with zeros). Returns
/// false (nothing changed) when a padded channel has a zero scale.
pub fn fold_input_affine(conv: &mut Conv, scale: &[f32], shift: &[f32]) -> bool {
    let padded = conv.pads.iter().any(|&p| p > 0);
    if padded && scale.iter().any(|&s| s == 0.0 || !s.is_finite()) {
        return false;
    }
    let Weights::F32(w) = &mut conv.weights else {
        return false;
    };
    let (cin_g, cout_g, k) = (
        conv.cin / conv.groups,
        conv.cout / conv.groups,
        conv.kernel[0] * conv.kernel[1],
    );
    for o in 0..conv.cout {
        let g = o / cout_g;
        let mut extra = 0f64;
        for t in 0..k {
            for c in 0..cin_g {
                let ci = g * cin_g + c;
                let ix = (o * k + t) * cin_g + c;
                extra += w[ix] as f64 * shift[ci] as f64;
                w[ix] *= scale[ci];
            }
        }
        conv.bias[o] += extra as f32;
    }
    if padded {
        for (ci, p) in conv.pad_value.iter_mut().enumerate() {
            *p = -shift[ci] / scale[ci];
        }
    }
    true
}

/// Folds an affine step on the output of float convolution `conv` (nothing after it yet)
/// into its weights and bias. Returns false (nothing changed) when it cannot.
pub fn fold_output_affine(conv: &mut Conv, post: &super::ir::Post) -> bool {
    let super::ir::Post::Affine { scale, shift } = post else {
        return false;
    };
    if !conv.post.is_empty() || scale.len() != conv.cout || shift.len() != conv.cout {
        return false;
    }
    let Weights::F32(w) = &mut conv.weights else {
        return false;
    };
    let k = w.len() / conv.cout.max(1);
    for (o, row) in w.chunks_mut(k.max(1)).enumerate() {
        row.iter_mut().for_each(|x| *x *= scale[o]);
        conv.bias[o] = conv.bias[o] * scale[o] + shift[o];
    }
    true
}

fn bad(n: &pb::NodeProto, why: &str) -> NativeError {
    NativeError::Unsupported {
        op: n.op_type.clone(),
        node: n.name.clone(),
        why: why.to_string(),
    }
}

fn norm_axis(a: i64, rank: usize) -> usize {
    if a < 0 {
        (a + rank as i64).max(0) as usize
    } else {
        a as usize
    }
}

/// Evaluates `n` on constant inputs (`get(ix)`): the shape arithmetic of exported graphs and
/// elementwise arithmetic on 1-D or scalar tensors.
pub fn const_op(
    n: &pb::NodeProto,
    get: impl Fn(usize) -> Result<ConstRef, NativeError>,
) -> Result<Const, NativeError> {
    let op = n.op_type.as_str();
    match op {
        "Add" | "Sub" | "Mul" | "Div" => {
            let (a, b) = (get(0)?, get(1)?);
            let float = matches!(a.data, Data::F32(_)) || matches!(b.data, Data::F32(_));
            let (la, lb) = (a.len(), b.len());
            if la != lb && la != 1 && lb != 1 {
                return Err(bad(n, "broadcast of constants"));
            }
            let len = la.max(lb);
            let dims = if la >= lb {
                a.dims.clone()
            } else {
                b.dims.clone()
            };
            if float {
                let (x, y) = (a.f32s(), b.f32s());
                let v = (0..len)
                    .map(|i| {
                        let (p, q) = (x[i % la], y[i % lb]);
                        match op {
                            "Add" => p + q,
                            "Sub" => p - q,
                            "Mul" => p * q,
                            _ => p / q,
                        }
                    })
                    .collect();
                Ok(Const {
                    dims,
                    data: Data::F32(v),
                })
            } else {
                let (x, y) = (a.i64s(), b.i64s());
                let v = (0..len)
                    .map(|i| {
                        let (p, q) = (x[i % la], y[i % lb]);
                        match op {
                            "Add" => p.wrapping_add(q),
                            "Sub" => p.wrapping_sub(q),
                            "Mul" => p.wrapping_mul(q),
                            _ => p.checked_div(q).unwrap_or(0),
                        }
                    })
                    .collect();
                Ok(Const {
                    dims,
                    data: Data::I64(v),
                })
            }
        }
        "Gather" => {
            let (a, ix) = (get(0)?, get(1)?);
            if a.dims.len() > 1 || attr_i(n, "axis", 0) != 0 {
                return Err(bad(n, "gather on a constant of rank > 1"));
            }
            let v = a.i64s();
            let mut out = Vec::new();
            for i in ix.i64s() {
                let i = if i < 0 { i + v.len() as i64 } else { i };
                out.push(
                    *v.get(i as usize)
                        .ok_or_else(|| bad(n, "index out of range"))?,
                );
            }
            let dims = ix.dims.clone();
            Ok(Const {
                dims,
                data: Data::I64(out),
            })
        }
        "Slice" => {
            let a = get(0)?;
            if a.dims.len() > 1 {
                return Err(bad(n, "slice of a constant of rank > 1"));
            }
            let v = a.i64s();
            let len = v.len() as i64;
            let (starts, ends) = (get(1)?.i64s(), get(2)?.i64s());
            let step = if n.input.len() > 4 {
                get(4)?.i64s().first().copied().unwrap_or(1)
            } else {
                1
            };
            if starts.len() != 1 || ends.len() != 1 || step != 1 {
                return Err(bad(n, "slice form"));
            }
            let clampi = |x: i64| if x < 0 { (x + len).max(0) } else { x.min(len) };
            let (s, e) = (clampi(starts[0]) as usize, clampi(ends[0]) as usize);
            Ok(Const::ints(v.get(s..e.max(s)).unwrap_or(&[]).to_vec()))
        }
        "Unsqueeze" | "Squeeze" => {
            let a = get(0)?;
            let axes = if n.input.len() > 1 {
                get(1)?.i64s()
            } else {
                attr_ints(n, "axes")
            };
            let mut dims = a.dims.clone();
            if op == "Unsqueeze" {
                let rank = dims.len() + axes.len();
                let mut ax: Vec<usize> = axes.iter().map(|&x| norm_axis(x, rank)).collect();
                ax.sort_unstable();
                for x in ax {
                    dims.insert(x.min(dims.len()), 1);
                }
            } else {
                dims.retain(|&d| d != 1);
            }
            Ok(Const {
                dims,
                data: a.data.clone(),
            })
        }
        "Concat" => {
            let mut out = Vec::new();
            let mut float = Vec::new();
            let mut is_float = false;
            for i in 0..n.input.len() {
                let c = get(i)?;
                if c.dims.len() > 1 {
                    return Err(bad(n, "concat of constants of rank > 1"));
                }
                is_float |= matches!(c.data, Data::F32(_));
                out.extend(c.i64s());
                float.extend(c.f32s());
            }
            Ok(if is_float {
                Const {
                    dims: vec![float.len()],
                    data: Data::F32(float),
                }
            } else {
                Const::ints(out)
            })
        }
        "Reshape" => {
            let a = get(0)?;
            let shape = get(1)?.i64s();
            let known: i64 = shape.iter().filter(|&&d| d > 0).product();
            let dims = shape
                .iter()
                .map(|&d| {
                    if d == -1 {
                        a.len() / known.max(1) as usize
                    } else {
                        d.max(1) as usize
                    }
                })
                .collect();
            Ok(Const {
                dims,
                data: a.data.clone(),
            })
        }
        _ => Err(bad(n, "operation on constants outside the native set")),
    }
}
