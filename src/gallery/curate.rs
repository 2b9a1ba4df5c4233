//! Gallery curation: what a clinic corrects after a gallery was built.
//!
//! Consumes a [`Gallery`] and an edit (remove a subject or an image when consent is withdrawn,
//! relabel a subject when a diagnosis is revised, set a syndrome's PP4 thresholds); produces the
//! edited gallery in memory, which the caller writes atomically. Removal rebuilds the tables:
//! a removed subject's embeddings, name and image ids are gone from the data (nothing is only
//! marked deleted), and syndromes, genes and subjects left without an image are dropped.
//! Every edit checks first and changes nothing when it fails.

use super::{Gallery, Gene, ImageEntry, Lookup, Syndrome};
use crate::rank::pp4::Pp4Thresholds;
use crate::{Error, Result};

/// One subject as `gallery list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SubjectSummary {
    /// Subject (patient) id.
    pub subject_id: String,
    /// The syndromes of its images, in gallery order, without repeats.
    pub labels: Vec<String>,
    /// OMIM numbers of those syndromes (`None` when unknown), in the same order.
    pub omim_ids: Vec<Option<u32>>,
    /// Number of its images.
    pub images: usize,
}

/// What a removal did.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Removed {
    /// Images removed.
    pub images: usize,
    /// Subjects left without an image, removed.
    pub subjects: usize,
    /// Syndromes left without an image, removed (by name).
    pub syndromes: Vec<String>,
    /// Genes left without an image, removed.
    pub genes: usize,
}

impl Gallery {
    /// The PP4 thresholds of syndrome `i` (an index into [`Gallery::syndromes`]); `None`
    /// when it has none or `i` is out of range.
    pub fn pp4(&self, i: usize) -> Option<&Pp4Thresholds> {
        self.data.pp4.get(i).filter(|t| !t.is_empty())
    }

    /// Sets the PP4 thresholds of the syndrome named `syndrome` (empty thresholds remove
    /// them). [`Error::Usage`] naming it when the gallery has no such syndrome.
    pub fn set_pp4(&mut self, syndrome: &str, thresholds: Pp4Thresholds) -> Result<()> {
        let slot = self
            .lookup
            .syndromes
            .get(syndrome)
            .and_then(|&i| self.data.pp4.get_mut(i))
            .ok_or_else(|| Error::Usage(format!("the gallery has no syndrome '{syndrome}'")))?;
        *slot = thresholds;
        Ok(())
    }

    /// Revision counter; 0 for a new gallery. Tools bump it each time they rewrite the file.
    pub fn revision(&self) -> u32 {
        self.data.revision
    }

    /// Sets the revision counter.
    pub fn set_revision(&mut self, revision: u32) {
        self.data.revision = revision;
    }

    /// Raises the revision counter by one (each rewrite of a file does) and returns it; at
    /// `u32::MAX` the counter would wrap to an older revision, so that is an
    /// [`Error::Gallery`] and the counter is unchanged.
    pub fn bump_revision(&mut self) -> Result<u32> {
        let next = self.data.revision.checked_add(1).ok_or_else(|| {
            Error::gallery(
                &self.source,
                format!(
                    "revision {} is the last one a gallery can hold, and devices refuse any \
                     lower revision of a gallery made with this bundle (whatever its version \
                     label): a newer gallery needs a new bundle (another bundle id), or an \
                     operator resetting the devices' revision marks",
                    self.data.revision
                ),
            )
        })?;
        self.data.revision = next;
        Ok(next)
    }

    /// Every subject with its labels and image count, in subjects-table order.
    pub fn subject_summaries(&self) -> Vec<SubjectSummary> {
        let mut out: Vec<SubjectSummary> = self
            .data
            .subjects
            .iter()
            .map(|s| SubjectSummary {
                subject_id: s.clone(),
                labels: Vec::new(),
                omim_ids: Vec::new(),
                images: 0,
            })
            .collect();
        for im in &self.data.images {
            let Some(s) = out.get_mut(im.subject as usize) else {
                continue;
            };
            s.images += 1;
            if let Some(syn) = self.data.syndromes.get(im.syndrome as usize) {
                if !s.labels.contains(&syn.name) {
                    s.labels.push(syn.name.clone());
                    s.omim_ids.push(syn.omim);
                }
            }
        }
        out
    }

