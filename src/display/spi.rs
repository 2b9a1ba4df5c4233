//! The SPI TFT screen (feature `spi`): ST7789 / ILI9341 class panels on a Pi's SPI bus.
//!
//! Consumes scenes (drawn by [`layout`] into an RGB frame in memory) and a [`PanelConfig`];
//! produces whole frames on the panel: one address window over the glass, then
//! width x height RGB565 pixels, big-endian, sent through the kernel's spidev in chunks of at
//! most 4096 bytes (spidev's default transfer limit). The panel is initialised by mipidsi;
//! the data/command and reset lines are GPIO character-device lines (gpiocdev). Any
//! `mipidsi::interface::Interface` can stand in for the wire, which is how the tests record
//! what the driver sends.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use embedded_graphics::pixelcolor::{Rgb565, Rgb888};
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use embedded_hal::spi::SpiDevice;
use image::RgbImage;
use linux_embedded_hal::spidev::{SpiModeFlags, SpidevOptions};
use linux_embedded_hal::SpidevDevice;
use mipidsi::interface::{Interface, InterfaceKind};
use mipidsi::models::{ILI9341Rgb565, Model, ST7789};
use mipidsi::options::{ColorInversion, ColorOrder, Orientation, Rotation};

use super::panel::{ColourOrder, PanelConfig, PanelModel};
use super::{layout, PngCanvas, Scene, Screen};
use crate::{Error, Result};

/// Largest single spidev write, bytes.
pub const CHUNK_BYTES: usize = 4096;

/// A panel that takes whole frames.
trait PanelSink {
    fn blit(&mut self, img: &RgbImage) -> std::result::Result<(), String>;
}

impl<DI, M, RST> PanelSink for mipidsi::Display<DI, M, RST>
where
    DI: Interface<Word = u8>,
    DI::Error: std::fmt::Debug,
    M: Model<ColorFormat = Rgb565>,
    RST: OutputPin,
{
    fn blit(&mut self, img: &RgbImage) -> std::result::Result<(), String> {
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Ok(());
        }
        let colours = img
            .pixels()
            .map(|p| Rgb565::from(Rgb888::new(p.0[0], p.0[1], p.0[2])));
        self.set_pixels(0, 0, (w - 1) as u16, (h - 1) as u16, colours)
            .map_err(|e| format!("{e:?}"))
    }
}

fn rotation(deg: u16) -> Rotation {
    match deg {
        90 => Rotation::Deg90,
        180 => Rotation::Deg180,
        270 => Rotation::Deg270,
        _ => Rotation::Deg0,
    }
}

fn init<DI, M, RST>(
    model: M,
    di: DI,
    cfg: &PanelConfig,
    native: (u16, u16),
    rst: Option<RST>,
    delay: &mut impl DelayNs,
) -> std::result::Result<Box<dyn PanelSink>, String>
where
    DI: Interface<Word = u8> + 'static,
    DI::Error: std::fmt::Debug,
    M: Model<ColorFormat = Rgb565> + 'static,
    RST: OutputPin + 'static,
{
    let b = mipidsi::Builder::new(model, di)
        .display_size(native.0, native.1)
        .display_offset(cfg.offset.0, cfg.offset.1)
        .orientation(Orientation::new().rotate(rotation(cfg.rotation)))
        .color_order(match cfg.colour_order {
            ColourOrder::Rgb => ColorOrder::Rgb,
            ColourOrder::Bgr => ColorOrder::Bgr,
        })
        .invert_colors(if cfg.inverted() {
            ColorInversion::Inverted
        } else {
            ColorInversion::Normal
        });
    Ok(match rst {
        Some(pin) => Box::new(b.reset_pin(pin).init(delay).map_err(|e| format!("{e:?}"))?),
        None => Box::new(b.init(delay).map_err(|e| format!("{e:?}"))?),
    })
}

/// An SPI panel as a screen.
pub struct SpiScreen {
    sink: Box<dyn PanelSink>,
    canvas: PngCanvas,
    device: PathBuf,
    label: String,
}

impl std::fmt::Debug for SpiScreen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label)
    }
}

