//! The detectors' map operations: nearest-neighbour Resize (the feature pyramid's
//! upsampling), Concat of maps along the channels (SSH branches) or of `[1, n, k]` sequences
//! (the heads of the three pyramid levels), and the heads' Transpose to NHWC, Reshape to
//! `[1, n, k]` and Softmax over `k`.
//!
//! A head's `Transpose(0, 2, 3, 1)` costs nothing: the stored map already is NHWC. The
//! Reshape that follows copies it into a value of `k` channels and `n` pixels, so that
//! per-pixel steps (Sigmoid, Softmax) and the Concat of levels see ONNX's layout.

use tract_onnx::pb;

use super::super::ir::{Axis, Concat, Op, Post, Resize, Shape};
use super::super::onnx::{attr_i, attr_ints, attr_s};
use super::super::NativeError;
use super::{invalid, unsupported, Importer, Sym};

/// Largest side and size of a map an import may create (the compiled file's bound).
const MAX_SIDE: usize = 1 << 14;
const MAX_LEN: usize = 1 << 28;

/// Source index of output index `y` along an axis of `len_in` cells resized to `len_out`
/// (`scale` = output / input), by ONNX Resize's coordinate transformation and nearest
/// rounding; `None` for a mode outside the set.
pub(crate) fn nearest_source(
    y: usize,
    len_in: usize,
    len_out: usize,
    scale: f32,
    transform: &str,
    rounding: &str,
) -> Option<usize> {
    let yf = y as f32;
    let x = match transform {
        "" | "half_pixel" => (yf + 0.5) / scale - 0.5,
        "pytorch_half_pixel" if len_out > 1 => (yf + 0.5) / scale - 0.5,
        "pytorch_half_pixel" => 0.0,
        "align_corners" if len_out > 1 => yf * (len_in - 1) as f32 / (len_out - 1) as f32,
        "align_corners" => 0.0,
        "asymmetric" => yf / scale,
        "tf_half_pixel_for_nearest" => (yf + 0.5) / scale,
        _ => return None,
    };
    let half = x - x.floor() == 0.5;
    let i = match rounding {
        "" | "round_prefer_floor" if half => x.floor(),
        "round_prefer_ceil" if half => x.ceil(),
        "" | "round_prefer_floor" | "round_prefer_ceil" => x.round(),
        "floor" => x.floor(),
        "ceil" => x.ceil(),
        _ => return None,
    };
    Some((i.max(0.0) as usize).min(len_in - 1))
}

impl Importer {
    /// `Transpose` with `perm = [0, 2, 3, 1]` of a map: a view of its NHWC buffer.
    pub(super) fn transpose(&mut self, n: &pb::NodeProto) -> Result<(), NativeError> {
        if attr_ints(n, "perm") != [0, 2, 3, 1] {
            return Err(unsupported(n, "a permutation other than NCHW -> NHWC"));
        }
        let (v, flat) = self.map_in(n, 0)?;
        if flat.is_some() {
            return Err(unsupported(n, "transposing a flattened vector"));
        }
        self.out(n, Sym::Nhwc { v });
        Ok(())
    }

    /// `Reshape` of an NHWC view to `[1, n, k]` (`n` may be -1): a copy into a sequence of
    /// `k` channels and `n` pixels.
    pub(super) fn head_reshape(&mut self, n: &pb::NodeProto) -> Result<(), NativeError> {
        let Sym::Nhwc { v } = self.sym(n, 0)? else {
            return Err(unsupported(n, "not a transposed map"));
        };
        let len = self.model.values[v].len();
        let target = self.konst(n, 1)?.i64s();
        let k = match target.as_slice() {
            [1, m, k] if *k > 0 && (*m == -1 || *m * *k == len as i64) => *k as usize,
            _ => return Err(unsupported(n, &format!("reshape to {target:?}"))),
        };
        if len % k != 0 {
            return Err(invalid(
                n,
                format!("{len} values do not split into rows of {k}"),
            ));
        }
        let out = self.value(Shape {
            c: k,
            h: 1,
            w: len / k,
        });
        self.seq.insert(out);
        let copy = Op::Map {
            input: v,
            output: out,
            post: Vec::new(),
        };
        self.push_op(n, copy, None);
        Ok(())
    }

