//! One iResNet pass (112x112, synthesized seeded weights) on every engine in the same run:
//! native f32, native int8 (calibrated as `model quantize` does), tract-onnx f32, and
//! onnxruntime f32 with `--features ort` and `ORT_LIB` naming libonnxruntime.
//!
//! `cargo bench --bench native_pass` (`NATIVE_ARCH=iresnet50|iresnet100`, `NATIVE_THREADS`,
//! `NATIVE_RUNS`). Prints medians, ratios against native f32, and the load average.

use std::path::Path;
use std::time::Instant;

use gestalt_edge::engine::native::choose::Measured;
use gestalt_edge::engine::native::{ByFeatures, Chooser, NativeNet, StepTime};
use gestalt_edge::engine::Net;
use gestalt_edge::tools::profile::group_steps;
use gestalt_edge::tools::quantize::{calibration_model, observe, quantize_with, QuantOptions};
use gestalt_edge::tools::synth::{synth, Arch};

fn input(seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..3 * 112 * 112)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let arch_name = std::env::var("NATIVE_ARCH").unwrap_or_else(|_| "iresnet100".into());
    let arch = Arch::from_name(&arch_name).expect("NATIVE_ARCH");
    let threads: usize = std::env::var("NATIVE_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let runs: usize = std::env::var("NATIVE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let s = synth(arch, 11);
    let p = Path::new("m.onnx");
    let x = input(1);
    println!(
        "{arch_name}: {:.2} GMAC, {threads} threads, median of {runs}; load before: {}",
        s.macs as f64 / 1e9,
        loadavg()
    );

    let (cal, names) = calibration_model(&s.onnx, p).unwrap();
    let cal_net = Net::load(p, &cal, 112, 112, &[]).unwrap();
    let ranges = observe(&cal_net, &names, "input", &[input(2), input(3)], 0.0).unwrap();
    drop(cal_net);
    let sym = std::env::var("NATIVE_SYMMETRIC").is_ok_and(|v| v == "1");
    let opts = QuantOptions {
        symmetric_activations: sym,
        ..QuantOptions::default()
    };
    let (q, _) = quantize_with(&s.onnx, p, &ranges, &opts).unwrap();

    // NATIVE_ONLY=f32|int8: that native pass alone (for a profiler)
    let only = std::env::var("NATIVE_ONLY").unwrap_or_default();
    let mut rows: Vec<(String, f64)> = Vec::new();
    if only != "int8" {
        let nf = NativeNet::from_onnx(&s.onnx, 112, 112, threads, &mut chooser()).unwrap();
        rows.push((
            format!("native f32 [{}]", nf.kernels().join(",")),
            time(runs, || drop(nf.run(&x).unwrap())),
        ));
    }
    if only != "f32" {
        let ni = NativeNet::from_onnx(&q, 112, 112, threads, &mut chooser()).unwrap();
        rows.push((
            format!("native int8 [{}]", ni.kernels().join(",")),
            time(runs, || drop(ni.run(&x).unwrap())),
        ));
    }
    if std::env::var("NATIVE_PROFILE").is_ok_and(|v| v == "1") {
        for (name, bytes) in [("f32", &s.onnx), ("int8", &q)] {
            if only.is_empty() || only == name {
                let net = NativeNet::from_onnx(bytes, 112, 112, threads, &mut chooser()).unwrap();
                print_profile(name, &net.profile(&x, runs).unwrap());
            }
        }
    }
    if !only.is_empty() {
        print_rows(&rows, s.macs);
        return;
    }
    // tract runs its passes single-threaded: two passes side by side give its 2-thread rate
    let tf = Net::load(p, &s.onnx, 112, 112, &[]).unwrap();
    rows.push((
        "tract f32 (1 pass, 1 thread)".into(),
        time(runs.min(3), || drop(tf.run(x.clone()).unwrap())),
    ));
    drop(tf);
    #[cfg(feature = "ort")]
    if let Ok(lib) = std::env::var("ORT_LIB") {
        let plan = gestalt_edge::engine::OrtPlan {
            sessions: 1,
            intra_threads: threads,
        };
        let o = Net::load_ort(Path::new(&lib), p, &s.onnx, 112, 112, &[], 1, plan).unwrap();
        rows.push((
            format!("onnxruntime f32 ({threads} intra-op threads)"),
            time(runs, || drop(o.run(x.clone()).unwrap())),
        ));
    }
    print_rows(&rows, s.macs);
}

/// NATIVE_KERNELS=measured: kernels timed per shape (not remembered); else by features.
fn chooser() -> Chooser {
    if std::env::var("NATIVE_KERNELS").is_ok_and(|v| v == "measured") {
        Chooser::Measured(Measured::open(None))
    } else {
        Chooser::Features(ByFeatures)
    }
}

/// Step kinds, slowest first.
fn print_profile(name: &str, steps: &[StepTime]) {
    let total: f64 = steps.iter().map(|s| s.ms).sum();
    println!("native {name} per step kind ({total:.1} ms a pass):");
    for g in group_steps(steps).iter().take(14) {
        let rate = g.gmac_per_s();
        println!(
            "{:8.2} ms {:4}x {rate:7.1} GMAC/s  {}",
            g.ms, g.steps, g.label
        );
    }
}

fn print_rows(rows: &[(String, f64)], macs: u64) {
    let base = rows[0].1;
    for (name, ms) in rows {
        println!(
            "{ms:9.1} ms  {:5.2}x first row  {:6.1} GMAC/s  {name}",
            ms / base,
            macs as f64 / ms / 1e6
        );
    }
    println!("load after: {}", loadavg());
}
