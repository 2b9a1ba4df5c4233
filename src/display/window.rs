//! The desktop window screen (feature `window`): the embedded-graphics simulator over SDL2.
//!
//! Consumes scenes, drawn by the same [`layout`] code as every other screen into a
//! `SimulatorDisplay<Rgb888>` of the screen's size, and shows them in an SDL window (pixel
//! for pixel, no scaling). Produces operator input from the window ([`WindowKeys`]): space or
//! Enter capture, Esc or closing the window quit. SDL lives on the thread that opened the
//! window: the screen and its keys stay on that thread (neither is `Send`). Opening checks
//! that SDL video comes up and returns an error value when it does not (no display, no
//! driver), instead of the simulator's panic. The simulator itself honours its own
//! `EG_SIMULATOR_*` variables (dump or check a PNG, then exit the process); leave them unset.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics_simulator::sdl2::Keycode;
use embedded_graphics_simulator::{
    OutputSettingsBuilder, SimulatorDisplay, SimulatorEvent, Window,
};
use image::RgbImage;

use super::{layout, Scene, Screen, ScreenInput, ScreenKeys};
use crate::{Error, Result};

struct Shared {
    display: SimulatorDisplay<Rgb888>,
    window: Window,
    /// Input seen while the screen was redrawn, handed out by the next poll.
    pending: Vec<ScreenInput>,
    /// Keeps SDL initialised for the window's lifetime.
    _sdl: sdl2::Sdl,
}

impl Shared {
    /// Drains the window's events into `pending`.
    fn pump(&mut self) {
        let events: Vec<SimulatorEvent> = self.window.events().collect();
        self.pending
            .extend(events.into_iter().filter_map(|e| input_of(&e)));
    }
}

/// What a window event means to the device loop: space or Enter (main or keypad) capture,
/// Esc or closing the window quit, anything else nothing.
pub fn input_of(e: &SimulatorEvent) -> Option<ScreenInput> {
    match e {
        SimulatorEvent::Quit => Some(ScreenInput::Quit),
        SimulatorEvent::KeyDown {
            keycode,
            repeat: false,
            ..
        } => match *keycode {
            Keycode::SPACE | Keycode::RETURN | Keycode::KP_ENTER => Some(ScreenInput::Capture),
            Keycode::ESCAPE => Some(ScreenInput::Quit),
            _ => None,
        },
        _ => None,
    }
}

/// A desktop window as a screen.
pub struct WindowScreen {
    shared: Rc<RefCell<Shared>>,
    size: (u32, u32),
}

impl std::fmt::Debug for WindowScreen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WindowScreen({}x{})", self.size.0, self.size.1)
    }
}

fn sdl_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Usage(format!(
        "the `window` screen cannot be opened: {what}: {e} (no desktop session? set DISPLAY or WAYLAND_DISPLAY, or use png:FILE / fb:/dev/fbN)"
    ))
}

impl WindowScreen {
    /// Opens a `size` window titled `title` and shows an empty screen in it.
    pub fn open(title: &str, size: (u32, u32)) -> Result<Self> {
        if size.0 == 0 || size.1 == 0 || size.0 > 8192 || size.1 > 8192 {
            return Err(Error::Usage(format!(
                "window size {}x{} is not a usable screen size",
                size.0, size.1
            )));
        }
        // SDL must come up before the simulator touches it: the simulator unwraps
        let sdl = sdl2::init().map_err(|e| sdl_error("SDL", e))?;
        {
            let video = sdl.video().map_err(|e| sdl_error("SDL video", e))?;
            let probe = video
                .window("gestalt-edge", size.0, size.1)
                .hidden()
                .build()
                .map_err(|e| sdl_error("window", e))?;
            probe
                .into_canvas()
                .build()
                .map_err(|e| sdl_error("renderer", e))?;
        }
        let settings = OutputSettingsBuilder::new()
            .scale(1)
            .pixel_spacing(0)
            .build();
        let mut window = Window::new(title, &settings);
        window.set_max_fps(1000);
        let display = SimulatorDisplay::new(Size::new(size.0, size.1));
        let shared = Shared {
            display,
            window,
            pending: Vec::new(),
            _sdl: sdl,
        };
        let shared = Rc::new(RefCell::new(shared));
        let mut s = WindowScreen { shared, size };
        s.present()?;
        Ok(s)
    }

