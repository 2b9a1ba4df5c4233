//! Photos of a folder found by the image ids of the reference's lists.
//!
//! Consumes a folder; produces a [`PhotoIndex`] that finds the photo of an image id: the file
//! named exactly so, else the one file whose stem is the id (`person_a_1.jpg`), else the one
//! file whose name starts with `ID_` or `ID.` (the reference's `1234_crop_square.jpg`). A
//! stem or prefix shared by several files is ambiguous, never guessed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::gmdb::reference::id_prefix;
use crate::{Error, Result};

/// What [`PhotoIndex::find`] found for an image id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The one photo of that id.
    One(PathBuf),
    /// No file matches.
    None,
    /// Several files match the stem or prefix.
    Ambiguous,
}

/// The files of one folder, by name, stem and id prefix.
pub struct PhotoIndex {
    by_name: HashMap<String, PathBuf>,
    /// `None` marks a stem or prefix shared by several files.
    by_stem: HashMap<String, Option<PathBuf>>,
    by_prefix: HashMap<String, Option<PathBuf>>,
}

impl PhotoIndex {
    /// Lists the files of `dir` (an [`Error::Image`] when it cannot be read).
    pub fn new(dir: &Path) -> Result<PhotoIndex> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::image(dir, format!("cannot read the photo folder: {e}")))?;
        let mut names: Vec<(String, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .filter_map(|p| Some((p.file_name()?.to_string_lossy().into_owned(), p)))
            .collect();
        names.sort();
        let mut ix = PhotoIndex {
            by_name: HashMap::new(),
            by_stem: HashMap::new(),
            by_prefix: HashMap::new(),
        };
        let add = |m: &mut HashMap<String, Option<PathBuf>>, k: String, p: &PathBuf| {
            m.entry(k)
                .and_modify(|e| *e = None)
                .or_insert(Some(p.clone()));
        };
        for (n, p) in names {
            if let Some(stem) = p.file_stem() {
                add(&mut ix.by_stem, stem.to_string_lossy().into_owned(), &p);
            }
            add(&mut ix.by_prefix, id_prefix(&n).to_string(), &p);
            ix.by_name.insert(n, p);
        }
        Ok(ix)
    }

    /// The photo of image `id`.
    pub fn find(&self, id: &str) -> Found {
        if let Some(p) = self.by_name.get(id) {
            return Found::One(p.clone());
        }
        for m in [&self.by_stem, &self.by_prefix] {
            match m.get(id) {
                Some(Some(p)) => return Found::One(p.clone()),
                Some(None) => return Found::Ambiguous,
                None => {}
            }
        }
        Found::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_name_stem_and_prefix_and_refuses_ambiguity() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "person_a_1.jpg",
            "1234_crop_square.jpg",
            "77_a.png",
            "77_b.png",
        ] {
            std::fs::write(d.path().join(n), b"x").unwrap();
        }
        let ix = PhotoIndex::new(d.path()).unwrap();
        let one = |n: &str| Found::One(d.path().join(n));
        assert_eq!(ix.find("person_a_1.jpg"), one("person_a_1.jpg"));
        assert_eq!(ix.find("person_a_1"), one("person_a_1.jpg"));
        assert_eq!(ix.find("1234"), one("1234_crop_square.jpg"));
        assert_eq!(ix.find("77"), Found::Ambiguous);
        assert_eq!(ix.find("999"), Found::None);
    }
}
