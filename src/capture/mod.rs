//! Frame sources: where photos come from and how they are decoded.
//!
//! Consumes a file path (or bytes); produces a [`Frame`]: an 8-bit RGB image with the EXIF
//! orientation applied, plus its source id. Decoding checks the header first, so a file that
//! declares more pixels than [`Limits::max_pixels`], or whose decoding would hold more pixel
//! memory than [`Limits::max_decode_bytes`] (bit depth, conversion and rotation counted), is
//! refused before any pixel memory is allocated; the decoder itself runs under the same
//! budget (`image::Limits`). A PNG reaches the decoder without the ancillary chunks the
//! pixels do not need ([`png_parts`]: colour profiles, text, time, ...), so a compressed
//! iCCP or zTXt chunk is never inflated. Every failure is an [`Error::Image`] naming the file.
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
    /// Largest accepted file (default [`crate::fsio::Cap::PHOTO`], 64 MiB).
    pub max_file_bytes: u64,
    /// Most pixel memory one decode may hold at once (default [`DEFAULT_MAX_DECODE_BYTES`]):
    /// the decoder's own buffer at the file's bit depth, its 8-bit RGB conversion and the
    /// rotated copy an EXIF orientation needs, whichever pair is alive together.
    pub max_decode_bytes: u64,
}

/// Default pixel-memory budget of one decode: 256 MiB (a 42-megapixel 8-bit photo rotated by
/// its EXIF orientation, or a 16-bit RGBA photo of 24 megapixels).
pub const DEFAULT_MAX_DECODE_BYTES: u64 = 256 << 20;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: 50_000_000,
            max_file_bytes: crate::fsio::Cap::PHOTO.bytes,
            max_decode_bytes: DEFAULT_MAX_DECODE_BYTES,
        }
    }
}

/// The peak pixel memory of decoding a `w` x `h` image whose decoder buffer takes
/// `native_bytes`: the buffer plus its 8-bit RGB conversion (none when it already is one),
/// then the RGB image plus its rotated copy when the orientation turns or flips it.
pub fn decode_peak_bytes(w: u32, h: u32, native_bytes: u64, rgb8: bool, rotates: bool) -> u64 {
    let rgb = u64::from(w) * u64::from(h) * 3;
    let convert = if rgb8 {
        native_bytes
    } else {
        native_bytes.saturating_add(rgb)
    };
    let rotate = if rotates { rgb.saturating_mul(2) } else { rgb };
    convert.max(rotate)
}

/// Reads and decodes the photo at `path` (JPEG or PNG).
pub fn load_image(path: &Path, limits: &Limits) -> Result<Frame> {
    // the bounded reader: a FIFO is not waited on, a device or a folder is refused, and no
    // more than the limit is read whatever size the file reports
    let cap = crate::fsio::Cap::PHOTO.with_bytes(limits.max_file_bytes);
    let bytes = crate::fsio::read_capped(path, cap).map_err(|e| match e {
        crate::fsio::ReadError::NotRegular("a folder") => {
            Error::image(path, "is a folder, not a photo")
        }
        e => Error::image(path, e.to_string()),
    })?;
    decode(&bytes, path, limits)
}

