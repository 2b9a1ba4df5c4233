//! The drawing code: every screen of the device, generic over an embedded-graphics
//! [`DrawTarget`] with 24-bit colour (targets with other pixel formats adapt through
//! `color_converted()`).
//!
//! Consumes a [`Scene`] and the target's size; produces pixels. Two type scales: 6x10 text
//! below 480 pixels of width (320x240 panels), 10x20 text above (800x480 panels). Syndrome
//! names are word-wrapped to two lines and abbreviated with a final "." when still too long.

use embedded_graphics::image::ImageRaw;
use embedded_graphics::mono_font::iso_8859_1::{FONT_10X20, FONT_6X10, FONT_6X13_BOLD};
use embedded_graphics::mono_font::{MonoFont, MonoTextStyle};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Circle, PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Baseline, Text};
use image::imageops::{self, FilterType};
use image::RgbImage;

use super::{PreviewView, ResultView, Scene, DISCLAIMER};

/// Background.
pub const BG: Rgb888 = Rgb888::new(16, 18, 26);
/// Main text.
pub const FG: Rgb888 = Rgb888::new(235, 235, 235);
/// Secondary text.
pub const DIM: Rgb888 = Rgb888::new(150, 155, 165);
/// Score bars.
pub const BAR: Rgb888 = Rgb888::new(64, 170, 230);
/// Empty part of a bar.
pub const TRACK: Rgb888 = Rgb888::new(45, 50, 62);
/// A face that passes the gate.
pub const GOOD: Rgb888 = Rgb888::new(80, 210, 110);
/// Warnings, the decision-support note, a face that fails the gate.
pub const WARN: Rgb888 = Rgb888::new(245, 180, 50);

/// The fonts and spacing for one screen size.
#[derive(Clone, Copy)]
struct Theme {
    title: &'static MonoFont<'static>,
    body: &'static MonoFont<'static>,
    margin: i32,
}

impl Theme {
    fn for_size(size: Size) -> Theme {
        if size.width >= 480 && size.height >= 320 {
            Theme {
                title: &FONT_10X20,
                body: &FONT_10X20,
                margin: 8,
            }
        } else {
            Theme {
                title: &FONT_6X13_BOLD,
                body: &FONT_6X10,
                margin: 3,
            }
        }
    }

    fn line(&self) -> i32 {
        self.body.character_size.height as i32
    }

    fn chars(&self, width: i32) -> usize {
        (width.max(0) as u32 / self.body.character_size.width.max(1)) as usize
    }
}

/// Maps text to what the ISO 8859-1 fonts can show (dashes and quotes to ASCII, others to
/// "?").
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{2010}'..='\u{2015}' => '-',
            '\u{2018}' | '\u{2019}' => '\'',
            '\u{201C}' | '\u{201D}' => '"',
            c if c.is_control() => ' ',
            c if (c as u32) <= 0xFF => c,
            _ => '?',
        })
        .collect()
}

/// Word-wraps `text` into at most `max_lines` lines of at most `width` characters; a text
/// that does not fit ends in "." (abbreviated). Words longer than a line are cut.
pub fn wrap(text: &str, width: usize, max_lines: usize) -> Vec<String> {
    if width == 0 || max_lines == 0 {
        return Vec::new();
    }
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let cur_len = cur.chars().count();
            let sep = usize::from(cur_len > 0);
            if cur_len + sep + word.len() <= width {
                if sep == 1 {
                    cur.push(' ');
                }
                cur.extend(word.iter());
                break;
            }
            if cur_len > 0 {
                lines.push(std::mem::take(&mut cur));
                continue;
            }
            // a word longer than a line: cut it
            let rest = word.split_off(width);
            lines.push(word.iter().collect());
            word = rest;
        }
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    if lines.len() > max_lines {
        let rest = lines.split_off(max_lines).join(" ");
        let last = &mut lines[max_lines - 1];
        let mut chars: Vec<char> = format!("{last} {rest}").chars().collect();
        chars.truncate(width.saturating_sub(1));
        while chars.last() == Some(&' ') {
            chars.pop();
        }
        chars.push('.');
        *last = chars.into_iter().collect();
    }
    lines
}

fn text<D: DrawTarget<Color = Rgb888>>(
    d: &mut D,
    s: &str,
    at: Point,
    font: &'static MonoFont<'static>,
    color: Rgb888,
) -> Result<(), D::Error> {
    let style = MonoTextStyle::new(font, color);
    Text::with_baseline(&printable(s), at, style, Baseline::Top).draw(d)?;
    Ok(())
}

/// Draws `img` scaled into `area` (bilinear).
fn blit<D: DrawTarget<Color = Rgb888>>(
    d: &mut D,
    img: &RgbImage,
    area: Rectangle,
) -> Result<(), D::Error> {
    let Size { width, height } = area.size;
    if width == 0 || height == 0 || img.width() == 0 || img.height() == 0 {
        return Ok(());
    }
    let scaled = imageops::resize(img, width, height, FilterType::Triangle);
    let raw: ImageRaw<Rgb888> = ImageRaw::new(scaled.as_raw(), width);
    embedded_graphics::image::Image::new(&raw, area.top_left).draw(d)?;
    Ok(())
}

