//! Frame sources behind one trait: a still image, a folder of photos, and (elsewhere) the
//! synthetic test source and the camera.
//!
//! Consumes a source description ([`SourceSpec`], parsed from `camera`, `camera:/dev/videoN`,
//! `synthetic` or a path) and produces [`Frame`]s one at a time through [`FrameSource`].
//! A source reports trouble as a [`SourceError`] that says whether it is worth retrying (a
//! camera that is missing or was unplugged) or whether only this frame is bad (an odd pixel
//! format, a corrupt file), so the device loop can keep running.

use std::path::{Path, PathBuf};

use super::{load_image, Frame, Limits};

/// What went wrong while getting a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The device cannot be used right now (missing, unplugged, busy): retry later.
    #[error("{source_name} is not available: {reason}")]
    Unavailable {
        /// The source (for example `/dev/video0`).
        source_name: String,
        /// What the system said.
        reason: String,
    },
    /// This frame cannot be used (unknown pixel format, corrupt data); the next may be fine.
    #[error("{source_name}: unusable frame: {reason}")]
    BadFrame {
        /// The source.
        source_name: String,
        /// What is wrong with the frame.
        reason: String,
    },
}

impl From<SourceError> for crate::Error {
    fn from(e: SourceError) -> Self {
        match &e {
            SourceError::Unavailable { source_name, .. }
            | SourceError::BadFrame { source_name, .. } => {
                crate::Error::image(source_name, e.to_string())
            }
        }
    }
}

/// A supply of frames: a camera, a folder, a still image, a test pattern.
pub trait FrameSource {
    /// The next frame; `Ok(None)` when the source has ended (files only; a camera never ends).
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError>;

    /// Tries to (re)open the device after [`SourceError::Unavailable`]. Sources that cannot
    /// be reopened do nothing.
    fn reopen(&mut self) -> Result<(), SourceError> {
        Ok(())
    }

    /// A short name for messages (`camera /dev/video0`, `folder photos/`).
    fn describe(&self) -> String;

    /// True for sources that produce frames as fast as they are asked for (files, test
    /// patterns); the device loop paces those to the preview rate. A camera paces itself.
    fn is_unpaced(&self) -> bool {
        true
    }
}

/// Where frames come from, as written on the command line or in a board profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A V4L2 camera; `None` takes the board's device.
    Camera(Option<PathBuf>),
    /// The built-in synthetic test pattern (no face).
    Synthetic,
    /// A photo or a folder of photos.
    Path(PathBuf),
}

impl SourceSpec {
    /// Parses `camera`, `camera:/dev/videoN`, `synthetic` or a path.
    pub fn parse(text: &str) -> SourceSpec {
        match text {
            "camera" => SourceSpec::Camera(None),
            "synthetic" => SourceSpec::Synthetic,
            t => match t.strip_prefix("camera:") {
                Some(dev) if !dev.is_empty() => SourceSpec::Camera(Some(PathBuf::from(dev))),
                _ => SourceSpec::Path(PathBuf::from(t)),
            },
        }
    }
}

/// One photo, decoded once and handed out again and again (a camera pointed at a print).
#[derive(Debug)]
pub struct StillSource {
    frame: Frame,
    remaining: Option<u64>,
}

impl StillSource {
    /// Decodes `path`; the source then yields it `repeat` times (`None`: for ever).
    pub fn open(path: &Path, limits: &Limits, repeat: Option<u64>) -> crate::Result<Self> {
        Ok(StillSource {
            frame: load_image(path, limits)?,
            remaining: repeat,
        })
    }
}

impl FrameSource for StillSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        match &mut self.remaining {
            Some(0) => Ok(None),
            Some(n) => {
                *n -= 1;
                Ok(Some(self.frame.clone()))
            }
            None => Ok(Some(self.frame.clone())),
        }
    }

    fn describe(&self) -> String {
        format!("photo {}", self.frame.source.display())
    }
}

/// The photos of a folder (`.jpg`, `.jpeg`, `.png`, by file name), each held for a number
/// of frames so that it can be seen as steady, then the next; ends after the last one.
#[derive(Debug)]
pub struct DirectorySource {
    dir: PathBuf,
    files: Vec<PathBuf>,
    limits: Limits,
    hold: u64,
    index: usize,
    shown: u64,
    current: Option<Frame>,
}

impl DirectorySource {
    /// Lists the photos in `dir`; each is yielded `hold` times (at least once).
    /// [`crate::Error::Image`] when the folder cannot be read or holds no photo.
    pub fn open(dir: &Path, limits: &Limits, hold: u64) -> crate::Result<Self> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| crate::Error::image(dir, format!("cannot read the folder: {e}")))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_photo_name(p))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(crate::Error::image(
                dir,
                "the folder holds no .jpg, .jpeg or .png photo",
            ));
        }
        Ok(DirectorySource {
            dir: dir.to_path_buf(),
            files,
            limits: *limits,
            hold: hold.max(1),
            index: 0,
            shown: 0,
            current: None,
        })
    }

    /// The photos, in the order they are shown.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

