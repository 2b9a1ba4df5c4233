//! The V4L2 camera source (cargo feature `camera`, through nokhwa).
//!
//! Consumes a device path (`/dev/videoN`) and a requested resolution and frame rate;
//! produces RGB [`Frame`]s. The device is opened lazily and dropped on any capture error, so
//! a missing or unplugged camera shows up as [`SourceError::Unavailable`] and the device loop
//! retries with back-off. Raw frames are converted by [`super::pixel`] (YUYV, NV12, gray,
//! RGB/BGR, MJPEG); an unknown layout is a [`SourceError::BadFrame`].

use std::path::{Path, PathBuf};

use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType};
use nokhwa::Camera;

use super::pixel::{self, PixelFormat};
use super::source::{FrameSource, SourceError};
use super::Frame;

/// A V4L2 camera.
pub struct CameraSource {
    device: PathBuf,
    index: u32,
    width: u32,
    height: u32,
    fps: u32,
    camera: Option<Camera>,
    count: u64,
}

impl std::fmt::Debug for CameraSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraSource")
            .field("device", &self.device)
            .field("open", &self.camera.is_some())
            .finish()
    }
}

/// The number N of `/dev/videoN`.
fn device_index(device: &Path) -> Option<u32> {
    let name = device.file_name()?.to_str()?;
    name.strip_prefix("video")?.parse().ok()
}

impl CameraSource {
    /// A camera at `device` (`/dev/videoN`) asking for `width` x `height` at `fps`; the
    /// device is opened on the first frame. A path that is not `/dev/videoN` is refused.
    pub fn new(device: &Path, width: u32, height: u32, fps: u32) -> crate::Result<Self> {
        let index = device_index(device).ok_or_else(|| {
            crate::Error::Usage(format!(
                "camera device {} is not of the form /dev/videoN",
                device.display()
            ))
        })?;
        Ok(CameraSource {
            device: device.to_path_buf(),
            index,
            width,
            height,
            fps,
            camera: None,
            count: 0,
        })
    }

    fn unavailable(&self, reason: impl std::fmt::Display) -> SourceError {
        SourceError::Unavailable {
            source_name: self.device.display().to_string(),
            reason: reason.to_string(),
        }
    }

    fn open(&mut self) -> Result<(), SourceError> {
        if !self.device.exists() {
            return Err(self.unavailable("no such device (camera not connected?)"));
        }
        let wanted = CameraFormat::new_from(self.width, self.height, FrameFormat::MJPEG, self.fps);
        let request = RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(wanted));
        let mut cam = Camera::new(CameraIndex::Index(self.index), request)
            .map_err(|e| self.unavailable(e))?;
        cam.open_stream().map_err(|e| self.unavailable(e))?;
        self.camera = Some(cam);
        Ok(())
    }
}

impl FrameSource for CameraSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.camera.is_none() {
            self.open()?;
        }
        let Some(cam) = self.camera.as_mut() else {
            return Err(self.unavailable("not open"));
        };
        let buffer = match cam.frame() {
            Ok(b) => b,
            Err(e) => {
                self.camera = None;
                return Err(self.unavailable(e));
            }
        };
        let format = match buffer.source_frame_format() {
            FrameFormat::MJPEG => PixelFormat::Mjpeg,
            FrameFormat::YUYV => PixelFormat::Yuyv,
            FrameFormat::NV12 => PixelFormat::Nv12,
            FrameFormat::GRAY => PixelFormat::Gray,
            FrameFormat::RAWRGB => PixelFormat::Rgb24,
            FrameFormat::RAWBGR => PixelFormat::Bgr24,
        };
        let res = buffer.resolution();
        self.count += 1;
        let name = PathBuf::from(format!("{}#{}", self.device.display(), self.count));
        let rgb = pixel::to_rgb(format, res.width(), res.height(), buffer.buffer(), &name)
            .map_err(|reason| SourceError::BadFrame {
                source_name: self.device.display().to_string(),
                reason,
            })?;
        Ok(Some(Frame {
            rgb,
            source: self.device.clone(),
        }))
    }

    fn reopen(&mut self) -> Result<(), SourceError> {
        self.camera = None;
        self.open()
    }

    fn describe(&self) -> String {
        format!("camera {}", self.device.display())
    }

    fn is_unpaced(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_paths() {
        assert_eq!(device_index(Path::new("/dev/video2")), Some(2));
        assert_eq!(device_index(Path::new("/dev/fb0")), None);
        assert!(CameraSource::new(Path::new("/tmp/x"), 640, 480, 15).is_err());
    }

    #[test]
    fn missing_camera_is_unavailable_not_a_crash() {
        let mut c = CameraSource::new(Path::new("/dev/video97"), 640, 480, 15).unwrap();
        assert!(matches!(
            c.next_frame(),
            Err(SourceError::Unavailable { .. })
        ));
    }
}
