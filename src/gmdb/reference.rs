//! The GestaltMatcher reference data files, read (and the encodings file written).
//!
//! Consumes the files GMDB holders have: the encodings CSV (`;`-separated
//! `img_name;model;flip;gray;class_conf;representations`, one row per image, model and TTA
//! view, representations as a JSON list), image lists (`image_id,subject,label[,split]`),
//! the syndromes TSV (`syndrome_id, syndrome_name, OMIM`) and optional gene metadata.
//! Produces checked tables: [`EncodingTable`], [`ImageList`], [`SyndromeTable`],
//! [`GeneTable`]. Every problem is an [`Error::Gallery`] (exit code 6) naming the file and
//! the line.
//!
//! Image names: the reference's encodings name files (`1234_crop_square.jpg`) and the lists
//! name ids (`1234`); an id matches a file name exactly, or the part of its name before the
//! first `_` or `.` (the reference's `int(img_name.split('_')[0])`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::embed::{Embeddings, Key};
use crate::gallery::KeySpec;
use crate::{Error, Result};

pub use super::genes::{GeneRef, GeneTable};

pub(crate) fn err(path: &Path, line: u64, msg: impl std::fmt::Display) -> Error {
    if line == 0 {
        Error::gallery(path, msg.to_string())
    } else {
        Error::gallery(path, format!("line {line}: {msg}"))
    }
}

/// One image of an encodings file: every keyed vector found for it.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedImage {
    /// `img_name` as written in the file.
    pub name: String,
    /// Line of its first row.
    pub line: u64,
    /// One vector per (model, flip, gray); model names as in the file.
    pub embeddings: Embeddings,
}

/// A parsed encodings CSV. Invariants (checked when reading): every image has exactly the
/// same keys, each key has one width, every value is finite.
#[derive(Debug, Clone)]
pub struct EncodingTable {
    /// The file.
    pub path: PathBuf,
    /// Images in order of first appearance.
    pub images: Vec<EncodedImage>,
    /// Keys and widths in order of first appearance.
    pub keys: Vec<KeySpec>,
    by_name: HashMap<String, usize>,
    /// id prefix -> image index, or `None` when two file names share the prefix.
    by_prefix: HashMap<String, Option<usize>>,
}

/// The id part of a file name: before the first `_`, else before the last `.`.
pub fn id_prefix(name: &str) -> &str {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    if let Some(i) = base.find('_') {
        return &base[..i];
    }
    match base.rfind('.') {
        Some(i) if i > 0 => &base[..i],
        _ => base,
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "0" | "false" | "0.0" => Some(false),
        "1" | "true" | "1.0" => Some(true),
        _ => None,
    }
}

/// A whole number written as an integer or as `123.0` (pandas after a NaN).
pub(crate) fn whole(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Ok(v) = s.parse::<u64>() {
        return Some(v);
    }
    let f: f64 = s.parse().ok()?;
    (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f < 1e15).then_some(f as u64)
}

/// A label or syndrome id in canonical form: `123.0` and `123` are the same id.
pub fn canonical_id(s: &str) -> String {
    let s = s.trim();
    match whole(s) {
        Some(v) => v.to_string(),
        None => s.to_string(),
    }
}

impl EncodingTable {
    /// Reads an encodings CSV (see the module docs). `flip` and `gray` are `0`/`1` or
    /// `True`/`False`; `class_conf` is ignored.
    pub fn read(path: &Path) -> Result<EncodingTable> {
        let file =
            crate::fsio::open_capped(path, crate::fsio::Cap::TABLE).map_err(|e| err(path, 0, e))?;
        Self::from_reader(file, path)
    }

