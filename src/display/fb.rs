//! The Linux framebuffer screen (`/dev/fbN`), through plain file writes.
//!
//! Consumes draw calls; produces a frame in memory in the device's pixel layout (RGB565 or
//! XRGB8888, little-endian, with the kernel's line stride) that [`FbScreen::show`] writes to
//! the device in one go. The geometry comes from `/sys/class/graphics/fbN/` when the kernel
//! provides it, else from the board profile. Needs write access to the device (the `video`
//! group on Raspberry Pi OS and Jetson Linux).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;

use super::{layout, Scene, Screen};
use crate::{Error, Result};

/// Pixel layout of a framebuffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FbFormat {
    /// 16 bits: 5 red, 6 green, 5 blue, little-endian.
    Rgb565,
    /// 32 bits: bytes blue, green, red, unused.
    Xrgb8888,
}

impl FbFormat {
    /// Bytes per pixel.
    pub fn bytes(self) -> usize {
        match self {
            FbFormat::Rgb565 => 2,
            FbFormat::Xrgb8888 => 4,
        }
    }
}

/// A frame in framebuffer layout.
#[derive(Debug, Clone)]
pub struct Framebuffer {
    width: u32,
    height: u32,
    stride: usize,
    format: FbFormat,
    /// The bytes as written to the device.
    pub bytes: Vec<u8>,
}

impl Framebuffer {
    /// A black frame; `stride` is bytes per line (at least `width` pixels' worth).
    pub fn new(width: u32, height: u32, format: FbFormat, stride: usize) -> Self {
        let stride = stride.max(width as usize * format.bytes());
        Framebuffer {
            width,
            height,
            stride,
            format,
            bytes: vec![0; stride * height as usize],
        }
    }

    /// The colour at `(x, y)` as stored (RGB565 loses the low bits), `None` outside.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = y as usize * self.stride + x as usize * self.format.bytes();
        Some(match self.format {
            FbFormat::Rgb565 => {
                let v = u16::from_le_bytes([self.bytes[i], self.bytes[i + 1]]);
                [
                    ((v >> 11) as u8) << 3,
                    (((v >> 5) & 0x3F) as u8) << 2,
                    ((v & 0x1F) as u8) << 3,
                ]
            }
            FbFormat::Xrgb8888 => [self.bytes[i + 2], self.bytes[i + 1], self.bytes[i]],
        })
    }
}

impl OriginDimensions for Framebuffer {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl DrawTarget for Framebuffer {
    type Color = Rgb888;
    type Error = std::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> std::result::Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(p, c) in pixels {
            if p.x < 0 || p.y < 0 || p.x as u32 >= self.width || p.y as u32 >= self.height {
                continue;
            }
            let i = p.y as usize * self.stride + p.x as usize * self.format.bytes();
            match self.format {
                FbFormat::Rgb565 => {
                    let v = ((c.r() as u16 >> 3) << 11)
                        | ((c.g() as u16 >> 2) << 5)
                        | (c.b() as u16 >> 3);
                    self.bytes[i..i + 2].copy_from_slice(&v.to_le_bytes());
                }
                FbFormat::Xrgb8888 => {
                    self.bytes[i..i + 4].copy_from_slice(&[c.b(), c.g(), c.r(), 0xFF]);
                }
            }
        }
        Ok(())
    }
}

/// Geometry the kernel reports for `/dev/fbN`: (width, height, format, stride in bytes).
fn sysfs_geometry(device: &Path) -> Option<(u32, u32, FbFormat, usize)> {
    let name = device.file_name()?.to_str()?;
    if !name.starts_with("fb") {
        return None;
    }
    let dir = Path::new("/sys/class/graphics").join(name);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    let size = read("virtual_size")?;
    let (w, h) = size.trim().split_once(',')?;
    let (w, h): (u32, u32) = (w.parse().ok()?, h.parse().ok()?);
    let format = match read("bits_per_pixel")?.trim() {
        "16" => FbFormat::Rgb565,
        "32" => FbFormat::Xrgb8888,
        _ => return None,
    };
    let stride = read("stride")
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(w as usize * format.bytes());
    Some((w, h, format, stride))
}

/// A framebuffer device as a screen.
#[derive(Debug)]
pub struct FbScreen {
    path: PathBuf,
    file: File,
    frame: Framebuffer,
}

impl FbScreen {
    /// Opens `device` for writing. Its geometry comes from sysfs when available, else
    /// `size` and `format` (for example a board profile's, or a plain file in tests).
    pub fn open(device: &Path, size: (u32, u32), format: FbFormat) -> Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .open(device)
            .map_err(|e| Error::io(device, e))?;
        let (w, h, format, stride) = sysfs_geometry(device).unwrap_or((
            size.0,
            size.1,
            format,
            size.0 as usize * format.bytes(),
        ));
        if w == 0 || h == 0 {
            return Err(Error::Usage(format!(
                "framebuffer {}: size {w}x{h} has no pixels",
                device.display()
            )));
        }
        Ok(FbScreen {
            path: device.to_path_buf(),
            file,
            frame: Framebuffer::new(w, h, format, stride),
        })
    }
}

impl Screen for FbScreen {
    fn show(&mut self, scene: &Scene) -> Result<()> {
        let Ok(()) = layout::draw_scene(&mut self.frame, scene);
        self.file
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.file.write_all(&self.frame.bytes))
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }

    fn size(&self) -> (u32, u32) {
        (self.frame.width, self.frame.height)
    }

    fn describe(&self) -> String {
        format!(
            "framebuffer {} ({}x{} {:?})",
            self.path.display(),
            self.frame.width,
            self.frame.height,
            self.frame.format
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};

    #[test]
    fn encodes_both_layouts_with_stride() {
        for (format, stride) in [(FbFormat::Rgb565, 16), (FbFormat::Xrgb8888, 20)] {
            let mut fb = Framebuffer::new(4, 2, format, stride);
            let Ok(()) = Rectangle::new(Point::new(1, 1), Size::new(1, 1))
                .into_styled(PrimitiveStyle::with_fill(Rgb888::new(248, 252, 8)))
                .draw(&mut fb);
            assert_eq!(fb.bytes.len(), stride * 2);
            assert_eq!(fb.pixel(1, 1), Some([248, 252, 8]), "{format:?}");
            assert_eq!(fb.pixel(0, 1), Some([0, 0, 0]));
            assert_eq!(fb.pixel(4, 0), None);
        }
        let mut fb = Framebuffer::new(1, 1, FbFormat::Rgb565, 0);
        let Ok(()) = fb.draw_iter([Pixel(Point::new(0, 0), Rgb888::new(255, 0, 0))]);
        assert_eq!(fb.bytes, vec![0x00, 0xF8]);
    }

    #[test]
    fn writes_whole_frames_to_the_device_file() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("fb-file");
        std::fs::write(&dev, b"").unwrap();
        let mut s = FbScreen::open(&dev, (320, 240), FbFormat::Xrgb8888).unwrap();
        s.show(&Scene::Message {
            title: "T",
            detail: "d",
        })
        .unwrap();
        s.show(&Scene::Message {
            title: "T",
            detail: "d",
        })
        .unwrap();
        let bytes = std::fs::read(&dev).unwrap();
        assert_eq!(
            bytes.len(),
            320 * 240 * 4,
            "rewritten in place, not appended"
        );
        let e = FbScreen::open(&dir.path().join("fb9"), (320, 240), FbFormat::Rgb565).unwrap_err();
        assert!(e.to_string().contains("fb9"), "{e}");
    }
}
