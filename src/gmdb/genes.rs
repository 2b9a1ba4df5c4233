//! Gene metadata for imported galleries: genes per image id or per syndrome id.
//!
//! Consumes a CSV or TSV file with a header naming `image_id` or `syndrome_id`,
//! `gene_name` (or `gene`, `gene_symbol`) and optionally `gene_entrez_id` (or `entrez`,
//! `entrez_id`); produces a [`GeneTable`]. Problems are [`crate::Error::Gallery`] (exit
//! code 6) naming the file and line.

use std::collections::HashMap;
use std::path::Path;

use super::reference::{canonical_id, err, whole};
use crate::Result;

/// A gene as `(symbol, Entrez id)`.
pub type GeneRef = (String, Option<u32>);

/// Gene metadata: genes per image id or per syndrome id (CSV or TSV with a header naming
/// `image_id` or `syndrome_id`, `gene_name` (or `gene`) and optionally `gene_entrez_id`
/// (or `entrez`)).
#[derive(Debug, Clone, Default)]
pub struct GeneTable {
    /// Genes of single images.
    pub per_image: HashMap<String, Vec<GeneRef>>,
    /// Genes of every image of a syndrome.
    pub per_syndrome: HashMap<String, Vec<GeneRef>>,
}

impl GeneTable {
    /// Reads gene metadata (tab-separated when the header holds a tab, else commas).
    pub fn read(path: &Path) -> Result<GeneTable> {
        let text = crate::fsio::read_text_capped(path, crate::fsio::Cap::TABLE)
            .map_err(|e| err(path, 0, e))?;
        let tab = text.lines().next().is_some_and(|h| h.contains('\t'));
        let mut rdr = csv::ReaderBuilder::new()
            .delimiter(if tab { b'\t' } else { b',' })
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let headers = rdr
            .headers()
            .map_err(|e| err(path, 1, format!("cannot read the header: {e}")))?
            .clone();
        let col = |names: &[&str]| {
            headers
                .iter()
                .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
        };
        let c_image = col(&["image_id"]);
        let c_synd = col(&["syndrome_id"]);
        let c_gene = col(&["gene_name", "gene", "gene_symbol"]);
        let c_entrez = col(&["gene_entrez_id", "entrez", "entrez_id"]);
        let (Some(c_gene), Some(c_owner)) = (c_gene, c_image.or(c_synd)) else {
            return Err(err(
                path,
                1,
                "the header must name image_id or syndrome_id, and gene_name (optional: gene_entrez_id)",
            ));
        };
        let per_image = c_image.is_some();
        let mut t = GeneTable::default();
        for record in rdr.records() {
            let record = record.map_err(|e| {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                err(path, line, format!("malformed row: {e}"))
            })?;
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            let owner = canonical_id(record.get(c_owner).unwrap_or(""));
            let gene = record.get(c_gene).unwrap_or("").to_string();
            if owner.is_empty() || gene.is_empty() {
                return Err(err(path, line, "empty id or gene_name"));
            }
            let entrez = match c_entrez.and_then(|c| record.get(c)).unwrap_or("") {
                "" => None,
                s if s.eq_ignore_ascii_case("nan") => None,
                s => Some(
                    whole(s)
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| {
                            err(path, line, format!("Entrez id '{s}' is not a number"))
                        })?,
                ),
            };
            let map = if per_image {
                &mut t.per_image
            } else {
                &mut t.per_syndrome
            };
            let list = map.entry(owner).or_default();
            if !list.iter().any(|(g, _)| g == &gene) {
                list.push((gene, entrez));
            }
        }
        Ok(t)
    }

    /// The genes of an image: its own, else its syndrome's.
    pub fn genes_of(&self, image_id: &str, syndrome_id: &str) -> Vec<GeneRef> {
        self.per_image
            .get(image_id)
            .or_else(|| self.per_syndrome.get(syndrome_id))
            .cloned()
            .unwrap_or_default()
    }
}
