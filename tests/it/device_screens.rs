//! The screens and triggers behind cargo features, through `gestalt-edge run --once` on the
//! real demo bundle: the SDL window (feature `window`, under SDL's dummy video driver, so
//! no display is needed), an SPI panel that is not wired here (feature `spi`: a clear
//! warning, the run goes on), and a capture button on a GPIO chip that does not exist
//! (feature `gpio`, or the build without it): a clear warning, the automatic trigger
//! captures. The panel driver's wire protocol and the window's pixels are checked in the
//! unit tests of `display::spi` and `display::window`.

use crate::util;

use std::ffi::OsString;

use util::*;

fn args(board: &str, screen: Option<&str>) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![
        "run".into(),
        "--board".into(),
        board.into(),
        "--bundle".into(),
        demo_bundle().into(),
        "--gallery".into(),
        demo_gallery().into(),
        "--source".into(),
        demo_photo("person_a_2.jpg").into(),
        "--once".into(),
        "--json".into(),
    ];
    if let Some(s) = screen {
        v.extend(["--screen".into(), s.into()]);
    }
    v
}

fn top1(out: &str) -> String {
    let p: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    p["top5"][0]["syndrome_name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[cfg(feature = "window")]
#[test]
fn window_screen_runs_once_headless() {
    let o = cmd()
        .args(args("x86-dev", Some("window")))
        .env("SDL_VIDEODRIVER", "dummy")
        .output()
        .unwrap();
    let (code, out, err) = parts(&o);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("window 320x240"),
        "the window was opened: {err}"
    );
    assert!(!err.contains("cannot be opened"), "{err}");
    assert_eq!(top1(&out), "Demo identity A");
}

#[cfg(feature = "window")]
#[test]
fn window_without_a_display_is_reported_and_the_run_goes_on() {
    // no DISPLAY, no WAYLAND_DISPLAY, an unknown driver: SDL video cannot start
    let o = cmd()
        .args(args("x86-dev", Some("window")))
        .env("SDL_VIDEODRIVER", "no-such-driver")
        .output()
        .unwrap();
    let (code, out, err) = parts(&o);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("`window` screen cannot be opened")
            && err.contains("running without a screen"),
        "{err}"
    );
    assert_eq!(top1(&out), "Demo identity A");
}

#[cfg(not(feature = "window"))]
#[test]
fn window_needs_the_feature() {
    let (code, out, err) = parts(&run(args("x86-dev", Some("window"))));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("--features window"), "{err}");
}

#[test]
fn spi_panel_that_is_not_there_is_reported_and_the_run_goes_on() {
    // rpi4-spi: an ST7789 on /dev/spidev0.0 and a button on /dev/gpiochip0, neither exists here
    assert!(
        !std::path::Path::new("/dev/spidev0.0").exists(),
        "this test expects a machine without SPI"
    );
    // the profile runs int8 bundles; the demo bundle is f32, so a copy that says f32
    let dir = tempdir();
    let text = std::fs::read_to_string(root().join("boards/rpi4-spi.toml")).unwrap();
    let f32_text = text.replace("precision = \"int8\"", "precision = \"f32\"");
    assert_ne!(f32_text, text);
    let profile = write(dir.path(), "rpi4-spi-f32.toml", f32_text.as_bytes());
    let (code, out, err) = parts(&run(args(profile.to_str().unwrap(), None)));
    assert_eq!(code, 0, "{out}\n{err}");
    let want = if cfg!(feature = "spi") {
        "/dev/spidev0.0"
    } else {
        "--features spi"
    };
    assert!(
        err.contains("cannot be opened") && err.contains(want),
        "{err}"
    );
    assert!(err.contains("running without a screen"), "{err}");
    let want = if cfg!(feature = "gpio") {
        "the capture button cannot be used"
    } else {
        "this build has no GPIO support"
    };
    assert!(err.contains(want) && err.contains("gpiochip0"), "{err}");
    assert!(
        err.contains("capture: a new photo with a face"),
        "the photo is still analysed: {err}"
    );
    assert_eq!(top1(&out), "Demo identity A");
}

#[test]
fn spi_settings_are_checked_when_the_profile_is_read() {
    let dir = tempdir();
    let text = std::fs::read_to_string(root().join("boards/rpi4-spi.toml")).unwrap();
    let p = write(
        dir.path(),
        "big.toml",
        text.replace("width = 320\nheight = 240", "width = 480\nheight = 320")
            .as_bytes(),
    );
    let mut a = args(p.to_str().unwrap(), None);
    a[2] = p.clone().into();
    let o = run(a);
    expect_failure(&o, 2, &["[screen.spi]", "frame memory"]);
}
