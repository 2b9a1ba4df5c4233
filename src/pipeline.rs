//! The pipeline: a [`Frame`] in, the analysed face out (detection, aligned crop, keyed
//! embeddings), and with a gallery, a [`Prediction`]. Composes the stage modules; holds no
//! model code of its own. [`predict_fused`] ranks several photos of one patient as one query.
//!
//! Reference behaviour (GestaltMatcher-Arc): the highest-scoring face; landmarks truncated to
//! whole pixels; a second detection on the photo rotated about the nose so the eyes are level,
//! whose landmarks drive the alignment.

use std::time::Instant;

use serde::Serialize;

use crate::align::{self, AlignedFace};
use crate::bundle::Bundle;
use crate::capture::Frame;
use crate::detect::{self, Detection, FaceChoice};
use crate::embed::Embeddings;
use crate::gallery::Gallery;
use crate::rank::{self, RankOptions, Ranking};
use crate::{Error, Result};

/// How the pipeline treats a photo.
#[derive(Debug, Clone, Copy)]
pub struct PipelineOptions {
    /// Which face to analyse when several are found.
    pub face_choice: FaceChoice,
    /// Detect again on the photo rotated so the eyes are level (the reference; twice the
    /// detection cost).
    pub two_pass: bool,
    /// Truncate landmarks to whole pixels (the reference).
    pub integer_landmarks: bool,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            face_choice: FaceChoice::HighestScore,
            two_pass: true,
            integer_landmarks: true,
        }
    }
}

/// Milliseconds spent per stage.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StageTimings {
    /// Face detection (both passes, including the rotation).
    pub detect_ms: f64,
    /// Similarity fit and warp.
    pub align_ms: f64,
    /// Every embedding of the face.
    pub embed_ms: f64,
    /// Distances and ranking (0 without a gallery).
    pub rank_ms: f64,
}

/// One analysed face.
#[derive(Debug, Clone)]
pub struct FaceAnalysis {
    /// Faces the first detection pass found in the photo.
    pub faces_found: usize,
    /// The chosen face, first pass, in photo pixels.
    pub detection: Detection,
    /// The 112x112 crop the embeddings were computed from.
    pub aligned: AlignedFace,
    /// One embedding per (model, flip, gray) key.
    pub embeddings: Embeddings,
    /// Time per stage.
    pub timings: StageTimings,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn truncated(mut d: Detection, on: bool) -> Detection {
    if on {
        for p in d.landmarks_px.iter_mut() {
            p[0] = p[0].trunc();
            p[1] = p[1].trunc();
        }
    }
    d
}

/// Detects, aligns and embeds the face in `frame`. [`Error::NoFace`] when none is found.
pub fn analyse(bundle: &Bundle, frame: &Frame, opts: &PipelineOptions) -> Result<FaceAnalysis> {
    let t = Instant::now();
    let faces = bundle.detect(&frame.rgb)?;
    let first = detect::choose(&faces, opts.face_choice)
        .map(|d| truncated(d, opts.integer_landmarks))
        .ok_or_else(|| Error::NoFace {
            path: frame.source.clone(),
            detail: String::new(),
        })?;
    let mut second = None;
    if opts.two_pass {
        let lm = &first.landmarks_px;
        let angle = align::eye_angle_deg(lm);
        let rotated = align::rotate_about(&frame.rgb, lm[2], angle);
        let again = bundle.detect(&rotated)?;
        if let Some(d) = detect::choose(&again, opts.face_choice) {
            second = Some((rotated, truncated(d, opts.integer_landmarks)));
        }
    }
    let detect_ms = ms(t);

    let t = Instant::now();
    let (image, landmarks) = match &second {
        Some((rotated, d)) => (rotated, d.landmarks_px),
        None => (&frame.rgb, first.landmarks_px),
    };
    let aligned = align::align(image, &landmarks).map_err(|e| Error::NoFace {
        path: frame.source.clone(),
        detail: format!(" (the landmarks cannot be aligned: {e})"),
    })?;
    let align_ms = ms(t);

    let t = Instant::now();
    let embeddings = bundle.embed(&aligned.rgb)?;
    let embed_ms = ms(t);
    Ok(FaceAnalysis {
        faces_found: faces.len(),
        detection: first,
        aligned,
        embeddings,
        timings: StageTimings {
            detect_ms,
            align_ms,
            embed_ms,
            rank_ms: 0.0,
        },
    })
}

/// The chosen face as reported in results.
#[derive(Debug, Clone, Serialize)]
pub struct FaceReport {
    /// `[x1, y1, x2, y2]` in photo pixels.
    pub bbox_px: [f32; 4],
    /// Detector confidence.
    pub score: f32,
    /// Five landmarks `[x, y]` in photo pixels (eyes, nose, mouth corners).
    pub landmarks_px: [[f32; 2]; 5],
}

/// The result for one photo: the reference's output fields plus provenance and timings.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// The photo as given.
    pub image: String,
    /// Bundle name and version.
    pub model_version: String,
    /// The gallery's version.
    pub gallery_version: String,
    /// Id of the model bundle that produced the embeddings.
    pub bundle_id: String,
    /// Faces found in the photo.
    pub faces_found: usize,
    /// The face that was analysed.
    pub face: FaceReport,
    /// Syndromes, nearest first.
    pub suggested_syndromes_list: Vec<rank::SyndromeHit>,
    /// Genes, nearest first.
    pub suggested_genes_list: Vec<rank::GeneHit>,
    /// Gallery patients, nearest first.
    pub suggested_patients_list: Vec<rank::PatientHit>,
    /// Gallery images compared.
    pub images_compared: usize,
    /// Time per stage.
    pub timings_ms: StageTimings,
    /// Per top syndrome, the distance per model and view of its nearest image (filled by
    /// [`explain`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Vec<rank::explain::Explanation>>,
    /// The query embeddings the lists were ranked with (not serialised).
    #[serde(skip)]
    pub query: Embeddings,
}