    /// Copies the display into the window and collects its events.
    fn present(&mut self) -> Result<()> {
        let mut guard = self.shared.borrow_mut();
        let sh = &mut *guard;
        // the simulator unwraps SDL results (texture update, first window): keep a failure a value
        catch_unwind(AssertUnwindSafe(|| {
            sh.window.update(&sh.display);
            sh.pump();
        }))
        .map_err(|_| sdl_error("SDL", "drawing into the window failed"))
    }

    /// The pixels currently shown (what the last [`Screen::show`] drew), as RGB.
    pub fn pixels(&self) -> RgbImage {
        let sh = self.shared.borrow();
        RgbImage::from_fn(self.size.0, self.size.1, |x, y| {
            let c = sh.display.get_pixel(Point::new(x as i32, y as i32));
            image::Rgb([c.r(), c.g(), c.b()])
        })
    }
}

impl Screen for WindowScreen {
    fn show(&mut self, scene: &Scene) -> Result<()> {
        {
            let mut sh = self.shared.borrow_mut();
            let Ok(()) = layout::draw_scene(&mut sh.display, scene);
        }
        self.present()
    }

    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn describe(&self) -> String {
        format!(
            "window {}x{} (space/Enter: capture, Esc: quit)",
            self.size.0, self.size.1
        )
    }

    fn keys(&mut self) -> Option<Box<dyn ScreenKeys>> {
        Some(Box::new(WindowKeys {
            shared: Rc::clone(&self.shared),
        }))
    }
}

/// The window's keys, polled by the device loop (also while it waits, which keeps the
/// window responsive).
pub struct WindowKeys {
    shared: Rc<RefCell<Shared>>,
}

impl ScreenKeys for WindowKeys {
    fn poll(&mut self) -> Option<ScreenInput> {
        let mut sh = self.shared.borrow_mut();
        if sh.pending.is_empty() {
            let sh = &mut *sh;
            // a poll that panics inside SDL is no input
            let _ = catch_unwind(AssertUnwindSafe(|| sh.pump()));
        }
        if sh.pending.is_empty() {
            None
        } else {
            Some(sh.pending.remove(0))
        }
    }
}

#[cfg(test)]
mod tests {
    //! SDL may be initialised from one thread per process only: everything that opens a
    //! window is in this one test (under the dummy video driver, which needs no display).
    use super::*;
    use crate::display::PngCanvas;
    use sdl2::event::Event;
    use sdl2::keyboard::{Keycode as K, Mod};

    fn key(sdl: &sdl2::Sdl, code: K) {
        let ev = sdl.event().unwrap();
        ev.push_event(Event::KeyDown {
            timestamp: 0,
            window_id: 0,
            keycode: Some(code),
            scancode: None,
            keymod: Mod::NOMOD,
            repeat: false,
        })
        .unwrap();
    }

    #[test]
    fn window_shows_the_png_pixels_and_maps_keys() {
        // SAFETY of intent: the variable is only read by SDL on this thread
        std::env::set_var("SDL_VIDEODRIVER", "dummy");
        let e = WindowScreen::open("t", (0, 240)).unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e}");
        let mut w = WindowScreen::open("gestalt-edge test", (320, 240)).unwrap();
        assert_eq!(Screen::size(&w), (320, 240));
        let scene = Scene::Message {
            title: "Analysing...",
            detail: "Comparing the face with the gallery.",
        };
        w.show(&scene).unwrap();
        let want = PngCanvas::render(320, 240, &scene);
        assert_eq!(w.pixels(), want, "window pixels equal the PNG path's");
        let mut keys = w.keys().unwrap();
        assert_eq!(keys.poll(), None);
        let sdl = sdl2::init().unwrap();
        key(&sdl, K::A);
        key(&sdl, K::SPACE);
        key(&sdl, K::RETURN);
        key(&sdl, K::ESCAPE);
        let got: Vec<_> = std::iter::from_fn(|| keys.poll()).collect();
        assert_eq!(
            got,
            vec![
                ScreenInput::Capture,
                ScreenInput::Capture,
                ScreenInput::Quit
            ]
        );
        sdl.event()
            .unwrap()
            .push_event(Event::Quit { timestamp: 0 })
            .unwrap();
        assert_eq!(keys.poll(), Some(ScreenInput::Quit));
        // a redraw keeps input that arrives meanwhile for the next poll
        key(&sdl, K::KP_ENTER);
        w.show(&scene).unwrap();
        assert_eq!(keys.poll(), Some(ScreenInput::Capture));
        assert_eq!(keys.poll(), None);
    }
}
