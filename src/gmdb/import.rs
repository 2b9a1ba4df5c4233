//! Import of the reference's data (what GMDB holders have) into a gallery.
//!
//! Consumes the parsed reference files ([`super::reference`]: encodings CSV, image
//! list, syndromes TSV, optional gene metadata), an explicit mapping from reference model
//! names (`m0`, `m1`, `m2`) to bundle embedder names, and optionally the bundle the gallery
//! is for; produces a [`Gallery`] and an [`ImportReport`]. Models are matched by name only,
//! never by position: a reference model reaches the gallery under the embedder name
//! the mapping gives it (or its own name). With a bundle, the gallery's keys are exactly the
//! bundle's (embedder x view, with the manifest's widths), every one must be found in the
//! encodings, and reference models or views the bundle does not use are left out and
//! reported.
//!
//! Errors: a mapping that names unknown models or maps twice is an [`Error::Usage`] (2);
//! data that does not fit (an image missing from the encodings, an unknown label, encodings
//! that lack a bundle key or have another width) is an [`Error::Gallery`] (6) naming the
//! file and line.

use std::collections::HashMap;

use super::reference::{EncodingTable, GeneTable, ImageList, SyndromeTable};
use crate::embed::{Embeddings, Key};
use crate::gallery::{Case, Gallery, KeySpec, Storage};
use crate::{Error, Result};

/// Parses one `REFMODEL=EMBEDDER` mapping.
pub fn parse_mapping(s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() => {
            Ok((a.trim().to_string(), b.trim().to_string()))
        }
        _ => Err(Error::Usage(format!(
            "mapping '{s}': expected REFMODEL=EMBEDDER, for example m0=sface"
        ))),
    }
}

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportRequest<'a> {
    /// The encodings CSV.
    pub encodings: &'a EncodingTable,
    /// The images to import (`image_id,subject,label[,split]`).
    pub images: &'a ImageList,
    /// Syndrome names and OMIM numbers by `syndrome_id`.
    pub syndromes: &'a SyndromeTable,
    /// Genes per image or per syndrome, when given.
    pub genes: Option<&'a GeneTable>,
    /// `(reference model, embedder)` pairs.
    pub mapping: &'a [(String, String)],
    /// Bundle id stored in the gallery.
    pub bundle_id: String,
    /// The bundle's keys and widths; `None` keeps every reference key (renamed).
    pub bundle_keys: Option<Vec<KeySpec>>,
    /// Only rows of this split (and rows without a split); required when the list has a
    /// split column.
    pub split: Option<u32>,
    /// Vector storage.
    pub storage: Storage,
    /// Gallery version label.
    pub gallery_version: String,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct ImportReport {
    /// Images imported.
    pub images: usize,
    /// Keys stored per image.
    pub keys: usize,
    /// Reference models left out (not mapped to an embedder of the bundle).
    pub ignored_models: Vec<String>,
    /// Reference keys of used models left out (views the bundle does not compute).
    pub ignored_keys: Vec<String>,
    /// Syndromes whose name was shared by another id, stored as `name (syndrome_id N)`.
    pub renamed_syndromes: Vec<String>,
}

/// Reference model -> gallery model name, or `None` when the model is left out.
fn resolve_models(req: &ImportRequest) -> Result<HashMap<String, Option<String>>> {
    let models = req.encodings.models();
    let mut seen_ref = HashMap::new();
    let mut seen_emb = HashMap::new();
    for (r, e) in req.mapping {
        if !models.contains(r) {
            return Err(Error::Usage(format!(
                "mapping {r}={e}: {} has no model named {r} (it has: {})",
                req.encodings.path.display(),
                models.join(", ")
            )));
        }
        if seen_ref.insert(r.clone(), e.clone()).is_some() {
            return Err(Error::Usage(format!("the mapping names model {r} twice")));
        }
        if seen_emb.insert(e.clone(), r.clone()).is_some() {
            return Err(Error::Usage(format!(
                "the mapping maps two reference models to embedder {e}"
            )));
        }
        if let Some(keys) = &req.bundle_keys {
            if !keys.iter().any(|k| &k.key.model == e) {
                let names: Vec<&str> = keys.iter().map(|k| k.key.model.as_str()).collect();
                return Err(Error::Usage(format!(
                    "mapping {r}={e}: the bundle has no embedder {e} (it has: {})",
                    dedup(names).join(", ")
                )));
            }
        }
    }
    let mut out = HashMap::new();
    let mut targets: HashMap<String, String> = HashMap::new();
    for m in models {
        let target = match (seen_ref.get(&m), &req.bundle_keys) {
            (Some(e), _) => Some(e.clone()),
            (None, Some(keys)) => keys
                .iter()
                .any(|k| k.key.model == m && !seen_emb.contains_key(&m))
                .then(|| m.clone()),
            (None, None) => Some(m.clone()),
        };
        if let Some(t) = &target {
            if let Some(other) = targets.insert(t.clone(), m.clone()) {
                return Err(Error::Usage(format!(
                    "reference models {other} and {m} would both be stored as {t}; map them to distinct embedders"
                )));
            }
        }
        out.insert(m, target);
    }
    Ok(out)
}

