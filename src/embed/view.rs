//! The test-time-augmentation views of an aligned face.

use image::RgbImage;

/// OpenCV's 8-bit RGB2GRAY: `Y = (4899 R + 9617 G + 1868 B + 8192) >> 14`.
pub fn gray_value(r: u8, g: u8, b: u8) -> u8 {
    ((4899 * r as u32 + 9617 * g as u32 + 1868 * b as u32 + 8192) >> 14) as u8
}

/// The gray view: OpenCV's integer RGB2GRAY replicated to three channels.
pub fn gray(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let y = gray_value(p[0], p[1], p[2]);
        p.0 = [y, y, y];
    }
    out
}

/// One TTA view: gray first (when asked), then the horizontal flip (when asked), as the
/// reference orders them.
pub fn view(img: &RgbImage, flip: bool, gray_view: bool) -> RgbImage {
    let g = if gray_view { gray(img) } else { img.clone() };
    if flip {
        image::imageops::flip_horizontal(&g)
    } else {
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gray_matches_opencv_integer_formula() {
        // values computed by hand from the fixed-point formula
        assert_eq!(gray_value(255, 255, 255), 255);
        assert_eq!(gray_value(0, 0, 0), 0);
        assert_eq!(gray_value(255, 0, 0), 76); // (4899*255 + 8192) >> 14 = 76.7 -> 76
        assert_eq!(gray_value(0, 255, 0), 150);
        assert_eq!(gray_value(0, 0, 255), 29);
        assert_eq!(gray_value(10, 200, 30), 124); // (48990 + 1923400 + 56040 + 8192) >> 14
    }

    #[test]
    fn flip_after_gray() {
        let img = RgbImage::from_fn(2, 1, |x, _| {
            if x == 0 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 0, 255])
            }
        });
        let v = view(&img, true, true);
        assert_eq!(v.get_pixel(0, 0).0, [29, 29, 29]);
        assert_eq!(v.get_pixel(1, 0).0, [76, 76, 76]);
        let v = view(&img, true, false);
        assert_eq!(v.get_pixel(0, 0).0, [0, 0, 255]);
        assert_eq!(view(&img, false, false), img);
    }
}
