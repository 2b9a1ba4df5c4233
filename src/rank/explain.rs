//! Why a syndrome was suggested: the distance of its nearest image per model and per view.
//!
//! Consumes the query [`Embeddings`], the [`Gallery`] and the suggested syndromes; produces,
//! for each, the cosine distance between the query and that syndrome's nearest gallery image
//! for every key (model x TTA view) and the mean per model. The ranked distance is the mean
//! over all keys, so this shows which model or view agrees with a suggestion and which does
//! not. Plain arithmetic on stored vectors; no model runs.

use serde::Serialize;

use super::{cosine_distance, SyndromeHit};
use crate::embed::Embeddings;
use crate::gallery::Gallery;

/// One key's distance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ViewDistance {
    /// Model (embedder) name.
    pub model: String,
    /// Horizontal flip of the view.
    pub flip: bool,
    /// Gray view.
    pub gray: bool,
    /// Cosine distance between the query and the image for this key.
    pub distance: f32,
}

/// One model's mean over its views.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelDistance {
    /// Model (embedder) name.
    pub model: String,
    /// Mean cosine distance over the model's views.
    pub distance: f32,
}

/// The explanation of one suggested syndrome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The syndrome.
    pub syndrome_name: String,
    /// Its nearest gallery image (the one the ranking reports).
    pub image_id: String,
    /// The ranked distance (mean over every key).
    pub distance: f32,
    /// Mean per model, in gallery key order of first appearance.
    pub per_model: Vec<ModelDistance>,
    /// Every key, in gallery key order.
    pub per_view: Vec<ViewDistance>,
}

/// Explanations of the first `n` of `hits` (skipping any whose image is no longer in
/// `gallery`, or whose keys the query lacks).
pub fn explain(
    query: &Embeddings,
    gallery: &Gallery,
    hits: &[SyndromeHit],
    n: usize,
) -> Vec<Explanation> {
    let mut out = Vec::new();
    for hit in hits.iter().take(n) {
        let Some(i) = gallery
            .images()
            .iter()
            .position(|im| im.image_id == hit.image_id)
        else {
            continue;
        };
        let Some(stored) = gallery.embeddings(i) else {
            continue;
        };
        let mut per_view = Vec::new();
        for (key, v) in &stored.entries {
            let Some(q) = query.get(key) else { continue };
            per_view.push(ViewDistance {
                model: key.model.clone(),
                flip: key.flip,
                gray: key.gray,
                distance: cosine_distance(q, v),
            });
        }
        if per_view.is_empty() {
            continue;
        }
        let mut per_model: Vec<(String, f64, usize)> = Vec::new();
        for v in &per_view {
            match per_model.iter_mut().find(|(m, _, _)| *m == v.model) {
                Some(e) => {
                    e.1 += f64::from(v.distance);
                    e.2 += 1;
                }
                None => per_model.push((v.model.clone(), f64::from(v.distance), 1)),
            }
        }
        out.push(Explanation {
            syndrome_name: hit.syndrome_name.clone(),
            image_id: hit.image_id.clone(),
            distance: hit.distance,
            per_model: per_model
                .into_iter()
                .map(|(model, sum, n)| ModelDistance {
                    model,
                    distance: (sum / n as f64) as f32,
                })
                .collect(),
            per_view,
        });
    }
    out
}
