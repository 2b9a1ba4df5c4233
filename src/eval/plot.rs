//! The top-k curves as a PNG: accuracy (percent, 0..=100) against k (1..=30).
//!
//! Consumes curves (one `Vec<f64>` per line, index 0 = k 1); produces PNG bytes, or writes
//! them atomically. Drawn with the `image` crate only: axes, grid, tick labels and a title in
//! a built-in 3x5 pixel font, the mean curve thick and dark, per-split curves thin and light.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::{Error, Result};

const W: u32 = 640;
const H: u32 = 400;
const LEFT: i32 = 56;
const RIGHT: i32 = 20;
const TOP: i32 = 40;
const BOTTOM: i32 = 44;

/// 3x5 glyphs, one row per `u8` (bits 2..0 = columns left to right).
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 3, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 2, 2],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '-' => [0, 0, 7, 0, 0],
        '%' => [5, 1, 2, 4, 5],
        '(' => [1, 2, 2, 2, 1],
        ')' => [4, 2, 2, 2, 4],
        ',' => [0, 0, 0, 2, 4],
        'a' => [0, 6, 3, 5, 7],
        'c' => [0, 7, 4, 4, 7],
        'e' => [0, 7, 7, 4, 7],
        'h' => [4, 4, 7, 5, 5],
        'i' => [2, 0, 2, 2, 2],
        'k' => [4, 5, 6, 5, 5],
        'l' => [6, 2, 2, 2, 7],
        'm' => [0, 7, 7, 5, 5],
        'n' => [0, 6, 5, 5, 5],
        'o' => [0, 7, 5, 5, 7],
        'p' => [0, 7, 5, 7, 4],
        'r' => [0, 7, 4, 4, 4],
        's' => [0, 7, 6, 3, 7],
        't' => [2, 7, 2, 2, 3],
        'u' => [0, 5, 5, 5, 7],
        'y' => [0, 5, 7, 1, 7],
        _ => [0; 5],
    }
}

fn put(img: &mut RgbImage, x: i32, y: i32, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

/// Draws `text` with its top-left at (x, y), each font pixel `scale` x `scale`.
fn text(img: &mut RgbImage, x: i32, y: i32, s: &str, scale: i32, c: Rgb<u8>) {
    for (i, ch) in s.chars().enumerate() {
        let g = glyph(ch);
        let ox = x + i as i32 * 4 * scale;
        for (row, bits) in g.iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            put(img, ox + col * scale + dx, y + row as i32 * scale + dy, c);
                        }
                    }
                }
            }
        }
    }
}

fn text_width(s: &str, scale: i32) -> i32 {
    s.chars().count() as i32 * 4 * scale - scale
}

/// A line from (x0, y0) to (x1, y1), `thick` pixels wide (square pen).
fn line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), thick: i32, c: Rgb<u8>) {
    let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as i32).max(1);
    for s in 0..=steps {
        let t = f64::from(s) / f64::from(steps);
        let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
        for dy in 0..thick {
            for dx in 0..thick {
                put(
                    img,
                    x.round() as i32 + dx - thick / 2,
                    y.round() as i32 + dy - thick / 2,
                    c,
                );
            }
        }
    }
}

/// Renders the curves. `mean` is drawn thick and dark blue; `others` (per split) thin and
/// light. Values outside 0..=100 are clamped; NaN points are skipped.
pub fn render(mean: &[f64], others: &[Vec<f64>]) -> RgbImage {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let (pw, ph) = (W as i32 - LEFT - RIGHT, H as i32 - TOP - BOTTOM);
    let max_k = mean
        .len()
        .max(others.iter().map(Vec::len).max().unwrap_or(0))
        .max(2);
    let px = |k: usize| f64::from(LEFT) + (k as f64 - 1.0) / (max_k as f64 - 1.0) * f64::from(pw);
    let py = |v: f64| f64::from(TOP + ph) - v.clamp(0.0, 100.0) / 100.0 * f64::from(ph);
    let grid = Rgb([225, 225, 225]);
    let ink = Rgb([40, 40, 40]);
    for v in (0..=100).step_by(20) {
        let y = py(f64::from(v));
        line(
            &mut img,
            (f64::from(LEFT), y),
            (f64::from(LEFT + pw), y),
            1,
            grid,
        );
        let label = v.to_string();
        text(
            &mut img,
            LEFT - 8 - text_width(&label, 2),
            y as i32 - 5,
            &label,
            2,
            ink,
        );
    }
    let mut ticks: Vec<usize> = vec![1];
    ticks.extend((5..=max_k).step_by(5));
    for k in ticks {
        let x = px(k);
        line(
            &mut img,
            (x, f64::from(TOP)),
            (x, f64::from(TOP + ph)),
            1,
            grid,
        );
        let label = k.to_string();
        text(
            &mut img,
            x as i32 - text_width(&label, 2) / 2,
            TOP + ph + 8,
            &label,
            2,
            ink,
        );
    }
    line(
        &mut img,
        (f64::from(LEFT), f64::from(TOP)),
        (f64::from(LEFT), f64::from(TOP + ph)),
        1,
        ink,
    );
    line(
        &mut img,
        (f64::from(LEFT), f64::from(TOP + ph)),
        (f64::from(LEFT + pw), f64::from(TOP + ph)),
        1,
        ink,
    );
    let title = "top-k mean accuracy (%)";
    text(
        &mut img,
        (W as i32 - text_width(title, 3)) / 2,
        10,
        title,
        3,
        ink,
    );
    text(
        &mut img,
        LEFT + pw - text_width("k", 2),
        H as i32 - 14,
        "k",
        2,
        ink,
    );
    let mut draw = |curve: &[f64], thick: i32, c: Rgb<u8>| {
        let pts: Vec<(f64, f64)> = curve
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, &v)| (px(i + 1), py(v)))
            .collect();
        for w in pts.windows(2) {
            line(&mut img, w[0], w[1], thick, c);
        }
        for &(x, y) in &pts {
            line(&mut img, (x, y), (x, y), thick + 2, c);
        }
    };
    for o in others {
        draw(o, 1, Rgb([150, 180, 220]));
    }
    draw(mean, 3, Rgb([20, 60, 140]));
    img
}

/// Renders the curves and writes a PNG to `path` atomically ([`crate::fsio`], mode 0644).
pub fn write_png(path: &Path, mean: &[f64], others: &[Vec<f64>]) -> Result<()> {
    let img = render(mean, others);
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))?;
    crate::fsio::write_atomic(path, &bytes, crate::fsio::Access::Shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_pixels_land_where_expected() {
        let mean: Vec<f64> = (1..=30).map(|k| (k as f64 * 3.0).min(100.0)).collect();
        let img = render(&mean, &[vec![50.0; 30]]);
        assert_eq!(img.dimensions(), (W, H));
        let (pw, ph) = (W as i32 - LEFT - RIGHT, H as i32 - TOP - BOTTOM);
        // k = 30 -> 90 %: dark blue at the right edge of the plot
        let x = LEFT + pw;
        let y = TOP + ph - (0.9 * ph as f64).round() as i32;
        assert_eq!(img.get_pixel(x as u32, y as u32).0, [20, 60, 140]);
        // the split curve at 50 % in the middle
        let y = TOP + ph / 2;
        let x = LEFT + pw / 2;
        assert_eq!(img.get_pixel(x as u32, y as u32).0, [150, 180, 220]);
        // the background stays white in the top-right margin
        assert_eq!(img.get_pixel(W - 2, 2).0, [255, 255, 255]);
    }
}
