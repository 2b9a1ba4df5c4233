//! RetinaFace (the `Pytorch_Retinaface` reference) as an ONNX graph.
//!
//! Consumes a backbone choice, an input size and a seed; produces the graph: backbone
//! (MobileNetV1 x0.25 or ResNet-50), FPN over three levels (strides 8, 16, 32), an SSH context
//! module per level, and class / box / landmark 1x1 heads with 2 anchors per location.
//! Input `input` `[1,3,H,W]` (BGR minus (104,117,123)); outputs `loc` `[1,N,4]`, `conf`
//! `[1,N,2]` (softmax) and `landms` `[1,N,10]`, rows ordered level -> row -> column -> anchor
//! as the reference's priors.

use super::graph::{ConvCfg, Graph, T};

/// Anchors per feature-map location.
pub const ANCHORS: usize = 2;

/// Background-logit bias of the class heads: with random features, a few priors per
/// photo pass the reference's 0.02 score threshold, as with a trained model.
const BACKGROUND_LOGIT: f32 = 4.6;

/// Stem weight scale: the input is mean-subtracted 0..255 pixels (std ~60), so the stem
/// brings it to unit scale as a trained stem + BN would.
const INPUT_GAIN: f64 = 1.0 / 60.0;

/// conv + BN + LeakyReLU (`leaky` = 0 gives ReLU); `None` = no activation.
fn conv_bn(g: &mut Graph, x: &T, cfg: ConvCfg, leaky: Option<f32>) -> T {
    let y = g.conv(x, cfg);
    let y = g.bn(&y, 1.0);
    match leaky {
        Some(a) => g.leaky(&y, a),
        None => y,
    }
}

/// MobileNetV1 depthwise-separable unit.
fn conv_dw(g: &mut Graph, x: &T, cout: usize, stride: usize) -> T {
    let dw = ConvCfg {
        groups: x.c,
        ..ConvCfg::new(x.c, 3, stride)
    };
    let y = conv_bn(g, x, dw, Some(0.1));
    conv_bn(g, &y, ConvCfg::new(cout, 1, 1), Some(0.1))
}

fn mobilenet025(g: &mut Graph, x: &T) -> [T; 3] {
    let stem = ConvCfg {
        gain: INPUT_GAIN,
        ..ConvCfg::new(8, 3, 2)
    };
    let mut x = conv_bn(g, x, stem, Some(0.1));
    for (c, s) in [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1)] {
        x = conv_dw(g, &x, c, s);
    }
    let s1 = x.clone();
    for (c, s) in [(128, 2), (128, 1), (128, 1), (128, 1), (128, 1), (128, 1)] {
        x = conv_dw(g, &x, c, s);
    }
    let s2 = x.clone();
    for (c, s) in [(256, 2), (256, 1)] {
        x = conv_dw(g, &x, c, s);
    }
    [s1, s2, x]
}

/// torchvision Bottleneck (v1.5: stride on the 3x3).
fn bottleneck(g: &mut Graph, x: &T, width: usize, stride: usize) -> T {
    let y = conv_bn(g, x, ConvCfg::new(width, 1, 1), Some(0.0));
    let y = conv_bn(g, &y, ConvCfg::new(width, 3, stride), Some(0.0));
    let y = g.conv(&y, ConvCfg::new(width * 4, 1, 1));
    let y = g.bn(&y, 0.2);
    let shortcut = if stride != 1 || x.c != width * 4 {
        conv_bn(g, x, ConvCfg::new(width * 4, 1, stride), None)
    } else {
        x.clone()
    };
    let s = g.add(&y, &shortcut);
    g.leaky(&s, 0.0)
}

fn stage(g: &mut Graph, x: &T, width: usize, blocks: usize, stride: usize) -> T {
    let mut x = bottleneck(g, x, width, stride);
    for _ in 1..blocks {
        x = bottleneck(g, &x, width, 1);
    }
    x
}

