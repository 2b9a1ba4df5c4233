//! Settings of an SPI TFT panel (a board profile's `[screen.spi]` section).
//!
//! Consumes TOML; produces a checked [`PanelConfig`]: the spidev device, the controller
//! (ST7789 or ILI9341 class), the GPIO lines for data/command and reset, rotation, colour
//! order and inversion. Always compiled, so every build reads every profile; the driver
//! that uses it is [`super::spi`] (feature `spi`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Panel controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PanelModel {
    /// Sitronix ST7789 (240x320 frame memory; 240x240, 240x320, 135x240 modules).
    St7789,
    /// Ilitek ILI9341 (240x320), 16-bit colour.
    Ili9341,
}

impl PanelModel {
    /// The controller's frame memory, portrait (width, height) in pixels.
    pub fn frame_memory(self) -> (u32, u32) {
        (240, 320)
    }
}

/// Subpixel order of the glass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ColourOrder {
    /// Red, green, blue.
    #[default]
    Rgb,
    /// Blue, green, red (many ILI9341 modules).
    Bgr,
}

fn default_chip() -> PathBuf {
    PathBuf::from("/dev/gpiochip0")
}

fn default_speed() -> u32 {
    32_000_000
}

/// An SPI panel: where it is wired and how its glass is mounted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelConfig {
    /// The controller.
    pub model: PanelModel,
    /// spidev device (`/dev/spidev0.0`: SPI0, chip select CE0).
    pub device: PathBuf,
    /// SPI clock, Hz (default 32 MHz; lower it for long wires).
    #[serde(default = "default_speed")]
    pub speed_hz: u32,
    /// GPIO character device holding the DC and RST lines (`/dev/gpiochip0` on a Pi 4; the
    /// 40-pin header is also `gpiochip0` on a Pi 5 with kernel 6.6.45 or later).
    #[serde(default = "default_chip")]
    pub gpio_chip: PathBuf,
    /// Data/command line offset on `gpio_chip` (the BCM number on a Pi: `25` is header pin 22).
    pub dc_line: u32,
    /// Reset line offset; absent: a software reset command instead.
    #[serde(default)]
    pub rst_line: Option<u32>,
    /// Clockwise rotation of the picture, degrees: 0, 90, 180 or 270. With 90 or 270 the
    /// profile's screen `width` x `height` is the landscape size (320x240 on a 240x320 panel).
    #[serde(default)]
    pub rotation: u16,
    /// Subpixel order.
    #[serde(default)]
    pub colour_order: ColourOrder,
    /// Invert colours (most ST7789 modules need it; absent: true for ST7789, false for ILI9341).
    #[serde(default)]
    pub invert: Option<bool>,
    /// Offset of the glass in the controller's memory, portrait pixels (x, y): (0, 0) for
    /// 240x320 glass, e.g. (0, 80) for some 240x240 modules.
    #[serde(default)]
    pub offset: (u16, u16),
}

impl PanelConfig {
    /// Checks the settings against a logical screen of `size` pixels; returns the glass size
    /// in the controller's portrait orientation.
    pub fn native_size(&self, size: (u32, u32)) -> Result<(u16, u16)> {
        let bad = |m: String| Err(Error::Usage(format!("board profile [screen.spi]: {m}")));
        if !matches!(self.rotation, 0 | 90 | 180 | 270) {
            return bad(format!(
                "rotation {} is not 0, 90, 180 or 270",
                self.rotation
            ));
        }
        let (w, h) = if self.rotation % 180 == 90 {
            (size.1, size.0)
        } else {
            size
        };
        let (mw, mh) = self.model.frame_memory();
        let (ox, oy) = (u32::from(self.offset.0), u32::from(self.offset.1));
        if w == 0 || h == 0 || w + ox > mw || h + oy > mh {
            return bad(format!(
                "a {}x{} screen at rotation {} needs {w}x{h} portrait pixels at offset ({ox}, {oy}), more than the {:?} frame memory of {mw}x{mh}",
                size.0, size.1, self.rotation, self.model
            ));
        }
        if self.speed_hz == 0 {
            return bad("speed_hz must be positive".into());
        }
        if self.rst_line == Some(self.dc_line) {
            return bad("dc_line and rst_line must be different lines".into());
        }
        Ok((w as u16, h as u16))
    }

    /// Whether colours are inverted (the model's default unless set).
    pub fn inverted(&self) -> bool {
        self.invert
            .unwrap_or(matches!(self.model, PanelModel::St7789))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> PanelConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_and_checks() {
        let c = cfg("model = 'st7789'\ndevice = '/dev/spidev0.0'\ndc_line = 25\nrotation = 90\n");
        assert_eq!(c.gpio_chip, PathBuf::from("/dev/gpiochip0"));
        assert_eq!(c.speed_hz, 32_000_000);
        assert!(c.inverted());
        assert_eq!(c.native_size((320, 240)).unwrap(), (240, 320));
        let e = c.native_size((480, 320)).unwrap_err();
        assert!(e.to_string().contains("frame memory"), "{e}");
        let c = cfg("model = 'ili9341'\ndevice = 'd'\ndc_line = 1\nrst_line = 1\n");
        assert!(!c.inverted());
        assert!(c.native_size((240, 320)).is_err(), "same DC and RST line");
        let c = cfg("model = 'ili9341'\ndevice = 'd'\ndc_line = 1\nrotation = 45\n");
        let e = c.native_size((240, 320)).unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e}");
        assert!(
            toml::from_str::<PanelConfig>("model = 'ssd1306'\ndevice = 'd'\ndc_line = 1\n")
                .is_err()
        );
    }
}