impl SpiScreen {
    /// Opens the panel of `cfg` as a `size` screen (landscape size when rotated 90/270):
    /// the spidev device, the DC (and RST) lines, then the controller's init sequence.
    /// A missing device or line is an error naming it.
    pub fn open(cfg: &PanelConfig, size: (u32, u32)) -> Result<Self> {
        cfg.native_size(size)?;
        let mut spi = SpidevDevice::open(&cfg.device).map_err(|e| {
            Error::io(
                &cfg.device,
                std::io::Error::new(
                    e.inner().kind(),
                    format!(
                        "cannot open the SPI device: {} (is SPI enabled? on a Pi: dtparam=spi=on in config.txt, user in group spi)",
                        e.inner()
                    ),
                ),
            )
        })?;
        let opts = SpidevOptions::new()
            .bits_per_word(8)
            .max_speed_hz(cfg.speed_hz)
            .mode(SpiModeFlags::SPI_MODE_0)
            .build();
        spi.configure(&opts)
            .map_err(|e| Error::io(&cfg.device, e))?;
        let dc = GpioOut::request(&cfg.gpio_chip, cfg.dc_line, "DC")?;
        let rst = match cfg.rst_line {
            Some(l) => Some(GpioOut::request(&cfg.gpio_chip, l, "RST")?),
            None => None,
        };
        let di = SpidevInterface {
            spi,
            dc,
            buf: Vec::with_capacity(CHUNK_BYTES),
        };
        Self::with_interface(di, cfg, size, rst, &mut linux_embedded_hal::Delay)
    }

    /// The panel of `cfg` over any display interface `di` (a recording fake in tests).
    pub fn with_interface<DI, RST>(
        di: DI,
        cfg: &PanelConfig,
        size: (u32, u32),
        rst: Option<RST>,
        delay: &mut impl DelayNs,
    ) -> Result<Self>
    where
        DI: Interface<Word = u8> + 'static,
        DI::Error: std::fmt::Debug,
        RST: OutputPin + 'static,
    {
        let native = cfg.native_size(size)?;
        let sink = match cfg.model {
            PanelModel::St7789 => init(ST7789, di, cfg, native, rst, delay),
            PanelModel::Ili9341 => init(ILI9341Rgb565, di, cfg, native, rst, delay),
        }
        .map_err(|e| {
            Error::io(
                &cfg.device,
                std::io::Error::other(format!("panel initialisation failed: {e}")),
            )
        })?;
        Ok(SpiScreen {
            sink,
            canvas: PngCanvas::new(size.0, size.1),
            device: cfg.device.clone(),
            label: format!(
                "spi {} ({:?} {}x{}, rotation {})",
                cfg.device.display(),
                cfg.model,
                size.0,
                size.1,
                cfg.rotation
            ),
        })
    }
}

impl Screen for SpiScreen {
    fn show(&mut self, scene: &Scene) -> Result<()> {
        let Ok(()) = layout::draw_scene(&mut self.canvas, scene);
        self.sink
            .blit(&self.canvas.image)
            .map_err(|e| Error::io(&self.device, std::io::Error::other(e)))
    }