    /// `Resize` in `nearest` mode with constant scales or sizes (opset 11 and later).
    pub(super) fn resize(&mut self, n: &pb::NodeProto) -> Result<(), NativeError> {
        if attr_s(n, "mode") != "nearest" {
            return Err(unsupported(n, "a mode other than nearest"));
        }
        if n.input.len() < 3 {
            return Err(unsupported(
                n,
                "Resize without a sizes input (before opset 11)",
            ));
        }
        if attr_i(n, "antialias", 0) != 0 || !attr_ints(n, "axes").is_empty() {
            return Err(unsupported(n, "antialias or axes"));
        }
        let (v, flat) = self.map_in(n, 0)?;
        if flat.is_some() {
            return Err(unsupported(n, "resizing a flattened vector"));
        }
        let s = self.model.values[v];
        let scales = self.opt_konst(n, 2)?.filter(|c| !c.is_empty());
        let sizes = self.opt_konst(n, 3)?.filter(|c| !c.is_empty());
        let (oh, ow, sh, sw) = match (sizes, scales) {
            (Some(z), _) => match z.i64s().as_slice() {
                &[1, c, h, w] if c as usize == s.c && h > 0 && w > 0 => {
                    let (h, w) = (h as usize, w as usize);
                    (h, w, h as f32 / s.h as f32, w as f32 / s.w as f32)
                }
                z => return Err(unsupported(n, &format!("sizes {z:?} on a {s:?} map"))),
            },
            (None, Some(f)) => match f.f32s().as_slice() {
                &[1.0, 1.0, fh, fw] if fh > 0.0 && fw > 0.0 => (
                    (s.h as f32 * fh).floor() as usize,
                    (s.w as f32 * fw).floor() as usize,
                    fh,
                    fw,
                ),
                f => return Err(unsupported(n, &format!("scales {f:?}"))),
            },
            (None, None) => return Err(unsupported(n, "neither scales nor sizes")),
        };
        if oh == 0 || ow == 0 || oh > MAX_SIDE || ow > MAX_SIDE || oh * ow * s.c > MAX_LEN {
            return Err(invalid(n, format!("an output of {oh}x{ow}x{}", s.c)));
        }
        let (transform, rounding) = (
            attr_s(n, "coordinate_transformation_mode"),
            attr_s(n, "nearest_mode"),
        );
        let axis = |len_in: usize, len_out: usize, scale: f32| {
            (0..len_out)
                .map(|y| nearest_source(y, len_in, len_out, scale, &transform, &rounding))
                .collect::<Option<Vec<usize>>>()
        };
        let (Some(rows), Some(cols)) = (axis(s.h, oh, sh), axis(s.w, ow, sw)) else {
            return Err(unsupported(
                n,
                &format!("coordinate transformation '{transform}' or rounding '{rounding}'"),
            ));
        };
        let out = self.value(Shape {
            c: s.c,
            h: oh,
            w: ow,
        });
        let resize = Resize {
            input: v,
            output: out,
            rows,
            cols,
        };
        self.push_op(n, Op::Resize(resize), None);
        Ok(())
    }

