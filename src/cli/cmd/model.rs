//! `gestalt-edge model synth | quantize`: write architecture-exact graphs, and post-training
//! int8 bundles with their agreement report.

use gestalt_edge::tools::synth::{self, Arch};
use gestalt_edge::{Error, Result};

use crate::cli::args::{ModelCommand, ProfileArgs, SynthArgs};

pub fn run(c: ModelCommand) -> Result<i32> {
    match c {
        ModelCommand::Synth(a) => synth_cmd(a),
        ModelCommand::Quantize(a) => super::quantize::run(a),
        ModelCommand::Compile(a) => super::compile::run(a),
        ModelCommand::Profile(a) => profile_cmd(a),
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
    println!(
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

fn profile_cmd(a: ProfileArgs) -> Result<i32> {
    let bytes = std::fs::read(&a.model)
        .map_err(|e| Error::bundle(&a.model, format!("cannot read: {e}")))?;
    let p = gestalt_edge::tools::profile::profile(&a.model, &bytes, a.width, a.height, a.passes)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&p).map_err(|e| Error::Usage(e.to_string()))?
        );
        return Ok(0);
    }
    println!(
        "{}: parse {:.2} s, declutter {:.2} s, optimise {:.2} s; one pass {:.1} ms",
        a.model.display(),
        p.load_s[0],
        p.load_s[1],
        p.load_s[2],
        p.pass_ms
    );
    println!(
        "  {:<32} {:>6} {:>10}",
        "optimised operator", "nodes", "ms/pass"
    );
    for o in &p.ops {
        println!("  {:<32} {:>6} {:>10.2}", o.op, o.nodes, o.ms);
    }
    println!("  slowest nodes:");
    for (name, op, ms) in &p.slowest {
        println!("    {ms:>8.2} ms  {op:<24} {name}");
    }
    for (k, n) in &p.kernels {
        println!("  kernel {k}: {n} products");
    }
    let dec: Vec<String> = p
        .decluttered
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!("  decluttered: {}", dec.join(", "));
    Ok(0)
}
