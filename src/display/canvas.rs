//! A headless screen: an embedded-graphics target over an RGB image, saved as PNG.
//!
//! Consumes draw calls; produces an [`image::RgbImage`] ([`PngCanvas`]) and, for
//! [`PngScreen`], a PNG file rewritten atomically (temp file, fsync, rename) on each change,
//! so a viewer never sees half a picture.

use std::convert::Infallible;

use std::path::{Path, PathBuf};

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use image::RgbImage;

use super::{layout, Scene, Screen};
use crate::fsio::Access;
use crate::{Error, Result};

/// An RGB image you can draw on.
#[derive(Debug, Clone)]
pub struct PngCanvas {
    /// The pixels.
    pub image: RgbImage,
}

impl PngCanvas {
    /// A black canvas of `width` x `height` pixels.
    pub fn new(width: u32, height: u32) -> Self {
        PngCanvas {
            image: RgbImage::new(width, height),
        }
    }

    /// Draws `scene` over the whole canvas.
    pub fn render(width: u32, height: u32, scene: &Scene) -> RgbImage {
        let mut c = PngCanvas::new(width, height);
        // drawing into memory cannot fail
        let Ok(()) = layout::draw_scene(&mut c, scene);
        c.image
    }
}

impl OriginDimensions for PngCanvas {
    fn size(&self) -> Size {
        Size::new(self.image.width(), self.image.height())
    }
}

impl DrawTarget for PngCanvas {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> std::result::Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        let (w, h) = self.image.dimensions();
        for Pixel(p, c) in pixels {
            if p.x >= 0 && p.y >= 0 && (p.x as u32) < w && (p.y as u32) < h {
                self.image
                    .put_pixel(p.x as u32, p.y as u32, image::Rgb([c.r(), c.g(), c.b()]));
            }
        }
        Ok(())
    }
}

/// Writes `img` to `path` as PNG atomically ([`crate::fsio`]) with `access`: a screen image
/// or a saved capture shows a patient, so the callers pass [`Access::Private`].
pub fn write_png_atomic(img: &RgbImage, path: &Path, access: Access) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| Error::io(path, std::io::Error::other(e)))?;
    crate::fsio::write_atomic(path, &bytes, access)
}

/// A screen that is a PNG file.
#[derive(Debug)]
pub struct PngScreen {
    path: PathBuf,
    size: (u32, u32),
}

impl PngScreen {
    /// A `size` screen saved to `path`; refuses a zero size or a folder that does not exist.
    pub fn new(path: &Path, size: (u32, u32)) -> Result<Self> {
        if size.0 == 0 || size.1 == 0 {
            return Err(Error::Usage(format!(
                "screen size {}x{} has no pixels",
                size.0, size.1
            )));
        }
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(d) = dir {
            if !d.is_dir() {
                return Err(Error::io(
                    path,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "the folder for the screen image does not exist",
                    ),
                ));
            }
        }
        Ok(PngScreen {
            path: path.to_path_buf(),
            size,
        })
    }
}

impl Screen for PngScreen {
    fn show(&mut self, scene: &Scene) -> Result<()> {
        let img = PngCanvas::render(self.size.0, self.size.1, scene);
        // the result screen shows the patient's face and ranked syndromes: patient data
        write_png_atomic(&img, &self.path, Access::Private)
    }

    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn describe(&self) -> String {
        format!("png {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};

    #[test]
    fn draws_in_bounds_only() {
        let mut c = PngCanvas::new(4, 3);
        let Ok(()) = Rectangle::new(Point::new(-2, 1), Size::new(10, 1))
            .into_styled(PrimitiveStyle::with_fill(Rgb888::new(1, 2, 3)))
            .draw(&mut c);
        assert_eq!(c.image.get_pixel(3, 1).0, [1, 2, 3]);
        assert_eq!(c.image.get_pixel(0, 0).0, [0, 0, 0]);
    }

    #[test]
    fn png_screen_writes_a_file_and_refuses_missing_folders() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.png");
        let mut s = PngScreen::new(&p, (320, 240)).unwrap();
        s.show(&Scene::Message {
            title: "Hello",
            detail: "world",
        })
        .unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (320, 240));
        assert!(PngScreen::new(&dir.path().join("no/such/s.png"), (320, 240)).is_err());
        assert!(PngScreen::new(&p, (0, 240)).is_err());
    }
}
