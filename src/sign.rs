//! Detached ed25519 signatures over bundle manifests and gallery files.
//!
//! Consumes key files, a file's bytes and its detached signature file `F.sig`; produces key
//! pairs, signature files, and a verdict ([`verify_detached`]) that is `Ok` only when the
//! signature was made by the trusted public key over exactly these bytes, for the file's role
//! (manifest or gallery); it returns the revision the signer stated. Every refusal is an
//! [`Error::Signature`] (exit code 7) naming the file and the reason.
//!
//! Signing the manifest covers the models: the manifest pins each model file's sha256 and
//! the bundle checks them at load; a cached or compiled form of a model is used under a key
//! only when it is pinned too or derived in-process from the pinned file (see
//! [`crate::bundle::cache`]). The signed message is a fixed domain tag, the role, the revision
//! and the file's bytes, so a gallery's signature cannot pass for a manifest's, and the
//! revision a device records against rollback ([`crate::rollback`]) is the one the signer saw
//! in the file. Version 1 signatures (no role, no revision) are refused: re-sign such files.
//!
//! File formats (UTF-8 text, one item per line, hex lower case):
//!
//! ```text
//! secret key:  gestalt-edge ed25519 secret key <64 hex: the 32-byte seed>
//! public key:  gestalt-edge ed25519 public key <64 hex: the 32-byte point>
//! F.sig:       gestalt-edge ed25519 signature v2
//!              role <manifest|gallery>
//!              revision <decimal u32: the revision inside the signed file>
//!              key <64 hex: public key of the signer>
//!              signature <128 hex: the 64-byte signature>
//! ```

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::{Error, Result};

/// First line of a signature file.
pub const SIGNATURE_HEADER: &str = "gestalt-edge ed25519 signature v2";
/// First line of the refused version 1 signature files.
const SIGNATURE_HEADER_V1: &str = "gestalt-edge ed25519 signature v1";
const SECRET_PREFIX: &str = "gestalt-edge ed25519 secret key ";
const PUBLIC_PREFIX: &str = "gestalt-edge ed25519 public key ";
/// Prepended to the role, revision and file bytes before signing (domain separation).
const DOMAIN: &[u8] = b"gestalt-edge detached signature v2\0";

/// What a signed file is; part of the signed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A bundle manifest (`bundle.toml`).
    Manifest,
    /// A gallery file.
    Gallery,
}

impl Role {
    /// The role's name in signature files.
    pub fn name(self) -> &'static str {
        match self {
            Role::Manifest => "manifest",
            Role::Gallery => "gallery",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        match s {
            "manifest" => Some(Role::Manifest),
            "gallery" => Some(Role::Gallery),
            _ => None,
        }
    }
}

/// The bytes the signature is over.
fn message(role: Role, revision: u32, data: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(DOMAIN.len() + 16 + data.len());
    msg.extend_from_slice(DOMAIN);
    msg.extend_from_slice(role.name().as_bytes());
    msg.push(0);
    msg.extend_from_slice(&revision.to_le_bytes());
    msg.extend_from_slice(data);
    msg
}

/// A signing key (workstation only). The seed is wiped from memory when dropped.
pub struct SecretKey(SigningKey);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(public {})", self.public().fingerprint())
    }
}

/// A public key the device trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.trim();
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl SecretKey {
    /// The key for a 32-byte seed (take it from the operating system's random source).
    pub fn from_seed(seed: [u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(&seed))
    }

    /// Parses the text of a secret key file; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<SecretKey> {
        let seed = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .and_then(unhex::<32>)
            .ok_or_else(|| {
                Error::signature(
                    path,
                    format!("not a secret key file (expected one line '{SECRET_PREFIX}<64 hex digits>')"),
                )
            })?;
        Ok(SecretKey::from_seed(seed))
    }

    /// The text of a secret key file.
    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}\n", hex(self.0.as_bytes()))
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The text of the detached signature file for `data` (the whole content of a file) in
    /// `role`, stating the `revision` the file holds.
    pub fn sign(&self, role: Role, revision: u32, data: &[u8]) -> String {
        let sig = self.0.sign(&message(role, revision, data));
        format!(
            "{SIGNATURE_HEADER}\nrole {}\nrevision {revision}\nkey {}\nsignature {}\n",
            role.name(),
            hex(self.public().0.as_bytes()),
            hex(&sig.to_bytes())
        )
    }
}

impl PublicKey {
    /// Parses the text of a public key file; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<PublicKey> {
        let bytes = text
            .trim()
            .strip_prefix(PUBLIC_PREFIX)
            .and_then(unhex::<32>)
            .ok_or_else(|| {
                Error::signature(
                    path,
                    format!("not a public key file (expected one line '{PUBLIC_PREFIX}<64 hex digits>')"),
                )
            })?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| Error::signature(path, "the public key is not a valid ed25519 point"))
    }

    /// The text of a public key file.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_PREFIX}{}\n", hex(self.0.as_bytes()))
    }

    /// 16 hex digits identifying the key in messages (the start of its hex form).
    pub fn fingerprint(&self) -> String {
        hex(&self.0.as_bytes()[..8])
    }
}

