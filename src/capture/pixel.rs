//! Camera pixel formats to RGB.
//!
//! Consumes one raw frame buffer as a V4L2 camera delivers it (YUYV 4:2:2, NV12 4:2:0, 8-bit
//! gray, packed RGB or BGR, or a Motion-JPEG image) with its width and height in pixels;
//! produces an 8-bit RGB image. YUV is converted with the BT.601 limited-range matrix that
//! USB webcams use. A buffer whose length does not fit its format and size is refused with a
//! reason, never read out of bounds.

use std::path::Path;

use image::RgbImage;

use super::Limits;

/// The raw layouts a camera may hand over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Packed 4:2:2, bytes `Y0 U Y1 V` per two pixels.
    Yuyv,
    /// Planar 4:2:0: the Y plane, then interleaved `U V` at half resolution.
    Nv12,
    /// One luma byte per pixel.
    Gray,
    /// Packed `R G B`.
    Rgb24,
    /// Packed `B G R`.
    Bgr24,
    /// A complete JPEG image per frame.
    Mjpeg,
}

impl PixelFormat {
    /// Bytes a frame of `w` x `h` pixels needs (`None` for MJPEG, which varies).
    pub fn frame_bytes(self, w: u32, h: u32) -> Option<usize> {
        let (w, h) = (w as usize, h as usize);
        match self {
            PixelFormat::Yuyv => Some(w.div_ceil(2) * 4 * h),
            PixelFormat::Nv12 => Some(w * h + w.div_ceil(2) * 2 * h.div_ceil(2)),
            PixelFormat::Gray => Some(w * h),
            PixelFormat::Rgb24 | PixelFormat::Bgr24 => Some(w * h * 3),
            PixelFormat::Mjpeg => None,
        }
    }
}

fn clamp_u8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// BT.601 limited range YCbCr -> RGB, fixed point (x256).
fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = (y as i32 - 16).max(0) * 298;
    let d = u as i32 - 128;
    let e = v as i32 - 128;
    [
        clamp_u8((c + 409 * e + 128) >> 8),
        clamp_u8((c - 100 * d - 208 * e + 128) >> 8),
        clamp_u8((c + 516 * d + 128) >> 8),
    ]
}

/// Converts one raw frame to RGB. `name` identifies the source in messages (MJPEG decoding).
pub fn to_rgb(
    format: PixelFormat,
    width: u32,
    height: u32,
    bytes: &[u8],
    name: &Path,
) -> Result<RgbImage, String> {
    if format == PixelFormat::Mjpeg {
        let limits = Limits::default();
        return super::decode(bytes, name, &limits)
            .map(|f| f.rgb)
            .map_err(|e| format!("MJPEG frame: {e}"));
    }
    if width == 0 || height == 0 {
        return Err(format!("{format:?} frame of {width}x{height} pixels"));
    }
    let need = format.frame_bytes(width, height).unwrap_or(0);
    if bytes.len() < need {
        return Err(format!(
            "{format:?} frame of {width}x{height} needs {need} bytes, got {}",
            bytes.len()
        ));
    }
    let (w, h) = (width as usize, height as usize);
    let mut out = RgbImage::new(width, height);
    for (x, y, px) in out.enumerate_pixels_mut() {
        let (x, y) = (x as usize, y as usize);
        px.0 = match format {
            PixelFormat::Yuyv => {
                let pair = y * w.div_ceil(2) * 4 + (x / 2) * 4;
                let luma = bytes[pair + if x % 2 == 0 { 0 } else { 2 }];
                yuv_to_rgb(luma, bytes[pair + 1], bytes[pair + 3])
            }
            PixelFormat::Nv12 => {
                let uv = w * h + (y / 2) * w.div_ceil(2) * 2 + (x / 2) * 2;
                yuv_to_rgb(bytes[y * w + x], bytes[uv], bytes[uv + 1])
            }
            PixelFormat::Gray => [bytes[y * w + x]; 3],
            PixelFormat::Rgb24 => {
                let i = (y * w + x) * 3;
                [bytes[i], bytes[i + 1], bytes[i + 2]]
            }
            PixelFormat::Bgr24 => {
                let i = (y * w + x) * 3;
                [bytes[i + 2], bytes[i + 1], bytes[i]]
            }
            PixelFormat::Mjpeg => [0; 3],
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuv_reference_colours() {
        // limited-range black, white and the red primary of BT.601
        assert_eq!(yuv_to_rgb(16, 128, 128), [0, 0, 0]);
        assert_eq!(yuv_to_rgb(235, 128, 128), [255, 255, 255]);
        let red = yuv_to_rgb(81, 90, 240);
        assert!(red[0] >= 250 && red[1] <= 5 && red[2] <= 5, "{red:?}");
    }

    #[test]
    fn converts_each_layout() {
        let n = Path::new("cam");
        // 2x1 YUYV: two gray levels sharing neutral chroma
        let img = to_rgb(PixelFormat::Yuyv, 2, 1, &[16, 128, 235, 128], n).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(1, 0).0, [255, 255, 255]);
        // 2x2 NV12: four lumas, one chroma pair
        let img = to_rgb(PixelFormat::Nv12, 2, 2, &[16, 235, 16, 235, 128, 128], n).unwrap();
        assert_eq!(img.get_pixel(1, 1).0, [255, 255, 255]);
        let img = to_rgb(PixelFormat::Bgr24, 1, 1, &[1, 2, 3], n).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [3, 2, 1]);
        let img = to_rgb(PixelFormat::Gray, 1, 1, &[77], n).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [77; 3]);
    }

    #[test]
    fn short_or_odd_frames_are_refused() {
        let n = Path::new("cam");
        let e = to_rgb(PixelFormat::Yuyv, 640, 480, &[0; 100], n).unwrap_err();
        assert!(e.contains("needs 614400 bytes, got 100"), "{e}");
        assert!(to_rgb(PixelFormat::Rgb24, 0, 4, &[], n).is_err());
        let e = to_rgb(PixelFormat::Mjpeg, 0, 0, b"garbage", n).unwrap_err();
        assert!(e.contains("MJPEG"), "{e}");
    }
}