fn is_photo_name(p: &Path) -> bool {
    let ext = p
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    matches!(ext.as_deref(), Some("jpg" | "jpeg" | "png"))
}

impl FrameSource for DirectorySource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.shown >= self.hold {
            self.index += 1;
            self.shown = 0;
            self.current = None;
        }
        let Some(path) = self.files.get(self.index) else {
            return Ok(None);
        };
        if self.current.is_none() {
            match load_image(path, &self.limits) {
                Ok(f) => self.current = Some(f),
                Err(e) => {
                    // skip the bad file for good, report it once
                    self.shown = self.hold;
                    return Err(SourceError::BadFrame {
                        source_name: path.display().to_string(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        self.shown += 1;
        Ok(self.current.clone())
    }

    fn describe(&self) -> String {
        format!("folder {}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::RgbImage;

    fn write_png(dir: &Path, name: &str, value: u8) {
        RgbImage::from_pixel(4, 3, image::Rgb([value; 3]))
            .save(dir.join(name))
            .unwrap();
    }

    #[test]
    fn parses_specs() {
        assert_eq!(SourceSpec::parse("camera"), SourceSpec::Camera(None));
        assert_eq!(
            SourceSpec::parse("camera:/dev/video2"),
            SourceSpec::Camera(Some("/dev/video2".into()))
        );
        assert_eq!(SourceSpec::parse("synthetic"), SourceSpec::Synthetic);
        assert_eq!(
            SourceSpec::parse("photos/a.jpg"),
            SourceSpec::Path("photos/a.jpg".into())
        );
    }

    #[test]
    fn still_source_repeats_then_ends() {
        let dir = tempfile::tempdir().unwrap();
        write_png(dir.path(), "a.png", 9);
        let mut s =
            StillSource::open(&dir.path().join("a.png"), &Limits::default(), Some(2)).unwrap();
        assert_eq!(
            s.next_frame().unwrap().unwrap().rgb.get_pixel(0, 0).0,
            [9; 3]
        );
        assert!(s.next_frame().unwrap().is_some());
        assert!(s.next_frame().unwrap().is_none());
    }

    #[test]
    fn directory_source_holds_each_photo_and_skips_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        write_png(dir.path(), "b.png", 2);
        write_png(dir.path(), "a.png", 1);
        std::fs::write(dir.path().join("c.jpg"), b"not a photo").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
        let mut s = DirectorySource::open(dir.path(), &Limits::default(), 2).unwrap();
        assert_eq!(s.files().len(), 3);
        let mut seen = Vec::new();
        let mut bad = 0;
        loop {
            match s.next_frame() {
                Ok(Some(f)) => seen.push(f.rgb.get_pixel(0, 0).0[0]),
                Ok(None) => break,
                Err(SourceError::BadFrame { source_name, .. }) => {
                    assert!(source_name.ends_with("c.jpg"));
                    bad += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(seen, vec![1, 1, 2, 2]);
        assert_eq!(bad, 1);
    }

    #[test]
    fn empty_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = DirectorySource::open(dir.path(), &Limits::default(), 1).unwrap_err();
        assert!(e.to_string().contains("no .jpg"), "{e}");
    }
    /// A photo replaced after the folder was listed, by a FIFO, a symlink to `/dev/zero` or
    /// a sparse 1 GiB file, is a bad frame at once: the run goes on, nothing waits or fills.
    #[cfg(unix)]
    #[test]
    fn a_photo_replaced_mid_run_by_a_fifo_a_device_or_a_sparse_file_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.png", "b.png", "c.png", "d.png"] {
            write_png(dir.path(), name, 1);
        }
        let mut s = DirectorySource::open(dir.path(), &Limits::default(), 1).unwrap();
        assert_eq!(s.files().len(), 4);
        let b = dir.path().join("b.png");
        std::fs::remove_file(&b).unwrap();
        let c = std::ffi::CString::new(b.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let c = dir.path().join("c.png");
        std::fs::remove_file(&c).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &c).unwrap();
        let d = dir.path().join("d.png");
        std::fs::File::create(&d).unwrap().set_len(1 << 30).unwrap();
        let start = std::time::Instant::now();
        let mut bad = Vec::new();
        let mut good = 0;
        loop {
            match s.next_frame() {
                Ok(Some(_)) => good += 1,
                Ok(None) => break,
                Err(SourceError::BadFrame { reason, .. }) => bad.push(reason),
                Err(e) => panic!("{e}"),
            }
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(good, 1);
        assert_eq!(bad.len(), 3, "{bad:?}");
        for (why, words) in bad
            .iter()
            .zip(["FIFO", "character device", "over the limit"])
        {
            assert!(why.contains(words), "{why}");
        }
    }
}
