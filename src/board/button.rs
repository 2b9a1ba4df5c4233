//! A capture button on a GPIO line (feature `gpio`), through the Linux GPIO character device.
//!
//! Consumes [`ButtonSettings`] (chip, line, active low, bias, debounce); produces
//! [`Command::Capture`] once per press: the kernel reports edges of the line's logical value
//! (a press is a rising edge, also for an active-low button), filtered by the kernel's
//! debounce when the chip offers it and by [`Debounce`] in any case. Opening a chip that is
//! missing or a line that is taken is an error naming them; the caller then runs on the
//! automatic trigger alone.

use std::time::Duration;

use gpiocdev::line::{EdgeDetection, EdgeKind};
use gpiocdev::Request;

use super::device::Command;
use super::trigger::{Bias, ButtonSettings, CommandSource, Debounce};
use crate::{Error, Result};

/// A button as a command source.
pub struct GpioButton {
    req: Request,
    debounce: Debounce,
    label: String,
}

impl std::fmt::Debug for GpioButton {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label)
    }
}

fn request(s: &ButtonSettings, kernel_debounce: bool) -> gpiocdev::Result<Request> {
    let mut b = Request::builder();
    b.on_chip(&s.chip)
        .with_consumer("gestalt-edge capture button")
        .with_line(s.line)
        .as_input()
        .with_edge_detection(EdgeDetection::BothEdges)
        .with_bias(match s.bias {
            Bias::PullUp => Some(gpiocdev::line::Bias::PullUp),
            Bias::PullDown => Some(gpiocdev::line::Bias::PullDown),
            Bias::None => Some(gpiocdev::line::Bias::Disabled),
        });
    if s.active_low {
        b.as_active_low();
    }
    if kernel_debounce && s.debounce_ms > 0 {
        b.with_debounce_period(Duration::from_millis(u64::from(s.debounce_ms)));
    }
    b.request()
}

impl GpioButton {
    /// Claims the line of `s` for edge events.
    pub fn open(s: &ButtonSettings) -> Result<Self> {
        if !s.chip.exists() {
            return Err(Error::io(
                &s.chip,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such GPIO chip for the capture button (wrong `chip` in [button]?)",
                ),
            ));
        }
        // some chips refuse a debounce period: fall back to debouncing here alone
        let req = request(s, true)
            .or_else(|_| request(s, false))
            .map_err(|e| {
                Error::io(
                    &s.chip,
                    std::io::Error::other(format!(
                        "cannot claim GPIO line {} for the capture button: {e} (in use? user in group gpio?)",
                        s.line
                    )),
                )
            })?;
        Ok(GpioButton {
            req,
            debounce: Debounce::new(Duration::from_millis(u64::from(s.debounce_ms))),
            label: format!(
                "button {} line {}{}",
                s.chip.display(),
                s.line,
                if s.active_low { " (active low)" } else { "" }
            ),
        })
    }

    /// A short name for messages.
    pub fn describe(&self) -> String {
        self.label.clone()
    }
}

impl CommandSource for GpioButton {
    fn poll(&mut self) -> Option<Command> {
        while self.req.has_edge_event().unwrap_or(false) {
            let Ok(ev) = self.req.read_edge_event() else {
                return None;
            };
            if ev.kind == EdgeKind::Rising && self.debounce.accept(ev.timestamp_ns) {
                return Some(Command::Capture);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_chip_is_a_clear_error() {
        let s: ButtonSettings = toml::from_str("chip = '/dev/gpiochip-none'\nline = 17\n").unwrap();
        let e = GpioButton::open(&s).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("/dev/gpiochip-none") && m.contains("button"),
            "{m}"
        );
        // a file that is no GPIO chip: the claim fails with the line named
        let f = tempfile::NamedTempFile::new().unwrap();
        let s = ButtonSettings {
            chip: f.path().to_path_buf(),
            ..s
        };
        let m = GpioButton::open(&s).unwrap_err().to_string();
        assert!(m.contains("line 17"), "{m}");
    }
}
