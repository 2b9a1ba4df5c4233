//! Board profiles: what a device has and how the device loop should treat it.
//!
//! Consumes a board name (`rpi4`, `rpi5`, `rpi4-spi`, `jetson-orin-nano`, `x86-dev`: the files in
//! `boards/`, compiled into the binary so an installed device needs no extra files) or the
//! path of a profile TOML; produces a [`Board`]: target triple, threads, bundle precision,
//! camera device and resolution, screen kind and size, quality thresholds, loop timing.
//! Precedence is applied by the caller: command-line flag > board profile > bundle manifest
//! > compiled defaults. [`device`] is the loop itself; [`audit`] its optional log.

pub mod audit;
#[cfg(feature = "gpio")]
pub mod button;
pub mod device;
#[cfg(test)]
mod profile_tests;
#[cfg(test)]
mod tests;
pub mod trigger;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::capture::quality::QualityThresholds;
use crate::display::{FbFormat, PanelConfig, ScreenSpec};
use crate::{Error, Result};

/// The profiles shipped in `boards/`, by name.
pub const KNOWN: &[(&str, &str)] = &[
    ("rpi4", include_str!("../../boards/rpi4.toml")),
    ("rpi5", include_str!("../../boards/rpi5.toml")),
    ("rpi4-spi", include_str!("../../boards/rpi4-spi.toml")),
    (
        "jetson-orin-nano",
        include_str!("../../boards/jetson-orin-nano.toml"),
    ),
    ("x86-dev", include_str!("../../boards/x86-dev.toml")),
];

/// Names of the shipped profiles.
pub fn known_names() -> Vec<&'static str> {
    KNOWN.iter().map(|(n, _)| *n).collect()
}

/// Identity of the board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardInfo {
    /// Short name (`rpi4`).
    pub name: String,
    /// One line for people.
    #[serde(default)]
    pub description: String,
    /// Rust target triple of the binary for this board.
    pub target: String,
    /// Worker threads for the embedders; absent: all cores.
    pub threads: Option<usize>,
}

/// Numeric precision of the bundle a deployment should carry (the manifest's
/// `[bundle] precision`; absent there means f32).
pub use crate::bundle::Precision;

/// Refuses a bundle whose precision is not the one the board profile names: an
/// [`Error::Bundle`] (exit code 5) naming both, so an int8 board never runs an f32 bundle
/// it may not have the memory for (nor the other way round) while saying it does.
pub fn check_precision(board: &Board, bundle: Precision, manifest: &Path) -> Result<()> {
    let wanted = board.bundle.precision;
    if wanted == bundle {
        return Ok(());
    }
    Err(Error::bundle(
        manifest,
        format!(
            "board {} runs {wanted} bundles but this bundle is {bundle} (its manifest's \
             [bundle] precision{}); use the {wanted} bundle{}",
            board.board.name,
            if bundle == Precision::F32 {
                " is absent or \"f32\""
            } else {
                ""
            },
            if wanted == Precision::Int8 {
                " made by `gestalt-edge model quantize`"
            } else {
                ""
            }
        ),
    ))
}

/// Bundle preferences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundlePrefs {
    /// The precision to deploy.
    pub precision: Precision,
    /// Trusted ed25519 public key (file made by `gestalt-edge sign --generate-key`): when
    /// set, the bundle manifest and the gallery must carry valid signatures (`.sig` files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PathBuf>,
    /// Model cache folder (decluttered models as NNEF; `gestalt-edge model compile` fills it
    /// ahead of time). Absent: the CLI's default (`$XDG_CACHE_HOME/gestalt-edge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    /// The engine (below `--engine`, above the manifest's `[bundle] engine`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<crate::bundle::EngineName>,
}

/// The camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraSettings {
    /// V4L2 device (`/dev/video0`).
    pub device: PathBuf,
    /// Requested width, pixels.
    pub width: u32,
    /// Requested height, pixels.
    pub height: u32,
    /// Requested frames per second.
    pub fps: u32,
}

/// Kinds of screen a profile can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScreenKind {
    /// A PNG file (`path`).
    Png,
    /// A Linux framebuffer (`path`, `/dev/fbN`).
    Fb,
    /// A desktop window.
    Window,
    /// An SPI TFT panel.
    Spi,
    /// No screen.
    None,
}

/// The screen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScreenSettings {
    /// Which kind.
    pub kind: ScreenKind,
    /// File or device for `png` and `fb`.
    pub path: Option<PathBuf>,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Framebuffer pixel layout when the kernel does not report it.
    #[serde(default = "default_format")]
    pub format: FbFormat,
    /// Wiring and mounting of an SPI panel (`[screen.spi]`, used by kind `spi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spi: Option<PanelConfig>,
}

