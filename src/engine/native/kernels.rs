//! The matrix kernels the native engine runs on: which tract-linalg kernels this CPU offers
//! for f32 and int8 products, how each packs its operands, and packing the weights once.
//!
//! Consumes tract-linalg's dispatch (`MmmDispatch::native()`); produces [`Kernel`]s (a kernel,
//! its packing and the activation panel layout the im2col writes) and packed weights.

use tract_data::prelude::*;
use tract_linalg::mmm::{MMMInputFormat, MMMInputValue, MatMatMul, Query};
use tract_linalg::pack::{PackedFormat, PackedI8K4};
use tract_linalg::{MmmDispatch, WeightType};

use super::NativeError;

/// Element type of a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Precision {
    /// f32 x f32 -> f32.
    F32,
    /// i8 x i8 -> i32.
    I8,
}

/// How activation panels (the kernel's B operand) are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanelLayout {
    /// For each k, `r` consecutive values (of `elem` bytes).
    Plain {
        /// Panel width.
        r: usize,
        /// Element size in bytes.
        elem: usize,
    },
    /// For each group of 4 k, `r` lanes of 4 consecutive i8 (`out[(k/4)*r*4 + j*4 + k%4]`).
    K4 {
        /// Panel width.
        r: usize,
    },
}

impl PanelLayout {
    /// Panel width (pixels per panel).
    pub fn r(&self) -> usize {
        match *self {
            PanelLayout::Plain { r, .. } | PanelLayout::K4 { r } => r,
        }
    }
}

/// One kernel with the packing the engine uses.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The tract-linalg kernel.
    pub mmm: Box<dyn MatMatMul>,
    /// Index of the packing in `mmm.packings()`.
    pub packing: usize,
    /// Product precision.
    pub precision: Precision,
    /// Activation panel layout.
    pub layout: PanelLayout,
}

impl Kernel {
    /// The kernel's name (as tract-linalg spells it).
    pub fn name(&self) -> &str {
        self.mmm.name()
    }

    /// Weight panel format.
    pub fn a_format(&self) -> &dyn MMMInputFormat {
        &*self.mmm.packings()[self.packing].0
    }

    /// Activation panel format.
    pub fn b_format(&self) -> &dyn MMMInputFormat {
        &*self.mmm.packings()[self.packing].1
    }

    /// Bytes of one activation panel of depth `k`.
    pub fn panel_bytes(&self, k: usize) -> usize {
        let b = self.b_format();
        if let Some(p) = b.downcast_ref::<PackedFormat>() {
            p.single_panel_len(k) * p.dt.size_of()
        } else if let Some(p) = b.downcast_ref::<PackedI8K4>() {
            p.single_panel_len(k)
        } else {
            0
        }
    }

    /// Packs `rows` x `k` weights (row-major) for this kernel.
    pub fn pack_f32(
        &self,
        w: &[f32],
        rows: usize,
        k: usize,
    ) -> Result<Box<dyn MMMInputValue>, NativeError> {
        let t = Tensor::from_shape(&[rows, k], w).map_err(kerr)?;
        self.a_format().prepare_one(&t, 1, 0).map_err(kerr)
    }

    /// Packs `rows` x `k` i8 weights (row-major) for this kernel.
    pub fn pack_i8(
        &self,
        w: &[i8],
        rows: usize,
        k: usize,
    ) -> Result<Box<dyn MMMInputValue>, NativeError> {
        let t = Tensor::from_shape(&[rows, k], w).map_err(kerr)?;
        self.a_format().prepare_one(&t, 1, 0).map_err(kerr)
    }
}

fn kerr(e: impl std::fmt::Display) -> NativeError {
    NativeError::Kernel(format!("{e:#}"))
}

fn layout_of(b: &dyn MMMInputFormat) -> Option<PanelLayout> {
    if let Some(p) = b.downcast_ref::<PackedFormat>() {
        Some(PanelLayout::Plain {
            r: p.r,
            elem: p.dt.size_of(),
        })
    } else {
        b.downcast_ref::<PackedI8K4>()
            .map(|p| PanelLayout::K4 { r: p.r })
    }
}

/// Every kernel this CPU runs for `precision` whose weights pack without an extractor and
/// whose activation panels the engine can write (a matrix tile, not a vector kernel).
pub fn candidates(precision: Precision) -> Vec<Kernel> {
    let (dt, acc) = match precision {
        Precision::F32 => (DatumType::F32, DatumType::F32),
        Precision::I8 => (DatumType::I8, DatumType::I32),
    };
    let query = Query {
        weight: WeightType::Plain(dt),
        activation: dt,
        accumulators: tvec!(acc),
        store: Some(acc),
        allow_extractor: false,
        m: None,
        k: None,
        n: None,
    };
    let mut out: Vec<Kernel> = MmmDispatch::native()
        .suitable(&query)
        .into_iter()
        .filter(|(mmm, _, pe)| pe.is_none() && mmm.nr() > 1 && mmm.mr() > 1 && !mmm.emulated())
        .filter_map(|(mmm, packing, _)| {
            let (a, b) = &mmm.packings()[packing];
            if a.precursor() != WeightType::Plain(dt) {
                return None;
            }
            // AMX's f32 kernel multiplies in bf16 (8 mantissa bits): a kernel choice must
            // not change f32 results beyond rounding, so it is not a candidate
            if precision == Precision::F32 && mmm.name().contains("amx") {
                return None;
            }
            let layout = layout_of(&**b)?;
            let elem_ok = match layout {
                PanelLayout::Plain { elem, .. } => elem == dt.size_of(),
                PanelLayout::K4 { .. } => precision == Precision::I8,
            };
            elem_ok.then(|| Kernel {
                mmm,
                packing,
                precision,
                layout,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name().cmp(b.name()));
    out.dedup_by(|a, b| a.name() == b.name());
    out
}

/// The kernel picked by CPU features alone (deterministic): the preferred name when the CPU
/// runs it, else the widest tile written for this architecture.
pub fn by_features(precision: Precision) -> Result<Kernel, NativeError> {
    let all = candidates(precision);
    let preferred: &[&str] = match precision {
        Precision::F32 => &[
            "avx512_mmm_f32_32x6",
            "fma_mmm_f32_16x6",
            "arm64simd_mmm_f32_16x4",
        ],
        Precision::I8 => &[
            "avx512amx_mmm_i32_16x16",
            "avx512vnni_mmm_i32_16x16",
            "avxvnni_mmm_i32_8x8",
            "avx2_mmm_i32_8x8",
            "arm64simd_mmm_i32_8x8_dot",
            "arm64simd_mmm_i32_8x8",
        ],
    };
    for name in preferred {
        if let Some(k) = all.iter().find(|k| k.name() == *name) {
            return Ok(k.clone());
        }
    }
    all.into_iter()
        .max_by_key(|k| (k.mmm.arch().is_some(), k.mmm.mr() * k.mmm.nr()))
        .ok_or_else(|| NativeError::Kernel(format!("no {precision:?} matrix kernel on this CPU")))
}
