//! The layer imports: convolutions (float and QLinearConv), fully connected layers (Gemm,
//! MatMul, MatMulInteger) and max pooling, each checked against the map it reads.
//!
//! Consumes ONNX nodes and the importer's symbols; produces IR operations.

use super::super::fold::{conv_weights, fold_input_affine, gemm_weights, Flat};
use super::super::ir::{Conv, InputQuant, Op, Post, Shape, ValueId, Weights};
use super::super::onnx::{attr_f, attr_i, attr_ints, attr_s, Data};
use super::super::NativeError;
use super::{invalid, unsupported, Importer, Sym};
use tract_onnx::pb;

impl Importer {
    /// `a + b` of two maps: folded into whichever producer ran last when it has no other
    /// reader (the other operand is then already computed).
    pub(super) fn residual(&mut self, n: &pb::NodeProto) -> Result<(), NativeError> {
        let (a, fa) = self.map_in(n, 0)?;
        let (b, fb) = self.map_in(n, 1)?;
        if self.model.values[a] != self.model.values[b] || fa != fb {
            return Err(unsupported(n, "operands of different shapes"));
        }
        let at = |v: ValueId| self.owner.get(&v).map_or(-1, |&i| i as isize);
        let (ix, other) = if at(b) > at(a) { (1, a) } else { (0, b) };
        let mut swapped = n.clone();
        swapped.input.swap(0, ix);
        self.elementwise(&swapped, Post::Add(other))
    }

    pub(super) fn maxpool(&mut self, n: &pb::NodeProto) -> Result<(), NativeError> {
        let (v, _) = self.map_in(n, 0)?;
        let s = self.model.values[v];
        let k = attr_ints(n, "kernel_shape");
        let st = attr_ints(n, "strides");
        let p = attr_ints(n, "pads");
        if k.len() != 2
            || attr_i(n, "ceil_mode", 0) != 0
            || !attr_ints(n, "dilations").iter().all(|&d| d == 1)
        {
            return Err(unsupported(n, "pooling settings"));
        }
        let kernel = [k[0] as usize, k[1] as usize];
        let stride = if st.len() == 2 {
            [st[0] as usize, st[1] as usize]
        } else {
            [1, 1]
        };
        let pads = if p.len() == 4 {
            [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize]
        } else {
            [0; 4]
        };
        let (oh, ow) = out_hw(n, s, kernel, stride, pads)?;
        let out = self.value(Shape {
            c: s.c,
            h: oh,
            w: ow,
        });
        let pool = Op::MaxPool {
            input: v,
            output: out,
            kernel,
            stride,
            pads,
        };
        self.push_op(n, pool, None);
        Ok(())
    }

