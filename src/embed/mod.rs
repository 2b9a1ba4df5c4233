//! Embedding: test-time-augmentation views of an aligned face, the ensemble that runs them
//! through every embedder of the bundle (`ensemble.rs`: [`crate::bundle::Bundle::embed`],
//! threads and all), and the keyed embeddings it produces.
//!
//! Consumes an [`crate::align::AlignedFace`] (112x112 RGB); produces [`Embeddings`], one
//! vector per [`Key`] = (model name, flip, gray). Distances are always paired by key, never by
//! position, so the order of entries carries no meaning.

mod ensemble;
mod view;

pub use ensemble::manifest_keys;
pub use view::{gray, gray_value, view};

/// The identity of one embedding: which model, and which TTA view.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Key {
    /// Embedder name, as in the bundle manifest.
    pub model: String,
    /// Horizontally flipped view.
    pub flip: bool,
    /// Gray view (OpenCV RGB2GRAY, replicated to 3 channels, applied before the flip).
    pub gray: bool,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/flip={}/gray={}",
            self.model, self.flip as u8, self.gray as u8
        )
    }
}

/// The TTA views in the reference order: (flip, gray) = (0,0), (0,1), (1,0), (1,1).
pub const TTA_VIEWS: [(bool, bool); 4] = {
    let v = crate::bundle::manifest::REFERENCE_VIEWS;
    [
        (v[0][0], v[0][1]),
        (v[1][0], v[1][1]),
        (v[2][0], v[2][1]),
        (v[3][0], v[3][1]),
    ]
};

/// Embeddings of one face, one vector per key. Vectors are as the model produced them
/// (not normalised); cosine distance normalises.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Embeddings {
    /// `(key, vector)` pairs; keys are unique.
    pub entries: Vec<(Key, Vec<f32>)>,
}

impl Embeddings {
    /// The vector stored under `key`, if any.
    pub fn get(&self, key: &Key) -> Option<&[f32]> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// The keys, in stored order.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.entries.iter().map(|(k, _)| k)
    }
}