/// Reads a key or signature file through the bounded reader ([`crate::fsio::Cap::KEY`],
/// [`crate::fsio::Cap::SIGNATURE`]); any failure is an [`Error::Signature`] naming the file.
fn read_small(path: &Path, what: &str) -> Result<String> {
    let cap = if what.starts_with("signature") {
        crate::fsio::Cap::SIGNATURE
    } else {
        crate::fsio::Cap::KEY
    };
    crate::fsio::read_text_capped(path, cap).map_err(|e| match e {
        crate::fsio::ReadError::NotText => {
            Error::signature(path, format!("the {what} is not text"))
        }
        e => Error::signature(path, format!("the {what}: {e}")),
    })
}

/// Reads a public key file (`gestalt-edge sign --generate-key` writes `OUT.pub`).
pub fn read_public_key(path: &Path) -> Result<PublicKey> {
    PublicKey::parse(&read_small(path, "public key file")?, path)
}

/// Reads a secret key file.
pub fn read_secret_key(path: &Path) -> Result<SecretKey> {
    SecretKey::parse(&read_small(path, "secret key file")?, path)
}

/// Where the detached signature of `path` lives: the same name with `.sig` appended.
pub fn signature_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".sig");
    PathBuf::from(s)
}

/// Checks `sig_text` (a signature file's content) against `data`, its `role` and the trusted
/// `key`; returns the revision the signature states. `path` is the signed file, named in errors.
pub fn verify(
    key: &PublicKey,
    role: Role,
    data: &[u8],
    sig_text: &str,
    path: &Path,
) -> Result<u32> {
    let sig_path = signature_path(path);
    let malformed = |what: &str| {
        Error::signature(
            path,
            format!(
                "{} is not a valid signature file ({what})",
                sig_path.display()
            ),
        )
    };
    let mut lines = sig_text.lines().map(str::trim);
    match lines.next() {
        Some(SIGNATURE_HEADER) => {}
        Some(SIGNATURE_HEADER_V1) => {
            return Err(Error::signature(
                path,
                format!(
                    "{} is a version 1 signature (no role, no revision), which this version no \
                     longer accepts; re-sign the file on the workstation (gestalt-edge sign)",
                    sig_path.display()
                ),
            ))
        }
        _ => return Err(malformed("first line must read the signature header")),
    }
    let signed_role = lines
        .next()
        .and_then(|l| l.strip_prefix("role "))
        .ok_or_else(|| malformed("second line must be 'role manifest' or 'role gallery'"))?;
    let signed_role = Role::parse(signed_role.trim())
        .ok_or_else(|| malformed("second line must be 'role manifest' or 'role gallery'"))?;
    let revision = lines
        .next()
        .and_then(|l| l.strip_prefix("revision "))
        .and_then(|r| r.trim().parse::<u32>().ok())
        .ok_or_else(|| malformed("third line must be 'revision <number>'"))?;
    let signer = lines
        .next()
        .and_then(|l| l.strip_prefix("key "))
        .and_then(unhex::<32>)
        .ok_or_else(|| malformed("fourth line must be 'key <64 hex digits>'"))?;
    let sig = lines
        .next()
        .and_then(|l| l.strip_prefix("signature "))
        .and_then(unhex::<64>)
        .ok_or_else(|| malformed("fifth line must be 'signature <128 hex digits>'"))?;
    if signed_role != role {
        return Err(Error::signature(
            path,
            format!(
                "the signature is for a {}, but this file is read as a {}",
                signed_role.name(),
                role.name()
            ),
        ));
    }
    if signer != *key.0.as_bytes() {
        return Err(Error::signature(
            path,
            format!(
                "signed with key {}, not with the trusted key {}",
                hex(&signer[..8]),
                key.fingerprint()
            ),
        ));
    }
    key.0
        .verify_strict(&message(role, revision, data), &Signature::from_bytes(&sig))
        .map_err(|_| {
            Error::signature(
                path,
                "the content does not match its signature: the file was changed after it was \
                 signed (tampered or corrupted); restore the signed file",
            )
        })?;
    Ok(revision)
}

/// Verifies `data`, the bytes just read from `path`, against the detached signature file
/// next to it ([`signature_path`]) for `role`; returns the signed revision. A missing
/// signature file is refused too.
pub fn verify_detached(key: &PublicKey, role: Role, data: &[u8], path: &Path) -> Result<u32> {
    let sig_path = signature_path(path);
    if !sig_path.exists() {
        return Err(Error::signature(
            path,
            format!(
                "a public key is configured but the signature file {} is missing; sign the \
                 file on the workstation (gestalt-edge sign --key SECRET --file FILE)",
                sig_path.display()
            ),
        ));
    }
    let text = read_small(&sig_path, "signature file")?;
    verify(key, role, data, &text, path)
}

/// Checks that `signed`, the revision a verified signature states, is `content`, the one
/// inside the file: the signature's revision line cannot be edited without breaking it, and
/// the file's own counter must be what was signed. Call it after decoding the verified bytes.
pub fn check_revision(path: &Path, signed: u32, content: u32) -> Result<()> {
    if signed != content {
        return Err(Error::signature(
            path,
            format!(
                "the signature states revision {signed} but the file holds revision {content}; \
                 re-sign the file"
            ),
        ));
    }
    Ok(())
}

