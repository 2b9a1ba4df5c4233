//! Board profiles: the shipped ones parse, unknown names and bad files are refused, a
//! bundle of the wrong precision is refused, and no profile writes face pixels to a file.

use super::*;
use crate::Error;

#[test]
fn shipped_profiles_parse_and_match_their_names() {
    for (name, _) in KNOWN {
        let b = Board::load(name).unwrap();
        assert_eq!(b.board.name, *name);
        assert!(b.board.target.ends_with("-unknown-linux-gnu"));
        assert!(b.quality.steady_frames >= 1);
        b.screen.spec().unwrap();
    }
    assert_eq!(Board::load("rpi4").unwrap().board.threads, Some(4));
    assert_eq!(
        Board::load("rpi4").unwrap().board.target,
        "aarch64-unknown-linux-gnu"
    );
}

#[test]
fn unknown_board_lists_the_known_ones() {
    let e = Board::load("rpi3").unwrap_err();
    assert!(matches!(e, Error::Usage(_)), "{e}");
    let m = e.to_string();
    for n in ["rpi4", "rpi5", "jetson-orin-nano", "x86-dev"] {
        assert!(m.contains(n), "{m}");
    }
}

#[test]
fn profile_files_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mine.toml");
    let text = KNOWN[0].1.replace("threads = 4", "threads = 0");
    std::fs::write(&p, text).unwrap();
    let e = Board::load(p.to_str().unwrap()).unwrap_err();
    assert!(e.to_string().contains("threads must be at least 1"), "{e}");
    std::fs::write(&p, "[board]\nname = 'x'\ncolour = 1\n").unwrap();
    assert!(Board::load(p.to_str().unwrap()).is_err());
    let e = Board::load("missing/board.toml").unwrap_err();
    assert!(e.to_string().contains("cannot read"), "{e}");
}

#[test]
fn a_bundle_of_the_wrong_precision_is_refused_naming_both() {
    let m = std::path::Path::new("bundle.toml");
    let rpi4 = Board::load("rpi4").unwrap();
    let e = check_precision(&rpi4, Precision::F32, m).unwrap_err();
    assert!(matches!(e, Error::Bundle { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("board rpi4 runs int8 bundles but this bundle is f32"),
        "{msg}"
    );
    check_precision(&rpi4, Precision::Int8, m).unwrap();
    let dev = Board::load("x86-dev").unwrap();
    let msg = check_precision(&dev, Precision::Int8, m)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("runs f32 bundles but this bundle is int8"),
        "{msg}"
    );
}

#[test]
fn no_shipped_profile_writes_the_screen_to_a_file() {
    for name in known_names() {
        let b = Board::load(name).unwrap();
        assert_ne!(b.screen.kind, ScreenKind::Png, "{name}");
    }
}
