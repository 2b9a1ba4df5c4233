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

/// One pass's keyed embedding.
type Pass = Result<(Key, Vec<f32>)>;

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
        let run = |(m, key): &(usize, Key)| -> Pass {
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
        // one queue in ensemble order: each worker takes the next pass when it is free, so
        // the threads finish together instead of one carrying the larger models' share
        // (measured: 12 int8 perf passes on 2 threads ~667 -> ~580 ms against fixed halves;
        // a costliest-first order measured the same as this one)
        let order: Vec<usize> = (0..jobs.len()).collect();
        let results = crate::engine::queue::run(&order, self.threads, |i| run(&jobs[i]))
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(Error::Internal("an embedding worker panicked".into())))
            });
        let entries = results.collect::<Result<Vec<_>>>()?;
        Ok(Embeddings { entries })
    }
}
