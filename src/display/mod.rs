//! The device screen: what the clinic staff see.
//!
//! Consumes a [`Scene`] (the camera preview with the face box and the quality verdict, the
//! top-5 syndromes of a capture, or a message such as "camera not found") and produces
//! pixels on a [`Screen`]. All drawing is one code path generic over an embedded-graphics
//! `DrawTarget` ([`layout`]); the screens only own a target and flush it: a PNG file
//! ([`canvas`], headless and for tests), a Linux framebuffer ([`fb`]), a desktop window
//! (`window`, feature `window`, SDL) and SPI TFT panels (`spi`, feature `spi`, settings in
//! [`panel`]). A build without the feature says so when asked for that screen.

pub mod canvas;
pub mod fb;
pub mod layout;
pub mod panel;
#[cfg(feature = "spi")]
pub mod spi;
#[cfg(feature = "window")]
pub mod window;

use std::path::PathBuf;

use image::imageops::{self, FilterType};
use image::RgbImage;

use crate::detect::Detection;
use crate::pipeline::Prediction;
use crate::{Error, Result};

pub use canvas::{PngCanvas, PngScreen};
pub use fb::{FbFormat, FbScreen, Framebuffer};
pub use layout::draw_scene;
pub use panel::PanelConfig;

/// The one-line note on every screen.
pub const DISCLAIMER: &str = "Decision support, not a diagnosis.";

/// The camera preview.
#[derive(Debug, Clone)]
pub struct PreviewView<'a> {
    /// The frame as captured.
    pub frame: &'a RgbImage,
    /// The face found in it, in frame pixels.
    pub face: Option<Detection>,
    /// One line for the operator ("Move closer", "Hold still", "No face").
    pub verdict: String,
    /// True when the face passes the quality gate.
    pub ok: bool,
    /// Steady passing frames so far, and how many trigger a capture.
    pub steady: (u32, u32),
}

/// One syndrome line of the result screen.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    /// Syndrome name (wrapped or abbreviated to fit).
    pub name: String,
    /// OMIM number, when known.
    pub omim_id: Option<u32>,
    /// `1.3 - distance`; the bar is this over 1.3, clamped to 0..1.
    pub gestalt_score: f32,
}

/// The result screen: top syndromes and the analysed face.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultView {
    /// Heading ("Most similar syndromes").
    pub title: String,
    /// Provenance shown right of the heading when it fits ("gallery 1").
    pub subtitle: String,
    /// Up to five rows, most similar first.
    pub rows: Vec<ResultRow>,
    /// The face, square, any size (scaled to fit).
    pub thumbnail: Option<RgbImage>,
    /// Advice shown under the rows (a still photo the quality gate would have refused).
    pub advice: Option<String>,
}

impl ResultView {
    /// The top-5 of `p`, with a thumbnail of its face cut from `frame` (the box grown by a
    /// fifth on each side, squared, 112 x 112).
    pub fn from_prediction(p: &Prediction, frame: &RgbImage) -> ResultView {
        ResultView {
            title: "Most similar syndromes".into(),
            subtitle: format!("gallery {}", p.gallery_version),
            rows: p
                .suggested_syndromes_list
                .iter()
                .take(5)
                .map(|s| ResultRow {
                    name: s.syndrome_name.clone(),
                    omim_id: s.omim_id,
                    gestalt_score: s.gestalt_score,
                })
                .collect(),
            thumbnail: face_thumbnail(frame, &p.face.bbox_px, 112),
            advice: None,
        }
    }
}