    pub(super) fn geometry(
        &self,
        n: &pb::NodeProto,
        s: Shape,
        kernel: [usize; 2],
    ) -> Result<([usize; 2], [usize; 4], usize), NativeError> {
        let st = attr_ints(n, "strides");
        let stride = if st.len() == 2 {
            [st[0] as usize, st[1] as usize]
        } else {
            [1, 1]
        };
        if !attr_ints(n, "dilations").iter().all(|&d| d == 1) {
            return Err(unsupported(n, "dilated convolution"));
        }
        let auto = attr_s(n, "auto_pad");
        let pads = match auto.as_str() {
            "" | "NOTSET" => {
                let p = attr_ints(n, "pads");
                if p.len() == 4 {
                    [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize]
                } else {
                    [0; 4]
                }
            }
            "VALID" => [0; 4],
            "SAME_UPPER" | "SAME_LOWER" => {
                let mut pads = [0; 4];
                for (ax, size) in [s.h, s.w].into_iter().enumerate() {
                    let out = size.div_ceil(stride[ax]);
                    let total = ((out - 1) * stride[ax] + kernel[ax]).saturating_sub(size);
                    let small = total / 2;
                    let (a, b) = if auto == "SAME_UPPER" {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                    pads[ax] = a;
                    pads[ax + 2] = b;
                }
                pads
            }
            _ => return Err(unsupported(n, "auto_pad")),
        };
        let groups = attr_i(n, "group", 1).max(1) as usize;
        Ok((stride, pads, groups))
    }

    pub(super) fn conv(&mut self, n: &pb::NodeProto) -> Result<(), NativeError> {
        let w = self.konst(n, 1)?;
        let bias = self.opt_konst(n, 2)?;
        let Data::F32(wd) = &w.data else {
            return Err(unsupported(n, "non-float weights"));
        };
        if w.dims.len() != 4 {
            return Err(unsupported(n, "not a 2-D convolution"));
        }
        let (v, pending) = match self.sym(n, 0)? {
            Sym::Val { v, flat: None } => (v, None),
            Sym::Affine { v, scale, shift } => (v, Some((scale, shift))),
            _ => return Err(unsupported(n, "input form")),
        };
        let s = self.model.values[v];
        let kernel = [w.dims[2], w.dims[3]];
        let (stride, pads, groups) = self.geometry(n, s, kernel)?;
        let cout = w.dims[0];
        if s.c % groups != 0 || cout % groups != 0 || w.dims[1] * groups != s.c {
            return Err(invalid(
                n,
                format!(
                    "weights {:?} for {} input channels in {groups} groups",
                    w.dims, s.c
                ),
            ));
        }
        let (oh, ow) = out_hw(n, s, kernel, stride, pads)?;
        let out = self.value(Shape {
            c: cout,
            h: oh,
            w: ow,
        });
        let bias = match bias {
            Some(b) => self.per_channel(n, &b, cout)?,
            None => vec![0.0; cout],
        };
        let mut conv = Conv {
            name: n.name.clone(),
            input: v,
            output: out,
            cin: s.c,
            cout,
            kernel,
            stride,
            pads,
            groups,
            weights: Weights::F32(conv_weights(wd, &w.dims)),
            bias,
            pre: None,
            pad_value: vec![0.0; s.c],
            post: Vec::new(),
        };
        if let Some((scale, shift)) = pending {
            if !fold_input_affine(&mut conv, &scale, &shift) {
                let v = self.materialize(&n.name, Sym::Affine { v, scale, shift })?;
                conv.input = v;
            }
        }
        self.push_op(n, Op::Conv(conv), None);
        Ok(())
    }

    pub(super) fn gemm(&mut self, n: &pb::NodeProto) -> Result<(), NativeError> {
        let w = self.konst(n, 1)?;
        let Data::F32(wd) = &w.data else {
            return Err(unsupported(n, "non-float weights"));
        };
        let is_gemm = n.op_type == "Gemm";
        if w.dims.len() != 2 || (is_gemm && attr_i(n, "transA", 0) != 0) {
            return Err(unsupported(n, "matrix product form"));
        }
        let trans_b = is_gemm && attr_i(n, "transB", 0) != 0;
        let alpha = if is_gemm {
            attr_f(n, "alpha", 1.0)
        } else {
            1.0
        };
        let beta = if is_gemm { attr_f(n, "beta", 1.0) } else { 1.0 };
        let (v, flat) = self.map_in(n, 0)?;
        let s = self.model.values[v];
        let (rows, cols) = if trans_b {
            (w.dims[0], w.dims[1])
        } else {
            (w.dims[1], w.dims[0])
        };
        if cols != s.len() {
            return Err(invalid(
                n,
                format!("weights {:?} for an input of {}", w.dims, s.len()),
            ));
        }
        let bias = match self.opt_konst(n, 2)? {
            Some(b) if is_gemm => self
                .per_channel(n, &b, rows)?
                .iter()
                .map(|x| x * beta)
                .collect(),
            _ => vec![0.0; rows],
        };
        let mut wc = gemm_weights(wd, rows, cols, trans_b, Flat::of(flat, s));
        if alpha != 1.0 {
            wc.iter_mut().for_each(|x| *x *= alpha);
        }
        let out = self.value(Shape {
            c: rows,
            h: 1,
            w: 1,
        });
        let conv = fc(n, v, out, cols, rows, Weights::F32(wc), bias);
        self.push_op(n, Op::Conv(conv), None);
        Ok(())
    }

    pub(super) fn qconv(&mut self, n: &pb::NodeProto) -> Result<(), NativeError> {
        let (v, pre, q) = match self.sym(n, 0)? {
            Sym::Quant {
                v,
                flat: None,
                pre,
                q,
                ..
            } => (v, pre, q),
            _ => return Err(unsupported(n, "input is not a quantized feature map")),
        };
        let w = self.konst(n, 3)?;
        let Data::I8(wd) = &w.data else {
            return Err(unsupported(n, "weights are not int8"));
        };
        let ws = self.konst(n, 4)?.f32s();
        if self.konst(n, 5)?.i64s().iter().any(|&z| z != 0) {
            return Err(unsupported(n, "weight zero point"));
        }
        let ys = self.konst(n, 6)?.f32s();
        let yz = self.konst(n, 7)?;
        let xs = self.konst(n, 1)?.f32s();
        let xz = self.konst(n, 2)?.i64s();
        if ys.len() != 1 || yz.len() != 1 || xs.len() != 1 || xz.len() != 1 || w.dims.len() != 4 {
            return Err(unsupported(n, "quantization parameters"));
        }
        let (lo, hi) = yz.code_range();
        let q = InputQuant {
            scale: xs[0],
            zero: xz[0] as i32,
            lo: q.lo,
            hi: q.hi,
        };
        let s = self.model.values[v];
        let kernel = [w.dims[2], w.dims[3]];
        let (stride, pads, groups) = self.geometry(n, s, kernel)?;
        let cout = w.dims[0];
        if w.dims[1] * groups != s.c || cout % groups != 0 {
            return Err(invalid(n, "weights do not fit the input"));
        }
        let ws = if ws.len() == 1 { vec![ws[0]; cout] } else { ws };
        if ws.len() != cout {
            return Err(invalid(n, "weight scales do not fit the output channels"));
        }
        let bias_q: Vec<i32> = match self.opt_konst(n, 8)? {
            Some(b) => b.i64s().iter().map(|&x| x as i32).collect(),
            None => vec![0; cout],
        };
        let bias: Vec<f32> = match self.opt_konst(n, 8)? {
            Some(b) => b
                .i64s()
                .iter()
                .zip(&ws)
                .map(|(&b, &s)| (b as f64 * xs[0] as f64 * s as f64) as f32)
                .collect(),
            None => vec![0.0; cout],
        };
        if bias.len() != cout {
            return Err(invalid(n, "bias does not fit the output channels"));
        }
        let (oh, ow) = out_hw(n, s, kernel, stride, pads)?;
        let out = self.value(Shape {
            c: cout,
            h: oh,
            w: ow,
        });
        let conv = Conv {
            name: n.name.clone(),
            input: v,
            output: out,
            cin: s.c,
            cout,
            kernel,
            stride,
            pads,
            groups,
            weights: Weights::I8 {
                w: conv_weights(wd, &w.dims),
                scale: ws,
                input: q,
                bias: Some(bias_q),
            },
            bias,
            pre,
            pad_value: vec![0.0; s.c],
            post: vec![Post::Requant {
                scale: ys[0],
                zero: yz.i64s()[0] as i32,
                lo,
                hi,
            }],
        };
        self.push_op(n, Op::Conv(conv), None);
        let yq = InputQuant {
            scale: ys[0],
            zero: yz.i64s()[0] as i32,
            lo,
            hi,
        };
        self.out(
            n,
            Sym::Quant {
                v: out,
                flat: None,
                pre: None,
                q: yq,
                exact: true,
            },
        );
        Ok(())
    }

    pub(super) fn matmul_integer(&mut self, n: &pb::NodeProto) -> Result<(), NativeError> {
        let (v, flat, pre, q) = match self.sym(n, 0)? {
            Sym::Quant {
                v, flat, pre, q, ..
            } => (v, flat, pre, q),
            _ => return Err(unsupported(n, "input is not quantized")),
        };
        let w = self.konst(n, 1)?;
        let Data::I8(wd) = &w.data else {
            return Err(unsupported(n, "weights are not int8"));
        };
        if let Some(z) = self.opt_konst(n, 3)? {
            if z.i64s().iter().any(|&z| z != 0) {
                return Err(unsupported(n, "weight zero point"));
            }
        }
        let zero = match self.opt_konst(n, 2)? {
            Some(z) if z.len() == 1 => z.i64s()[0] as i32,
            Some(_) => return Err(unsupported(n, "per-row zero point")),
            None => 0,
        };
        let s = self.model.values[v];
        if w.dims.len() != 2 || w.dims[0] != s.len() {
            return Err(invalid(
                n,
                format!("weights {:?} for an input of {}", w.dims, s.len()),
            ));
        }
        let (cols, rows) = (w.dims[0], w.dims[1]);
        let v = if pre.is_some() {
            self.materialize(
                &n.name,
                Sym::Affine {
                    v,
                    scale: pre.clone().unwrap_or_default().0,
                    shift: pre.unwrap_or_default().1,
                },
            )?
        } else {
            v
        };
        let wc = gemm_weights(wd, rows, cols, false, Flat::of(flat, s));
        let out = self.value(Shape {
            c: rows,
            h: 1,
            w: 1,
        });
        let q = InputQuant { zero, ..q };
        let conv = fc(
            n,
            v,
            out,
            cols,
            rows,
            Weights::I8 {
                w: wc,
                // the product stays in accumulator units: the graph scales it next
                scale: vec![1.0 / q.scale; rows],
                input: q,
                bias: None,
            },
            vec![0.0; rows],
        );
        self.push_op(n, Op::Conv(conv), None);
        Ok(())
    }
}

pub(super) fn unreachable_const(n: &pb::NodeProto) -> Result<(), NativeError> {
    Err(invalid(n, "constant arithmetic was not folded"))
}

/// A fully connected layer as a 1x1 convolution on a 1x1 map of `cols` channels.
pub(super) fn fc(
    n: &pb::NodeProto,
    input: ValueId,
    output: ValueId,
    cols: usize,
    rows: usize,
    weights: Weights,
    bias: Vec<f32>,
) -> Conv {
    Conv {
        name: n.name.clone(),
        input,
        output,
        cin: cols,
        cout: rows,
        kernel: [1, 1],
        stride: [1, 1],
        pads: [0; 4],
        groups: 1,
        weights,
        bias,
        pre: None,
        pad_value: vec![0.0; cols],
        post: Vec::new(),
    }
}

pub(super) fn out_hw(
    n: &pb::NodeProto,
    s: Shape,
    k: [usize; 2],
    st: [usize; 2],
    p: [usize; 4],
) -> Result<(usize, usize), NativeError> {
    let h = s.h + p[0] + p[2];
    let w = s.w + p[1] + p[3];
    if h < k[0] || w < k[1] || st[0] == 0 || st[1] == 0 {
        return Err(invalid(
            n,
            format!("window {k:?} does not fit a {}x{} map", s.h, s.w),
        ));
    }
    Ok(((h - k[0]) / st[0] + 1, (w - k[1]) / st[1] + 1))
}
