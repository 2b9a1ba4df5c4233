//! `gestalt-edge model synth | quantize | compile | profile | kernels`: write
//! architecture-exact graphs, post-training int8 bundles with their agreement report, the
//! native engine's compiled files, tract's operator profile, and the native kernels a CPU
//! runs.

use crate::cli::out::outln;
use gestalt_edge::tools::synth::{self, Arch};
use gestalt_edge::{Error, Result};

use crate::cli::args::{KernelsListArgs, ModelCommand, ProfileArgs, SynthArgs};

pub fn run(c: ModelCommand) -> Result<i32> {
    match c {
        ModelCommand::Synth(a) => synth_cmd(a),
        ModelCommand::Quantize(a) => super::quantize::run(a),
        ModelCommand::Compile(a) => super::compile::run(a),
        ModelCommand::Profile(a) => profile_cmd(a),
        ModelCommand::Kernels(a) => kernels_cmd(a),
    }
}

/// Lists the native engine's candidate kernels and the by-features picks.
fn kernels_cmd(a: KernelsListArgs) -> Result<i32> {
    use gestalt_edge::engine::native::kernels::{by_features, candidates, Precision};
    let names = |p| -> Vec<String> { candidates(p).iter().map(|k| k.name().to_string()).collect() };
    let pick = |p| by_features(p).map(|k| k.name().to_string());
    let (f32_pick, i8_pick) = (pick(Precision::F32), pick(Precision::I8));
    let v = serde_json::json!({
        "arch": std::env::consts::ARCH,
        "f32": { "by_features": f32_pick.as_ref().ok(), "candidates": names(Precision::F32) },
        "int8": { "by_features": i8_pick.as_ref().ok(), "candidates": names(Precision::I8) },
    });
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        for (what, p, picked) in [
            ("f32", Precision::F32, &f32_pick),
            ("int8", Precision::I8, &i8_pick),
        ] {
            match picked {
                Ok(k) => outln!("{what}: {k} (of {})", names(p).join(", ")),
                Err(e) => outln!("{what}: none ({e})"),
            }
        }
    }
    match (f32_pick, i8_pick) {
        (Ok(_), Ok(_)) => Ok(0),
        (Err(e), _) | (_, Err(e)) => Err(Error::Bundle {
            path: std::path::PathBuf::from("native engine"),
            reason: e.to_string(),
        }),
    }
}

fn synth_cmd(a: SynthArgs) -> Result<i32> {
    let arch = Arch::from_name(&a.arch).ok_or_else(|| {
        let names: Vec<&str> = Arch::ALL.iter().map(|a| a.name()).collect();
        Error::Usage(format!(
            "unknown --arch '{}': use one of {}",
            a.arch,
            names.join(", ")
        ))
    })?;
    let s = synth::synth(arch, a.seed);
    synth::write_atomic(&a.out, &s.onnx)?;
    outln!(
        "{}: {} ({:.2} M parameters, {:.2} GMAC per pass, {:.1} MB, sha256 {})",
        a.out.display(),
        arch.name(),
        s.params as f64 / 1e6,
        s.macs as f64 / 1e9,
        s.onnx.len() as f64 / 1e6,
        gestalt_edge::bundle::sha256_hex(&s.onnx)
    );
    Ok(0)
}

/// Prints one profile as pretty JSON (exit 0).
fn print_json(p: &impl serde::Serialize) -> Result<i32> {
    let text = serde_json::to_string_pretty(p).map_err(|e| Error::Usage(e.to_string()))?;
    outln!("{text}");
    Ok(0)
}

fn profile_native_cmd(a: &ProfileArgs, bytes: &[u8]) -> Result<i32> {
    let p = gestalt_edge::tools::profile::profile_native(
        &a.model,
        bytes,
        a.width,
        a.height,
        a.passes,
        a.threads as usize,
    )?;
    if a.json {
        return print_json(&p);
    }
    outln!(
        "{}: native engine, {} threads, kernels {}; import + plan {:.2} s; one pass {:.1} ms \
         ({:.2} GMAC, {:.1} GMAC/s)",
        a.model.display(),
        p.threads,
        p.kernels.join(", "),
        p.load_s,
        p.pass_ms,
        p.macs as f64 / 1e9,
        p.macs as f64 / p.pass_ms.max(1e-9) / 1e6
    );
    outln!("  {:>9} {:>6} {:>8}  step", "ms/pass", "steps", "GMAC/s");
    for g in &p.groups {
        let rate = g.gmac_per_s();
        outln!("  {:>9.2} {:>6} {:>8.1}  {}", g.ms, g.steps, rate, g.label);
    }
    Ok(0)
}

fn profile_cmd(a: ProfileArgs) -> Result<i32> {
    let bytes = gestalt_edge::fsio::read_capped(&a.model, gestalt_edge::fsio::Cap::MODEL)
        .map_err(|e| Error::bundle(&a.model, e.to_string()))?;
    if a.native {
        return profile_native_cmd(&a, &bytes);
    }
    let p = gestalt_edge::tools::profile::profile(&a.model, &bytes, a.width, a.height, a.passes)?;
    if a.json {
        return print_json(&p);
    }
    outln!(
        "{}: parse {:.2} s, declutter {:.2} s, optimise {:.2} s; one pass {:.1} ms",
        a.model.display(),
        p.load_s[0],
        p.load_s[1],
        p.load_s[2],
        p.pass_ms
    );
    outln!(
        "  {:<32} {:>6} {:>10}",
        "optimised operator",
        "nodes",
        "ms/pass"
    );
    for o in &p.ops {
        outln!("  {:<32} {:>6} {:>10.2}", o.op, o.nodes, o.ms);
    }
    outln!("  slowest nodes:");
    for (name, op, ms) in &p.slowest {
        outln!("    {ms:>8.2} ms  {op:<24} {name}");
    }
    for (k, n) in &p.kernels {
        outln!("  kernel {k}: {n} products");
    }
    let dec: Vec<String> = p
        .decluttered
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    outln!("  decluttered: {}", dec.join(", "));
    Ok(0)
}
