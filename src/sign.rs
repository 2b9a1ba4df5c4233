//! Detached ed25519 signatures over bundle manifests and gallery files.
//!
//! Consumes key files, a file's bytes and its detached signature file `F.sig`; produces key
//! pairs, signature files, and a verdict ([`verify_detached`]) that is `Ok` only when the
//! signature was made by the trusted public key over exactly these bytes. Every refusal is an
//! [`Error::Signature`] (exit code 7) naming the file and the reason.
//!
//! Signing the manifest covers the models: the manifest pins each model file's sha256 and
//! the bundle checks them at load. The signed message is a fixed domain tag followed by the
//! file's bytes, so a signature over a gallery cannot be replayed as another kind of message.
//!
//! File formats (UTF-8 text, one item per line, hex lower case):
//!
//! ```text
//! secret key:  gestalt-edge ed25519 secret key <64 hex: the 32-byte seed>
//! public key:  gestalt-edge ed25519 public key <64 hex: the 32-byte point>
//! F.sig:       gestalt-edge ed25519 signature v1
//!              key <64 hex: public key of the signer>
//!              signature <128 hex: the 64-byte signature>
//! ```

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::{Error, Result};

/// First line of a signature file.
pub const SIGNATURE_HEADER: &str = "gestalt-edge ed25519 signature v1";
const SECRET_PREFIX: &str = "gestalt-edge ed25519 secret key ";
const PUBLIC_PREFIX: &str = "gestalt-edge ed25519 public key ";
/// Prepended to the file bytes before signing (domain separation).
const DOMAIN: &[u8] = b"gestalt-edge detached signature v1\0";
/// Largest signature or key file read (they are ~200 bytes).
const MAX_KEY_FILE_BYTES: u64 = 4096;

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

    /// The text of the detached signature file for `data` (the whole content of a file).
    pub fn sign(&self, data: &[u8]) -> String {
        let mut msg = Vec::with_capacity(DOMAIN.len() + data.len());
        msg.extend_from_slice(DOMAIN);
        msg.extend_from_slice(data);
        let sig = self.0.sign(&msg);
        format!(
            "{SIGNATURE_HEADER}\nkey {}\nsignature {}\n",
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

fn read_small(path: &Path, what: &str) -> Result<String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::signature(path, format!("cannot read the {what}: {e}")))?;
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(Error::signature(
            path,
            format!(
                "the {what} is {} bytes, too large to be one (limit {MAX_KEY_FILE_BYTES})",
                meta.len()
            ),
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| Error::signature(path, format!("cannot read the {what}: {e}")))?;
    String::from_utf8(bytes).map_err(|_| Error::signature(path, format!("the {what} is not text")))
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

/// Checks `sig_text` (a signature file's content) against `data` and the trusted `key`.
/// `path` is the signed file, named in errors.
pub fn verify(key: &PublicKey, data: &[u8], sig_text: &str, path: &Path) -> Result<()> {
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
    let mut lines = sig_text.lines();
    if lines.next().map(str::trim) != Some(SIGNATURE_HEADER) {
        return Err(malformed("first line must read the signature header"));
    }
    let signer = lines
        .next()
        .and_then(|l| l.trim().strip_prefix("key "))
        .and_then(unhex::<32>)
        .ok_or_else(|| malformed("second line must be 'key <64 hex digits>'"))?;
    let sig = lines
        .next()
        .and_then(|l| l.trim().strip_prefix("signature "))
        .and_then(unhex::<64>)
        .ok_or_else(|| malformed("third line must be 'signature <128 hex digits>'"))?;
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
    let mut msg = Vec::with_capacity(DOMAIN.len() + data.len());
    msg.extend_from_slice(DOMAIN);
    msg.extend_from_slice(data);
    key.0
        .verify_strict(&msg, &Signature::from_bytes(&sig))
        .map_err(|_| {
            Error::signature(
                path,
                "the content does not match its signature: the file was changed after it was \
                 signed (tampered or corrupted); restore the signed file",
            )
        })
}

/// Verifies `data`, the bytes just read from `path`, against the detached signature file
/// next to it ([`signature_path`]). A missing signature file is refused too.
pub fn verify_detached(key: &PublicKey, data: &[u8], path: &Path) -> Result<()> {
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
    verify(key, data, &text, path)
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

    fn sig_err(r: Result<()>) -> String {
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
        let sig = k2.sign(b"gallery bytes");
        verify(&pk, b"gallery bytes", &sig, p).unwrap();
        assert_eq!(sig.lines().count(), 3);
        // deterministic: ed25519 signatures do not depend on a random nonce
        assert_eq!(sig, k.sign(b"gallery bytes"));
    }

    #[test]
    fn refuses_tampering_other_keys_and_garbage() {
        let k = key(1);
        let p = Path::new("bundle.toml");
        let sig = k.sign(b"abc");
        assert!(sig_err(verify(&k.public(), b"abd", &sig, p)).contains("tampered"));
        assert!(sig_err(verify(&k.public(), b"", &sig, p)).contains("tampered"));
        let other = key(2).public();
        assert!(sig_err(verify(&other, b"abc", &sig, p)).contains("not with the trusted key"));
        // a flipped signature bit
        let mut bad = sig.clone().into_bytes();
        let n = bad.len();
        bad[n - 2] = if bad[n - 2] == b'0' { b'1' } else { b'0' };
        let bad = String::from_utf8(bad).unwrap();
        assert!(sig_err(verify(&k.public(), b"abc", &bad, p)).contains("tampered"));
        for junk in ["", "hello", "gestalt-edge ed25519 signature v1\nkey zz\n"] {
            assert!(sig_err(verify(&k.public(), b"abc", junk, p)).contains("not a valid"));
        }
        assert!(PublicKey::parse("gestalt-edge ed25519 public key 00", p).is_err());
        assert!(SecretKey::parse(&k.public().to_text(), p).is_err());
        assert!(PublicKey::parse(&k.to_text(), p).is_err());
    }

    #[test]
    fn signature_path_appends_sig() {
        assert_eq!(
            signature_path(Path::new("a/b.gallery")),
            PathBuf::from("a/b.gallery.sig")
        );
    }
}
