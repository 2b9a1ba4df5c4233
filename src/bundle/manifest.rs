//! The model-bundle manifest: a TOML file that describes a detector and N embedders, so any
//! compatible set of ONNX models can run without code changes. Model facts (input shape,
//! channel order, normalisation, output names, embedding width, sha256) live here only.
//!
//! Consumes TOML text; produces a validated [`Manifest`].

use serde::{Deserialize, Serialize};

/// Channel order a model expects at its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red (OpenCV's order).
    Bgr,
}

/// How a model's input tensor is made from 8-bit pixels: NCHW f32,
/// `value = (pixel - mean[c]) * scale[c]` with `pixel` in 0..=255, channels in `channel_order`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Input width in pixels.
    pub width: u32,
    /// Input height in pixels.
    pub height: u32,
    /// Channel order of the tensor.
    pub channel_order: ChannelOrder,
    /// Per-channel mean subtracted from 0..255 values, in tensor channel order.
    #[serde(default, deserialize_with = "fixed::mean")]
    pub mean: [f32; 3],
    /// Per-channel factor applied after the mean, in tensor channel order.
    #[serde(default = "ones", deserialize_with = "fixed::scale")]
    pub scale: [f32; 3],
}

/// Fixed-size arrays read from exactly their number of values: serde's array reader stops
/// after N values and the TOML reader drops the rest silently, so a `mean` of 200,000 values
/// or a view of three booleans would pass as its first values. Any other length is refused,
/// naming the key; the values beyond N are counted, not kept.
pub(crate) mod fixed {
    use serde::de::{DeserializeSeed, Deserializer, Error, IgnoredAny, SeqAccess, Visitor};
    use serde::Deserialize;
    use std::marker::PhantomData;

    /// A sequence of exactly `N` values of `T` under `key`.
    pub(crate) struct Exact<T, const N: usize> {
        key: &'static str,
        item: PhantomData<T>,
    }

    impl<T, const N: usize> Exact<T, N> {
        pub(crate) fn new(key: &'static str) -> Self {
            Exact {
                key,
                item: PhantomData,
            }
        }
    }

    impl<'de, T: Deserialize<'de>, const N: usize> DeserializeSeed<'de> for Exact<T, N> {
        type Value = [T; N];
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<[T; N], D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for Exact<T, N> {
        type Value = [T; N];
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "an array of exactly {N} values for `{}`", self.key)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[T; N], A::Error> {
            let mut kept = Vec::with_capacity(N);
            while kept.len() < N {
                match seq.next_element()? {
                    Some(v) => kept.push(v),
                    None => break,
                }
            }
            let mut found = kept.len();
            while seq.next_element::<IgnoredAny>()?.is_some() {
                found += 1;
            }
            let key = self.key;
            kept.try_into().ok().filter(|_| found == N).ok_or_else(|| {
                A::Error::custom(format!(
                    "`{key}` takes exactly {N} values, this one has {found}"
                ))
            })
        }
    }

    /// `[flip, gray]` pairs, each exactly two booleans.
    struct Views;

    impl<'de> Visitor<'de> for Views {
        type Value = Vec<[bool; 2]>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of [flip, gray] pairs for `views`")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(v) = seq.next_element_seed(Exact::<bool, 2>::new("views"))? {
                out.push(v);
            }
            Ok(out)
        }
    }

    pub(crate) fn mean<'de, D: Deserializer<'de>>(d: D) -> Result<[f32; 3], D::Error> {
        Exact::new("mean").deserialize(d)
    }

    pub(crate) fn scale<'de, D: Deserializer<'de>>(d: D) -> Result<[f32; 3], D::Error> {
        Exact::new("scale").deserialize(d)
    }

    pub(crate) fn outputs<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<[String; 3]>, D::Error> {
        Exact::new("outputs").deserialize(d).map(Some)
    }

    pub(crate) fn views<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[bool; 2]>, D::Error> {
        d.deserialize_seq(Views)
    }
}

fn ones() -> [f32; 3] {
    [1.0; 3]
}