    /// Parses encodings CSV text from `reader`; `path` names it in messages.
    pub fn from_reader(reader: impl std::io::Read, path: &Path) -> Result<EncodingTable> {
        let mut rdr = csv::ReaderBuilder::new()
            .delimiter(b';')
            .trim(csv::Trim::All)
            .from_reader(reader);
        let headers = rdr
            .headers()
            .map_err(|e| err(path, 1, format!("cannot read the header: {e}")))?
            .clone();
        let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
        let cols = ["img_name", "model", "flip", "gray", "representations"].map(col);
        let [Some(c_img), Some(c_model), Some(c_flip), Some(c_gray), Some(c_rep)] = cols else {
            return Err(err(
                path,
                1,
                "the header must name the columns img_name;model;flip;gray;class_conf;representations (';'-separated)",
            ));
        };
        let mut t = EncodingTable {
            path: path.to_path_buf(),
            images: Vec::new(),
            keys: Vec::new(),
            by_name: HashMap::new(),
            by_prefix: HashMap::new(),
        };
        let mut record = csv::StringRecord::new();
        loop {
            match rdr.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    return Err(err(path, line, format!("malformed row: {e}")));
                }
            }
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            let get = |i: usize| record.get(i).unwrap_or("");
            // a cell the tool neutralised for spreadsheets reads back as it was written
            let name = unneutralise(get(c_img));
            let model = unneutralise(get(c_model));
            if name.is_empty() || model.is_empty() {
                return Err(err(path, line, "empty img_name or model"));
            }
            let (Some(flip), Some(gray)) = (parse_bool(get(c_flip)), parse_bool(get(c_gray)))
            else {
                return Err(err(path, line, "flip and gray must be 0/1 or True/False"));
            };
            let values: Vec<f64> = serde_json::from_str(get(c_rep)).map_err(|_| {
                err(
                    path,
                    line,
                    "representations is not a JSON list of finite numbers (NaN and Infinity are not allowed)",
                )
            })?;
            let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
            if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
                return Err(err(
                    path,
                    line,
                    "representations is empty or holds values outside the f32 range",
                ));
            }
            let key = Key {
                model: model.to_string(),
                flip,
                gray,
            };
            match t.keys.iter().find(|s| s.key == key) {
                Some(s) if s.width as usize != v.len() => {
                    return Err(err(
                        path,
                        line,
                        format!(
                            "representations has {} values, earlier rows of {} have {}",
                            v.len(),
                            key,
                            s.width
                        ),
                    ))
                }
                Some(_) => {}
                None => t.keys.push(KeySpec {
                    key: key.clone(),
                    width: u32::try_from(v.len()).unwrap_or(u32::MAX),
                }),
            }
            let idx = match t.by_name.get(name) {
                Some(&i) => i,
                None => {
                    t.images.push(EncodedImage {
                        name: name.to_string(),
                        line,
                        embeddings: Embeddings::default(),
                    });
                    t.by_name.insert(name.to_string(), t.images.len() - 1);
                    t.images.len() - 1
                }
            };
            let emb = &mut t.images[idx].embeddings;
            if emb.get(&key).is_some() {
                return Err(err(path, line, format!("a second row for {name} {key}")));
            }
            emb.entries.push((key, v));
        }
        if t.images.is_empty() {
            return Err(err(path, 0, "holds no encodings"));
        }
        for im in &t.images {
            if let Some(s) = t.keys.iter().find(|s| im.embeddings.get(&s.key).is_none()) {
                return Err(err(
                    path,
                    im.line,
                    format!(
                        "image {} has no row for {} (every image needs every model and view)",
                        im.name, s.key
                    ),
                ));
            }
        }
        for (i, im) in t.images.iter().enumerate() {
            t.by_prefix
                .entry(id_prefix(&im.name).to_string())
                .and_modify(|e| *e = None)
                .or_insert(Some(i));
        }
        Ok(t)
    }

    /// The image an id names: exact file name first, then the id prefix. `Ok(None)` when no
    /// image matches; an error when the prefix is shared by several file names.
    pub fn find(&self, image_id: &str) -> Result<Option<&EncodedImage>> {
        if let Some(&i) = self.by_name.get(image_id) {
            return Ok(self.images.get(i));
        }
        match self.by_prefix.get(image_id) {
            None => Ok(None),
            Some(Some(i)) => Ok(self.images.get(*i)),
            Some(None) => Err(err(
                &self.path,
                0,
                format!("several img_name values start with the id {image_id}; rename them so each id names one image"),
            )),
        }
    }

    /// Distinct model names, in order of first appearance.
    pub fn models(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.keys {
            if !out.contains(&s.key.model) {
                out.push(s.key.model.clone());
            }
        }
        out
    }
}