/// Decodes photo `bytes`; `source` names them in messages.
pub fn decode(bytes: &[u8], source: &Path, limits: &Limits) -> Result<Frame> {
    if bytes.is_empty() {
        return Err(Error::image(source, "the file is empty (0 bytes)"));
    }
    let format = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::image(source, format!("cannot read the file: {e}")))?
        .format();
    let parts = match format {
        Some(ImageFormat::Png) => png_parts(bytes),
        _ => vec![bytes],
    };
    let mut reader = ImageReader::new(Spliced::new(parts));
    reader.set_format(format.unwrap_or(ImageFormat::Jpeg));
    // the header is read under the decoding budget too (the default allows 512 MiB)
    let mut header_budget = image::Limits::default();
    header_budget.max_alloc = Some(limits.max_decode_bytes);
    reader.limits(header_budget);
    match format {
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
    if format == Some(ImageFormat::Jpeg) && !jpeg_is_complete(bytes) {
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
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let rotates = orientation != image::metadata::Orientation::NoTransforms;
    let rgb8 = decoder.color_type() == image::ColorType::Rgb8;
    let peak = decode_peak_bytes(w, h, decoder.total_bytes(), rgb8, rotates);
    if peak > limits.max_decode_bytes {
        return Err(Error::image(
            source,
            format!(
                "{w}x{h} pixels as {:?}{} need {} MB to decode, over the budget of {} MB \
                 (--max-decode-mb)",
                decoder.color_type(),
                if rotates {
                    " with an EXIF rotation"
                } else {
                    ""
                },
                peak.div_ceil(1 << 20),
                limits.max_decode_bytes >> 20
            ),
        ));
    }
    let mut budget = image::Limits::default();
    budget.max_image_width = Some(w);
    budget.max_image_height = Some(h);
    budget.max_alloc = Some(limits.max_decode_bytes);
    decoder
        .set_limits(budget)
        .map_err(|e| Error::image(source, format!("over the decoding limits: {e}")))?;
    let img = image::DynamicImage::from_decoder(decoder)
        .map_err(|e| Error::image(source, format!("corrupt or truncated image data: {e}")))?;
    // to 8-bit RGB first (the native buffer is freed), then turn the smaller image
    let mut img = image::DynamicImage::ImageRgb8(img.into_rgb8());
    img.apply_orientation(orientation);
    Ok(Frame {
        rgb: img.into_rgb8(),
        source: source.to_path_buf(),
    })
}

/// The ancillary PNG chunks the decoded pixels depend on: transparency (the palette's alpha,
/// before conversion to RGB) and EXIF (the orientation). Every other ancillary chunk (iCCP,
/// zTXt, iTXt, tEXt, gAMA, APNG frames, private chunks, ...) is skipped: this crate applies no
/// colour management, and a compressed profile or text could inflate to hundreds of MB
/// inside the decoder whatever the pixel budget says.
const PNG_KEPT_ANCILLARY: [&[u8; 4]; 2] = [b"tRNS", b"eXIf"];

/// The byte ranges of a PNG file that reach the decoder: the signature and every critical
/// chunk (upper-case first letter) or kept ancillary one ([`PNG_KEPT_ANCILLARY`]), in file
/// order. Chunks are walked by their length fields; from the first one that does not fit in
/// the file (or after IEND), the rest is passed on unchanged for the decoder to judge.
fn png_parts(bytes: &[u8]) -> Vec<&[u8]> {
    const SIGNATURE: usize = 8;
    let mut at = SIGNATURE.min(bytes.len());
    let mut parts = vec![&bytes[..at]];
    // consecutive kept chunks are one range
    let mut kept_from = at;
    while let Some(head) = bytes.get(at..at + 8) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = [head[4], head[5], head[6], head[7]];
        let Some(end) = at.checked_add(12 + len).filter(|&e| e <= bytes.len()) else {
            break;
        };
        let critical = kind[0].is_ascii_uppercase();
        if !critical && !PNG_KEPT_ANCILLARY.contains(&&kind) {
            parts.push(&bytes[kept_from..at]);
            kept_from = end;
        }
        at = end;
        if &kind == b"IEND" {
            break;
        }
    }
    parts.push(&bytes[kept_from..]);
    parts.retain(|p| !p.is_empty());
    parts
}

/// Ranges of one buffer read as one stream, without copying them (the PNG [`png_parts`]
/// keeps).
struct Spliced<'a> {
    parts: Vec<&'a [u8]>,
    /// The part being read and the position inside it.
    part: usize,
    at: usize,
}

impl<'a> Spliced<'a> {
    fn new(parts: Vec<&'a [u8]>) -> Self {
        Spliced {
            parts,
            part: 0,
            at: 0,
        }
    }

    fn len(&self) -> u64 {
        self.parts.iter().map(|p| p.len() as u64).sum()
    }

    fn position(&self) -> u64 {
        let before: u64 = self.parts[..self.part].iter().map(|p| p.len() as u64).sum();
        before + self.at as u64
    }
}

impl std::io::BufRead for Spliced<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.part < self.parts.len() && self.at >= self.parts[self.part].len() {
            self.part += 1;
            self.at = 0;
        }
        Ok(self.parts.get(self.part).map_or(&[][..], |p| &p[self.at..]))
    }

    fn consume(&mut self, n: usize) {
        self.at += n;
    }
}

