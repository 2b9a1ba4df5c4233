//! Frame sources: where photos come from and how they are decoded.
//!
//! Consumes a file path (or bytes); produces a [`Frame`]: an 8-bit RGB image with the EXIF
//! orientation applied, plus its source id. Decoding checks the header first, so a file that
//! declares more pixels than [`Limits::max_pixels`] is refused before any pixel memory is
//! allocated. Every failure is an [`Error::Image`] naming the file.
//!
//! Live sources (a still image, a folder, a synthetic pattern, the camera behind the
//! `camera` feature) implement [`FrameSource`] ([`source`]); [`quality`] is the capture gate.

#[cfg(feature = "camera")]
pub mod camera;
pub mod pixel;
pub mod quality;
pub mod source;
pub mod synthetic;

pub use source::{DirectorySource, FrameSource, SourceError, SourceSpec, StillSource};
pub use synthetic::{SyntheticEvent, SyntheticSource};

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::{Error, Result};

/// A decoded photo.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The pixels, RGB 8-bit, upright (EXIF orientation applied).
    pub rgb: RgbImage,
    /// Where the frame came from (a file path, or a camera/frame id).
    pub source: PathBuf,
}

/// Resource limits applied while decoding.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted width x height (default 50 megapixels).
    pub max_pixels: u64,
    /// Largest accepted file (default 64 MiB).
    pub max_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: 50_000_000,
            max_file_bytes: 64 << 20,
        }
    }
}

/// Reads and decodes the photo at `path` (JPEG or PNG).
pub fn load_image(path: &Path, limits: &Limits) -> Result<Frame> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::image(path, format!("cannot read the file: {e}")))?;
    if meta.is_dir() {
        return Err(Error::image(path, "is a folder, not a photo"));
    }
    if meta.len() > limits.max_file_bytes {
        return Err(Error::image(
            path,
            format!(
                "file is {} bytes, over the limit of {} bytes",
                meta.len(),
                limits.max_file_bytes
            ),
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| Error::image(path, format!("cannot read the file: {e}")))?;
    decode(&bytes, path, limits)
}

/// Decodes photo `bytes`; `source` names them in messages.
pub fn decode(bytes: &[u8], source: &Path, limits: &Limits) -> Result<Frame> {
    if bytes.is_empty() {
        return Err(Error::image(source, "the file is empty (0 bytes)"));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::image(source, format!("cannot read the file: {e}")))?;
    match reader.format() {
        Some(ImageFormat::Jpeg) | Some(ImageFormat::Png) => {}
        Some(other) => {
            return Err(Error::image(
                source,
                format!("{other:?} images are not supported (use JPEG or PNG)"),
            ))
        }
        None => {
            return Err(Error::image(
                source,
                "not an image: the content is neither JPEG nor PNG",
            ))
        }
    }
    if reader.format() == Some(ImageFormat::Jpeg) && !jpeg_is_complete(bytes) {
        return Err(Error::image(
            source,
            "corrupt or truncated image data: the JPEG ends before its last scan does",
        ));
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| Error::image(source, format!("corrupt or truncated image header: {e}")))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(Error::image(source, "the image has no pixels"));
    }
    if w as u64 * h as u64 > limits.max_pixels {
        return Err(Error::image(
            source,
            format!(
                "{w}x{h} pixels is over the limit of {} pixels",
                limits.max_pixels
            ),
        ));
    }
    let orientation = decoder.orientation().ok();
    let mut img = image::DynamicImage::from_decoder(decoder)
        .map_err(|e| Error::image(source, format!("corrupt or truncated image data: {e}")))?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(Frame {
        rgb: img.into_rgb8(),
        source: source.to_path_buf(),
    })
}

/// True when a JPEG's last scan is followed by the end-of-image marker. Inside entropy-coded
/// data every 0xFF byte is stuffed (0xFF00) or a restart marker, so the last start-of-scan
/// marker (0xFFDA) and an end-of-image marker (0xFFD9) after it can only be real markers; the
/// decoder we use fills a cut-off scan with gray instead of failing, so this catches truncation.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        Some(i) => bytes[i..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_bytes(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_pixel(w, h, image::Rgb([1, 2, 3]));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    fn reason(r: Result<Frame>) -> String {
        match r {
            Err(e @ Error::Image { .. }) => e.to_string(),
            other => panic!("expected an image error, got {other:?}"),
        }
    }

    #[test]
    fn decodes_png() {
        let f = decode(&png_bytes(3, 2), Path::new("a.png"), &Limits::default()).unwrap();
        assert_eq!(f.rgb.dimensions(), (3, 2));
        assert_eq!(f.rgb.get_pixel(2, 1).0, [1, 2, 3]);
    }

    #[test]
    fn refuses_bad_input_with_reasons() {
        let l = Limits::default();
        assert!(reason(decode(b"", Path::new("e.jpg"), &l)).contains("empty"));
        assert!(reason(decode(b"hello, I am text", Path::new("t.jpg"), &l))
            .contains("neither JPEG nor PNG"));
        let png = png_bytes(8, 8);
        assert!(
            reason(decode(&png[..png.len() / 2], Path::new("half.png"), &l)).contains("corrupt")
        );
        let tight = Limits {
            max_pixels: 10,
            ..l
        };
        assert!(reason(decode(&png, Path::new("big.png"), &tight)).contains("over the limit"));
    }
}