/// A cell as the encodings CSV stores it: a cell that a spreadsheet would run as a formula
/// (beginning with `=`, `+`, `-` or `@`) gets a leading `'`, the usual neutralisation, and so
/// does a cell that already begins with `'` followed by one of those, so [`unneutralise`]
/// gives every name back exactly.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = |c: Option<char>| matches!(c, Some('=' | '+' | '-' | '@'));
    let mut chars = cell.chars();
    let first = chars.next();
    if risky(first) || (first == Some('\'') && (risky(chars.next()) || cell.starts_with("''"))) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// The inverse of [`neutralise`]: one leading `'` before `=`, `+`, `-`, `@` or `'` is dropped.
pub fn unneutralise(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if matches!(rest.chars().next(), Some('=' | '+' | '-' | '@' | '\'')) => rest,
        _ => cell,
    }
}

/// Writes `images` (name, embeddings) as a reference encodings CSV to `path` atomically
/// ([`crate::fsio`]; embeddings of patients' photos: owner-only, 0600), through the csv crate:
/// a name holding `;`, a quote or a line break is quoted, and a name a spreadsheet would run
/// as a formula is neutralised ([`neutralise`]); [`EncodingTable::read`] reads every name
/// back as it was. `class_conf` is written as `[0]` (no classifier head).
pub fn write_encodings(path: &Path, images: &[(String, Embeddings)]) -> Result<()> {
    crate::fsio::write_atomic_with(path, crate::fsio::Access::Private, |w| {
        let mut csv = csv::WriterBuilder::new().delimiter(b';').from_writer(w);
        csv.write_record([
            "img_name",
            "model",
            "flip",
            "gray",
            "class_conf",
            "representations",
        ])?;
        for (name, emb) in images {
            for (k, v) in &emb.entries {
                let json = serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
                csv.write_record([
                    neutralise(name).as_ref(),
                    neutralise(&k.model).as_ref(),
                    if k.flip { "1" } else { "0" },
                    if k.gray { "1" } else { "0" },
                    "[0]",
                    &json,
                ])?;
            }
        }
        csv.flush()
    })
}

/// One row of an image list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRow {
    /// Image id (as in the GMDB metadata).
    pub image_id: String,
    /// Subject (patient) id.
    pub subject: String,
    /// Syndrome id (a `syndrome_id` of the syndromes TSV), canonical form.
    pub label: String,
    /// Split number; `None` when the list has no split column or the cell is empty (such
    /// rows belong to every split, as the reference's `fillna(split)`).
    pub split: Option<u32>,
    /// Line in the file.
    pub line: u64,
}

/// A parsed image list `image_id,subject,label[,split]` (header required).
#[derive(Debug, Clone)]
pub struct ImageList {
    /// The file.
    pub path: PathBuf,
    /// Rows in file order; an image id appears at most once per split.
    pub rows: Vec<ImageRow>,
    /// Whether the file has a split column.
    pub has_split: bool,
}

