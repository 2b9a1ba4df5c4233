//! From 8-bit pixels to model input tensors: bilinear resizing (OpenCV `INTER_LINEAR`
//! geometry, no antialiasing, as the reference's `cv2.resize`), letterboxing into a fixed
//! detector input, and NCHW f32 conversion with per-channel mean and scale.
//!
//! Consumes `image::RgbImage`; produces `Vec<f32>` tensors in the layout an [`InputSpec`] names.

use super::manifest::{ChannelOrder, InputSpec};
use image::RgbImage;

/// Resizes `src` to `out_w` x `out_h` with bilinear interpolation using the pixel-centre
/// convention of OpenCV (`x_src = (x + 0.5) * in/out - 0.5`, clamped to the image).
/// `scale_x`/`scale_y` are the factors out/in used for the mapping (pass the factor the caller
/// chose, so that a rounded output size does not shift the geometry).
pub fn resize_bilinear(src: &RgbImage, out_w: u32, out_h: u32, fx: f64, fy: f64) -> RgbImage {
    let (w, h) = src.dimensions();
    let mut out = RgbImage::new(out_w, out_h);
    if w == 0 || h == 0 || out_w == 0 || out_h == 0 {
        return out;
    }
    let taps = |n_out: u32, n_in: u32, f: f64| -> Vec<(usize, usize, f32)> {
        (0..n_out)
            .map(|o| {
                let s = ((o as f64 + 0.5) / f - 0.5).max(0.0);
                let i0 = (s.floor() as usize).min(n_in as usize - 1);
                let i1 = (i0 + 1).min(n_in as usize - 1);
                let t = if i0 + 1 >= n_in as usize {
                    0.0
                } else {
                    (s - i0 as f64) as f32
                };
                (i0, i1, t)
            })
            .collect()
    };
    let xs = taps(out_w, w, fx);
    let ys = taps(out_h, h, fy);
    let data = src.as_raw();
    let stride = w as usize * 3;
    let out_raw: &mut [u8] = &mut out;
    for (oy, &(y0, y1, ty)) in ys.iter().enumerate() {
        let r0 = &data[y0 * stride..(y0 + 1) * stride];
        let r1 = &data[y1 * stride..(y1 + 1) * stride];
        for (ox, &(x0, x1, tx)) in xs.iter().enumerate() {
            for c in 0..3 {
                let a = r0[x0 * 3 + c] as f32 * (1.0 - tx) + r0[x1 * 3 + c] as f32 * tx;
                let b = r1[x0 * 3 + c] as f32 * (1.0 - tx) + r1[x1 * 3 + c] as f32 * tx;
                let v = a * (1.0 - ty) + b * ty;
                out_raw[(oy * out_w as usize + ox) * 3 + c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// A photo scaled to fit a fixed detector input: long side to the input's size, aspect kept.
#[derive(Debug, Clone)]
pub struct Letterboxed {
    /// The scaled photo (at most `spec.width` x `spec.height`), placed at the top-left.
    pub image: RgbImage,
    /// Factor from photo pixels to input pixels.
    pub scale: f64,
}

/// Scales `src` so it fits `width` x `height`, keeping the aspect ratio; small photos are
/// upscaled (as the reference does).
pub fn letterbox(src: &RgbImage, width: u32, height: u32) -> Letterboxed {
    let (w, h) = src.dimensions();
    let scale = (width as f64 / w.max(1) as f64).min(height as f64 / h.max(1) as f64);
    let ow = ((w as f64 * scale).round() as u32).clamp(1, width);
    let oh = ((h as f64 * scale).round() as u32).clamp(1, height);
    Letterboxed {
        image: resize_bilinear(src, ow, oh, scale, scale),
        scale,
    }
}

/// NCHW f32 tensor data of shape `[1, 3, spec.height, spec.width]` from `img` placed at the
/// top-left; the area outside `img` is 0 (after normalisation). `img` larger than the spec is
/// cropped.
pub fn to_nchw(img: &RgbImage, spec: &InputSpec) -> Vec<f32> {
    let (w, h) = (spec.width as usize, spec.height as usize);
    let plane = w * h;
    let mut out = vec![0f32; 3 * plane];
    let order: [usize; 3] = match spec.channel_order {
        ChannelOrder::Rgb => [0, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    };
    let iw = (img.width() as usize).min(w);
    let ih = (img.height() as usize).min(h);
    let raw = img.as_raw();
    let stride = img.width() as usize * 3;
    for y in 0..ih {
        let row = &raw[y * stride..y * stride + iw * 3];
        for x in 0..iw {
            for (c, &src_c) in order.iter().enumerate() {
                let v = row[x * 3 + src_c] as f32;
                out[c * plane + y * w + x] = (v - spec.mean[c]) * spec.scale[c];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(order: ChannelOrder) -> InputSpec {
        InputSpec {
            width: 4,
            height: 2,
            channel_order: order,
            mean: [1.0, 2.0, 3.0],
            scale: [0.5; 3],
        }
    }

    #[test]
    fn nchw_orders_channels_and_pads() {
        let img = RgbImage::from_fn(2, 1, |x, _| image::Rgb([10 + x as u8, 20, 30]));
        let t = to_nchw(&img, &spec(ChannelOrder::Bgr));
        assert_eq!(t.len(), 24);
        // channel 0 = blue: (30 - 1) * 0.5
        assert_eq!(t[0], 14.5);
        assert_eq!(t[1], 14.5);
        assert_eq!(t[2], 0.0); // padding
                               // channel 2 = red: (10 - 3) * 0.5 and (11 - 3) * 0.5
        assert_eq!(t[16], 3.5);
        assert_eq!(t[17], 4.0);
        let t = to_nchw(&img, &spec(ChannelOrder::Rgb));
        assert_eq!(t[0], 4.5);
    }

    #[test]
    fn resize_matches_opencv_geometry() {
        // 4 -> 2 columns: x_src = (x+0.5)*2-0.5 = 0.5, 2.5 -> averages of neighbours
        let img = RgbImage::from_fn(4, 1, |x, _| image::Rgb([(x * 40) as u8, 0, 0]));
        let out = resize_bilinear(&img, 2, 1, 0.5, 1.0);
        assert_eq!(out.get_pixel(0, 0)[0], 20);
        assert_eq!(out.get_pixel(1, 0)[0], 100);
        // 2 -> 4 upscale: x_src = -0.25 (clamped 0), 0.25, 0.75, 1.25 (clamped to the edge)
        let img = RgbImage::from_fn(2, 1, |x, _| image::Rgb([(x * 100) as u8, 0, 0]));
        let out = resize_bilinear(&img, 4, 1, 2.0, 1.0);
        let got: Vec<u8> = (0..4).map(|x| out.get_pixel(x, 0)[0]).collect();
        assert_eq!(got, vec![0, 25, 75, 100]);
    }

    #[test]
    fn letterbox_keeps_aspect() {
        let img = RgbImage::new(1280, 720);
        let lb = letterbox(&img, 640, 640);
        assert_eq!(lb.image.dimensions(), (640, 360));
        assert!((lb.scale - 0.5).abs() < 1e-12);
        let small = RgbImage::new(100, 200);
        let lb = letterbox(&small, 640, 640);
        assert_eq!(lb.image.dimensions(), (320, 640));
    }
}
