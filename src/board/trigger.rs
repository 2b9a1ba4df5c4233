//! Capture triggers: where the device loop's operator [`Command`]s come from.
//!
//! Consumes whatever an operator can press (a channel fed by the keyboard thread, the keys
//! of a window screen, a GPIO button: [`super::button`], feature `gpio`) and produces
//! commands through one small trait, [`CommandSource`], polled without blocking; [`Merged`]
//! polls several in turn. Also holds the board profile's `[button]` settings and the
//! debouncer the GPIO button uses (pure, so it is tested without hardware). Without any
//! source the loop still captures on its own when a steady face passes the gate.

use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::device::Command;
use crate::display::{ScreenInput, ScreenKeys};

/// Something that yields operator commands, polled by the loop between frames and while it
/// waits (every 100 ms at most).
pub trait CommandSource {
    /// The next pending command, if any; never blocks.
    fn poll(&mut self) -> Option<Command>;
}

impl CommandSource for Receiver<Command> {
    fn poll(&mut self) -> Option<Command> {
        self.try_recv().ok()
    }
}

/// The keys of a screen (a desktop window) as commands.
pub struct ScreenCommands(pub Box<dyn ScreenKeys>);

impl CommandSource for ScreenCommands {
    fn poll(&mut self) -> Option<Command> {
        self.0.poll().map(|i| match i {
            ScreenInput::Capture => Command::Capture,
            ScreenInput::Quit => Command::Quit,
        })
    }
}

/// Several sources polled in order; the first with a command wins this poll, the others
/// keep theirs for the next.
#[derive(Default)]
pub struct Merged<'a> {
    sources: Vec<Box<dyn CommandSource + 'a>>,
}

impl<'a> Merged<'a> {
    /// No sources yet.
    pub fn new() -> Self {
        Merged {
            sources: Vec::new(),
        }
    }

    /// Adds `source`, polled after those added before.
    pub fn push(&mut self, source: Box<dyn CommandSource + 'a>) {
        self.sources.push(source);
    }

    /// How many sources.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// True without sources.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

impl CommandSource for Merged<'_> {
    fn poll(&mut self) -> Option<Command> {
        self.sources.iter_mut().find_map(|s| s.poll())
    }
}

/// Pull resistor on the button's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Bias {
    /// Pull up (a button to ground, `active_low = true`).
    #[default]
    PullUp,
    /// Pull down (a button to 3.3 V).
    PullDown,
    /// Leave the line floating (an external resistor is fitted).
    None,
}

fn default_true() -> bool {
    true
}

fn default_debounce() -> u32 {
    50
}

/// A capture button (a board profile's `[button]` section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ButtonSettings {
    /// GPIO character device (`/dev/gpiochip0`).
    pub chip: PathBuf,
    /// Line offset on the chip (the BCM number on a Pi: `17` is header pin 11).
    pub line: u32,
    /// Pressed reads low (a button to ground with a pull-up): the usual wiring.
    #[serde(default = "default_true")]
    pub active_low: bool,
    /// Pull resistor.
    #[serde(default)]
    pub bias: Bias,
    /// Presses closer than this to the last accepted one are contact bounce, milliseconds.
    #[serde(default = "default_debounce")]
    pub debounce_ms: u32,
}

/// Accepts a press only when the last accepted one is at least `period` older (timestamps
/// in nanoseconds from any monotonic clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debounce {
    period_ns: u64,
    last_ns: Option<u64>,
}

impl Debounce {
    /// A debouncer with `period` between accepted presses.
    pub fn new(period: Duration) -> Self {
        Debounce {
            period_ns: u64::try_from(period.as_nanos()).unwrap_or(u64::MAX),
            last_ns: None,
        }
    }

    /// True when a press at `at_ns` counts (and remembers it); a timestamp before the last
    /// accepted one (a clock step) counts too.
    pub fn accept(&mut self, at_ns: u64) -> bool {
        let ok = match self.last_ns {
            None => true,
            Some(last) => at_ns < last || at_ns - last >= self.period_ns,
        };
        if ok {
            self.last_ns = Some(at_ns);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    struct Script(Vec<Option<Command>>);
    impl CommandSource for Script {
        fn poll(&mut self) -> Option<Command> {
            if self.0.is_empty() {
                None
            } else {
                self.0.remove(0)
            }
        }
    }

    #[test]
    fn merged_polls_every_source_in_order() {
        let (tx, rx) = mpsc::channel();
        let mut m = Merged::new();
        assert!(m.is_empty());
        m.push(Box::new(rx));
        m.push(Box::new(Script(vec![Some(Command::Quit), None])));
        tx.send(Command::Capture).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m.poll(), Some(Command::Capture));
        assert_eq!(m.poll(), Some(Command::Quit));
        assert_eq!(m.poll(), None);
        drop(tx);
        assert_eq!(m.poll(), None, "a closed channel is no command");
    }

    #[test]
    fn screen_keys_map_to_commands() {
        struct Keys(Vec<ScreenInput>);
        impl ScreenKeys for Keys {
            fn poll(&mut self) -> Option<ScreenInput> {
                self.0.pop()
            }
        }
        let mut c = ScreenCommands(Box::new(Keys(vec![
            ScreenInput::Quit,
            ScreenInput::Capture,
        ])));
        assert_eq!(c.poll(), Some(Command::Capture));
        assert_eq!(c.poll(), Some(Command::Quit));
        assert_eq!(c.poll(), None);
    }

    #[test]
    fn debounce_drops_bounces() {
        let ms = 1_000_000u64;
        let mut d = Debounce::new(Duration::from_millis(50));
        let got: Vec<bool> = [0, 2, 10, 49, 50, 51, 200, 120]
            .iter()
            .map(|t| d.accept(t * ms + 1_000 * ms))
            .collect();
        assert_eq!(
            got,
            vec![true, false, false, false, true, false, true, true]
        );
    }

    #[test]
    fn button_settings_defaults() {
        let b: ButtonSettings = toml::from_str("chip = '/dev/gpiochip0'\nline = 17\n").unwrap();
        assert!(b.active_low);
        assert_eq!((b.bias, b.debounce_ms), (Bias::PullUp, 50));
        assert!(toml::from_str::<ButtonSettings>("chip = 'c'\nline = 1\npin = 3\n").is_err());
        let b: ButtonSettings =
            toml::from_str("chip = 'c'\nline = 1\nbias = 'pull-down'\nactive_low = false\n")
                .unwrap();
        assert_eq!(b.bias, Bias::PullDown);
    }
}