impl ImageList {
    /// Reads an image list (comma-separated, header with `image_id`, `subject`, `label` and
    /// optionally `split`; other columns are ignored).
    pub fn read(path: &Path) -> Result<ImageList> {
        let file =
            crate::fsio::open_capped(path, crate::fsio::Cap::TABLE).map_err(|e| err(path, 0, e))?;
        let mut rdr = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(file);
        let headers = rdr
            .headers()
            .map_err(|e| err(path, 1, format!("cannot read the header: {e}")))?
            .clone();
        let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
        let (Some(c_id), Some(c_subject), Some(c_label)) =
            (col("image_id"), col("subject"), col("label"))
        else {
            return Err(err(
                path,
                1,
                "the header must name the columns image_id,subject,label (and optionally split)",
            ));
        };
        let c_split = col("split");
        let mut rows: Vec<ImageRow> = Vec::new();
        let mut seen: HashMap<String, Vec<(Option<u32>, u64)>> = HashMap::new();
        for record in rdr.records() {
            let record = record.map_err(|e| {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                err(path, line, format!("malformed row: {e}"))
            })?;
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            let get = |i: usize| record.get(i).unwrap_or("");
            let image_id = canonical_id(get(c_id));
            let label = canonical_id(get(c_label));
            if image_id.is_empty() || label.is_empty() {
                return Err(err(path, line, "empty image_id or label"));
            }
            let split =
                match c_split.map(get) {
                    None | Some("") => None,
                    Some(s) if s.eq_ignore_ascii_case("nan") => None,
                    Some(s) => Some(whole(s).and_then(|v| u32::try_from(v).ok()).ok_or_else(
                        || err(path, line, format!("split '{s}' is not a whole number")),
                    )?),
                };
            // The same image may be listed once per split (rare splits reuse images).
            let earlier = seen.entry(image_id.clone()).or_default();
            if let Some((_, first)) = earlier
                .iter()
                .find(|(s, _)| s.is_none() || split.is_none() || *s == split)
            {
                return Err(err(
                    path,
                    line,
                    format!("image {image_id} is listed twice in the same split (first on line {first})"),
                ));
            }
            earlier.push((split, line));
            let subject = match get(c_subject) {
                "" => image_id.clone(),
                s => canonical_id(s),
            };
            rows.push(ImageRow {
                image_id,
                subject,
                label,
                split,
                line,
            });
        }
        if rows.is_empty() {
            return Err(err(path, 0, "lists no images"));
        }
        Ok(ImageList {
            path: path.to_path_buf(),
            rows,
            has_split: c_split.is_some(),
        })
    }
}

/// One syndrome of the syndromes TSV.
#[derive(Debug, Clone, PartialEq)]
pub struct SyndromeInfo {
    /// `syndrome_id`, canonical form.
    pub id: String,
    /// Display name.
    pub name: String,
    /// OMIM number, when given.
    pub omim: Option<u32>,
    /// ACMG PP4 gestalt-score thresholds, when given.
    pub pp4: Option<crate::rank::pp4::Pp4Thresholds>,
}

/// A parsed syndromes TSV (`syndrome_id, syndrome_name, OMIM`, tab-separated; a header
/// line is recognised by a non-numeric first cell and skipped). Optional PP4 thresholds:
/// columns named `very_strong, strong, moderate, supporting` in the header; without a header,
/// the 4th to 7th columns.
#[derive(Debug, Clone)]
pub struct SyndromeTable {
    /// The file.
    pub path: PathBuf,
    /// Syndromes in file order; ids are unique.
    pub rows: Vec<SyndromeInfo>,
    by_id: HashMap<String, usize>,
}

