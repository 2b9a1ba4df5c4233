//! Compiling a bundle for the native engine: each model the native engine covers becomes a
//! compiled file beside its ONNX file (canonical weights, scales and plan; see
//! [`crate::engine::native::compiled`]), and the manifest pins it by sha256, so a manifest
//! signed on a workstation covers exactly what runs on every device.
//!
//! Consumes a manifest path; produces the compiled files, the manifest rewritten in place
//! (atomically; comments and layout kept, only the `compiled = { .. }` lines change) and one
//! [`Compiled`] row per model saying what happened (written, or why the model stays on
//! tract: the operation and the node). Nothing here changes the bundle id.

use std::path::{Path, PathBuf};

use crate::bundle::{self, read_verified, sha256_hex, InputMode, Manifest};
use crate::engine::native::compiled::Source;
use crate::engine::native::{ByFeatures, NativeNet};
use crate::engine::Net;
use crate::fsio::{self, Access};
use crate::{Error, Result};

/// What `compile` did for one model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Compiled {
    /// `detector` or `embedder 'name'`.
    pub entry: String,
    /// The ONNX file.
    pub model: PathBuf,
    /// The compiled file written and pinned (`None`: the model runs on tract).
    pub compiled: Option<PathBuf>,
    /// Its sha256.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Its size in bytes.
    pub bytes: u64,
    /// Why the model is not compiled (an operation outside the native set, and its node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_compiled: Option<String>,
}

/// The compiled file name for a model file: `name.onnx` -> `name.native`.
pub fn compiled_name(file: &str) -> String {
    let stem = file.strip_suffix(".onnx").unwrap_or(file);
    format!("{stem}.native")
}

/// One model of the manifest: its entry, file, sha256, input size and selected outputs.
struct Job {
    entry: String,
    file: String,
    sha256: String,
    size: (u32, u32),
    outputs: Vec<String>,
    exact: bool,
}

fn jobs(m: &Manifest) -> Vec<Job> {
    let d = &m.detector;
    let det_outputs = d.output_names();
    let mut v = vec![Job {
        entry: "detector".into(),
        file: d.file.clone(),
        sha256: d.sha256.clone(),
        size: (d.input.width, d.input.height),
        outputs: det_outputs,
        exact: d.input_mode == InputMode::Exact,
    }];
    for e in &m.embedders {
        v.push(Job {
            entry: format!("embedder '{}'", e.name),
            file: e.file.clone(),
            sha256: e.sha256.clone(),
            size: (e.input.width, e.input.height),
            outputs: e.output.iter().cloned().collect(),
            exact: false,
        });
    }
    v
}

/// Compiles one model: the compiled bytes, or why the native engine leaves it to tract.
fn compile_one(
    manifest: &Path,
    job: &Job,
) -> Result<(PathBuf, std::result::Result<Vec<u8>, String>)> {
    let (path, bytes) = read_verified(manifest, &job.entry, &job.file, &job.sha256)?;
    if job.exact {
        let why = "input_mode = \"exact\" plans the detector per photo size".to_string();
        return Ok((path, Err(why)));
    }
    let src = Source::from_hex(&job.sha256, job.size.0, job.size.1)
        .ok_or_else(|| Error::bundle(&path, format!("{}: sha256 is not hex", job.entry)))?;
    let file = match NativeNet::compile(&bytes, &src) {
        Ok(f) => f,
        Err(e) => return Ok((path, Err(e.to_string()))),
    };
    // the file must load and give the outputs the pipeline reads before it is pinned
    let check = NativeNet::from_compiled(&file, &src, 1, &mut ByFeatures)
        .map_err(|e| e.to_string())
        .and_then(|n| Net::from_native(&path, n, &job.outputs, 1));
    Ok((path, check.map(|_| file)))
}

/// What `compile_bundle` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// One row per model, detector first.
    pub models: Vec<Compiled>,
    /// Whether the manifest's text changed (a signature over the old text no longer holds).
    pub manifest_changed: bool,
}