    /// `Concat` on axis 1 of maps (channels) or of `[1, n, k]` sequences (one after the
    /// other).
    pub(super) fn concat(&mut self, n: &pb::NodeProto) -> Result<(), NativeError> {
        let mut vals = Vec::with_capacity(n.input.len());
        for ix in 0..n.input.len() {
            let (v, flat) = self.map_in(n, ix)?;
            if flat.is_some() {
                return Err(unsupported(n, "concatenating flattened vectors"));
            }
            vals.push(v);
        }
        let shapes: Vec<Shape> = vals.iter().map(|&v| self.model.values[v]).collect();
        let seqs = vals.iter().filter(|v| self.seq.contains(v)).count();
        let axis = attr_i(n, "axis", 1);
        let first = *shapes.first().ok_or_else(|| invalid(n, "no inputs"))?;
        let (shape, how) = if seqs == vals.len() && (axis == 1 || axis == -2) {
            if shapes.iter().any(|s| s.c != first.c) {
                return Err(invalid(n, "sequences of different widths"));
            }
            let total: usize = shapes.iter().map(|s| s.w).sum();
            (
                Shape {
                    c: first.c,
                    h: 1,
                    w: total,
                },
                Axis::Pixels,
            )
        } else if seqs == 0 && (axis == 1 || axis == -3) {
            if shapes.iter().any(|s| (s.h, s.w) != (first.h, first.w)) {
                return Err(invalid(n, "maps of different sizes"));
            }
            let c: usize = shapes.iter().map(|s| s.c).sum();
            (Shape { c, ..first }, Axis::Channels)
        } else {
            return Err(unsupported(
                n,
                &format!("axis {axis} (maps join on channels, sequences on rows)"),
            ));
        };
        if shape.len() > MAX_LEN {
            return Err(invalid(n, "an output beyond the size limit"));
        }
        let out = self.value(shape);
        if how == Axis::Pixels {
            self.seq.insert(out);
        }
        let concat = Concat {
            inputs: vals,
            output: out,
            axis: how,
        };
        self.push_op(n, Op::Concat(concat), None);
        Ok(())
    }

    /// `Softmax` over the last axis of a `[1, n, k]` sequence: a per-pixel step of a Map
    /// (never of a convolution, whose epilogue may see part of a pixel's channels).
    pub(super) fn softmax(&mut self, n: &pb::NodeProto) -> Result<(), NativeError> {
        let (v, flat) = self.map_in(n, 0)?;
        let axis = attr_i(n, "axis", -1);
        if !self.seq.contains(&v) || !(axis == -1 || axis == 2) {
            return Err(unsupported(
                n,
                "softmax other than over the last axis of a [1, n, k] sequence",
            ));
        }
        if self.sole_reader(n, 0) {
            if let Some(&op) = self.owner.get(&v) {
                if let Op::Map { output, post, .. } = &mut self.model.ops[op] {
                    if *output == v {
                        post.push(Post::Softmax);
                        self.out(n, Sym::Val { v, flat });
                        return Ok(());
                    }
                }
            }
        }
        self.map_op(n, v, flat, Post::Softmax)
    }
}

#[cfg(test)]
mod tests {
    use super::nearest_source;

    fn axis(len_in: usize, len_out: usize, transform: &str, rounding: &str) -> Vec<usize> {
        let scale = len_out as f32 / len_in as f32;
        (0..len_out)
            .map(|y| nearest_source(y, len_in, len_out, scale, transform, rounding).unwrap())
            .collect()
    }

    #[test]
    fn nearest_indices_follow_onnx_modes() {
        // the detectors' upsampling: asymmetric + floor doubles every cell
        assert_eq!(axis(3, 6, "asymmetric", "floor"), [0, 0, 1, 1, 2, 2]);
        // ONNX defaults (half_pixel, round_prefer_floor) give the same for x2
        assert_eq!(axis(3, 6, "", ""), [0, 0, 1, 1, 2, 2]);
        // x1.5: half_pixel maps 0.5 -> floor, asymmetric 1/1.5 -> floor 0
        assert_eq!(axis(2, 3, "half_pixel", "round_prefer_floor"), [0, 0, 1]);
        assert_eq!(axis(2, 3, "half_pixel", "round_prefer_ceil"), [0, 1, 1]);
        assert_eq!(axis(2, 3, "asymmetric", "ceil"), [0, 1, 1]);
        assert_eq!(
            axis(3, 5, "align_corners", "round_prefer_floor"),
            [0, 0, 1, 1, 2]
        );
        // downsampling keeps indices inside the input
        assert_eq!(axis(4, 2, "tf_half_pixel_for_nearest", "floor"), [1, 3]);
        assert_eq!(nearest_source(0, 4, 2, 0.5, "bilinear-ish", "floor"), None);
        assert_eq!(nearest_source(0, 4, 2, 0.5, "asymmetric", "sideways"), None);
    }
}
