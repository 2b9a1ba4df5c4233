//! A synthetic frame source for tests and demos without hardware.
//!
//! Produces deterministic RGB test-pattern frames (a colour gradient with a square that moves
//! one step per frame; no face) and, following a script of [`SyntheticEvent`]s, the
//! failures a real camera has: unplugged, unusable frames, end of stream.

use std::collections::VecDeque;
use std::path::PathBuf;

use image::RgbImage;

use super::source::{FrameSource, SourceError};
use super::Frame;

/// One step of the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyntheticEvent {
    /// A test-pattern frame.
    Frame,
    /// The device disappears: this call fails with [`SourceError::Unavailable`].
    Unplugged,
    /// This frame is unusable: [`SourceError::BadFrame`].
    BadFrame,
    /// The stream ends (`Ok(None)`).
    End,
}

/// Test-pattern frames driven by a script; after the script, frames for ever.
#[derive(Debug, Clone)]
pub struct SyntheticSource {
    width: u32,
    height: u32,
    script: VecDeque<SyntheticEvent>,
    count: u64,
    /// Times [`FrameSource::reopen`] was called.
    pub reopened: u32,
    /// Times [`SyntheticSource::next_frame`](FrameSource::next_frame) was called.
    pub reads: u32,
    /// The next this many reopens fail (a camera that stays unplugged).
    pub failing_reopens: u32,
}

impl SyntheticSource {
    /// Frames of `width` x `height` pixels (at least 1 x 1), following `script`.
    pub fn new(width: u32, height: u32, script: &[SyntheticEvent]) -> Self {
        SyntheticSource {
            width: width.max(1),
            height: height.max(1),
            script: script.iter().copied().collect(),
            count: 0,
            reopened: 0,
            reads: 0,
            failing_reopens: 0,
        }
    }

    /// Frame number `n` of the pattern.
    pub fn pattern(width: u32, height: u32, n: u64) -> RgbImage {
        let side = (width.min(height) / 4).max(1);
        let span = (width.saturating_sub(side)).max(1) as u64;
        let x0 = ((n * 7) % span) as u32;
        let y0 = height.saturating_sub(side) / 2;
        RgbImage::from_fn(width, height, |x, y| {
            if (x0..x0 + side).contains(&x) && (y0..y0 + side).contains(&y) {
                image::Rgb([240, 240, 240])
            } else {
                image::Rgb([
                    (x * 255 / width.max(1)) as u8,
                    (y * 255 / height.max(1)) as u8,
                    96,
                ])
            }
        })
    }
}

impl FrameSource for SyntheticSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        self.reads += 1;
        let event = self.script.pop_front().unwrap_or(SyntheticEvent::Frame);
        let name = "synthetic".to_string();
        match event {
            SyntheticEvent::Frame => {
                let rgb = Self::pattern(self.width, self.height, self.count);
                self.count += 1;
                Ok(Some(Frame {
                    rgb,
                    source: PathBuf::from("synthetic"),
                }))
            }
            SyntheticEvent::Unplugged => Err(SourceError::Unavailable {
                source_name: name,
                reason: "the test script unplugged it".into(),
            }),
            SyntheticEvent::BadFrame => Err(SourceError::BadFrame {
                source_name: name,
                reason: "the test script sent a frame in an unknown format".into(),
            }),
            SyntheticEvent::End => Ok(None),
        }
    }

    fn reopen(&mut self) -> Result<(), SourceError> {
        self.reopened += 1;
        if self.failing_reopens > 0 {
            self.failing_reopens -= 1;
            return Err(SourceError::Unavailable {
                source_name: "synthetic".into(),
                reason: "the test script keeps it unplugged".into(),
            });
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("synthetic test pattern {}x{}", self.width, self.height)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_script_then_streams() {
        use SyntheticEvent::*;
        let mut s = SyntheticSource::new(40, 30, &[Frame, Unplugged, BadFrame, Frame, End]);
        let a = s.next_frame().unwrap().unwrap();
        assert_eq!(a.rgb.dimensions(), (40, 30));
        assert!(matches!(
            s.next_frame(),
            Err(SourceError::Unavailable { .. })
        ));
        assert!(matches!(s.next_frame(), Err(SourceError::BadFrame { .. })));
        let b = s.next_frame().unwrap().unwrap();
        assert_ne!(a.rgb, b.rgb, "the square moves");
        assert!(s.next_frame().unwrap().is_none());
        assert!(s.next_frame().unwrap().is_some(), "frames after the script");
    }

    #[test]
    fn pattern_is_deterministic() {
        let a = SyntheticSource::pattern(16, 8, 3);
        assert_eq!(a, SyntheticSource::pattern(16, 8, 3));
        assert_eq!(a.get_pixel(0, 0).0, [0, 0, 96]);
    }
}