fn dedup(mut v: Vec<&str>) -> Vec<&str> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|x| seen.insert(*x));
    v
}

/// Imports the listed images (see the module docs).
pub fn import(req: &ImportRequest) -> Result<(Gallery, ImportReport)> {
    let enc = req.encodings;
    let list = req.images;
    if list.has_split && req.split.is_none() {
        return Err(Error::Usage(format!(
            "{} has a split column: choose the split to import",
            list.path.display()
        )));
    }
    let models = resolve_models(req)?;
    let mut report = ImportReport::default();
    let mut ignored: Vec<String> = models
        .iter()
        .filter(|(_, t)| t.is_none())
        .map(|(m, _)| m.clone())
        .collect();
    ignored.sort();
    report.ignored_models = ignored;

    // Gallery key -> reference key.
    let renamed = |k: &Key| -> Option<Key> {
        models.get(&k.model).cloned().flatten().map(|model| Key {
            model,
            flip: k.flip,
            gray: k.gray,
        })
    };
    let mut source: Vec<(KeySpec, Key)> = Vec::new();
    match &req.bundle_keys {
        Some(keys) => {
            for spec in keys {
                let found = enc
                    .keys
                    .iter()
                    .find(|s| renamed(&s.key).as_ref() == Some(&spec.key));
                match found {
                    None => {
                        return Err(Error::gallery(
                            &enc.path,
                            format!(
                                "the bundle needs {} but no reference model mapped to {} has that view (map a reference model to it: REFMODEL={})",
                                spec.key, spec.key.model, spec.key.model
                            ),
                        ))
                    }
                    Some(s) if s.width != spec.width => {
                        return Err(Error::gallery(
                            &enc.path,
                            format!(
                                "{} has {} values per vector, the bundle's embedder {} makes {}",
                                s.key, s.width, spec.key.model, spec.width
                            ),
                        ))
                    }
                    Some(s) => source.push((spec.clone(), s.key.clone())),
                }
            }
            for s in &enc.keys {
                if renamed(&s.key).is_some() && !source.iter().any(|(_, r)| r == &s.key) {
                    report.ignored_keys.push(s.key.to_string());
                }
            }
        }
        None => {
            for s in &enc.keys {
                if let Some(k) = renamed(&s.key) {
                    source.push((
                        KeySpec {
                            key: k,
                            width: s.width,
                        },
                        s.key.clone(),
                    ));
                }
            }
        }
    }
    let keys: Vec<KeySpec> = source.iter().map(|(s, _)| s.clone()).collect();
    report.keys = keys.len();

    // Display names: a name shared by several ids gets its id appended.
    let mut count: HashMap<&str, usize> = HashMap::new();
    for s in &req.syndromes.rows {
        *count.entry(s.name.as_str()).or_default() += 1;
    }
    let display = |id: &str, name: &str| {
        if count.get(name).copied().unwrap_or(0) > 1 {
            format!("{name} (syndrome_id {id})")
        } else {
            name.to_string()
        }
    };

    let mut gallery = Gallery::new(
        req.bundle_id.clone(),
        req.gallery_version.clone(),
        keys,
        req.storage,
    )?;
    let at = |line: u64, msg: String| Error::gallery(&list.path, format!("line {line}: {msg}"));
    for row in &list.rows {
        if let (Some(want), Some(have)) = (req.split, row.split) {
            if want != have {
                continue;
            }
        }
        let image = enc.find(&row.image_id)?.ok_or_else(|| {
            at(
                row.line,
                format!(
                    "image {} is not in the encodings file {}",
                    row.image_id,
                    enc.path.display()
                ),
            )
        })?;
        let syndrome = req.syndromes.get(&row.label).ok_or_else(|| {
            at(
                row.line,
                format!(
                    "label {} is not a syndrome_id of {}",
                    row.label,
                    req.syndromes.path.display()
                ),
            )
        })?;
        let name = display(&syndrome.id, &syndrome.name);
        if name != syndrome.name && !report.renamed_syndromes.contains(&name) {
            report.renamed_syndromes.push(name.clone());
        }
        let mut entries = Vec::with_capacity(source.len());
        for (spec, from) in &source {
            let v = image.embeddings.get(from).ok_or_else(|| {
                Error::gallery(
                    &enc.path,
                    format!(
                        "line {}: image {} has no row for {from}",
                        image.line, image.name
                    ),
                )
            })?;
            entries.push((spec.key.clone(), v.to_vec()));
        }
        let case = Case {
            image_id: row.image_id.clone(),
            subject: Some(row.subject.clone()),
            syndrome: name,
            omim: syndrome.omim,
            genes: req
                .genes
                .map(|g| g.genes_of(&row.image_id, &row.label))
                .unwrap_or_default(),
        };
        gallery
            .add(&case, &Embeddings { entries })
            .map_err(|e| at(row.line, e.to_string()))?;
    }
    for s in &req.syndromes.rows {
        let name = display(&s.id, &s.name);
        if let (Some(t), true) = (s.pp4, gallery.syndromes().iter().any(|x| x.name == name)) {
            gallery.set_pp4(&name, t)?;
        }
    }
    if gallery.is_empty() {
        return Err(Error::gallery(
            &list.path,
            match req.split {
                Some(s) => format!("no image in split {s}"),
                None => "no image to import".to_string(),
            },
        ));
    }
    report.images = gallery.len();
    Ok((gallery, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn files(dir: &Path) -> (EncodingTable, ImageList, SyndromeTable) {
        let enc = "img_name;model;flip;gray;class_conf;representations\n\
                   1_crop.jpg;m0;0;0;[0];[1,0]\n1_crop.jpg;m0;1;0;[0];[1,1]\n1_crop.jpg;m1;0;0;[0];[0,1,0]\n\
                   2_crop.jpg;m0;0;0;[0];[0,1]\n2_crop.jpg;m0;1;0;[0];[1,2]\n2_crop.jpg;m1;0;0;[0];[1,1,0]\n";
        let e = dir.join("enc.csv");
        std::fs::write(&e, enc).unwrap();
        let l = dir.join("list.csv");
        std::fs::write(&l, "image_id,subject,label\n1,p1,10\n2,p2,11\n").unwrap();
        let s = dir.join("synd.tsv");
        std::fs::write(
            &s,
            "syndrome_id\tsyndrome_name\tOMIM\n10\tAlpha\t123\n11\tBeta\t\n",
        )
        .unwrap();
        (
            EncodingTable::read(&e).unwrap(),
            ImageList::read(&l).unwrap(),
            SyndromeTable::read(&s).unwrap(),
        )
    }

    fn request<'a>(
        f: &'a (EncodingTable, ImageList, SyndromeTable),
        mapping: &'a [(String, String)],
        bundle_keys: Option<Vec<KeySpec>>,
    ) -> ImportRequest<'a> {
        ImportRequest {
            encodings: &f.0,
            images: &f.1,
            syndromes: &f.2,
            genes: None,
            mapping,
            bundle_id: "b".into(),
            bundle_keys,
            split: None,
            storage: Storage::F16,
            gallery_version: "v".into(),
        }
    }

    fn key(m: &str, flip: bool) -> Key {
        Key {
            model: m.into(),
            flip,
            gray: false,
        }
    }

    #[test]
    fn maps_by_name_and_checks_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        let map = vec![("m1".to_string(), "arc".to_string())];
        let (g, r) = import(&request(&f, &map, None)).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(r.keys, 3);
        assert_eq!(g.keys()[2].key, key("arc", false));
        assert_eq!(g.syndromes()[0].omim, Some(123));
        let e = g.embeddings(1).unwrap();
        assert_eq!(e.get(&key("arc", false)).unwrap(), &[1.0, 1.0, 0.0]);

        // a bundle with one embedder "arc" (m1's width) and one view: m0 is left out
        let bundle = vec![KeySpec {
            key: key("arc", false),
            width: 3,
        }];
        let (g, r) = import(&request(&f, &map, Some(bundle.clone()))).unwrap();
        assert_eq!(g.keys(), bundle.as_slice());
        assert_eq!(r.ignored_models, vec!["m0".to_string()]);
        // the wrong width, and a view the encodings lack
        let wrong = vec![KeySpec {
            key: key("arc", false),
            width: 4,
        }];
        let e = import(&request(&f, &map, Some(wrong))).unwrap_err();
        assert!(matches!(e, Error::Gallery { .. }), "{e}");
        let missing = vec![KeySpec {
            key: key("arc", true),
            width: 3,
        }];
        assert!(import(&request(&f, &map, Some(missing))).is_err());
        // position never counts: without a mapping, bundle embedder "arc" finds nothing
        assert!(import(&request(&f, &[], Some(bundle))).is_err());
    }

    #[test]
    fn bad_mappings_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        for map in [
            vec![("m9".to_string(), "x".to_string())],
            vec![("m0".into(), "x".into()), ("m1".into(), "x".into())],
            vec![("m0".into(), "m1".into())],
        ] {
            let e = import(&request(&f, &map, None)).unwrap_err();
            assert!(matches!(e, Error::Usage(_)), "{e}");
        }
        assert!(parse_mapping("m0").is_err());
        assert_eq!(
            parse_mapping("m0=sface").unwrap(),
            ("m0".to_string(), "sface".to_string())
        );
    }
}
