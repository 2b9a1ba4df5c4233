//! Consistency of a decoded compiled model: every value index, channel count, weight length
//! and window geometry agrees, so planning and running it cannot index out of bounds.
//!
//! Consumes a [`Model`] read from a file; produces `Ok` or the reason it is refused.

use super::super::ir::{Act, Axis, Concat, Model, Op, Post, Resize, Weights};
use super::{damaged, CompiledError};

/// `cout x ky x kx x cin_g`, the weights a convolution needs; `None` when it overflows
/// (counts read from a file are any u32).
fn weights_len(c: &super::super::ir::Conv) -> Option<usize> {
    c.kernel[0]
        .checked_mul(c.kernel[1])?
        .checked_mul(c.cin_g())?
        .checked_mul(c.cout)
}

/// Every index and length consistent, so planning and running cannot index out of bounds.
pub(super) fn check(m: &Model) -> Result<(), CompiledError> {
    let nv = m.values.len();
    let bad = |what: &str| Err(damaged(what));
    if nv == 0
        || m.values.iter().any(|s| {
            s.c == 0
                || s.h == 0
                || s.w == 0
                || s.c
                    .checked_mul(s.h)
                    .and_then(|x| x.checked_mul(s.w))
                    .is_none_or(|n| n > 1 << 28)
        })
    {
        return bad("a feature map size");
    }
    let per_c = |v: &[f32], c: usize| v.len() == c;
    // a softmax needs whole pixels: only an elementwise op's rows are
    let posts_ok = |post: &[Post], c: usize, out: usize, whole: bool| {
        post.iter().all(|p| match p {
            Post::Softmax => whole,
            Post::Affine { scale, shift } => per_c(scale, c) && per_c(shift, c),
            Post::Act(Act::Prelu(s)) => per_c(s, c),
            Post::Add(v) => *v < nv && m.values[*v] == m.values[out],
            Post::Requant { scale, lo, hi, .. } => *scale > 0.0 && lo <= hi,
            _ => true,
        })
    };
    for op in &m.ops {
        match op {
            Op::Conv(c) => {
                let ok = c.input < nv
                    && c.output < nv
                    && c.groups > 0
                    && c.cin % c.groups == 0
                    && c.cout % c.groups == 0
                    && c.kernel.iter().chain(&c.stride).all(|&x| x > 0 && x < 64)
                    && c.pads.iter().all(|&p| p < 64)
                    && m.values[c.output].c == c.cout
                    && (m.values[c.input].c == c.cin
                        || (m.values[c.input].len() == c.cin && c.kernel == [1, 1]))
                    && c.bias.len() == c.cout
                    && c.pad_value.len() == c.cin
                    && c.pre.as_ref().is_none_or(|(s, t)| {
                        s.len() == m.values[c.input].c && t.len() == m.values[c.input].c
                    })
                    && posts_ok(&c.post, c.cout, c.output, false)
                    && match &c.weights {
                        Weights::F32(w) => Some(w.len()) == weights_len(c),
                        Weights::I8 { w, scale, bias, .. } => {
                            Some(w.len()) == weights_len(c)
                                && scale.len() == c.cout
                                && bias.as_ref().is_none_or(|b| b.len() == c.cout)
                        }
                    };
                // only once the indices are known to be in range
                let geom_ok = ok && {
                    let i = m.values[c.input];
                    let o = m.values[c.output];
                    let (ih, iw) = if i.c == c.cin { (i.h, i.w) } else { (1, 1) };
                    ih + c.pads[0] + c.pads[2] >= c.kernel[0]
                        && iw + c.pads[1] + c.pads[3] >= c.kernel[1]
                        && (ih + c.pads[0] + c.pads[2] - c.kernel[0]) / c.stride[0] + 1 == o.h
                        && (iw + c.pads[1] + c.pads[3] - c.kernel[1]) / c.stride[1] + 1 == o.w
                };
                if !ok || !geom_ok {
                    return bad("a convolution does not fit its maps");
                }
            }
            Op::Map {
                input,
                output,
                post,
            } => {
                // a Reshape to [1, n, k] is a Map between maps of the same length
                if *input >= nv
                    || *output >= nv
                    || input == output
                    || m.values[*input].len() != m.values[*output].len()
                    || !posts_ok(post, m.values[*output].c, *output, true)
                {
                    return bad("an elementwise step does not fit its maps");
                }
            }
            Op::MaxPool {
                input,
                output,
                kernel,
                stride,
                pads,
            } => {
                let ok = *input < nv
                    && *output < nv
                    && kernel.iter().chain(stride).all(|&x| x > 0 && x < 64)
                    && pads.iter().all(|&p| p < 64)
                    && {
                        let (i, o) = (m.values[*input], m.values[*output]);
                        i.c == o.c
                            && i.h + pads[0] + pads[2] >= kernel[0]
                            && i.w + pads[1] + pads[3] >= kernel[1]
                            && (i.h + pads[0] + pads[2] - kernel[0]) / stride[0] + 1 == o.h
                            && (i.w + pads[1] + pads[3] - kernel[1]) / stride[1] + 1 == o.w
                    };
                if !ok {
                    return bad("a pooling does not fit its maps");
                }
            }
            Op::Resize(Resize {
                input,
                output,
                rows,
                cols,
            }) => {
                let ok = *input < nv && *output < nv && input != output && {
                    let (i, o) = (m.values[*input], m.values[*output]);
                    i.c == o.c
                        && rows.len() == o.h
                        && cols.len() == o.w
                        && rows.iter().all(|&r| r < i.h)
                        && cols.iter().all(|&c| c < i.w)
                };
                if !ok {
                    return bad("a resize does not fit its maps");
                }
            }
            Op::Concat(Concat {
                inputs,
                output,
                axis,
            }) => {
                let ok = *output < nv
                    && !inputs.is_empty()
                    && inputs.iter().all(|v| *v < nv && v != output)
                    && {
                        let o = m.values[*output];
                        let ins = inputs.iter().map(|&v| m.values[v]);
                        match axis {
                            Axis::Channels => {
                                ins.clone().all(|s| (s.h, s.w) == (o.h, o.w))
                                    && ins.map(|s| s.c).sum::<usize>() == o.c
                            }
                            Axis::Pixels => {
                                ins.clone().all(|s| s.c == o.c)
                                    && ins.map(|s| s.len()).sum::<usize>() == o.len()
                            }
                        }
                    };
                if !ok {
                    return bad("a concatenation does not fit its maps");
                }
            }
        }
    }
    if m.outputs.iter().any(|o| {
        o.value >= nv
            || o.dims
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .is_none_or(|n| n != m.values[o.value].len())
    }) {
        return bad("an output");
    }
    Ok(())
}
