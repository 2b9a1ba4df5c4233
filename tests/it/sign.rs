//! Signed bundles and galleries, end to end on the demo bundle: `sign --generate-key`, `sign
//! --key`, then `predict --public-key` accepts the signed files and refuses a tampered,
//! unsigned or foreign-signed one with exit code 7 and its own message.

use crate::util;

use std::path::{Path, PathBuf};
use util::*;

/// A copy of the demo manifest in `dir` with the models beside it (a manifest may name only
/// files inside its own folder).
fn bundle_copy(dir: &Path) -> PathBuf {
    demo_bundle_copy(dir)
}

fn predict(bundle: &Path, gallery: &Path, public: Option<&Path>) -> std::process::Output {
    let mut c = cmd();
    c.args(["predict", "--json", "--bundle"])
        .arg(bundle)
        .arg("--gallery")
        .arg(gallery);
    if let Some(p) = public {
        c.arg("--public-key").arg(p);
    }
    c.arg(demo_photo("person_b_2.jpg")).output().unwrap()
}

fn top_syndrome(o: &std::process::Output) -> String {
    let v: serde_json::Value = serde_json::from_str(&ok(o)).unwrap();
    v[0]["suggested_syndromes_list"][0]["syndrome_name"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn generated_keys_have_the_documented_form_and_are_not_overwritten() {
    let d = tempdir();
    let (secret, public) = gen_key(d.path(), "k");
    let s = std::fs::read_to_string(&secret).unwrap();
    let p = std::fs::read_to_string(&public).unwrap();
    assert!(s.starts_with("gestalt-edge ed25519 secret key ") && s.trim().len() == 32 + 64);
    assert!(p.starts_with("gestalt-edge ed25519 public key ") && p.trim().len() == 32 + 64);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "secret key must be owner-only");
    // two keys differ
    let (s2, _) = gen_key(d.path(), "k2");
    assert_ne!(s, std::fs::read_to_string(s2).unwrap());
    let o = run([
        "sign".as_ref(),
        "--generate-key".as_ref(),
        secret.as_os_str(),
    ]);
    expect_failure(&o, 2, &["exists already"]);
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), s);
    // no mode given at all is a usage error
    expect_failure(&run(["sign"]), 2, &[]);
}

#[test]
fn signed_bundle_and_gallery_pass_and_tampering_is_exit_7() {
    let d = tempdir();
    let bundle = bundle_copy(d.path());
    let gallery = d.path().join("demo.gallery");
    std::fs::copy(demo_gallery(), &gallery).unwrap();
    let (secret, public) = gen_key(d.path(), "device-key");

    // unsigned files with a key configured: refused, naming the missing signature
    expect_failure(
        &predict(&bundle, &gallery, Some(&public)),
        7,
        &["bundle.toml", "bundle.toml.sig", "is missing"],
    );
    sign(&secret, &bundle);
    expect_failure(
        &predict(&bundle, &gallery, Some(&public)),
        7,
        &["demo.gallery.sig", "is missing"],
    );
    sign(&secret, &gallery);

    // both signed: the same result as without any check
    let signed = top_syndrome(&predict(&bundle, &gallery, Some(&public)));
    assert_eq!(signed, "Demo identity B");
    assert_eq!(top_syndrome(&predict(&bundle, &gallery, None)), signed);
    let o = cmd()
        .args(["sign", "--verify"])
        .arg(&public)
        .arg("--file")
        .arg(&bundle)
        .arg(&gallery)
        .output()
        .unwrap();
    assert_eq!(ok(&o).matches("signature OK").count(), 2);

    // a manifest edit that keeps the bundle id (description) is still refused
    let text = std::fs::read_to_string(&bundle).unwrap();
    std::fs::write(&bundle, text.replace("not clinical", "clinical")).unwrap();
    expect_failure(
        &predict(&bundle, &gallery, Some(&public)),
        7,
        &["bundle.toml", "changed after it was signed"],
    );
    // without a key the edit is harmless (same bundle id), so the signature is what caught it
    assert_eq!(top_syndrome(&predict(&bundle, &gallery, None)), signed);
    std::fs::write(&bundle, &text).unwrap();

    // one flipped byte in the gallery: signature failure (7), checked before the CRC (6)
    let original = std::fs::read(&gallery).unwrap();
    let mut bytes = original.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&gallery, &bytes).unwrap();
    expect_failure(
        &predict(&bundle, &gallery, Some(&public)),
        7,
        &["demo.gallery", "changed after it was signed"],
    );
    expect_failure(&predict(&bundle, &gallery, None), 6, &["checksum mismatch"]);
    std::fs::write(&gallery, &original).unwrap();
    assert_eq!(
        top_syndrome(&predict(&bundle, &gallery, Some(&public))),
        signed
    );

    // signed by another key
    let (other_secret, other_public) = gen_key(d.path(), "other-key");
    expect_failure(
        &predict(&bundle, &gallery, Some(&other_public)),
        7,
        &["not with the trusted key"],
    );
    sign(&other_secret, &gallery);
    expect_failure(
        &predict(&bundle, &gallery, Some(&public)),
        7,
        &["demo.gallery", "not with the trusted key"],
    );

    // a garbage signature file and a garbage public key
    std::fs::write(gestalt_edge::sign::signature_path(&gallery), "hello").unwrap();
    expect_failure(
        &predict(&bundle, &gallery, Some(&public)),
        7,
        &["demo.gallery.sig", "not a valid signature file"],
    );
    let junk = write(d.path(), "junk.pub", b"not a key");
    expect_failure(
        &predict(&bundle, &gallery, Some(&junk)),
        7,
        &["junk.pub", "not a public key file"],
    );
}

#[test]
fn signing_a_missing_file_is_a_usage_error() {
    let d = tempdir();
    let (secret, _) = gen_key(d.path(), "k");
    let o = cmd()
        .args(["sign", "--key"])
        .arg(&secret)
        .args(["--file", "no/such/file"])
        .output()
        .unwrap();
    expect_failure(&o, 2, &["no/such/file", "cannot read"]);
}

/// `run` on the device takes the trusted key from the board profile: signed files run, a
/// tampered gallery stops the device with exit code 7 before any photo is analysed.
#[test]
fn board_profile_key_guards_the_device_loop() {
    let d = tempdir();
    let bundle = bundle_copy(d.path());
    let gallery = d.path().join("demo.gallery");
    std::fs::copy(demo_gallery(), &gallery).unwrap();
    let (secret, public) = gen_key(d.path(), "site-key");
    sign(&secret, &bundle);
    sign(&secret, &gallery);
    let profile = std::fs::read_to_string(root().join("boards/x86-dev.toml")).unwrap();
    let with_key = profile.replace(
        "precision = \"f32\"",
        &format!(
            "precision = \"f32\"\npublic_key = {:?}",
            public.display().to_string()
        ),
    );
    assert_ne!(with_key, profile, "the profile names its precision");
    let board = d.path().join("signed-board.toml");
    std::fs::write(&board, with_key).unwrap();
    let run_once = || {
        cmd()
            .args(["run", "--once", "--screen", "none", "--board"])
            .arg(&board)
            .arg("--bundle")
            .arg(&bundle)
            .arg("--gallery")
            .arg(&gallery)
            .arg("--source")
            .arg(demo_photo("person_a_2.jpg"))
            .output()
            .unwrap()
    };
    let out = ok(&run_once());
    assert!(out.contains("Demo identity A"), "{out}");
    let mut bytes = std::fs::read(&gallery).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&gallery, bytes).unwrap();
    expect_failure(&run_once(), 7, &["demo.gallery"]);
}