impl SyndromeTable {
    /// Reads a syndromes TSV.
    pub fn read(path: &Path) -> Result<SyndromeTable> {
        let text = crate::fsio::read_text_capped(path, crate::fsio::Cap::TABLE)
            .map_err(|e| err(path, 0, e))?;
        let mut t = SyndromeTable {
            path: path.to_path_buf(),
            rows: Vec::new(),
            by_id: HashMap::new(),
        };
        let mut pp4_cols = [Some(3), Some(4), Some(5), Some(6)];
        for (i, raw) in text.lines().enumerate() {
            let line = i as u64 + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let cells: Vec<&str> = raw.split('\t').map(str::trim).collect();
            if cells.len() < 2 {
                return Err(err(
                    path,
                    line,
                    "expected tab-separated syndrome_id, syndrome_name, OMIM",
                ));
            }
            if t.rows.is_empty()
                && line == 1
                && whole(cells[0]).is_none()
                && cells[0].to_ascii_lowercase().contains("id")
            {
                // with a header, only named threshold columns count
                pp4_cols = crate::rank::pp4::columns(cells.iter().copied());
                continue; // header
            }
            let id = canonical_id(cells[0]);
            let name = cells[1].to_string();
            if id.is_empty() || name.is_empty() {
                return Err(err(path, line, "empty syndrome_id or syndrome_name"));
            }
            let omim = match cells.get(2).copied().unwrap_or("") {
                "" | "-" => None,
                s if s.eq_ignore_ascii_case("nan") || s.eq_ignore_ascii_case("na") => None,
                s => Some(
                    whole(s.trim_start_matches("OMIM:"))
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| err(path, line, format!("OMIM '{s}' is not a number")))?,
                ),
            };
            if t.by_id.contains_key(&id) {
                return Err(err(path, line, format!("syndrome_id {id} is listed twice")));
            }
            t.by_id.insert(id.clone(), t.rows.len());
            let pp4 = crate::rank::pp4::from_row(&pp4_cols, |i| cells.get(i).copied())
                .map_err(|e| err(path, line, e))?;
            t.rows.push(SyndromeInfo {
                id,
                name,
                omim,
                pp4,
            });
        }
        if t.rows.is_empty() {
            return Err(err(path, 0, "lists no syndromes"));
        }
        Ok(t)
    }

    /// The syndrome with id `id` (canonical form).
    pub fn get(&self, id: &str) -> Option<&SyndromeInfo> {
        self.by_id.get(id).and_then(|&i| self.rows.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Result<EncodingTable> {
        EncodingTable::from_reader(text.as_bytes(), Path::new("enc.csv"))
    }

    /// Names with the CSV's delimiter, quotes, line breaks and formula openers are written
    /// quoted and neutralised, and read back exactly as they were.
    #[test]
    fn written_encodings_round_trip_odd_names_and_neutralise_formulas() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("enc.csv");
        let names = [
            "a;b.jpg",
            "line\nbreak.jpg",
            "=HYPERLINK(\"x\").jpg",
            "+1.jpg",
            "-2.jpg",
            "@sum.jpg",
            "'=already.jpg",
            "''.jpg",
            "'plain.jpg",
            "quote\"in.jpg",
            "normal_1.jpg",
        ];
        let images: Vec<(String, Embeddings)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let mut e = Embeddings::default();
                e.entries.push((
                    Key {
                        model: "m0".into(),
                        flip: false,
                        gray: false,
                    },
                    vec![i as f32 + 0.5, -1.0],
                ));
                (n.to_string(), e)
            })
            .collect();
        write_encodings(&path, &images).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        // no cell starts with a formula opener
        for line in text.lines() {
            for cell in line.split(';') {
                let cell = cell.trim_start_matches('"');
                assert!(
                    !cell.starts_with(['=', '+', '@']),
                    "unneutralised cell {cell:?} in {text}"
                );
            }
        }
        let t = EncodingTable::read(&path).unwrap();
        let back: Vec<&str> = t.images.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(back, names);
        for (i, im) in t.images.iter().enumerate() {
            assert_eq!(im.embeddings.entries[0].1, vec![i as f32 + 0.5, -1.0]);
        }
    }

    const HEAD: &str = "img_name;model;flip;gray;class_conf;representations\n";

    #[test]
    fn reads_rows_and_matches_ids() {
        let t = table(&format!(
            "{HEAD}12_crop.jpg;m0;0;0;[0];[1.0, 0.5]\n12_crop.jpg;m0;True;False;[0.1];[0, 1]\n7.png;m0;0;0;[0];[2,2]\n7.png;m0;1;0;[0];[3e-1,1]\n"
        ))
        .unwrap();
        assert_eq!(t.images.len(), 2);
        assert_eq!(t.keys.len(), 2);
        assert_eq!(t.models(), vec!["m0".to_string()]);
        let im = t.find("12").unwrap().unwrap();
        assert_eq!(im.name, "12_crop.jpg");
        let k = Key {
            model: "m0".into(),
            flip: true,
            gray: false,
        };
        assert_eq!(im.embeddings.get(&k).unwrap(), &[0.0, 1.0]);
        assert_eq!(t.find("7").unwrap().unwrap().name, "7.png");
        assert!(t.find("8").unwrap().is_none());
    }

    #[test]
    fn bad_rows_name_the_line() {
        for (body, want) in [
            ("1_a;m0;0;0;[0];[1,NaN]\n", "line 2"),
            ("1_a;m0;0;0;[0];[1,2]\n1_b;m0;0;0;[0];[1,2,3]\n", "line 3"),
            ("1_a;m0;2;0;[0];[1,2]\n", "flip and gray"),
            ("1_a;m0;0;0;[0];[1,2]\n1_a;m0;0;0;[0];[1,2]\n", "second row"),
            (
                "1_a;m0;0;0;[0];[1,2]\n2_a;m0;0;0;[0];[1,2]\n2_a;m0;1;0;[0];[1,2]\n",
                "no row for m0/flip=1",
            ),
            ("1_a;m0;0;0;[0];[1e39]\n", "f32 range"),
        ] {
            let e = table(&format!("{HEAD}{body}")).unwrap_err().to_string();
            assert!(e.contains(want), "{body}: {e}");
            assert!(e.contains("enc.csv"), "{e}");
        }
        let e = table("img_name;model;flip\n").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn ambiguous_prefix_is_an_error() {
        let t = table(&format!(
            "{HEAD}5_a.jpg;m;0;0;[0];[1]\n5_b.jpg;m;0;0;[0];[1]\n"
        ))
        .unwrap();
        assert!(t.find("5").is_err());
        assert!(t.find("5_a.jpg").unwrap().is_some());
    }

    #[test]
    fn ids_are_canonical() {
        assert_eq!(canonical_id(" 12.0 "), "12");
        assert_eq!(canonical_id("abc"), "abc");
        assert_eq!(id_prefix("dir/1234_crop_square.jpg"), "1234");
        assert_eq!(id_prefix("99.png"), "99");
    }

    #[test]
    fn syndrome_pp4_thresholds_are_checked_with_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.tsv");
        let read = |text: &str| std::fs::write(&p, text).map(|_| SyndromeTable::read(&p));
        let t = read("id\tname\tOMIM\tstrong\tsupporting\n1\tA\t10\t0.8\t0.5\n2\tB\t\t\t\n");
        let t = t.unwrap().unwrap();
        let want = [None, Some(0.8), None, Some(0.5)];
        assert_eq!(
            (t.rows[0].pp4.unwrap().levels(), t.rows[1].pp4),
            (want, None)
        );
        // no header: 4th to 7th columns
        let t = read("1\tA\t10\t0.9\t0.8\t0.7\t0.6\n").unwrap().unwrap();
        assert_eq!(t.rows[0].pp4.unwrap().level(0.75), "moderate");
        for bad in ["1\tA\t10\t0.5\t0.8\n", "1\tA\t10\tx\n"] {
            let e = read(&format!("2\tB\t1\n{bad}")).unwrap().unwrap_err();
            assert!(matches!(e, Error::Gallery { .. }), "{e:?}");
            let m = e.to_string();
            assert!(
                m.contains("s.tsv") && m.contains("line 2") && m.contains("PP4"),
                "{m}"
            );
        }
    }
}