/// A square crop around `bbox_px` (grown by 20 % per side, clamped to the frame), resized
/// to `side` x `side`. `None` for an empty or non-finite box.
pub fn face_thumbnail(frame: &RgbImage, bbox_px: &[f32; 4], side: u32) -> Option<RgbImage> {
    let [x1, y1, x2, y2] = *bbox_px;
    if ![x1, y1, x2, y2].iter().all(|v| v.is_finite()) || side == 0 {
        return None;
    }
    let (cx, cy) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
    let half = ((x2 - x1).max(y2 - y1) * 1.4 / 2.0).max(1.0);
    let (fw, fh) = (frame.width() as f32, frame.height() as f32);
    let (l, t) = ((cx - half).clamp(0.0, fw), (cy - half).clamp(0.0, fh));
    let (r, b) = ((cx + half).clamp(0.0, fw), (cy + half).clamp(0.0, fh));
    let (w, h) = ((r - l) as u32, (b - t) as u32);
    if w == 0 || h == 0 {
        return None;
    }
    let crop = imageops::crop_imm(frame, l as u32, t as u32, w, h).to_image();
    Some(imageops::resize(&crop, side, side, FilterType::Triangle))
}

/// What to draw.
#[derive(Debug, Clone)]
pub enum Scene<'a> {
    /// The live camera picture.
    Preview(PreviewView<'a>),
    /// The top-5 after a capture.
    Result(&'a ResultView),
    /// A full-screen message (errors, "Analysing...").
    Message {
        /// Heading.
        title: &'a str,
        /// Detail, wrapped.
        detail: &'a str,
    },
}

/// A place scenes are shown.
pub trait Screen {
    /// Draws `scene` and makes it visible.
    fn show(&mut self, scene: &Scene) -> Result<()>;
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    /// A short name for messages (`png out.png`, `framebuffer /dev/fb0`).
    fn describe(&self) -> String;
    /// Operator input that arrives through this screen (keys in a desktop window), to be
    /// polled by the device loop; `None` for screens without input.
    fn keys(&mut self) -> Option<Box<dyn ScreenKeys>> {
        None
    }
}

/// An operator's request made on a screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScreenInput {
    /// Capture now (space or Enter in a window).
    Capture,
    /// Stop (Esc, or the window closed).
    Quit,
}

/// Input from a screen, polled without blocking.
pub trait ScreenKeys {
    /// The next pending request, if any.
    fn poll(&mut self) -> Option<ScreenInput>;
}

/// A screen chosen on the command line or in a board profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScreenSpec {
    /// Rewrite this PNG file (atomically) at every change.
    Png(PathBuf),
    /// A Linux framebuffer device (`/dev/fbN`).
    Framebuffer(PathBuf),
    /// A desktop window (SDL; not built yet).
    Window,
    /// An SPI TFT panel (ST7789 / ILI9341 via mipidsi; not built yet).
    Spi,
    /// No screen: results on the terminal only.
    None,
}

impl ScreenSpec {
    /// Parses `png:FILE`, `fb:/dev/fbN`, `window`, `spi` or `none`.
    pub fn parse(text: &str) -> Result<ScreenSpec> {
        if let Some(f) = text.strip_prefix("png:").filter(|f| !f.is_empty()) {
            return Ok(ScreenSpec::Png(f.into()));
        }
        if let Some(f) = text.strip_prefix("fb:").filter(|f| !f.is_empty()) {
            return Ok(ScreenSpec::Framebuffer(f.into()));
        }
        match text {
            "window" => Ok(ScreenSpec::Window),
            "spi" => Ok(ScreenSpec::Spi),
            "none" => Ok(ScreenSpec::None),
            other => Err(Error::Usage(format!(
                "unknown screen `{other}`: use png:FILE, fb:/dev/fbN, window, spi or none"
            ))),
        }
    }
}

/// Opens the screen `spec` at `size` pixels (a framebuffer uses its own size when the
/// kernel reports it; `fb_format` is used only when it does not).
pub fn open(spec: &ScreenSpec, size: (u32, u32), fb_format: FbFormat) -> Result<Box<dyn Screen>> {
    open_with(spec, size, fb_format, None)
}