/// Which detector decoder reads the detector's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectorKind {
    /// RetinaFace: priors + variances; outputs loc [N,4], conf [N,2], landmarks [N,10].
    Retinaface,
    /// YuNet 2023: anchor-free; outputs cls/obj/bbox/kps per stride 8, 16, 32.
    Yunet,
}

/// The names the YuNet 2023 export gives its twelve outputs: `cls`, `obj`, `bbox`, `kps`,
/// each for strides 8, 16, 32 (the order the decoder reads them in).
pub const YUNET_OUTPUT_NAMES: [&str; 12] = [
    "cls_8", "cls_16", "cls_32", "obj_8", "obj_16", "obj_32", "bbox_8", "bbox_16", "bbox_32",
    "kps_8", "kps_16", "kps_32",
];

/// How a photo meets the detector's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputMode {
    /// Scaled into the fixed input size (long side fits, aspect kept) and padded right and
    /// bottom with 0: one optimised plan, the fastest.
    #[default]
    Padded,
    /// The reference: scaled so the long side equals the larger of the input's width and
    /// height, and run at exactly that size without padding. One plan per photo shape (cached);
    /// needs a model without fixed spatial sizes (RetinaFace).
    Exact,
}

impl InputMode {
    fn is_padded(&self) -> bool {
        *self == InputMode::Padded
    }
}

/// The face detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorSpec {
    /// Decoder family.
    pub kind: DetectorKind,
    /// ONNX file, relative to the manifest's folder.
    pub file: String,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    /// Input tensor layout. The photo is resized so its long side fits, aspect kept, and
    /// padded right and bottom with 0.
    pub input: InputSpec,
    /// Minimum face score (RetinaFace reference 0.02; YuNet 0.6).
    pub score_threshold: f32,
    /// IoU above which overlapping boxes are suppressed (RetinaFace 0.4, YuNet 0.3).
    pub nms_iou: f32,
    /// RetinaFace only: output names `[loc, conf, landmarks]`; default: the first three outputs.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "fixed::outputs"
    )]
    pub outputs: Option<[String; 3]>,
    /// RetinaFace only: true when `conf` holds logits that still need a softmax.
    #[serde(default)]
    pub conf_is_logits: bool,
    /// `padded` (default) or `exact` (the reference's unpadded long-side-640 input).
    #[serde(default, skip_serializing_if = "InputMode::is_padded")]
    pub input_mode: InputMode,
    /// The native engine's compiled form of `file` (`model compile`); not part of the
    /// bundle id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compiled: Option<CompiledSpec>,
}

/// A compiled model file (`model compile`): the native engine's canonical weights and plan
/// for one ONNX file and input size, pinned by its sha256 so a signed manifest covers what
/// runs. When the native engine runs the model, the ONNX file is not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompiledSpec {
    /// File name, relative to the manifest's folder.
    pub file: String,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
}

/// The engine a manifest or a board profile asks for (the `--engine` flag wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineName {
    /// The native engine on tract-linalg's kernels (models it does not cover run on tract).
    Native,
    /// tract-onnx.
    Tract,
    /// onnxruntime (cargo feature `ort`).
    Ort,
}

impl DetectorSpec {
    /// The outputs the decoder reads, by name: YuNet's fixed twelve, RetinaFace's `outputs`
    /// (empty: the model's first three).
    pub fn output_names(&self) -> Vec<String> {
        match self.kind {
            DetectorKind::Yunet => YUNET_OUTPUT_NAMES.iter().map(|s| s.to_string()).collect(),
            DetectorKind::Retinaface => {
                self.outputs.clone().map(|o| o.to_vec()).unwrap_or_default()
            }
        }
    }
}

/// One embedding network of the ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedderSpec {
    /// Name used in embedding keys and galleries (unique within the bundle).
    pub name: String,
    /// ONNX file, relative to the manifest's folder.
    pub file: String,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    /// Input tensor layout (112x112 for ArcFace-template crops).
    pub input: InputSpec,
    /// Name of the embedding output; default: the model's first output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Embedding width (512 for iResNet, 128 for SFace).
    pub width: u32,
    /// TTA views as `[flip, gray]` pairs; default: the reference four in reference order.
    #[serde(default = "default_views", deserialize_with = "fixed::views")]
    pub views: Vec<[bool; 2]>,
    /// The native engine's compiled form of `file` (`model compile`); not part of the
    /// bundle id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compiled: Option<CompiledSpec>,
}

