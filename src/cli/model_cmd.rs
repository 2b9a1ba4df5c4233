//! `gestalt-edge model synth | quantize | compile`: write architecture-exact graphs,
//! post-training int8 bundles with their agreement report, and fill the model cache.

use std::path::PathBuf;

use gestalt_edge::bundle::synth::{self, Arch};
use gestalt_edge::{Error, Result};

/// Model tools.
#[derive(Debug, clap::Subcommand)]
pub enum ModelCommand {
    /// Write an architecture-exact ONNX graph with seeded (random, untrained) weights.
    Synth(SynthArgs),
    /// Post-training int8: calibrate on faces the bundle itself finds, write an int8 bundle
    /// (QLinearConv / MatMulInteger) and report its agreement with the float bundle.
    Quantize(super::quantize_cmd::QuantizeArgs),
    /// Fill the model cache ahead of time (decluttered models as NNEF), e.g. for a kiosk
    /// image, so the first start on the device skips ONNX parsing.
    Compile(super::compile_cmd::CompileArgs),
}

/// Arguments of `model synth`.
#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// Architecture: iresnet50, iresnet100, retinaface-mnet025 or retinaface-r50.
    #[arg(long, value_name = "NAME")]
    pub arch: String,
    /// ONNX file to write (replaced atomically).
    #[arg(long, value_name = "FILE.onnx")]
    pub out: PathBuf,
    /// Seed of the random weights (same seed, same bytes).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
}

pub fn run(c: ModelCommand) -> Result<i32> {
    match c {
        ModelCommand::Synth(a) => synth_cmd(a),
        ModelCommand::Quantize(a) => super::quantize_cmd::run(a),
        ModelCommand::Compile(a) => super::compile_cmd::run(a),
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