/// Compiles every model of the bundle at `manifest` that the native engine covers, writes
/// the compiled files beside the models and pins them in the manifest (a model it does not
/// cover loses any old pin).
pub fn compile_bundle(manifest: &Path) -> Result<Outcome> {
    let text = bundle::confine::read_small_text(manifest, crate::fsio::Cap::MANIFEST)?;
    let parsed = Manifest::parse(&text).map_err(|e| Error::bundle(manifest, e))?;
    let mut rows = Vec::new();
    let mut pins: Vec<Option<(String, String)>> = Vec::new();
    for job in jobs(&parsed) {
        let (model, result) = compile_one(manifest, &job)?;
        match result {
            Ok(bytes) => {
                let name = compiled_name(&job.file);
                // a relative name inside the folder (derived from a checked one); the write
                // replaces whatever is there, a symlink included, never writes through it
                bundle::confine::check_name(&name).map_err(|e| Error::bundle(manifest, e))?;
                let out = manifest.parent().unwrap_or(Path::new(".")).join(&name);
                fsio::write_atomic(&out, &bytes, Access::Shared)?;
                let sha = sha256_hex(&bytes);
                pins.push(Some((name, sha.clone())));
                rows.push(Compiled {
                    entry: job.entry,
                    model,
                    compiled: Some(out),
                    sha256: Some(sha),
                    bytes: bytes.len() as u64,
                    not_compiled: None,
                });
            }
            Err(why) => {
                pins.push(None);
                rows.push(Compiled {
                    entry: job.entry,
                    model,
                    compiled: None,
                    sha256: None,
                    bytes: 0,
                    not_compiled: Some(why),
                });
            }
        }
    }
    let new_text = pin(&text, &pins).map_err(|e| Error::bundle(manifest, e))?;
    // what is written must still be the same bundle, now with these pins
    let check = Manifest::parse(&new_text).map_err(|e| Error::bundle(manifest, e))?;
    if bundle::bundle_id(&check) != bundle::bundle_id(&parsed) {
        return Err(Error::Internal(
            "pinning compiled files changed the bundle id".into(),
        ));
    }
    let manifest_changed = new_text != text;
    if manifest_changed {
        fsio::write_atomic(manifest, new_text.as_bytes(), Access::Shared)?;
    }
    Ok(Outcome {
        models: rows,
        manifest_changed,
    })
}

/// The manifest text with `compiled = { file, sha256 }` set (or removed, for `None`) on the
/// detector, then each embedder in order.
fn pin(text: &str, pins: &[Option<(String, String)>]) -> std::result::Result<String, String> {
    let mut doc: toml_edit::DocumentMut =
        text.parse().map_err(|e| format!("invalid manifest: {e}"))?;
    let set = |t: &mut toml_edit::Table, p: &Option<(String, String)>| match p {
        Some((file, sha)) => {
            let mut inline = toml_edit::InlineTable::new();
            inline.insert("file", file.as_str().into());
            inline.insert("sha256", sha.as_str().into());
            t.insert("compiled", toml_edit::value(inline));
        }
        None => {
            t.remove("compiled");
        }
    };
    let det = doc
        .get_mut("detector")
        .and_then(|d| d.as_table_mut())
        .ok_or("no [detector] table")?;
    set(det, &pins[0]);
    let embs = doc
        .get_mut("embedders")
        .and_then(|e| e.as_array_of_tables_mut())
        .ok_or("no [[embedders]] tables")?;
    if embs.len() + 1 != pins.len() {
        return Err("the embedders changed while compiling".into());
    }
    for (t, p) in embs.iter_mut().zip(&pins[1..]) {
        set(t, p);
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_keep_comments_and_the_bundle_id() {
        let text = "# a comment\n[bundle]\nname = \"t\"\nversion = \"1\"\n\n[detector]\nkind = \"yunet\"\nfile = \"d.onnx\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\ninput = { width = 640, height = 640, channel_order = \"bgr\" }\nscore_threshold = 0.6\nnms_iou = 0.3\n\n[[embedders]]\nname = \"e\"\nfile = \"e.onnx\"\n# keep me\nsha256 = \"1111111111111111111111111111111111111111111111111111111111111111\"\ninput = { width = 112, height = 112, channel_order = \"rgb\" }\nwidth = 512\n";
        let sha = "2".repeat(64);
        let pinned = pin(text, &[None, Some(("e.native".into(), sha.clone()))]).unwrap();
        assert!(
            pinned.contains("# a comment") && pinned.contains("# keep me"),
            "{pinned}"
        );
        let (a, b) = (
            Manifest::parse(text).unwrap(),
            Manifest::parse(&pinned).unwrap(),
        );
        assert_eq!(b.embedders[0].compiled.as_ref().unwrap().sha256, sha);
        assert!(b.detector.compiled.is_none());
        assert_eq!(bundle::bundle_id(&a), bundle::bundle_id(&b));
        // a second pass without the pin removes it
        let unpinned = pin(&pinned, &[None, None]).unwrap();
        assert!(Manifest::parse(&unpinned).unwrap().embedders[0]
            .compiled
            .is_none());
        assert_eq!(compiled_name("models/x.onnx"), "models/x.native");
    }
}
