//! Rollback protection: the highest signed revision a device has seen, per bundle name and
//! per gallery identity, so an older signed bundle or gallery (with its old, valid signature)
//! is refused instead of silently replacing a newer one.
//!
//! Consumes a state folder (the CLI picks it; the library never reads the environment) and,
//! per signed file loaded, what it is ([`Subject`]) and its signed revision; produces a
//! verdict ([`RevisionState::check`]): accepted (and recorded when higher than the mark) or an
//! [`Error::Rollback`] (exit code 8). The marks live in one small JSON file, `revisions.json`,
//! replaced atomically under an exclusive lock, so two processes cannot lose a mark.
//!
//! What it does not stop: anyone who can rewrite the state folder can lower the marks (real
//! protection needs storage the service cannot rewrite, such as a TPM counter).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Name of the marks file inside the state folder.
pub const STATE_FILE: &str = "revisions.json";
/// Name of the lock file inside the state folder.
const LOCK_FILE: &str = "revisions.lock";

/// What a revision belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A bundle, by its manifest's `[bundle] name`.
    Bundle {
        /// The bundle's name.
        name: String,
    },
    /// A gallery, by the bundle id it was made with and its version label.
    Gallery {
        /// The gallery's bundle id.
        bundle_id: String,
        /// The gallery's `gallery_version`.
        gallery_version: String,
    },
}

impl Subject {
    fn id(&self) -> String {
        match self {
            Subject::Bundle { name } => name.clone(),
            Subject::Gallery {
                bundle_id,
                gallery_version,
            } => format!("{bundle_id}/{gallery_version}"),
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Bundle { name } => write!(f, "bundle '{name}'"),
            Subject::Gallery {
                bundle_id,
                gallery_version,
            } => write!(f, "gallery '{gallery_version}' of bundle {bundle_id}"),
        }
    }
}

/// The marks file's content.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Marks {
    #[serde(default)]
    bundles: BTreeMap<String, u32>,
    #[serde(default)]
    galleries: BTreeMap<String, u32>,
}

/// What [`RevisionState::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First time this subject is seen, or a newer revision: the mark now holds it.
    Recorded,
    /// The revision equals the mark.
    Same,
    /// Older than the mark, accepted because the caller allowed it; the mark is unchanged.
    OlderAllowed {
        /// The mark.
        seen: u32,
    },
}

/// A device's rollback marks in a state folder (created on the first write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionState {
    dir: PathBuf,
}

impl RevisionState {
    /// Marks kept in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> RevisionState {
        RevisionState { dir: dir.into() }
    }

    /// The marks file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The highest revision recorded for `subject`, if any.
    pub fn seen(&self, subject: &Subject) -> Result<Option<u32>> {
        let marks = read_marks(&self.path())?;
        Ok(table(&marks, subject).get(&subject.id()).copied())
    }

    /// Checks the signed `revision` of `subject` against the mark: older is an
    /// [`Error::Rollback`] unless `allow_older`; newer (or first seen) is recorded atomically.
    /// A marks file that cannot be read or parsed is an error too (fail closed).
    pub fn check(&self, subject: &Subject, revision: u32, allow_older: bool) -> Result<Verdict> {
        crate::fsio::create_dir_all(&self.dir)
            .map_err(|e| self.fail(format!("cannot create the state folder: {e}")))?;
        let _lock = crate::fsio::lock_exclusive(&self.dir.join(LOCK_FILE))
            .map_err(|e| self.fail(format!("cannot lock the state: {e}")))?;
        let path = self.path();
        let mut marks = read_marks(&path)?;
        let id = subject.id();
        let seen = table(&marks, subject).get(&id).copied();
        match seen {
            Some(seen) if revision == seen => Ok(Verdict::Same),
            Some(seen) if revision < seen => {
                if allow_older {
                    Ok(Verdict::OlderAllowed { seen })
                } else {
                    Err(Error::Rollback {
                        path,
                        reason: format!(
                            "{subject} revision {revision} is older than revision {seen} \
                             already seen on this device; install revision {seen} or newer \
                             (or allow the older one explicitly with --allow-older-revision)"
                        ),
                    })
                }
            }
            _ => {
                let t = match subject {
                    Subject::Bundle { .. } => &mut marks.bundles,
                    Subject::Gallery { .. } => &mut marks.galleries,
                };
                t.insert(id, revision);
                let mut text = serde_json::to_vec_pretty(&marks).unwrap_or_default();
                text.push(b'\n');
                crate::sign::write_file_atomic(&path, &text, false)?;
                Ok(Verdict::Recorded)
            }
        }
    }

    fn fail(&self, reason: String) -> Error {
        Error::Rollback {
            path: self.path(),
            reason,
        }
    }
}

fn table<'a>(marks: &'a Marks, subject: &Subject) -> &'a BTreeMap<String, u32> {
    match subject {
        Subject::Bundle { .. } => &marks.bundles,
        Subject::Gallery { .. } => &marks.galleries,
    }
}

/// Reads the marks; a missing file means no marks.
fn read_marks(path: &Path) -> Result<Marks> {
    let fail = |why: String| Error::Rollback {
        path: path.to_path_buf(),
        reason: format!(
            "the revision state cannot be read ({why}); it guards against older signed files, \
             so nothing signed is accepted until an operator restores or removes it"
        ),
    };
    let bytes = match crate::fsio::read_capped(path, crate::fsio::Cap::STATE) {
        Ok(b) => b,
        Err(e) if e.is_missing() => return Ok(Marks::default()),
        Err(e) => return Err(fail(e.to_string())),
    };
    serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gallery(v: &str) -> Subject {
        Subject::Gallery {
            bundle_id: "90bc16bf50314a70".into(),
            gallery_version: v.into(),
        }
    }

    #[test]
    fn records_newer_refuses_older_unless_allowed() {
        let d = tempfile::tempdir().unwrap();
        let s = RevisionState::new(d.path().join("state"));
        let g = gallery("v1");
        assert_eq!(s.seen(&g).unwrap(), None);
        assert_eq!(s.check(&g, 3, false).unwrap(), Verdict::Recorded);
        assert_eq!(s.check(&g, 3, false).unwrap(), Verdict::Same);
        assert_eq!(s.check(&g, 5, false).unwrap(), Verdict::Recorded);
        let e = s.check(&g, 4, false).unwrap_err();
        assert!(matches!(e, Error::Rollback { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("revision 4 is older than revision 5"), "{msg}");
        assert_eq!(
            s.check(&g, 4, true).unwrap(),
            Verdict::OlderAllowed { seen: 5 }
        );
        assert_eq!(s.seen(&g).unwrap(), Some(5));
        // other identities are independent
        assert_eq!(
            s.check(&gallery("v2"), 0, false).unwrap(),
            Verdict::Recorded
        );
        let b = Subject::Bundle { name: "v1".into() };
        assert_eq!(s.check(&b, 1, false).unwrap(), Verdict::Recorded);
        assert!(s.check(&b, 0, false).is_err());
        // the marks survive a new reader
        let again = RevisionState::new(d.path().join("state"));
        assert_eq!(again.seen(&g).unwrap(), Some(5));
    }

    #[test]
    fn a_damaged_state_fails_closed() {
        let d = tempfile::tempdir().unwrap();
        let s = RevisionState::new(d.path());
        std::fs::write(s.path(), b"{\"bundles\": {\"x\": ").unwrap();
        let e = s.check(&gallery("v1"), 1, false).unwrap_err();
        assert!(matches!(e, Error::Rollback { .. }), "{e}");
        assert!(e.to_string().contains("cannot be read"), "{e}");
    }
}