/// How many syndromes [`explain`] explains (the device screen's top 5).
pub const EXPLAIN_TOP: usize = 5;

/// Adds the explanation of the top-5 syndromes to `p` (see [`rank::explain`]).
pub fn explain(p: &mut Prediction, gallery: &Gallery) {
    p.explanation = Some(rank::explain::explain(
        &p.query,
        gallery,
        &p.suggested_syndromes_list,
        EXPLAIN_TOP,
    ));
}

/// Analyses `frame` and ranks it against the matcher's gallery (through its index when it has
/// one: the same lists as the flat scan). The gallery must come from this bundle.
pub fn predict(
    bundle: &Bundle,
    matcher: &rank::Matcher<'_>,
    frame: &Frame,
    opts: &PipelineOptions,
    rank_opts: &RankOptions,
) -> Result<Prediction> {
    let gallery = matcher.gallery();
    check_gallery(bundle, gallery)?;
    let a = analyse(bundle, frame, opts)?;
    let t = Instant::now();
    let (
        Ranking {
            syndromes,
            genes,
            patients,
            images_compared,
        },
        _,
    ) = matcher.rank(&a.embeddings, rank_opts)?;
    let mut timings = a.timings;
    timings.rank_ms = ms(t);
    Ok(Prediction {
        image: frame.source.display().to_string(),
        model_version: bundle.model_version(),
        gallery_version: gallery.gallery_version().to_string(),
        bundle_id: bundle.id.clone(),
        faces_found: a.faces_found,
        face: FaceReport {
            bbox_px: a.detection.bbox_px,
            score: a.detection.score,
            landmarks_px: a.detection.landmarks_px,
        },
        suggested_syndromes_list: syndromes,
        suggested_genes_list: genes,
        suggested_patients_list: patients,
        images_compared,
        timings_ms: timings,
        explanation: None,
        query: a.embeddings,
    })
}

/// Refuses a gallery made with another bundle.
pub fn check_gallery(bundle: &Bundle, gallery: &Gallery) -> Result<()> {
    if gallery.bundle_id() != bundle.id {
        return Err(Error::gallery(
            gallery.source(),
            format!(
                "was built with another model bundle (id {}) than the one loaded (id {}, {}); rebuild the gallery with this bundle",
                gallery.bundle_id(),
                bundle.id,
                bundle.path.display()
            ),
        ));
    }
    Ok(())
}

/// A photo of a fused query that was analysed.
#[derive(Debug, Clone, Serialize)]
pub struct FusedPhoto {
    /// The photo as given.
    pub image: String,
    /// Faces found in it.
    pub faces_found: usize,
    /// The face that was analysed.
    pub face: FaceReport,
}