fn default_format() -> FbFormat {
    FbFormat::Xrgb8888
}

impl ScreenSettings {
    /// The screen as a [`ScreenSpec`].
    pub fn spec(&self) -> Result<ScreenSpec> {
        let path = |what: &str| {
            self.path.clone().ok_or_else(|| {
                Error::Usage(format!(
                    "board profile: screen kind `{what}` needs a `path`"
                ))
            })
        };
        Ok(match self.kind {
            ScreenKind::Png => ScreenSpec::Png(path("png")?),
            ScreenKind::Fb => ScreenSpec::Framebuffer(path("fb")?),
            ScreenKind::Window => ScreenSpec::Window,
            ScreenKind::Spi => ScreenSpec::Spi,
            ScreenKind::None => ScreenSpec::None,
        })
    }
}

/// Loop timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    /// Preview frames per second for sources that do not pace themselves (files).
    pub preview_fps: f32,
    /// Seconds the result stays on the screen.
    pub result_seconds: f32,
    /// The most captures one patient session may fuse (`run --session N`); 1 when absent.
    #[serde(default = "one_capture")]
    pub max_session_captures: u32,
}

fn one_capture() -> u32 {
    1
}

/// A board profile (`boards/NAME.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// Identity and target.
    pub board: BoardInfo,
    /// Bundle preferences.
    pub bundle: BundlePrefs,
    /// The camera.
    pub camera: CameraSettings,
    /// The screen.
    pub screen: ScreenSettings,
    /// The capture gate.
    #[serde(default)]
    pub quality: QualityThresholds,
    /// Loop timing.
    pub run: RunSettings,
    /// A capture button on a GPIO line (`[button]`, feature `gpio`); absent: keys and the
    /// automatic trigger only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub button: Option<trigger::ButtonSettings>,
}

impl Board {
    /// Parses and checks a profile's text; `origin` names it in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Board> {
        let b: Board = toml::from_str(text)
            .map_err(|e| Error::Usage(format!("board profile {origin}: {e}")))?;
        let bad = |what: &str| Err(Error::Usage(format!("board profile {origin}: {what}")));
        if b.board.threads == Some(0) {
            return bad("threads must be at least 1 (leave it out for all cores)");
        }
        if b.screen.width == 0 || b.screen.height == 0 {
            return bad("the screen size must be at least 1x1");
        }
        if b.camera.width == 0 || b.camera.height == 0 || b.camera.fps == 0 {
            return bad("the camera resolution and fps must be positive");
        }
        if let Some(p) = &b.screen.spi {
            p.native_size((b.screen.width, b.screen.height))
                .map_err(|e| Error::Usage(format!("board profile {origin}: {e}")))?;
        }
        if !(b.run.preview_fps.is_finite() && b.run.preview_fps > 0.0) {
            return bad("preview_fps must be a positive number");
        }
        if !(b.run.result_seconds.is_finite() && b.run.result_seconds >= 0.0) {
            return bad("result_seconds must be zero or more");
        }
        let q = &b.quality;
        let finite = [
            q.min_face_fraction,
            q.min_sharpness,
            q.max_yaw,
            q.max_roll_deg,
            q.max_clipped,
            q.steady_iou,
        ]
        .iter()
        .chain(q.pitch_range.iter())
        .chain(q.brightness_range.iter())
        .all(|v| v.is_finite());
        if !finite || q.pitch_range[0] > q.pitch_range[1] {
            return bad("quality thresholds must be finite numbers, ranges as [low, high]");
        }
        Ok(b)
    }

    /// A shipped profile by name, or a profile file when `spec` ends in `.toml` or holds a
    /// `/`. An unknown name is a usage error listing the known ones.
    pub fn load(spec: &str) -> Result<Board> {
        if spec.ends_with(".toml") || spec.contains('/') {
            let path = Path::new(spec);
            let text = crate::fsio::read_text_capped(path, crate::fsio::Cap::BOARD_PROFILE)
                .map_err(|e| Error::Usage(format!("board profile {}: {e}", path.display())))?;
            return Board::parse(&text, &path.display().to_string());
        }
        match KNOWN.iter().find(|(n, _)| *n == spec) {
            Some((name, text)) => Board::parse(text, &format!("`{name}` (built in)")),
            None => Err(Error::Usage(format!(
                "unknown board `{spec}`; known boards: {} (or the path of a .toml profile)",
                known_names().join(", ")
            ))),
        }
    }
}
