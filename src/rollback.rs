//! Rollback protection: the highest signed revision a device has seen, per bundle name and
//! per gallery slot, so an older signed bundle or gallery (with its old, valid signature)
//! is refused instead of silently replacing a newer one.
//!
//! A gallery's slot is the bundle id it was made with, whatever its version label: a gallery
//! labelled "2024-01" at revision 3 after "2024-06" at revision 4 is older, and refused. A new
//! gallery version starts above the old revision (`gallery build --revision N`). Marks files
//! written before (galleries keyed "bundle_id/version") are read as the highest revision per
//! bundle id and rewritten in that form on the next record.
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
    /// A gallery, by the bundle id it was made with (its slot); the version label only
    /// names it in messages.
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
            Subject::Gallery { bundle_id, .. } => bundle_id.clone(),
        }
    }

    /// How to make a file this device accepts after `seen`.
    fn newer_hint(&self, seen: u32) -> String {
        match (self, seen.checked_add(1)) {
            (_, None) => "no newer revision exists: only a new bundle (for a gallery: one made \
                          with another bundle id) or an operator's reset of this device's \
                          revision marks lets a newer one in"
                .to_string(),
            (Subject::Bundle { .. }, Some(next)) => format!(
                "install revision {seen} or newer; to publish a new bundle, set \
                 `[bundle] revision = {next}` (or higher) in its manifest and sign it"
            ),
            (Subject::Gallery { .. }, Some(next)) => format!(
                "install revision {seen} or newer; to publish a new gallery for this bundle \
                 (any version label), build it with `gallery build --revision {next}` (or \
                 higher) and sign it"
            ),
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
            } => write!(
                f,
                "gallery '{gallery_version}' of bundle {bundle_id} (marks are kept per bundle id, \
                 whatever the version label)"
            ),
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
                             already seen on this device; {}",
                            subject.newer_hint(seen)
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
    let mut marks: Marks = serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))?;
    marks.galleries = migrate(std::mem::take(&mut marks.galleries));
    Ok(marks)
}

/// Gallery marks keyed "bundle_id/version" (written by earlier builds) to one mark per bundle
/// id, the highest of its versions (a bundle id never holds '/').
fn migrate(galleries: BTreeMap<String, u32>) -> BTreeMap<String, u32> {
    let mut out: BTreeMap<String, u32> = BTreeMap::new();
    for (key, revision) in galleries {
        let slot = key.split_once('/').map_or(key.as_str(), |(id, _)| id);
        let mark = out.entry(slot.to_string()).or_insert(revision);
        *mark = (*mark).max(revision);
    }
    out
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
        // a bundle is another kind of subject: independent of the gallery marks
        let b = Subject::Bundle { name: "v1".into() };
        assert_eq!(s.check(&b, 1, false).unwrap(), Verdict::Recorded);
        assert!(s.check(&b, 0, false).is_err());
        // the marks survive a new reader
        let again = RevisionState::new(d.path().join("state"));
        assert_eq!(again.seen(&g).unwrap(), Some(5));
    }

    #[test]
    fn a_gallery_slot_is_its_bundle_id_whatever_the_label() {
        let d = tempfile::tempdir().unwrap();
        let s = RevisionState::new(d.path());
        assert_eq!(
            s.check(&gallery("2024-06"), 4, false).unwrap(),
            Verdict::Recorded
        );
        let e = s.check(&gallery("2024-01"), 3, false).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("revision 3 is older than revision 4"), "{msg}");
        assert!(msg.contains("gallery build --revision 5"), "{msg}");
        assert!(
            !msg.contains("allow-older") && !msg.contains("version label:"),
            "{msg}"
        );
        assert_eq!(
            s.check(&gallery("2025-01"), 5, false).unwrap(),
            Verdict::Recorded
        );
        assert_eq!(s.seen(&gallery("2024-06")).unwrap(), Some(5));
        // another bundle id is another slot
        let other = Subject::Gallery {
            bundle_id: "0123456789abcdef".into(),
            gallery_version: "2024-06".into(),
        };
        assert_eq!(s.check(&other, 0, false).unwrap(), Verdict::Recorded);
    }

    #[test]
    fn the_last_revision_says_only_a_new_bundle_or_a_reset_helps() {
        let d = tempfile::tempdir().unwrap();
        let s = RevisionState::new(d.path());
        s.check(&gallery("v"), u32::MAX, false).unwrap();
        let msg = s.check(&gallery("w"), 7, false).unwrap_err().to_string();
        assert!(msg.contains("no newer revision exists"), "{msg}");
        assert!(msg.contains("new bundle") && msg.contains("reset"), "{msg}");
        assert!(!msg.contains("--revision"), "{msg}");
    }

    #[test]
    fn marks_keyed_by_version_label_are_migrated_to_the_highest_per_bundle_id() {
        let d = tempfile::tempdir().unwrap();
        let s = RevisionState::new(d.path());
        std::fs::write(
            s.path(),
            br#"{"bundles": {"demo": 2}, "galleries": {"90bc16bf50314a70/2024-06": 4,
                "90bc16bf50314a70/2024-01": 3, "0123456789abcdef/1": 9}}"#,
        )
        .unwrap();
        assert_eq!(s.seen(&gallery("anything")).unwrap(), Some(4));
        assert!(s.check(&gallery("2024-01"), 3, false).is_err());
        // the next record writes the migrated form
        assert_eq!(
            s.check(&gallery("2025"), 6, false).unwrap(),
            Verdict::Recorded
        );
        let text = std::fs::read_to_string(s.path()).unwrap();
        let marks: Marks = serde_json::from_str(&text).unwrap();
        let want: BTreeMap<String, u32> = [
            ("0123456789abcdef".to_string(), 9),
            ("90bc16bf50314a70".to_string(), 6),
        ]
        .into();
        assert_eq!(marks.galleries, want);
        assert_eq!(marks.bundles.get("demo"), Some(&2));
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
