//! ArcFace iResNet (insightface `arcface_torch` `iresnet.py`) as an ONNX graph.
//!
//! Consumes a depth (`[3,4,14,3]` for r50, `[3,13,30,3]` for r100) and a seed; produces the
//! graph: conv3x3(64) + BN + PReLU stem; IBasicBlock = BN, conv3x3, BN, PReLU,
//! conv3x3(stride), BN, plus a 1x1 conv + BN shortcut when the shape changes; stages 64, 128,
//! 256, 512 wide, each starting with stride 2; head BN2d -> flatten (512*7*7) -> FC 512 ->
//! BN1d. Input `input` `[1,3,112,112]` (RGB, `(x/255 - 0.5) / 0.5`), output `embedding`
//! `[1,512]`.

use super::graph::{ConvCfg, Graph, T};

/// Residual-branch output BN scale: keeps activations bounded through 30+ random blocks.
const BRANCH_GAMMA: f64 = 0.2;

fn block(g: &mut Graph, x: &T, planes: usize, stride: usize) -> T {
    let y = g.bn(x, 1.0);
    let y = g.conv(&y, ConvCfg::new(planes, 3, 1));
    let y = g.bn(&y, 1.0);
    let y = g.prelu(&y);
    let y = g.conv(&y, ConvCfg::new(planes, 3, stride));
    let y = g.bn(&y, BRANCH_GAMMA);
    let shortcut = if stride != 1 || x.c != planes {
        let s = g.conv(x, ConvCfg::new(planes, 1, stride));
        g.bn(&s, 1.0)
    } else {
        x.clone()
    };
    g.add(&y, &shortcut)
}

/// The iResNet graph with `layers` blocks per stage; returns the graph ready to finish.
pub fn build(layers: [usize; 4], seed: u64) -> Graph {
    let (mut g, x) = Graph::new("input", 3, 112, 112, seed);
    let x = g.conv(&x, ConvCfg::new(64, 3, 1));
    let x = g.bn(&x, 1.0);
    let mut x = g.prelu(&x);
    for (planes, n) in [64, 128, 256, 512].into_iter().zip(layers) {
        for b in 0..n {
            x = block(&mut g, &x, planes, if b == 0 { 2 } else { 1 });
        }
    }
    let x = g.bn(&x, 1.0);
    let flat = g.node("Flatten", &[&x.name], vec![]);
    let fc = g.gemm(&flat, x.c * x.h * x.w, 512);
    let out = g.bn_named(&fc, 512, 1.0);
    g.output(&out, "embedding", &[1, 512]);
    g
}