    fn size(&self) -> (u32, u32) {
        self.canvas.image.dimensions()
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}

/// An output line on a GPIO character device.
struct GpioOut {
    req: gpiocdev::Request,
    line: u32,
}

/// A GPIO failure, as text.
#[derive(Debug)]
struct GpioError(String);

impl embedded_hal::digital::Error for GpioError {
    fn kind(&self) -> embedded_hal::digital::ErrorKind {
        embedded_hal::digital::ErrorKind::Other
    }
}

impl GpioOut {
    fn request(chip: &Path, line: u32, role: &str) -> Result<Self> {
        let req = gpiocdev::Request::builder()
            .on_chip(chip)
            .with_consumer(format!("gestalt-edge panel {role}"))
            .with_line(line)
            .as_output(gpiocdev::line::Value::Active)
            .request()
            .map_err(|e| {
                Error::io(
                    chip,
                    std::io::Error::other(format!(
                        "cannot claim GPIO line {line} for the panel's {role}: {e}"
                    )),
                )
            })?;
        Ok(GpioOut { req, line })
    }
}

impl embedded_hal::digital::ErrorType for GpioOut {
    type Error = GpioError;
}

impl OutputPin for GpioOut {
    fn set_low(&mut self) -> std::result::Result<(), GpioError> {
        self.req
            .set_value(self.line, gpiocdev::line::Value::Inactive)
            .map_err(|e| GpioError(e.to_string()))
    }
    fn set_high(&mut self) -> std::result::Result<(), GpioError> {
        self.req
            .set_value(self.line, gpiocdev::line::Value::Active)
            .map_err(|e| GpioError(e.to_string()))
    }
}

/// 4-wire SPI: DC low for a command byte, high for its arguments and for pixels.
struct SpidevInterface {
    spi: SpidevDevice,
    dc: GpioOut,
    buf: Vec<u8>,
}

impl SpidevInterface {
    fn flush(&mut self) -> std::result::Result<(), String> {
        if !self.buf.is_empty() {
            self.spi.write(&self.buf).map_err(|e| e.to_string())?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl Interface for SpidevInterface {
    type Word = u8;
    type Error = String;
    const KIND: InterfaceKind = InterfaceKind::Serial4Line;

    fn send_command(&mut self, command: u8, args: &[u8]) -> std::result::Result<(), String> {
        self.flush()?;
        self.dc.set_low().map_err(|e| e.0)?;
        self.spi.write(&[command]).map_err(|e| e.to_string())?;
        self.dc.set_high().map_err(|e| e.0)?;
        for chunk in args.chunks(CHUNK_BYTES) {
            self.spi.write(chunk).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn send_pixels<const N: usize>(
        &mut self,
        pixels: impl IntoIterator<Item = [u8; N]>,
    ) -> std::result::Result<(), String> {
        for p in pixels {
            if self.buf.len() + N > CHUNK_BYTES {
                self.flush()?;
            }
            self.buf.extend_from_slice(&p);
        }
        self.flush()
    }

    fn send_repeated_pixel<const N: usize>(
        &mut self,
        pixel: [u8; N],
        count: u32,
    ) -> std::result::Result<(), String> {
        self.send_pixels((0..count).map(|_| pixel))
    }
}

/// What a recording interface saw (shared with the test that reads it).
#[doc(hidden)]
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Recorded {
    /// Commands with their argument bytes, in order.
    pub commands: Vec<(u8, Vec<u8>)>,
    /// Pixels sent after each RAMWR (0x2C), one entry per memory write.
    pub pixel_runs: Vec<Vec<[u8; 2]>>,
}

/// A display interface that records instead of sending (tests; no hardware).
#[doc(hidden)]
#[derive(Debug, Default, Clone)]
pub struct RecordingInterface(pub Rc<RefCell<Recorded>>);

impl Interface for RecordingInterface {
    type Word = u8;
    type Error = std::convert::Infallible;
    const KIND: InterfaceKind = InterfaceKind::Serial4Line;

    fn send_command(&mut self, command: u8, args: &[u8]) -> std::result::Result<(), Self::Error> {
        let mut r = self.0.borrow_mut();
        r.commands.push((command, args.to_vec()));
        if command == 0x2C {
            r.pixel_runs.push(Vec::new());
        }
        Ok(())
    }

    fn send_pixels<const N: usize>(
        &mut self,
        pixels: impl IntoIterator<Item = [u8; N]>,
    ) -> std::result::Result<(), Self::Error> {
        let mut r = self.0.borrow_mut();
        let run = match r.pixel_runs.last_mut() {
            Some(run) => run,
            None => return Ok(()),
        };
        run.extend(pixels.into_iter().map(|p| [p[0], p[N - 1]]));
        Ok(())
    }

    fn send_repeated_pixel<const N: usize>(
        &mut self,
        pixel: [u8; N],
        count: u32,
    ) -> std::result::Result<(), Self::Error> {
        self.send_pixels((0..count).map(|_| pixel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::ScreenSpec;

    struct NoDelay(u64);
    impl DelayNs for NoDelay {
        fn delay_ns(&mut self, ns: u32) {
            self.0 += u64::from(ns);
        }
    }

    fn cfg(model: &str, rotation: u16) -> PanelConfig {
        toml::from_str(&format!(
            "model = '{model}'\ndevice = '/dev/spidev0.0'\ndc_line = 25\nrotation = {rotation}\n"
        ))
        .unwrap()
    }

    fn be(hi_lo: u16) -> [u8; 2] {
        hi_lo.to_be_bytes()
    }

    #[test]
    fn st7789_init_and_one_frame_in_the_panel_window() {
        let rec = RecordingInterface::default();
        let mut delay = NoDelay(0);
        let c = cfg("st7789", 90);
        let mut s = SpiScreen::with_interface(
            rec.clone(),
            &c,
            (320, 240),
            None::<mipidsi::NoResetPin>,
            &mut delay,
        )
        .unwrap();
        let init: Vec<u8> = rec.0.borrow().commands.iter().map(|c| c.0).collect();
        // software reset (no RST line), sleep out, MADCTL, invert on, COLMOD, normal, display on
        assert_eq!(init, vec![0x01, 0x11, 0x36, 0x21, 0x3A, 0x13, 0x29]);
        let colmod = rec.0.borrow().commands[4].1.clone();
        assert_eq!(colmod, vec![0x55], "16 bits per pixel");
        assert!(delay.0 >= 120_000_000, "waits after display on");
        assert_eq!(s.size(), (320, 240));

        rec.0.borrow_mut().commands.clear();
        s.show(&Scene::Message {
            title: "Hello",
            detail: "panel",
        })
        .unwrap();
        let r = rec.0.borrow();
        let cmds: Vec<u8> = r.commands.iter().map(|c| c.0).collect();
        assert_eq!(
            cmds,
            vec![0x2A, 0x2B, 0x2C],
            "CASET, RASET, RAMWR once per frame"
        );
        assert_eq!(r.commands[0].1, [be(0), be(319)].concat(), "columns 0..319");
        assert_eq!(r.commands[1].1, [be(0), be(239)].concat(), "rows 0..239");
        assert_eq!(r.pixel_runs.len(), 1);
        assert_eq!(r.pixel_runs[0].len(), 320 * 240);
        // the frame is the PNG path's frame, in RGB565 big-endian
        let want = PngCanvas::render(
            320,
            240,
            &Scene::Message {
                title: "Hello",
                detail: "panel",
            },
        );
        for (i, p) in want.pixels().enumerate().step_by(997) {
            let c = Rgb565::from(Rgb888::new(p.0[0], p.0[1], p.0[2]));
            let v = embedded_graphics::pixelcolor::raw::ToBytes::to_be_bytes(c);
            assert_eq!(r.pixel_runs[0][i], v, "pixel {i}");
        }
    }

    #[test]
    fn ili9341_with_reset_line_offsets_and_bgr() {
        #[derive(Default, Clone)]
        struct Pin(Rc<RefCell<Vec<bool>>>);
        impl embedded_hal::digital::ErrorType for Pin {
            type Error = std::convert::Infallible;
        }
        impl OutputPin for Pin {
            fn set_low(&mut self) -> std::result::Result<(), Self::Error> {
                self.0.borrow_mut().push(false);
                Ok(())
            }
            fn set_high(&mut self) -> std::result::Result<(), Self::Error> {
                self.0.borrow_mut().push(true);
                Ok(())
            }
        }
        let rec = RecordingInterface::default();
        let pin = Pin::default();
        let mut c = cfg("ili9341", 0);
        c.colour_order = ColourOrder::Bgr;
        let mut s = SpiScreen::with_interface(
            rec.clone(),
            &c,
            (240, 320),
            Some(pin.clone()),
            &mut NoDelay(0),
        )
        .unwrap();
        assert_eq!(*pin.0.borrow(), vec![false, true], "hardware reset pulse");
        let r = rec.0.borrow().clone();
        assert!(!r.commands.iter().any(|c| c.0 == 0x01), "no software reset");
        let madctl = r.commands.iter().find(|c| c.0 == 0x36).unwrap();
        assert_eq!(madctl.1[0] & 0x08, 0x08, "BGR bit set");
        assert!(
            r.commands.iter().any(|c| c.0 == 0x20),
            "no inversion on ILI9341"
        );
        rec.0.borrow_mut().pixel_runs.clear();
        s.show(&Scene::Message {
            title: "T",
            detail: "d",
        })
        .unwrap();
        assert_eq!(rec.0.borrow().pixel_runs[0].len(), 240 * 320);
        // a size that does not fit the glass is refused before touching the wire
        let e = SpiScreen::with_interface(
            RecordingInterface::default(),
            &c,
            (320, 240),
            None::<mipidsi::NoResetPin>,
            &mut NoDelay(0),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e}");
    }

    #[test]
    fn missing_spidev_is_a_clear_error() {
        let mut c = cfg("st7789", 90);
        c.device = "/dev/spidev9.9".into();
        let e = SpiScreen::open(&c, (320, 240)).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("/dev/spidev9.9") && m.contains("SPI"), "{m}");
        let e = crate::display::open_with(
            &ScreenSpec::Spi,
            (320, 240),
            crate::display::FbFormat::Rgb565,
            Some(&c),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("/dev/spidev9.9"), "{e}");
    }
}