/// The decision-support note, on the last line of the screen.
fn footer<D: DrawTarget<Color = Rgb888>>(d: &mut D, t: Theme) -> Result<i32, D::Error> {
    let size = d.bounding_box().size;
    let h = t.line() + 2 * t.margin;
    let y = size.height as i32 - h;
    Rectangle::new(Point::new(0, y), Size::new(size.width, h as u32))
        .into_styled(PrimitiveStyle::with_fill(TRACK))
        .draw(d)?;
    let note = wrap(DISCLAIMER, t.chars(size.width as i32 - 2 * t.margin), 1);
    text(
        d,
        &note.concat(),
        Point::new(t.margin, y + t.margin),
        t.body,
        WARN,
    )?;
    Ok(y)
}

/// Draws `scene` over the whole target.
pub fn draw_scene<D: DrawTarget<Color = Rgb888>>(d: &mut D, scene: &Scene) -> Result<(), D::Error> {
    let size = d.bounding_box().size;
    let t = Theme::for_size(size);
    d.clear(BG)?;
    let bottom = footer(d, t)?;
    match scene {
        Scene::Preview(p) => preview(d, t, p, bottom),
        Scene::Result(r) => result(d, t, r, bottom),
        Scene::Message { title, detail } => message(d, t, title, detail, bottom),
    }
}

fn message<D: DrawTarget<Color = Rgb888>>(
    d: &mut D,
    t: Theme,
    title: &str,
    detail: &str,
    bottom: i32,
) -> Result<(), D::Error> {
    let w = d.bounding_box().size.width as i32 - 2 * t.margin;
    let mut y = t.margin * 3;
    let tw = (w.max(0) as u32 / t.title.character_size.width) as usize;
    for line in wrap(title, tw, 2) {
        text(d, &line, Point::new(t.margin, y), t.title, WARN)?;
        y += t.title.character_size.height as i32 + 2;
    }
    y += t.line() / 2;
    let room = ((bottom - y - t.margin) / t.line()).max(0) as usize;
    for line in wrap(detail, t.chars(w), room) {
        text(d, &line, Point::new(t.margin, y), t.body, FG)?;
        y += t.line();
    }
    Ok(())
}

fn preview<D: DrawTarget<Color = Rgb888>>(
    d: &mut D,
    t: Theme,
    p: &PreviewView,
    bottom: i32,
) -> Result<(), D::Error> {
    let size = d.bounding_box().size;
    let status_h = t.line() + 2 * t.margin;
    let area_h = (bottom - status_h).max(1) as u32;
    let (fw, fh) = p.frame.dimensions();
    if fw > 0 && fh > 0 {
        let scale = (size.width as f32 / fw as f32).min(area_h as f32 / fh as f32);
        let (w, h) = (
            ((fw as f32 * scale) as u32).max(1),
            ((fh as f32 * scale) as u32).max(1),
        );
        let origin = Point::new(
            (size.width as i32 - w as i32) / 2,
            (area_h as i32 - h as i32) / 2,
        );
        blit(d, p.frame, Rectangle::new(origin, Size::new(w, h)))?;
        if let Some(face) = &p.face {
            let color = if p.ok { GOOD } else { WARN };
            let map = |x: f32, y: f32| {
                Point::new(
                    origin.x + (x * scale).round() as i32,
                    origin.y + (y * scale).round() as i32,
                )
            };
            let [x1, y1, x2, y2] = face.bbox_px;
            let a = map(x1, y1);
            let b = map(x2, y2);
            Rectangle::with_corners(a, b)
                .into_styled(PrimitiveStyle::with_stroke(color, 2))
                .draw(d)?;
            for [x, y] in face.landmarks_px {
                Circle::with_center(map(x, y), 5)
                    .into_styled(PrimitiveStyle::with_fill(color))
                    .draw(d)?;
            }
        }
    }
    let y = bottom - status_h + t.margin;
    let color = if p.ok { GOOD } else { WARN };
    let (done, need) = p.steady;
    let right = format!("{done}/{need}");
    let w = size.width as i32 - 2 * t.margin;
    let room = t.chars(w).saturating_sub(right.len() + 1);
    text(
        d,
        &wrap(&p.verdict, room, 1).concat(),
        Point::new(t.margin, y),
        t.body,
        color,
    )?;
    let rx =
        size.width as i32 - t.margin - (right.len() as u32 * t.body.character_size.width) as i32;
    text(d, &right, Point::new(rx, y), t.body, DIM)
}

