//! `gestalt-edge model quantize --bundle IN --calib DIR --out OUT`: post-training int8 of a
//! whole bundle (`tools::calibrate`), with its progress and agreement report printed.

use crate::cli::out::outln;
use gestalt_edge::bundle::{Bundle, LoadOptions};
use gestalt_edge::tools::calibrate::{self, Agreement, QuantizeSettings, Skipped};
use gestalt_edge::tools::quantize;
use gestalt_edge::{Error, Result};

use crate::cli::args::QuantizeArgs;
use crate::cli::resolve;

/// Quantizes the bundle and prints the agreement report.
pub fn run(a: QuantizeArgs) -> Result<i32> {
    let threads = resolve::threads(a.threads, None);
    if !(0.0..0.5).contains(&a.clip) {
        return Err(Error::Usage("--clip must be in [0, 0.5)".into()));
    }
    let photos = calibrate::calibration_photos(&a.calib)?;
    let float = Bundle::load(
        &a.bundle,
        LoadOptions {
            threads,
            ..Default::default()
        },
    )?;
    let calib = calibrate::calibrate(&float, &photos, &a.calib)?;
    for s in &calib.skipped {
        match s {
            Skipped::Unreadable(p) => {
                eprintln!("note: {}: not a readable photo, skipped", p.display())
            }
            Skipped::NoFace(p) => eprintln!(
                "note: {}: no face found, not used for the embedders",
                p.display()
            ),
        }
    }
    calib.require_faces()?;
    eprintln!(
        "calibrating on {} photos ({} faces x TTA views)",
        calib.detector_inputs.len(),
        calib.faces.len()
    );
    let settings = QuantizeSettings {
        options: quantize::QuantOptions {
            keep_float_ends: a.keep_float_ends,
            symmetric_activations: a.symmetric,
            float_gemm: a.float_fc,
            float_depthwise: a.float_depthwise,
        },
        clip: a.clip,
        threads,
    };
    let report =
        calibrate::quantize_bundle(&float, &a.bundle, &calib, &settings, &a.out, &mut |m| {
            eprintln!(
                "{}: {} QLinearConv, {} MatMulInteger, {} kept float",
                m.name, m.stats.convs, m.stats.gemms, m.stats.kept_float
            )
        })?;
    print_agreement(&report.agreement);
    outln!("{}: int8 bundle written", a.out.display());
    Ok(0)
}

fn print_agreement(g: &Agreement) {
    outln!(
        "agreement with the float bundle on {} calibration faces:",
        g.faces
    );
    for m in &g.models {
        outln!(
            "  {:<12} cosine mean {:.5}  min {:.5}  ({} embeddings)",
            m.model,
            m.mean,
            m.min,
            m.count
        );
    }
    outln!("  {:<12} cosine mean {:.5}", "all", g.mean);
    if let (Some((top1, n)), Some(top5)) = (g.same_top1, g.top5_overlap) {
        outln!(
            "  leave-one-out ranking among the calibration faces: same top-1 {top1}/{n}, top-5 overlap {:.1}%",
            100.0 * top5
        );
    }
}