    /// Removes every image of subject `subject`. [`Error::Usage`] naming it when unknown.
    pub fn remove_subject(&mut self, subject: &str) -> Result<Removed> {
        let Some(&s) = self.lookup.subjects.get(subject) else {
            return Err(Error::Usage(format!(
                "subject '{subject}' is not in the gallery {}",
                self.display_path().display()
            )));
        };
        Ok(self.retain(|im| im.subject as usize != s))
    }

    /// Removes the image `image_id`. [`Error::Usage`] naming it when unknown.
    pub fn remove_image(&mut self, image_id: &str) -> Result<Removed> {
        if !self.lookup.images.contains(image_id) {
            return Err(Error::Usage(format!(
                "image '{image_id}' is not in the gallery {}",
                self.display_path().display()
            )));
        }
        Ok(self.retain(|im| im.image_id != image_id))
    }

    /// Gives every image of `subject` the syndrome `label` (created when new, with `omim`);
    /// with `gene`, its images' genes become that one gene. Syndromes left without an image
    /// are removed. [`Error::Usage`] when the subject is unknown, when `label` exists with
    /// another OMIM number than `omim`, or when `gene` exists with another Entrez id.
    pub fn relabel(
        &mut self,
        subject: &str,
        label: &str,
        omim: Option<u32>,
        gene: Option<(&str, Option<u32>)>,
    ) -> Result<Removed> {
        let Some(&s) = self.lookup.subjects.get(subject) else {
            return Err(Error::Usage(format!(
                "subject '{subject}' is not in the gallery {}",
                self.display_path().display()
            )));
        };
        if label.trim().is_empty() {
            return Err(Error::Usage("the new label is empty".into()));
        }
        let existing = self.lookup.syndromes.get(label).copied();
        if let (Some(i), Some(want)) = (existing, omim) {
            let have = self.data.syndromes.get(i).and_then(|x| x.omim);
            if have != Some(want) {
                return Err(Error::Usage(format!(
                    "syndrome '{label}' has OMIM {} in the gallery, not {want}; relabel with --omim {} or choose another label",
                    have.map_or_else(|| "none".to_string(), |v| v.to_string()),
                    have.map_or_else(|| "(none)".to_string(), |v| v.to_string()),
                )));
            }
        }
        let gene_index = match gene {
            None => None,
            Some((name, _)) if name.trim().is_empty() => {
                return Err(Error::Usage("the new gene name is empty".into()))
            }
            Some((name, entrez)) => match self.lookup.genes.get(name).copied() {
                Some(g) => {
                    let have = self.data.genes.get(g).and_then(|x| x.entrez);
                    if entrez.is_some() && have != entrez {
                        return Err(Error::Usage(format!(
                            "gene '{name}' has Entrez id {} in the gallery, not {}",
                            have.map_or_else(|| "none".to_string(), |v| v.to_string()),
                            entrez.map_or_else(|| "none".to_string(), |v| v.to_string()),
                        )));
                    }
                    Some(g)
                }
                None => None,
            },
        };
        if self.data.syndromes.len() >= u32::MAX as usize
            || self.data.genes.len() >= u32::MAX as usize
        {
            return Err(Error::Usage("the gallery is full (2^32 entries)".into()));
        }
        // checks done: mutate
        let syndrome = match existing {
            Some(i) => i,
            None => {
                self.data.syndromes.push(Syndrome {
                    name: label.to_string(),
                    omim,
                });
                self.data.pp4.push(Pp4Thresholds::default());
                self.data.syndromes.len() - 1
            }
        };
        let gene_index = match (gene, gene_index) {
            (Some((name, entrez)), None) => {
                self.data.genes.push(Gene {
                    name: name.to_string(),
                    entrez,
                });
                Some(self.data.genes.len() - 1)
            }
            (_, g) => g,
        };
        for im in self
            .data
            .images
            .iter_mut()
            .filter(|im| im.subject as usize == s)
        {
            im.syndrome = syndrome as u32;
            if let Some(g) = gene_index {
                im.genes = vec![g as u32];
            }
        }
        Ok(self.retain(|_| true))
    }