fn result<D: DrawTarget<Color = Rgb888>>(
    d: &mut D,
    t: Theme,
    r: &ResultView,
    bottom: i32,
) -> Result<(), D::Error> {
    let size = d.bounding_box().size;
    let m = t.margin;
    let w = size.width as i32;
    // advice on the line above the footer; the rows use what is left
    let bottom = match &r.advice {
        Some(a) => {
            let y = bottom - t.line() - m;
            text(
                d,
                &wrap(a, t.chars(w - 2 * m), 1).concat(),
                Point::new(m, y),
                t.body,
                WARN,
            )?;
            y
        }
        None => bottom,
    };
    // header: title left, provenance right (dropped when it does not fit)
    text(d, &r.title, Point::new(m, m), t.title, FG)?;
    let title_w = (r.title.chars().count() as u32 * t.title.character_size.width) as i32;
    let room = t.chars(w - 3 * m - title_w);
    if room >= 8 {
        let sub = wrap(&r.subtitle, room, 1).concat();
        let sx = w - m - (sub.chars().count() as u32 * t.body.character_size.width) as i32;
        text(d, &sub, Point::new(sx, m), t.body, DIM)?;
    }
    let top = m + t.title.character_size.height as i32 + m;
    let avail = (bottom - top - m).max(1);

    // face thumbnail on the left
    let thumb = (avail.min(w / 4)).max(0);
    let mut x0 = m;
    if let Some(img) = &r.thumbnail {
        blit(
            d,
            img,
            Rectangle::new(Point::new(m, top), Size::new(thumb as u32, thumb as u32)),
        )?;
        x0 = 2 * m + thumb;
    }
    let rw = w - x0 - m;
    if r.rows.is_empty() {
        return text(
            d,
            "No match in the gallery",
            Point::new(x0, top),
            t.body,
            FG,
        );
    }
    // five fixed slots, so the layout does not move with the number of results
    let rh = avail / 5;
    let line = t.line();
    let bar_h = (line / 2).max(4);
    let name_lines = if rh >= 3 * line + bar_h + 2 { 2 } else { 1 };
    let cw = t.chars(rw);
    for (i, row) in r.rows.iter().take(5).enumerate() {
        let y = top + i as i32 * rh;
        let rank = format!("{} ", i + 1);
        let names = wrap(&row.name, cw.saturating_sub(rank.len()), name_lines);
        for (j, n) in names.iter().enumerate() {
            let lead = if j == 0 {
                rank.clone()
            } else {
                " ".repeat(rank.len())
            };
            let at = Point::new(x0, y + j as i32 * line);
            text(d, &format!("{lead}{n}"), at, t.body, FG)?;
        }
        // the score line and bar sit at the same height in every row
        let mut ly = y + name_lines as i32 * line;
        let omim = row
            .omim_id
            .map(|o| format!("OMIM {o}"))
            .unwrap_or_else(|| "OMIM -".into());
        let score = format!("{:.2}", row.gestalt_score);
        text(d, &omim, Point::new(x0, ly), t.body, DIM)?;
        let sx = x0 + rw - (score.len() as u32 * t.body.character_size.width) as i32;
        text(d, &score, Point::new(sx, ly), t.body, FG)?;
        ly += line + 1;
        let frac = (row.gestalt_score / crate::rank::GESTALT_OFFSET).clamp(0.0, 1.0);
        let track = Rectangle::new(
            Point::new(x0, ly),
            Size::new(rw.max(0) as u32, bar_h as u32),
        );
        track
            .into_styled(PrimitiveStyle::with_fill(TRACK))
            .draw(d)?;
        let filled = (rw as f32 * frac).round() as u32;
        Rectangle::new(Point::new(x0, ly), Size::new(filled, bar_h as u32))
            .into_styled(PrimitiveStyle::with_fill(BAR))
            .draw(d)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::mock_display::MockDisplay;

    #[test]
    fn wraps_and_abbreviates() {
        assert_eq!(
            wrap("Cornelia de Lange syndrome 1", 12, 2),
            vec!["Cornelia de", "Lange syndr."]
        );
        assert_eq!(wrap("Noonan syndrome", 40, 2), vec!["Noonan syndrome"]);
        assert_eq!(wrap("ABCDEFGHIJ", 4, 3), vec!["ABCD", "EFGH", "IJ"]);
        assert_eq!(wrap("ABCDEFGHIJ", 4, 2), vec!["ABCD", "EFG."]);
        assert_eq!(wrap("Short name", 10, 1), vec!["Short name"]);
        assert!(wrap("x", 0, 2).is_empty());
        assert_eq!(
            printable("Smith\u{2013}Magenis \u{4e00}"),
            "Smith-Magenis ?"
        );
    }

    #[test]
    fn message_fits_a_tiny_display() {
        // 64x64 mock: the scene must draw without going out of bounds
        let mut d: MockDisplay<Rgb888> = MockDisplay::new();
        d.set_allow_overdraw(true);
        draw_scene(
            &mut d,
            &Scene::Message {
                title: "Camera",
                detail: "retrying in 2 s",
            },
        )
        .unwrap();
        // the footer band is TRACK coloured, the title area starts with the background
        assert_eq!(d.get_pixel(Point::new(0, 63)), Some(TRACK));
        assert_eq!(d.get_pixel(Point::new(0, 0)), Some(BG));
        let warn = (0..64)
            .flat_map(|y| (0..64).map(move |x| Point::new(x, y)))
            .filter(|p| d.get_pixel(*p) == Some(WARN))
            .count();
        assert!(
            warn > 20,
            "title and note drawn in the warning colour ({warn} px)"
        );
    }
}
