//! Unit tests of [`super`] (kept in their own file: quantize.rs stays under 600 lines).

use super::*;

#[test]
fn u8_params_cover_the_range_and_zero() {
    let (s, z) = u8_params(-1.0, 3.0);
    assert!((s - 4.0 / 255.0).abs() < 1e-7);
    assert_eq!(z, 64);
    let (s, z) = u8_params(0.5, 2.0);
    assert_eq!(z, 0);
    assert!((s * 255.0 - 2.0).abs() < 1e-6);
}

#[test]
fn clipping_drops_outliers() {
    let mut v: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0).collect();
    v[17] = 1000.0;
    v[18] = -1000.0;
    let mut s = Vec::new();
    assert_eq!(clipped_range(&v, 0.0, &mut s), (-1000.0, 1000.0));
    let (lo, hi) = clipped_range(&v, 1e-3, &mut s);
    assert!(
        (0.0..0.002).contains(&lo) && hi <= 1.0 && hi > 0.99,
        "{lo} {hi}"
    );
}

#[test]
fn i8_rows_are_per_channel_and_symmetric() {
    let (q, s) = i8_rows(&[1.0, -0.5, 0.0, 10.0], 2);
    assert_eq!(q, vec![127, -64, 0, 127]);
    assert!((s[0] - 1.0 / 127.0).abs() < 1e-9 && (s[1] - 10.0 / 127.0).abs() < 1e-9);
}

#[test]
fn options_choose_what_is_quantized_and_how() {
    use crate::tools::synth::{synth, Arch};
    let s = synth(Arch::RetinafaceMnet025, 3);
    let path = Path::new("det.onnx");
    let (_, names) = calibration_model(&s.onnx, path).unwrap();
    let g0 = decode(&s.onnx, path).unwrap().graph.unwrap();
    let ranges: Ranges = names
        .into_iter()
        .chain(g0.input.iter().map(|i| i.name.clone()))
        .map(|n| (n, (-1.0, 2.0)))
        .collect();
    let count = |opts: &QuantOptions| {
        let (q, st) = quantize_with(&s.onnx, path, &ranges, opts).unwrap();
        let m = decode(&q, path).unwrap();
        let g = m.graph.unwrap();
        let qconvs = g.node.iter().filter(|n| n.op_type == "QLinearConv").count();
        assert_eq!(qconvs, st.convs);
        let zps: Vec<(i32, Vec<u8>)> = g
            .initializer
            .iter()
            .filter(|t| t.name.ends_with("_q_zp"))
            .map(|t| (t.data_type, t.raw_data.clone()))
            .collect();
        (st.convs, zps)
    };
    let (all, zps) = count(&QuantOptions::default());
    assert!(all > 40, "{all} convs quantized");
    let u8_dt = pb::tensor_proto::DataType::Uint8 as i32;
    // range [-1, 2] as u8: zero point 85
    assert!(zps
        .iter()
        .all(|(dt, raw)| *dt == u8_dt && raw == &vec![85u8]));
    let (no_dw, _) = count(&QuantOptions {
        float_depthwise: true,
        ..QuantOptions::default()
    });
    assert!(no_dw < all && no_dw > 0, "{no_dw} of {all}");
    let (_, zps) = count(&QuantOptions {
        symmetric_activations: true,
        ..QuantOptions::default()
    });
    let i8_dt = pb::tensor_proto::DataType::Int8 as i32;
    assert!(!zps.is_empty());
    assert!(zps
        .iter()
        .all(|(dt, raw)| *dt == i8_dt && raw == &vec![0u8]));
}

#[test]
fn symmetric_activation_range_covers_both_tails() {
    let (s, z) = act_params(-1.0, 3.0, true);
    assert_eq!(z, 0);
    assert!((s * 127.0 - 3.0).abs() < 1e-6);
    assert_eq!(act_params(-1.0, 3.0, false), u8_params(-1.0, 3.0));
}