/// The reference's TTA views as `[flip, gray]`, in its order: (0,0), (0,1), (1,0), (1,1).
pub const REFERENCE_VIEWS: [[bool; 2]; 4] =
    [[false, false], [false, true], [true, false], [true, true]];

fn default_views() -> Vec<[bool; 2]> {
    REFERENCE_VIEWS.to_vec()
}

/// Bundle identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleInfo {
    /// Short name.
    pub name: String,
    /// Version string (reported as `model_version`).
    pub version: String,
    /// Free text: where the models come from and their licences.
    #[serde(default)]
    pub description: String,
    /// Release counter of this bundle under its name (default 0). A device that has seen a
    /// signed revision refuses an older one (see [`crate::rollback`]); not part of the
    /// bundle id.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revision: u32,
    /// Numeric precision of the models: `f32` (default, when absent) or `int8` (written by
    /// `model quantize`). A board profile that names a precision runs only a bundle of that
    /// precision; not part of the bundle id.
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
    /// The engine this bundle prefers (below `--engine` and the board profile; default
    /// native); not part of the bundle id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineName>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Numeric precision of a bundle's models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats (the default).
    #[default]
    F32,
    /// 8-bit integer weights and activations (`model quantize`).
    Int8,
}

impl Precision {
    fn is_f32(&self) -> bool {
        *self == Precision::F32
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        })
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    /// `f32` or `int8` (case-insensitive).
    fn from_str(s: &str) -> Result<Precision, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "int8" => Ok(Precision::Int8),
            _ => Err(format!("unknown precision '{s}' (expected f32 or int8)")),
        }
    }
}

/// A parsed, validated manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Name and version.
    pub bundle: BundleInfo,
    /// The face detector.
    pub detector: DetectorSpec,
    /// The embedding networks, in ensemble order.
    pub embedders: Vec<EmbedderSpec>,
}

impl Manifest {
    /// Parses and validates manifest text. The error is a plain sentence.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let m: Manifest = toml::from_str(text).map_err(|e| {
            // the line and the message, not the line's text: a refused array may be a
            // megabyte long
            let line = e
                .span()
                .and_then(|s| text.get(..s.start))
                .map(|before| before.matches('\n').count() + 1);
            match line {
                Some(l) => format!("invalid manifest: line {l}: {}", e.message()),
                None => format!("invalid manifest: {}", e.message()),
            }
        })?;
        m.validate()?;
        Ok(m)
    }

    fn validate(&self) -> Result<(), String> {
        super::confine::check_name(&self.detector.file)
            .map_err(|e| format!("detector: file: {e}"))?;
        for e in &self.embedders {
            super::confine::check_name(&e.file)
                .map_err(|err| format!("embedder '{}': file: {err}", e.name))?;
        }
        check_hash(&self.detector.sha256, "detector")?;
        check_compiled(self.detector.compiled.as_ref(), "detector")?;
        check_input(&self.detector.input, "detector")?;
        if !(self.detector.score_threshold.is_finite()
            && (0.0..1.0).contains(&self.detector.score_threshold))
        {
            return Err("detector.score_threshold must be in [0, 1)".into());
        }
        if !(self.detector.nms_iou > 0.0 && self.detector.nms_iou <= 1.0) {
            return Err("detector.nms_iou must be in (0, 1]".into());
        }
        if self.embedders.is_empty() {
            return Err("at least one [[embedders]] entry is required".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for e in &self.embedders {
            let what = format!("embedder '{}'", e.name);
            if e.name.is_empty() || !names.insert(e.name.as_str()) {
                return Err(format!(
                    "embedder names must be unique and non-empty ({what})"
                ));
            }
            check_hash(&e.sha256, &what)?;
            check_compiled(e.compiled.as_ref(), &what)?;
            check_input(&e.input, &what)?;
            if e.width == 0 || e.width > 65536 {
                return Err(format!("{what}: width must be in 1..=65536"));
            }
            let mut views = std::collections::BTreeSet::new();
            if e.views.is_empty() || !e.views.iter().all(|v| views.insert(*v)) {
                return Err(format!("{what}: views must be non-empty and distinct"));
            }
        }
        Ok(())
    }
}

fn check_hash(h: &str, what: &str) -> Result<(), String> {
    if h.len() == 64
        && h.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(format!("{what}: sha256 must be 64 lower-case hex digits"))
    }
}

