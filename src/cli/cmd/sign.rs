//! `gestalt-edge sign`: make an ed25519 key pair, sign a file (detached `FILE.sig`), or check
//! a signature. Signing happens on a workstation; the device only holds the public key.

use crate::cli::out::outln;
use std::io::Read;
use std::path::{Path, PathBuf};

use gestalt_edge::sign::{self, PublicKey, SecretKey};
use gestalt_edge::{Error, Result};

use crate::cli::args::SignArgs;

pub fn run(a: SignArgs) -> Result<i32> {
    if let Some(out) = &a.generate_key {
        return generate(out);
    }
    if let Some(public) = &a.verify {
        let key = sign::read_public_key(public)?;
        for f in &a.file {
            let bytes = read(f)?;
            let (role, revision) = sign::describe(&bytes, f)?;
            let signed = sign::verify_detached(&key, role, &bytes, f)?;
            sign::check_revision(f, signed, revision)?;
            outln!(
                "{}: signature OK ({} revision {revision}, key {})",
                f.display(),
                role.name(),
                key.fingerprint()
            );
        }
        return Ok(0);
    }
    let Some(secret) = &a.key else {
        return Err(Error::Usage(
            "give --generate-key OUT, --key SECRET --file F, or --verify PUBLIC --file F".into(),
        ));
    };
    let key = sign::read_secret_key(secret)?;
    for f in &a.file {
        let bytes = read(f)?;
        let (role, revision) = sign::describe(&bytes, f)?;
        let sig_path = sign::signature_path(f);
        sign::write_file_atomic(
            &sig_path,
            key.sign(role, revision, &bytes).as_bytes(),
            false,
        )?;
        outln!(
            "signed {} {} revision {revision} ({} bytes) with key {}: wrote {}",
            role.name(),
            f.display(),
            bytes.len(),
            key.public().fingerprint(),
            sig_path.display()
        );
    }
    Ok(0)
}

/// A file to sign or verify (a manifest or a gallery: the larger cap, a gallery's).
fn read(path: &Path) -> Result<Vec<u8>> {
    gestalt_edge::fsio::read_capped(path, gestalt_edge::fsio::Cap::GALLERY)
        .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))
}

/// 32 bytes from the operating system's random source.
fn seed() -> Result<[u8; 32]> {
    let dev = Path::new("/dev/urandom");
    let mut seed = [0u8; 32];
    std::fs::File::open(dev)
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| Error::io(dev, e))?;
    Ok(seed)
}

fn generate(out: &Path) -> Result<i32> {
    let public_path = {
        let mut s = out.as_os_str().to_os_string();
        s.push(".pub");
        PathBuf::from(s)
    };
    for p in [out, public_path.as_path()] {
        if p.exists() {
            return Err(Error::Usage(format!(
                "{} exists already; refusing to overwrite a key",
                p.display()
            )));
        }
    }
    let secret = SecretKey::from_seed(seed()?);
    let public: PublicKey = secret.public();
    sign::write_file_atomic(out, secret.to_text().as_bytes(), true)?;
    sign::write_file_atomic(&public_path, public.to_text().as_bytes(), false)?;
    outln!(
        "wrote secret key {} (keep it off the device) and public key {} (fingerprint {})",
        out.display(),
        public_path.display(),
        public.fingerprint()
    );
    Ok(0)
}