impl std::io::Read for Spliced<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::BufRead;
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl std::io::Seek for Spliced<'_> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            std::io::SeekFrom::Start(n) => Some(n),
            std::io::SeekFrom::End(d) => self.len().checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.position().checked_add_signed(d),
        }
        .ok_or_else(|| std::io::Error::other("seek before the start"))?;
        let mut left = target;
        self.part = 0;
        self.at = 0;
        while let Some(p) = self.parts.get(self.part) {
            if left <= p.len() as u64 {
                self.at = left as usize;
                return Ok(target);
            }
            left -= p.len() as u64;
            self.part += 1;
        }
        // past the end, as a file allows: reads return nothing
        self.at = left as usize;
        Ok(target)
    }
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

    /// `png` with an eXIf chunk holding EXIF orientation `o` inserted after the header chunk.
    pub(crate) fn with_orientation(png: &[u8], o: u16) -> Vec<u8> {
        let mut exif = b"MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
        exif.extend_from_slice(&o.to_be_bytes());
        exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let mut chunk = (exif.len() as u32).to_be_bytes().to_vec();
        let mut body = b"eXIf".to_vec();
        body.extend_from_slice(&exif);
        chunk.extend_from_slice(&body);
        chunk.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        let ihdr_end = 8 + 8 + 13 + 4;
        [&png[..ihdr_end], &chunk[..], &png[ihdr_end..]].concat()
    }

    #[test]
    fn rotates_after_converting_and_budgets_bit_depth_and_rotation() {
        let png = with_orientation(&png_bytes(3, 2), 6);
        let f = decode(&png, Path::new("r.png"), &Limits::default()).unwrap();
        assert_eq!(f.rgb.dimensions(), (2, 3));
        assert_eq!(f.rgb.get_pixel(1, 2).0, [1, 2, 3]);

        // 16-bit RGBA: 8 bytes a pixel in the decoder, then 3 in RGB, then the rotated copy
        assert_eq!(
            decode_peak_bytes(7000, 7000, 392_000_000, false, true),
            539_000_000
        );
        assert_eq!(decode_peak_bytes(100, 100, 30_000, true, false), 30_000);
        assert_eq!(decode_peak_bytes(100, 100, 30_000, true, true), 60_000);
        let img = image::ImageBuffer::<image::Rgba<u16>, _>::from_pixel(
            100,
            100,
            image::Rgba([1u16, 2, 3, 65535]),
        );
        let mut wide = Vec::new();
        image::DynamicImage::ImageRgba16(img)
            .write_to(&mut Cursor::new(&mut wide), ImageFormat::Png)
            .unwrap();
        let wide = with_orientation(&wide, 6);
        let tight = Limits {
            max_decode_bytes: 100_000,
            ..Limits::default()
        };
        let msg = reason(decode(&wide, Path::new("w.png"), &tight));
        assert!(
            msg.contains("100x100") && msg.contains("Rgba16") && msg.contains("EXIF rotation"),
            "{msg}"
        );
        let roomy = Limits {
            max_decode_bytes: 200_000,
            ..Limits::default()
        };
        let f = decode(&wide, Path::new("w.png"), &roomy).unwrap();
        assert_eq!(f.rgb.get_pixel(0, 0).0, [0, 0, 0]);
    }

    /// A PNG chunk.
    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(&body);
        c.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        c
    }

    #[test]
    fn ancillary_chunks_are_skipped_not_inflated() {
        // a zlib stream of one stored block of 60,000 zero bytes (the adler-32 of n zeros is
        // n << 16 | 1)
        let n: u16 = 60_000;
        let mut zeros = vec![0x78, 0x01, 0x01];
        zeros.extend_from_slice(&n.to_le_bytes());
        zeros.extend_from_slice(&(!n).to_le_bytes());
        zeros.resize(zeros.len() + n as usize, 0);
        zeros.extend_from_slice(&((u32::from(n) << 16) | 1).to_be_bytes());
        let mut iccp = b"profile\0\0".to_vec();
        iccp.extend_from_slice(&zeros);
        let mut ztxt = b"Comment\0\0".to_vec();
        ztxt.extend_from_slice(&zeros);
        let png = with_orientation(&png_bytes(3, 2), 6);
        let ihdr_end = 8 + 8 + 13 + 4;
        let extra = [
            chunk(b"iCCP", &iccp),
            chunk(b"zTXt", &ztxt),
            chunk(b"tEXt", b"Author\0x"),
            chunk(b"prVt", &[7; 100]),
        ]
        .concat();
        let crafted = [&png[..ihdr_end], &extra[..], &png[ihdr_end..]].concat();
        // only the chunks the pixels need reach the decoder, EXIF included
        let kept: Vec<u8> = png_parts(&crafted).concat();
        assert_eq!(kept, png);
        // a budget far below what the profile inflates to: decoded, and rotated as before
        let tight = Limits {
            max_decode_bytes: 1000,
            ..Limits::default()
        };
        let f = decode(&crafted, Path::new("icc.png"), &tight).unwrap();
        assert_eq!(f.rgb.dimensions(), (2, 3));
        assert_eq!(f.rgb.get_pixel(1, 2).0, [1, 2, 3]);
        // a chunk cut short, or garbage after IEND, reaches the decoder as it is
        let cut = ihdr_end + 20;
        assert_eq!(png_parts(&crafted[..cut]).concat(), &crafted[..cut]);
        let cut = crafted.len() - 3;
        assert_eq!(png_parts(&crafted[..cut]).concat(), &png[..png.len() - 3]);
        let trailing = [&crafted[..], b"junk"].concat();
        assert!(png_parts(&trailing)
            .concat()
            .ends_with(b"IEND\xaeB`\x82junk"));
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