fn check_compiled(c: Option<&CompiledSpec>, what: &str) -> Result<(), String> {
    let Some(c) = c else { return Ok(()) };
    super::confine::check_name(&c.file).map_err(|e| format!("{what}: compiled file: {e}"))?;
    check_hash(&c.sha256, &format!("{what}: compiled"))
}

fn check_input(i: &InputSpec, what: &str) -> Result<(), String> {
    if i.width == 0 || i.height == 0 || i.width > 4096 || i.height > 4096 {
        return Err(format!("{what}: input size must be within 1..=4096 pixels"));
    }
    if !i.mean.iter().chain(i.scale.iter()).all(|v| v.is_finite()) {
        return Err(format!("{what}: mean and scale must be finite numbers"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SAMPLE: &str = r#"
[bundle]
name = "t"
version = "1"

[detector]
kind = "yunet"
file = "d.onnx"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
input = { width = 640, height = 640, channel_order = "bgr" }
score_threshold = 0.6
nms_iou = 0.3

[[embedders]]
name = "e"
file = "e.onnx"
sha256 = "1111111111111111111111111111111111111111111111111111111111111111"
input = { width = 112, height = 112, channel_order = "rgb", mean = [127.5, 127.5, 127.5], scale = [0.0078125, 0.0078125, 0.0078125] }
output = "fc1"
width = 512
"#;

    #[test]
    fn parses_with_defaults() {
        let m = Manifest::parse(SAMPLE).unwrap();
        assert_eq!(m.detector.kind, DetectorKind::Yunet);
        assert_eq!(m.detector.input.scale, [1.0; 3]);
        assert_eq!(
            m.embedders[0].views,
            vec![[false, false], [false, true], [true, false], [true, true]]
        );
    }

    #[test]
    fn rejects_bad_fields() {
        for (from, to) in [
            ("kind = \"yunet\"", "kind = \"ssd\""),
            ("width = 512", "width = 0"),
            (
                "\"1111111111111111111111111111111111111111111111111111111111111111\"",
                "\"abc\"",
            ),
            ("score_threshold = 0.6", "score_threshold = 1.5"),
            ("nms_iou = 0.3", "nms_iou = 0.3\ncolour = 1"),
        ] {
            let text = SAMPLE.replace(from, to);
            assert_ne!(text, SAMPLE);
            assert!(Manifest::parse(&text).is_err(), "accepted: {to}");
        }
    }

    #[test]
    fn revision_and_precision_are_optional_and_checked() {
        let m = Manifest::parse(SAMPLE).unwrap();
        assert_eq!((m.bundle.revision, m.bundle.precision), (0, Precision::F32));
        let text = SAMPLE.replace(
            "version = \"1\"\n",
            "version = \"1\"\nrevision = 7\nprecision = \"int8\"\n",
        );
        let m = Manifest::parse(&text).unwrap();
        assert_eq!(
            (m.bundle.revision, m.bundle.precision),
            (7, Precision::Int8)
        );
        let back = Manifest::parse(&toml::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        for bad in ["revision = -1", "revision = \"x\"", "precision = \"f16\""] {
            let text = SAMPLE.replace("version = \"1\"\n", &format!("version = \"1\"\n{bad}\n"));
            assert!(Manifest::parse(&text).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn model_files_must_be_relative_names_inside_the_bundle() {
        for (from, to) in [
            ("file = \"d.onnx\"", "file = \"/dev/zero\""),
            ("file = \"e.onnx\"", "file = \"../m.onnx\""),
            ("file = \"e.onnx\"", "file = \"\""),
        ] {
            let err = Manifest::parse(&SAMPLE.replace(from, to)).unwrap_err();
            assert!(err.contains("file"), "{to}: {err}");
        }
    }

    #[test]
    fn engine_and_compiled_files_are_optional_and_checked() {
        let m = Manifest::parse(SAMPLE).unwrap();
        assert_eq!((m.bundle.engine, &m.embedders[0].compiled), (None, &None));
        let pin = "compiled = { file = \"e.native\", sha256 = \"2222222222222222222222222222222222222222222222222222222222222222\" }\n";
        let text = SAMPLE
            .replace(
                "version = \"1\"\n",
                "version = \"1\"\nengine = \"native\"\n",
            )
            .replace("width = 512\n", &format!("width = 512\n{pin}"));
        let m = Manifest::parse(&text).unwrap();
        assert_eq!(m.bundle.engine, Some(EngineName::Native));
        assert_eq!(m.embedders[0].compiled.as_ref().unwrap().file, "e.native");
        assert_eq!(Manifest::parse(&toml::to_string(&m).unwrap()).unwrap(), m);
        for bad in [
            text.replace("e.native", "../e.native"),
            text.replace(
                "\"2222222222222222222222222222222222222222222222222222222222222222\"",
                "\"22\"",
            ),
            text.replace("engine = \"native\"", "engine = \"gpu\""),
        ] {
            assert!(Manifest::parse(&bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn fixed_size_arrays_of_any_other_length_are_refused_naming_the_key() {
        let many = vec!["0.5"; 200_000].join(", ");
        let e = "mean = [127.5, 127.5, 127.5], scale = [0.0078125, 0.0078125, 0.0078125]";
        let views = "views = [[false, false], [false, true], [true, false], [true, true]]";
        let text = SAMPLE.replace("width = 512\n", &format!("width = 512\n{views}\n"));
        let m = Manifest::parse(&text).unwrap();
        assert_eq!(m.embedders[0].views, REFERENCE_VIEWS.to_vec());
        assert_eq!(m.embedders[0].input.mean, [127.5; 3]);
        let cases = [
            (
                e,
                format!("mean = [{many}], scale = [1.0, 1.0, 1.0]"),
                "`mean`",
                200_000,
            ),
            (e, "mean = [1.0, 2.0, 3.0, 4.0]".to_string(), "`mean`", 4),
            (e, "mean = [1.0, 2.0]".to_string(), "`mean`", 2),
            (e, "scale = [1.0, 1.0, 1.0, 1.0]".to_string(), "`scale`", 4),
            (views, "views = [[false, false, true]]".into(), "`views`", 3),
            (views, "views = [[true]]".into(), "`views`", 1),
            (
                "nms_iou = 0.3",
                "nms_iou = 0.3\noutputs = [\"a\", \"b\", \"c\", \"d\"]".into(),
                "`outputs`",
                4,
            ),
        ];
        for (from, to, key, found) in cases {
            let bad = text.replacen(from, &to, 1);
            assert_ne!(bad, text);
            let err = Manifest::parse(&bad).unwrap_err();
            assert!(
                err.contains(key) && err.contains(&format!("has {found}")),
                "{key}: {err}"
            );
            // the message names the line, never repeats its (possibly huge) text
            assert!(err.len() < 300 && err.contains("line "), "{err}");
        }
        // exactly three outputs still read
        let ok = text.replace(
            "nms_iou = 0.3",
            "nms_iou = 0.3\noutputs = [\"a\", \"b\", \"c\"]",
        );
        let m = Manifest::parse(&ok).unwrap();
        assert_eq!(m.detector.outputs, Some(["a", "b", "c"].map(String::from)));
    }

    #[test]
    fn rejects_duplicate_embedders() {
        let extra = SAMPLE.split("[[embedders]]").nth(1).unwrap();
        let text = format!("{SAMPLE}\n[[embedders]]{extra}");
        let err = Manifest::parse(&text).unwrap_err();
        assert!(err.contains("unique"), "{err}");
    }
}