/// The role and revision of a file to sign: a gallery (by its magic bytes, decoded in full) or
/// a bundle manifest (parsed and validated). Anything else is an [`Error::Usage`].
pub fn describe(data: &[u8], path: &Path) -> Result<(Role, u32)> {
    if data.starts_with(b"GESTALTG") {
        let g = crate::gallery::Gallery::from_bytes(data, path)?;
        return Ok((Role::Gallery, g.revision()));
    }
    let text = std::str::from_utf8(data).map_err(|_| {
        Error::Usage(format!(
            "{}: neither a gallery nor a bundle manifest (not text)",
            path.display()
        ))
    })?;
    let m = crate::bundle::Manifest::parse(text).map_err(|e| {
        Error::Usage(format!(
            "{}: neither a gallery nor a bundle manifest ({e})",
            path.display()
        ))
    })?;
    Ok((Role::Manifest, m.bundle.revision))
}

/// Writes `bytes` to `path` atomically ([`crate::fsio`]). With `private` (a secret key),
/// the file is readable by its owner only (0600); public keys and signatures are 0644.
/// Failures are [`Error::Io`].
pub fn write_file_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    let access = if private {
        crate::fsio::Access::Private
    } else {
        crate::fsio::Access::Shared
    };
    crate::fsio::write_atomic(path, bytes, access)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed([n; 32])
    }

    fn sig_err<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(e @ Error::Signature { .. }) => e.to_string(),
            other => panic!("expected a signature error, got {other:?}"),
        }
    }

    #[test]
    fn sign_then_verify_round_trips_through_text() {
        let k = key(1);
        let p = Path::new("g.gallery");
        let pk = PublicKey::parse(&k.public().to_text(), p).unwrap();
        let k2 = SecretKey::parse(&k.to_text(), p).unwrap();
        let sig = k2.sign(Role::Gallery, 4, b"gallery bytes");
        assert_eq!(
            verify(&pk, Role::Gallery, b"gallery bytes", &sig, p).unwrap(),
            4
        );
        assert_eq!(sig.lines().count(), 5);
        // deterministic: ed25519 signatures do not depend on a random nonce
        assert_eq!(sig, k.sign(Role::Gallery, 4, b"gallery bytes"));
    }

    #[test]
    fn refuses_tampering_other_keys_and_garbage() {
        let k = key(1);
        let p = Path::new("bundle.toml");
        let m = Role::Manifest;
        let sig = k.sign(m, 0, b"abc");
        assert!(sig_err(verify(&k.public(), m, b"abd", &sig, p)).contains("tampered"));
        assert!(sig_err(verify(&k.public(), m, b"", &sig, p)).contains("tampered"));
        let other = key(2).public();
        assert!(sig_err(verify(&other, m, b"abc", &sig, p)).contains("not with the trusted key"));
        // a flipped signature bit
        let mut bad = sig.clone().into_bytes();
        let n = bad.len();
        bad[n - 2] = if bad[n - 2] == b'0' { b'1' } else { b'0' };
        let bad = String::from_utf8(bad).unwrap();
        assert!(sig_err(verify(&k.public(), m, b"abc", &bad, p)).contains("tampered"));
        for junk in ["", "hello", "gestalt-edge ed25519 signature v2\nrole x\n"] {
            assert!(sig_err(verify(&k.public(), m, b"abc", junk, p)).contains("not a valid"));
        }
        assert!(PublicKey::parse("gestalt-edge ed25519 public key 00", p).is_err());
        assert!(SecretKey::parse(&k.public().to_text(), p).is_err());
        assert!(PublicKey::parse(&k.to_text(), p).is_err());
    }

    #[test]
    fn role_and_revision_are_signed() {
        let k = key(3);
        let p = Path::new("f");
        let sig = k.sign(Role::Gallery, 5, b"data");
        // read as the other role
        let e = sig_err(verify(&k.public(), Role::Manifest, b"data", &sig, p));
        assert!(e.contains("for a gallery"), "{e}");
        // the role or revision line edited: the signature no longer matches
        for (from, to) in [
            ("role gallery", "role manifest"),
            ("revision 5", "revision 6"),
        ] {
            let edited = sig.replace(from, to);
            let role = if to.contains("manifest") {
                Role::Manifest
            } else {
                Role::Gallery
            };
            let e = sig_err(verify(&k.public(), role, b"data", &edited, p));
            assert!(e.contains("tampered"), "{to}: {e}");
        }
        // a version 1 signature is refused with the fix
        let v1 = sig.replace(SIGNATURE_HEADER, "gestalt-edge ed25519 signature v1");
        let e = sig_err(verify(&k.public(), Role::Gallery, b"data", &v1, p));
        assert!(e.contains("version 1") && e.contains("re-sign"), "{e}");
    }

    #[test]
    fn signature_path_appends_sig() {
        assert_eq!(
            signature_path(Path::new("a/b.gallery")),
            PathBuf::from("a/b.gallery.sig")
        );
    }
}
