//! The embedding stage over a bundle's embedders: every TTA view of the aligned face through
//! every ensemble member, the passes spread over the bundle's worker threads.
//!
//! Consumes a loaded [`Bundle`] and an aligned face (RGB, normally the 112x112 crop);
//! produces [`Embeddings`], one finite vector per (model, flip, gray) key
//! ([`Bundle::embed`]). The passes are independent, so they run on up to the bundle's worker
//! threads (see [`crate::engine::Engine::workers`]); the result does not depend on the thread
//! count.

use image::RgbImage;

use super::{view, Embeddings, Key};
use crate::bundle::{input, Bundle, Manifest};
use crate::{Error, Result};

/// Every embedding key the ensemble of `manifest` produces, with its width, in ensemble then
/// view order (what a gallery for this bundle holds per image).
pub fn manifest_keys(manifest: &Manifest) -> Vec<(Key, u32)> {
    manifest
        .embedders
        .iter()
        .flat_map(|e| {
            e.views.iter().map(move |v| {
                (
                    Key {
                        model: e.name.clone(),
                        flip: v[0],
                        gray: v[1],
                    },
                    e.width,
                )
            })
        })
        .collect()
}

impl Bundle {
    /// Every embedding key this bundle produces, with its width, in ensemble then view order.
    pub fn keys(&self) -> Vec<(Key, u32)> {
        manifest_keys(&self.manifest)
    }

    /// Embeds an aligned face (RGB, any size: it is used as is at the top-left of each
    /// embedder's input, so pass the 112x112 crop) under every view of every embedder.
    pub fn embed(&self, face: &RgbImage) -> Result<Embeddings> {
        let mut jobs = Vec::new();
        for (m, spec) in self.manifest.embedders.iter().enumerate() {
            for v in &spec.views {
                jobs.push((
                    m,
                    Key {
                        model: spec.name.clone(),
                        flip: v[0],
                        gray: v[1],
                    },
                ));
            }
        }
        let run = |(m, key): &(usize, Key)| -> Result<(Key, Vec<f32>)> {
            let view = view(face, key.flip, key.gray);
            let data = input::to_nchw(&view, &self.manifest.embedders[*m].input);
            let mut out = self.embedders[*m].run(data)?;
            if out.is_empty() {
                return Err(Error::bundle(
                    self.embedders[*m].path(),
                    "the model produced no output",
                ));
            }
            let v = out.swap_remove(0);
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Error::bundle(
                    self.embedders[*m].path(),
                    "the embedding holds NaN or infinite values",
                ));
            }
            Ok((key.clone(), v))
        };
        let results: Vec<Result<(Key, Vec<f32>)>> = if self.threads <= 1 || jobs.len() <= 1 {
            jobs.iter().map(run).collect()
        } else {
            let chunk = jobs.len().div_ceil(self.threads);
            std::thread::scope(|s| {
                let handles: Vec<_> = jobs
                    .chunks(chunk)
                    .map(|c| s.spawn(move || c.iter().map(run).collect::<Vec<_>>()))
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| {
                        h.join().unwrap_or_else(|_| {
                            vec![Err(Error::Internal("an embedding worker panicked".into()))]
                        })
                    })
                    .collect()
            })
        };
        let entries = results.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(Embeddings { entries })
    }
}