/// [`open`], with the SPI panel's settings (a board profile's `[screen.spi]`) for `spi`.
pub fn open_with(
    spec: &ScreenSpec,
    size: (u32, u32),
    fb_format: FbFormat,
    panel: Option<&PanelConfig>,
) -> Result<Box<dyn Screen>> {
    #[cfg(not(feature = "spi"))]
    let _ = panel;
    match spec {
        ScreenSpec::Png(path) => Ok(Box::new(PngScreen::new(path, size)?)),
        ScreenSpec::Framebuffer(path) => Ok(Box::new(FbScreen::open(path, size, fb_format)?)),
        #[cfg(feature = "window")]
        ScreenSpec::Window => Ok(Box::new(window::WindowScreen::open("gestalt-edge", size)?)),
        #[cfg(not(feature = "window"))]
        ScreenSpec::Window => Err(Error::Usage(
            "the `window` screen is not available in this build: rebuild with `--features window` (needs libsdl2-dev), or use png:FILE or fb:/dev/fbN".into(),
        )),
        #[cfg(feature = "spi")]
        ScreenSpec::Spi => match panel {
            Some(p) => Ok(Box::new(spi::SpiScreen::open(p, size)?)),
            None => Err(Error::Usage(
                "the `spi` screen needs the panel's wiring: add a [screen.spi] section to the board profile (see boards/rpi4-spi.toml)".into(),
            )),
        },
        #[cfg(not(feature = "spi"))]
        ScreenSpec::Spi => Err(Error::Usage(
            "the `spi` screen (ST7789/ILI9341 panels) is not available in this build: rebuild with `--features spi`, or use fb:/dev/fbN with the panel's kernel driver (fbtft) or png:FILE".into(),
        )),
        ScreenSpec::None => Ok(Box::new(NoScreen)),
    }
}

/// No screen at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoScreen;

impl Screen for NoScreen {
    fn show(&mut self, _scene: &Scene) -> Result<()> {
        Ok(())
    }
    fn size(&self) -> (u32, u32) {
        (0, 0)
    }
    fn describe(&self) -> String {
        "no screen".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_screen_specs() {
        assert_eq!(
            ScreenSpec::parse("png:out.png").unwrap(),
            ScreenSpec::Png("out.png".into())
        );
        assert_eq!(
            ScreenSpec::parse("fb:/dev/fb1").unwrap(),
            ScreenSpec::Framebuffer("/dev/fb1".into())
        );
        assert_eq!(ScreenSpec::parse("spi").unwrap(), ScreenSpec::Spi);
        let e = ScreenSpec::parse("hdmi").unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e}");
        assert!(e.to_string().contains("png:FILE"), "{e}");
        assert!(ScreenSpec::parse("png:").is_err());
    }

    #[test]
    #[cfg(not(feature = "window"))]
    fn unbuilt_window_says_so() {
        let e = open(&ScreenSpec::Window, (320, 240), FbFormat::Xrgb8888)
            .err()
            .unwrap();
        assert!(e.to_string().contains("--features window"), "{e}");
    }

    #[test]
    fn spi_screen_needs_the_feature_and_the_wiring() {
        let e = open(&ScreenSpec::Spi, (320, 240), FbFormat::Xrgb8888)
            .err()
            .unwrap();
        assert!(matches!(e, Error::Usage(_)), "{e}");
        let want = if cfg!(feature = "spi") {
            "[screen.spi]"
        } else {
            "--features spi"
        };
        assert!(e.to_string().contains(want), "{e}");
    }

    #[test]
    fn thumbnail_is_square_and_clamped() {
        let frame = RgbImage::from_pixel(100, 50, image::Rgb([9, 9, 9]));
        let t = face_thumbnail(&frame, &[80.0, 10.0, 120.0, 60.0], 32).unwrap();
        assert_eq!(t.dimensions(), (32, 32));
        assert!(face_thumbnail(&frame, &[f32::NAN, 0.0, 1.0, 1.0], 32).is_none());
        assert!(face_thumbnail(&frame, &[200.0, 200.0, 300.0, 300.0], 32).is_none());
    }
}
