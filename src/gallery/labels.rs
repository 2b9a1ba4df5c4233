//! The labels CSV of `gallery build`: which diagnosed photo shows what.
//!
//! Consumes a CSV file with a header naming the columns `image` and `label`, and optionally
//! `subject`, `omim`, `gene`, `entrez` (any order, any case; fields trimmed); produces one
//! [`LabelRow`] per record: the image path as written (relative to the CSV's folder) and the
//! [`Case`] to enrol. Errors name the file and the line; they are usage errors (exit code 2
//! in the CLI's table): the CSV is the operator's input, not a data file of the reference.

use std::path::Path;

use super::Case;
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
}

fn usage(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Usage(format!("{}: {msg}", path.display()))
}

/// Reads a labels CSV; an empty list is an error.
pub fn read_labels(path: &Path) -> Result<Vec<LabelRow>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| usage(path, format!("cannot read the labels CSV: {e}")))?;
    let headers = reader
        .headers()
        .map_err(|e| usage(path, format!("cannot read the header: {e}")))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(image), Some(label)) = (col("image"), col("label")) else {
        return Err(usage(path, "the header must name the columns image and label (optional: subject, omim, gene, entrez)"));
    };
    let (subject, omim, gene, entrez) = (col("subject"), col("omim"), col("gene"), col("entrez"));
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
        });
    }
    if rows.is_empty() {
        return Err(usage(path, "lists no photos"));
    }
    Ok(rows)
}