    /// Keeps the images `keep` accepts (their embeddings and index rows with them), then
    /// drops syndromes, genes and subjects no image refers to and renumbers the rest.
    fn retain(&mut self, keep: impl Fn(&ImageEntry) -> bool) -> Removed {
        let per_image = self.image_bytes().unwrap_or(0);
        let old_images = std::mem::take(&mut self.data.images);
        let old_blob = std::mem::take(&mut self.data.embeddings);
        let old_factors = std::mem::take(&mut self.inv_norm);
        let mut factors: Vec<Vec<f32>> = vec![Vec::new(); old_factors.len()];
        let mut images = Vec::with_capacity(old_images.len());
        let mut blob = Vec::with_capacity(old_blob.len());
        let mut removed = Removed::default();
        for (i, im) in old_images.into_iter().enumerate() {
            if !keep(&im) {
                removed.images += 1;
                continue;
            }
            let at = i * per_image;
            blob.extend_from_slice(old_blob.get(at..at + per_image).unwrap_or_default());
            for (slot, old) in factors.iter_mut().zip(&old_factors) {
                slot.push(old.get(i).copied().unwrap_or(0.0));
            }
            images.push(im);
        }

        // renumber the tables, keeping the order of the entries still used
        let used = |n: usize, refs: &mut dyn Iterator<Item = u32>| {
            let mut map = vec![None; n];
            for r in refs {
                if let Some(slot) = map.get_mut(r as usize) {
                    *slot = Some(0u32);
                }
            }
            // indices fit in u32: the tables did before
            for (next, slot) in map.iter_mut().flatten().enumerate() {
                *slot = next as u32;
            }
            map
        };
        let syn_map = used(
            self.data.syndromes.len(),
            &mut images.iter().map(|im| im.syndrome),
        );
        let subj_map = used(
            self.data.subjects.len(),
            &mut images.iter().map(|im| im.subject),
        );
        let gene_map = used(
            self.data.genes.len(),
            &mut images.iter().flat_map(|im| im.genes.iter().copied()),
        );
        for im in &mut images {
            im.syndrome = syn_map[im.syndrome as usize].unwrap_or(0);
            im.subject = subj_map[im.subject as usize].unwrap_or(0);
            for g in &mut im.genes {
                *g = gene_map[*g as usize].unwrap_or(0);
            }
        }
        let d = &mut self.data;
        let mut syndromes = Vec::new();
        let mut pp4 = Vec::new();
        for ((s, t), m) in d.syndromes.drain(..).zip(d.pp4.drain(..)).zip(&syn_map) {
            if m.is_some() {
                syndromes.push(s);
                pp4.push(t);
            } else {
                removed.syndromes.push(s.name);
            }
        }
        let before = (d.subjects.len(), d.genes.len());
        d.subjects = filter_by(std::mem::take(&mut d.subjects), &subj_map);
        d.genes = filter_by(std::mem::take(&mut d.genes), &gene_map);
        removed.subjects = before.0 - d.subjects.len();
        removed.genes = before.1 - d.genes.len();
        d.syndromes = syndromes;
        d.pp4 = pp4;
        d.images = images;
        d.embeddings = blob;
        self.inv_norm = factors;
        self.lookup = Lookup::of(&self.data);
        removed
    }
}

fn filter_by<T>(v: Vec<T>, map: &[Option<u32>]) -> Vec<T> {
    v.into_iter()
        .zip(map)
        .filter_map(|(x, m)| m.map(|_| x))
        .collect()
}

#[cfg(test)]
#[path = "curate_tests.rs"]
mod tests;