fn resnet50(g: &mut Graph, x: &T) -> [T; 3] {
    let stem = ConvCfg {
        gain: INPUT_GAIN,
        ..ConvCfg::new(64, 7, 2)
    };
    let x = conv_bn(g, x, stem, Some(0.0));
    let x = g.maxpool(&x, 3, 2, 1);
    let x = stage(g, &x, 64, 3, 1);
    let c3 = stage(g, &x, 128, 4, 2);
    let c4 = stage(g, &c3, 256, 6, 2);
    let c5 = stage(g, &c4, 512, 3, 2);
    [c3, c4, c5]
}

fn ssh(g: &mut Graph, x: &T, out: usize, leaky: f32) -> T {
    let c3 = conv_bn(g, x, ConvCfg::new(out / 2, 3, 1), None);
    let c5_1 = conv_bn(g, x, ConvCfg::new(out / 4, 3, 1), Some(leaky));
    let c5 = conv_bn(g, &c5_1, ConvCfg::new(out / 4, 3, 1), None);
    let c7_2 = conv_bn(g, &c5_1, ConvCfg::new(out / 4, 3, 1), Some(leaky));
    let c7 = conv_bn(g, &c7_2, ConvCfg::new(out / 4, 3, 1), None);
    let cat = g.concat_c(&[&c3, &c5, &c7]);
    g.leaky(&cat, 0.0)
}

/// Which RetinaFace backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backbone {
    /// MobileNetV1 x0.25 (FPN width 64), the edge variant.
    Mobilenet025,
    /// ResNet-50 (FPN width 256), the reference.
    Resnet50,
}

/// The RetinaFace graph for a `width` x `height` input.
pub fn build(backbone: Backbone, width: usize, height: usize, seed: u64) -> Graph {
    let (mut g, x) = Graph::new("input", 3, height, width, seed);
    let (levels, out) = match backbone {
        Backbone::Mobilenet025 => (mobilenet025(&mut g, &x), 64),
        Backbone::Resnet50 => (resnet50(&mut g, &x), 256),
    };
    let leaky = if out <= 64 { 0.1 } else { 0.0 };
    let lat: Vec<T> = levels
        .iter()
        .map(|l| conv_bn(&mut g, l, ConvCfg::new(out, 1, 1), Some(leaky)))
        .collect();
    let up3 = g.resize_like(&lat[2], &lat[1]);
    let o2 = g.add(&lat[1], &up3);
    let o2 = conv_bn(&mut g, &o2, ConvCfg::new(out, 3, 1), Some(leaky));
    let up2 = g.resize_like(&o2, &lat[0]);
    let o1 = g.add(&lat[0], &up2);
    let o1 = conv_bn(&mut g, &o1, ConvCfg::new(out, 3, 1), Some(leaky));
    let feats: Vec<T> = [o1, o2, lat[2].clone()]
        .iter()
        .map(|f| ssh(&mut g, f, out, leaky))
        .collect();
    let n: usize = feats.iter().map(|f| f.h * f.w * ANCHORS).sum();
    let mut heads: Vec<String> = Vec::new();
    for per in [4usize, 2, 10] {
        let rows: Vec<String> = feats
            .iter()
            .map(|f| {
                let cfg = ConvCfg {
                    bias: true,
                    gain: 0.3 * 64.0 / out as f64,
                    // a trained detector calls almost every prior background
                    even_bias: if per == 2 { BACKGROUND_LOGIT } else { 0.0 },
                    ..ConvCfg::new(ANCHORS * per, 1, 1)
                };
                let h = g.conv(f, cfg);
                g.rows(&h, per)
            })
            .collect();
        let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
        heads.push(g.node("Concat", &refs, vec![pb_axis(1)]));
    }
    let conf = g.node("Softmax", &[&heads[1]], vec![pb_axis(-1)]);
    g.output(&heads[0], "loc", &[1, n as i64, 4]);
    g.output(&conf, "conf", &[1, n as i64, 2]);
    g.output(&heads[2], "landms", &[1, n as i64, 10]);
    g
}

fn pb_axis(axis: i64) -> tract_onnx::pb::AttributeProto {
    tract_onnx::pb::AttributeProto {
        name: "axis".into(),
        r#type: tract_onnx::pb::attribute_proto::AttributeType::Int as i32,
        i: axis,
        ..Default::default()
    }
}
