//! The labels CSV of `gallery build`: which diagnosed photo shows what.
//!
//! Consumes a CSV file with a header naming the columns `image` and `label`, and optionally
//! `subject`, `omim`, `gene`, `entrez` and the PP4 thresholds `very_strong`, `strong`,
//! `moderate`, `supporting` (any order, any case; fields trimmed); produces one
//! [`LabelRow`] per record: the image path as written (relative to the CSV's folder) and the
//! [`Case`] to enrol. Errors name the file and the line; they are usage errors (exit code 2
//! in the CLI's table): the CSV is the operator's input, not a data file of the reference.

use std::path::Path;

use super::Case;
use crate::rank::pp4::{self, Pp4Thresholds};
use crate::{Error, Result};

/// One record of a labels CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelRow {
    /// Line of the record in the file (1-based, the header is line 1).
    pub line: u64,
    /// The image path as written in the file.
    pub image: String,
    /// The diagnosis to enrol for that image.
    pub case: Case,
    /// PP4 thresholds of its syndrome given on this line (rows of one syndrome agree).
    pub pp4: Option<Pp4Thresholds>,
}

/// The PP4 thresholds per syndrome named in `rows` (first mention of each).
pub fn thresholds(rows: &[LabelRow]) -> Vec<(&str, Pp4Thresholds)> {
    let mut out: Vec<(&str, Pp4Thresholds)> = Vec::new();
    for r in rows {
        if let Some(t) = r.pp4 {
            if !out.iter().any(|(n, _)| *n == r.case.syndrome) {
                out.push((r.case.syndrome.as_str(), t));
            }
        }
    }
    out
}

fn usage(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Usage(format!("{}: {msg}", path.display()))
}

/// Reads a labels CSV; an empty list is an error.
pub fn read_labels(path: &Path) -> Result<Vec<LabelRow>> {
    let file = crate::fsio::open_capped(path, crate::fsio::Cap::TABLE)
        .map_err(|e| usage(path, format!("the labels CSV: {e}")))?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(file);
    let headers = reader
        .headers()
        .map_err(|e| usage(path, format!("cannot read the header: {e}")))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(image), Some(label)) = (col("image"), col("label")) else {
        return Err(usage(path, "the header must name the columns image and label (optional: subject, omim, gene, entrez, very_strong, strong, moderate, supporting)"));
    };
    let (subject, omim, gene, entrez) = (col("subject"), col("omim"), col("gene"), col("entrez"));
    let pp4_cols = pp4::columns(headers.iter());
    let mut first_pp4: std::collections::HashMap<String, (u64, Pp4Thresholds)> =
        std::collections::HashMap::new();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| usage(path, format!("malformed CSV: {e}")))?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let field = |i: Option<usize>| {
            i.and_then(|i| record.get(i))
                .map(str::to_string)
                .filter(|s| !s.is_empty())
        };
        let number = |i: Option<usize>, what: &str| -> Result<Option<u32>> {
            field(i)
                .map(|s| {
                    s.parse::<u32>().map_err(|_| {
                        usage(
                            path,
                            format!("line {line}: {what} '{s}' is not a whole number"),
                        )
                    })
                })
                .transpose()
        };
        let img = field(Some(image))
            .ok_or_else(|| usage(path, format!("line {line}: empty image column")))?;
        let syndrome = field(Some(label))
            .ok_or_else(|| usage(path, format!("line {line}: empty label column")))?;
        let entrez_id = number(entrez, "entrez id")?;
        let genes = match field(gene) {
            Some(g) => vec![(g, entrez_id)],
            None if entrez_id.is_some() => {
                return Err(usage(
                    path,
                    format!("line {line}: an entrez id without a gene"),
                ))
            }
            None => vec![],
        };
        let t = pp4::from_row(&pp4_cols, |i| record.get(i))
            .map_err(|e| usage(path, format!("line {line}: {e}")))?;
        if let Some(t) = t {
            match first_pp4.get(&syndrome) {
                Some((first, known)) if *known != t => {
                    return Err(usage(
                        path,
                        format!("line {line}: the PP4 thresholds of '{syndrome}' differ from those on line {first}"),
                    ))
                }
                Some(_) => {}
                None => {
                    first_pp4.insert(syndrome.clone(), (line, t));
                }
            }
        }
        let case = Case {
            image_id: img.clone(),
            subject: field(subject),
            syndrome,
            omim: number(omim, "OMIM id")?,
            genes,
        };
        rows.push(LabelRow {
            line,
            image: img,
            case,
            pp4: t,
        });
    }
    if rows.is_empty() {
        return Err(usage(path, "lists no photos"));
    }
    Ok(rows)
}