/// A photo of a fused query that could not be used.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedPhoto {
    /// The photo as given.
    pub image: String,
    /// Why (the error message).
    pub error: String,
    /// The exit code that error has on its own (3 no face, 4 unreadable, ...), as the
    /// caller's exit-code table gives it.
    pub exit_code: i32,
}

/// The result for several photos of one patient, fused into one query ([`crate::fuse`]).
#[derive(Debug, Clone, Serialize)]
pub struct FusedPrediction {
    /// Bundle name and version.
    pub model_version: String,
    /// The gallery's version.
    pub gallery_version: String,
    /// Id of the model bundle that produced the embeddings.
    pub bundle_id: String,
    /// The photos fused, each with its face.
    pub images: Vec<FusedPhoto>,
    /// Photos left out, with the reason.
    pub skipped: Vec<SkippedPhoto>,
    /// Whether the fused photos look like one person (their pairwise distances).
    pub consistency: crate::fuse::Consistency,
    /// Syndromes, nearest first (PP4 levels withheld when more than one photo was fused).
    pub suggested_syndromes_list: Vec<rank::SyndromeHit>,
    /// Genes, nearest first.
    pub suggested_genes_list: Vec<rank::GeneHit>,
    /// Gallery patients, nearest first.
    pub suggested_patients_list: Vec<rank::PatientHit>,
    /// Gallery images compared.
    pub images_compared: usize,
    /// Time per stage, summed over the photos.
    pub timings_ms: StageTimings,
    /// As [`Prediction::explanation`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Vec<rank::explain::Explanation>>,
    /// The fused query (not serialised).
    #[serde(skip)]
    pub query: Embeddings,
}

/// Fuses the analysed faces of one patient's photos and ranks the fused query.
///
/// `photos` pairs each usable photo's name with its analysis; `skipped` lists the photos the
/// caller could not use (reported as given). [`Error::Usage`] when `photos` is empty. PP4
/// levels are withheld when more than one photo is fused (the thresholds are calibrated on
/// single photos). `consistency_distance` is the pairwise distance above which the photos are
/// flagged as possibly not one person.
pub fn predict_fused(
    bundle: &Bundle,
    matcher: &rank::Matcher<'_>,
    photos: Vec<(String, FaceAnalysis)>,
    skipped: Vec<SkippedPhoto>,
    rank_opts: &RankOptions,
    consistency_distance: f32,
) -> Result<FusedPrediction> {
    let gallery = matcher.gallery();
    check_gallery(bundle, gallery)?;
    let mut used = Vec::new();
    let mut timings = StageTimings::default();
    let mut embeddings = Vec::new();
    for (image, a) in photos {
        timings.detect_ms += a.timings.detect_ms;
        timings.align_ms += a.timings.align_ms;
        timings.embed_ms += a.timings.embed_ms;
        used.push(FusedPhoto {
            image,
            faces_found: a.faces_found,
            face: FaceReport {
                bbox_px: a.detection.bbox_px,
                score: a.detection.score,
                landmarks_px: a.detection.landmarks_px,
            },
        });
        embeddings.push(a.embeddings);
    }
    if embeddings.is_empty() {
        return Err(Error::Usage("no photo to fuse".into()));
    }
    let consistency = crate::fuse::consistency(&embeddings, consistency_distance)?;
    let query = crate::fuse::fuse(&embeddings)?;
    let t = Instant::now();
    let (ranking, _) = matcher.rank(&query, rank_opts)?;
    timings.rank_ms = ms(t);
    let mut syndromes = ranking.syndromes;
    if used.len() > 1 {
        for s in &mut syndromes {
            s.withhold_pp4(rank::pp4::WITHHELD_FUSED);
        }
    }
    Ok(FusedPrediction {
        model_version: bundle.model_version(),
        gallery_version: gallery.gallery_version().to_string(),
        bundle_id: bundle.id.clone(),
        images: used,
        skipped,
        consistency,
        suggested_syndromes_list: syndromes,
        suggested_genes_list: ranking.genes,
        suggested_patients_list: ranking.patients,
        images_compared: ranking.images_compared,
        timings_ms: timings,
        explanation: None,
        query,
    })
}

/// Adds the explanation of the top-5 syndromes to a fused result.
pub fn explain_fused(p: &mut FusedPrediction, gallery: &Gallery) {
    p.explanation = Some(rank::explain::explain(
        &p.query,
        gallery,
        &p.suggested_syndromes_list,
        EXPLAIN_TOP,
    ));
}
