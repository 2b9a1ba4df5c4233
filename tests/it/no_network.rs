//! No network: the binary opens no sockets of any kind, and no dependency that speaks a
//! network protocol is compiled in.
//!
//! Proofs: (1) every networking system call (strace's `%network` class: socket, connect,
//! bind, sendto, ...) of `predict`, `gallery build`, `gallery add` and `sign`, and of every
//! thread and child they start, is logged, and the log must be empty; a positive control
//! shows the same strace invocation does log a program that opens a socket. (2) `predict`
//! gives the same result inside a fresh network namespace (`unshare -n`: no interface at
//! all, not even loopback). (3) `cargo tree` lists no networking crate, with every feature on.
//! Needs strace and unshare (Debian: strace, util-linux) and root or CAP_SYS_ADMIN for (2).

use crate::util;

use std::path::Path;
use std::process::{Command, Output};
use util::*;

fn have(tool: &str) {
    let found = Command::new(tool).arg("--version").output().is_ok();
    assert!(
        found,
        "{tool} is needed by this test and was not found (Debian: apt-get install {})",
        if tool == "strace" {
            "strace"
        } else {
            "util-linux"
        }
    );
}

/// Runs `program args` under `strace -f -e trace=%network`; returns the run and the syscall
/// lines strace logged.
fn traced(dir: &Path, program: &Path, args: &[&std::ffi::OsStr]) -> (Output, Vec<String>) {
    have("strace");
    let log = dir.join(format!("strace-{}.log", args.len()));
    let o = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "signal=none",
            "-e",
            "trace=%network",
            "-o",
        ])
        .arg(&log)
        .arg(program)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(root())
        .output()
        .expect("run strace");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let calls = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    (o, calls)
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_gestalt-edge"))
}

#[test]
fn strace_sees_a_socket_when_one_is_opened() {
    // positive control: the same tracing logs python's socket() call
    let d = tempdir();
    let python = Path::new("python3");
    let (o, calls) = traced(
        d.path(),
        python,
        &["-c".as_ref(), "import socket; socket.socket()".as_ref()],
    );
    assert!(o.status.success(), "{o:?}");
    assert!(
        calls.iter().any(|c| c.contains("socket(AF_INET")),
        "strace logged no socket call: {calls:?}"
    );
}

#[test]
fn predict_gallery_and_sign_open_no_sockets() {
    let d = tempdir();
    let bundle = demo_bundle();
    let gallery = d.path().join("g.gallery");
    let labels = root().join("models/demo/labels.csv");
    let key = d.path().join("key");
    let runs: Vec<Vec<&std::ffi::OsStr>> = vec![
        vec![
            "gallery".as_ref(),
            "build".as_ref(),
            "--bundle".as_ref(),
            bundle.as_os_str(),
            "--labels".as_ref(),
            labels.as_os_str(),
            "--out".as_ref(),
            gallery.as_os_str(),
        ],
        vec![
            "predict".as_ref(),
            "--json".as_ref(),
            "--bundle".as_ref(),
            bundle.as_os_str(),
            "--gallery".as_ref(),
            gallery.as_os_str(),
            demo_photo("person_b_2.jpg").into_os_string().leak(),
        ],
        vec![
            "gallery".as_ref(),
            "add".as_ref(),
            "--bundle".as_ref(),
            bundle.as_os_str(),
            "--gallery".as_ref(),
            gallery.as_os_str(),
            "--image".as_ref(),
            demo_photo("person_a_2.jpg").into_os_string().leak(),
            "--label".as_ref(),
            "Demo identity A".as_ref(),
        ],
        vec!["sign".as_ref(), "--generate-key".as_ref(), key.as_os_str()],
    ];
    for args in &runs {
        let (o, calls) = traced(d.path(), bin(), args);
        let (code, out, err) = parts(&o);
        assert_eq!(code, 0, "{args:?}: {out}\n{err}");
        assert!(
            calls.is_empty(),
            "{args:?} made network system calls: {calls:#?}"
        );
    }
}

#[test]
fn predict_works_in_a_network_namespace_without_interfaces() {
    have("unshare");
    let args = |c: &mut Command| {
        c.args(["predict", "--json", "--bundle"])
            .arg(demo_bundle())
            .arg("--gallery")
            .arg(demo_gallery())
            .arg(demo_photo("person_b_2.jpg"));
    };
    let mut isolated = Command::new("unshare");
    isolated.arg("-n").arg(bin());
    args(&mut isolated);
    let o = isolated.current_dir(root()).output().expect("run unshare");
    let (code, out, err) = parts(&o);
    assert!(
        !err.contains("unshare failed"),
        "unshare -n needs root or CAP_SYS_ADMIN: {err}"
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let mut plain = cmd();
    args(&mut plain);
    let top = |s: &str| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(s).unwrap();
        v[0]["suggested_syndromes_list"][0].clone()
    };
    let (_, expected, _) = parts(&plain.output().unwrap());
    assert_eq!(top(&out)["syndrome_name"], "Demo identity B");
    assert_eq!(top(&out), top(&expected));
}

#[test]
fn no_networking_crate_is_compiled_in() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let o = Command::new(cargo)
        .args([
            "tree",
            "--locked",
            "--offline",
            "--all-features",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "-f",
            "{p}",
        ])
        .current_dir(root())
        .output()
        .expect("run cargo tree");
    let (code, out, err) = parts(&o);
    assert_eq!(code, 0, "cargo tree: {err}");
    let crates: std::collections::BTreeSet<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        crates.contains("tract-onnx") && crates.contains("image"),
        "{crates:?}"
    );
    let networking = [
        "hyper",
        "reqwest",
        "ureq",
        "h2",
        "http",
        "tokio",
        "mio",
        "socket2",
        "rustls",
        "native-tls",
        "openssl",
        "openssl-sys",
        "curl",
        "curl-sys",
        "isahc",
        "surf",
        "async-std",
        "tungstenite",
        "quinn",
        "trust-dns-resolver",
        "hickory-resolver",
        "attohttpc",
        "minreq",
        "ehttp",
    ];
    let found: Vec<&&str> = networking.iter().filter(|n| crates.contains(**n)).collect();
    assert!(
        found.is_empty(),
        "networking crates in the build: {found:?}"
    );
}
