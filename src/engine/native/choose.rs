//! Kernel choice by measurement: every candidate kernel the CPU runs is timed once per
//! product shape on this device, and the fastest is remembered in a small file in the
//! cache folder.
//!
//! Consumes a choice file path (or none) and product shapes from the planner; produces a
//! [`Kernel`] per shape and an updated file. The file is outside the signed set: a choice
//! cannot change an integer result, and between f32 kernels only the rounding differs (a
//! test bounds it). A damaged or foreign file is rebuilt and reported, never trusted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tract_data::internal::TensorView;
use tract_data::prelude::*;
use tract_linalg::mmm::{AsInputValue, FusedSpec};

use super::kernels::{candidates, Kernel, Precision};
use super::plan::KernelChooser;
use super::NativeError;

const MAGIC: &str = "gestalt-edge kernel choices v1";

/// What happened to the choice file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChoiceReport {
    /// Shapes answered from the file.
    pub remembered: usize,
    /// Shapes measured now.
    pub measured: usize,
    /// Why the file was not used (damaged, other CPU), when it was not.
    pub rebuilt: Option<String>,
}

/// A product shape: precision, rows, depth and columns (columns capped at one chunk).
type Key = (Precision, usize, usize, usize);

/// Chooses kernels by timing them, remembering the choices in `path`.
#[derive(Debug)]
pub struct Measured {
    path: Option<PathBuf>,
    table: BTreeMap<Key, String>,
    dirty: bool,
    /// What was remembered, measured, rebuilt.
    pub report: ChoiceReport,
}

/// This CPU's identity for the file: architecture and the kernels it can run.
fn signature() -> String {
    let mut names: Vec<String> = [Precision::F32, Precision::I8]
        .into_iter()
        .flat_map(candidates)
        .map(|k| k.name().to_string())
        .collect();
    names.sort();
    format!("{} {}", std::env::consts::ARCH, names.join(","))
}

fn parse(text: &str) -> Result<BTreeMap<Key, String>, String> {
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return Err("not a kernel choice file of this version".into());
    }
    if lines.next() != Some(signature().as_str()) {
        return Err("made on another CPU".into());
    }
    let known: Vec<String> = [Precision::F32, Precision::I8]
        .into_iter()
        .flat_map(candidates)
        .map(|k| k.name().to_string())
        .collect();
    let mut table = BTreeMap::new();
    for (i, line) in lines.enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let bad = || format!("line {} is damaged", i + 3);
        if f.len() != 5 {
            return Err(bad());
        }
        let p = match f[0] {
            "f32" => Precision::F32,
            "i8" => Precision::I8,
            _ => return Err(bad()),
        };
        let num = |s: &str| s.parse::<usize>().map_err(|_| bad());
        if !known.iter().any(|k| k == f[4]) {
            return Err(bad());
        }
        table.insert((p, num(f[1])?, num(f[2])?, num(f[3])?), f[4].to_string());
    }
    Ok(table)
}

impl Measured {
    /// Choices remembered in `path` (none: measure every shape, remember nothing). A
    /// missing file is an empty table; a damaged one is reported and rebuilt.
    pub fn open(path: Option<&Path>) -> Measured {
        let mut m = Measured {
            path: path.map(Path::to_path_buf),
            table: BTreeMap::new(),
            dirty: false,
            report: ChoiceReport::default(),
        };
        if let Some(path) = path {
            // bounded: a FIFO, a device or an oversized file is damaged, and rebuilt
            match crate::fsio::read_capped(path, crate::fsio::Cap::KERNEL_CHOICES) {
                Ok(bytes) => match std::str::from_utf8(&bytes)
                    .map_err(|_| "not text".to_string())
                    .and_then(parse)
                {
                    Ok(t) => m.table = t,
                    Err(why) => {
                        m.report.rebuilt = Some(why);
                        m.dirty = true;
                    }
                },
                Err(e) if e.is_missing() => {}
                Err(e) => {
                    m.report.rebuilt = Some(format!("{}: {e}", path.display()));
                    m.dirty = true;
                }
            }
        }
        m
    }

    /// Writes the table atomically when it changed (temporary file, rename).
    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        let mut text = format!("{MAGIC}\n{}\n", signature());
        for ((p, m, k, n), name) in &self.table {
            let p = if *p == Precision::F32 { "f32" } else { "i8" };
            text.push_str(&format!("{p} {m} {k} {n} {name}\n"));
        }
        if let Some(dir) = path.parent() {
            crate::fsio::create_dir_all(dir)?;
        }
        // the crate's one atomic writer: a private temporary name, fsynced, renamed
        crate::fsio::write_atomic(path, text.as_bytes(), crate::fsio::Access::Shared)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.dirty = false;
        Ok(())
    }

    /// The kernel names chosen so far.
    pub fn choices(&self) -> Vec<String> {
        self.table.values().cloned().collect()
    }
}

impl KernelChooser for Measured {
    fn choose(
        &mut self,
        precision: Precision,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<Kernel, NativeError> {
        let all = candidates(precision);
        let key = (precision, m, k, n.min(1024));
        if let Some(name) = self.table.get(&key) {
            if let Some(kernel) = all.iter().find(|c| c.name() == name) {
                self.report.remembered += 1;
                return Ok(kernel.clone());
            }
        }
        let mut best: Option<(f64, Kernel)> = None;
        for kernel in all {
            let Ok((t, _)) = run_product(&kernel, key.1, key.2, key.3, 3) else {
                continue;
            };
            if best.as_ref().is_none_or(|(b, _)| t < *b) {
                best = Some((t, kernel));
            }
        }
        let (_, kernel) =
            best.ok_or_else(|| NativeError::Kernel(format!("no {precision:?} kernel runs here")))?;
        self.table.insert(key, kernel.name().to_string());
        self.dirty = true;
        self.report.measured += 1;
        Ok(kernel)
    }
}

/// Runs an `m x k` by `k x n` product of fixed pseudo-random operands on `kernel` `reps`
/// times; returns the fastest time (seconds) and the result (`[n][m]`, as f32).
pub fn run_product(
    kernel: &Kernel,
    m: usize,
    k: usize,
    n: usize,
    reps: usize,
) -> Result<(f64, Vec<f32>), NativeError> {
    let kerr = |e: TractError| NativeError::Kernel(format!("{e:#}"));
    let int = kernel.precision == Precision::I8;
    let val = |i: usize, j: usize| (((i * 31 + j * 17) % 13) as i32 - 6) as f32;
    let a = if int {
        let w: Vec<i8> = (0..m * k).map(|i| val(i / k, i % k) as i8).collect();
        kernel.pack_i8(&w, m, k)?
    } else {
        let w: Vec<f32> = (0..m * k).map(|i| val(i / k, i % k) * 0.1).collect();
        kernel.pack_f32(&w, m, k)?
    };
    // activations as a [k, n] tensor packed by the kernel's own B packer
    let b = if int {
        let x: Vec<i8> = (0..k * n).map(|i| val(i % n + 3, i / n) as i8).collect();
        let t = Tensor::from_shape(&[k, n], &x).map_err(kerr)?;
        kernel.b_format().prepare_one(&t, 0, 1).map_err(kerr)?
    } else {
        let x: Vec<f32> = (0..k * n).map(|i| val(i % n + 3, i / n) * 0.1).collect();
        let t = Tensor::from_shape(&[k, n], &x).map_err(kerr)?;
        kernel.b_format().prepare_one(&t, 0, 1).map_err(kerr)?
    };
    let c = if int {
        Tensor::zero::<i32>(&[n, m]).map_err(kerr)?
    } else {
        Tensor::zero::<f32>(&[n, m]).map_err(kerr)?
    };
    let shape = [n, m];
    let strides = [m as isize, 1];
    let mut scratch = unsafe { kernel.mmm.allocate_scratch_space() };
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let view = unsafe { TensorView::from_bytes(&c, 0, &shape, &strides) };
        let store = unsafe {
            kernel
                .mmm
                .c_from_data_and_strides(4, 1, m as isize)
                .wrap(&view)
        };
        let specs = [
            FusedSpec::AddMatMul {
                a: AsInputValue::Borrowed(&*a),
                b: AsInputValue::Borrowed(&*b),
                packing: kernel.packing,
            },
            FusedSpec::Store(store),
        ];
        let t = Instant::now();
        unsafe {
            kernel
                .mmm
                .run_with_scratch_space(m, n, &mut *scratch, &specs)
        }
        .map_err(kerr)?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    let out = if int {
        c.cast_to::<f32>()
            .map_err(kerr)?
            .try_as_plain_ram()
            .map_err(kerr)?
            .as_slice::<f32>()
            .map_err(kerr)?
            .to_vec()
    } else {
        c.try_as_plain_ram()
            .map_err(kerr)?
            .as_slice::<f32>()
            .map_err(kerr)?
            .to_vec()
    };
    Ok((best, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_computes_the_same_product() {
        for precision in [Precision::F32, Precision::I8] {
            let all = candidates(precision);
            assert!(!all.is_empty());
            let (m, k, n) = (40, 75, 29);
            let (_, want) = run_product(&all[0], m, k, n, 1).unwrap();
            // the exact product, from the operands' formula
            let val = |i: usize, j: usize| (((i * 31 + j * 17) % 13) as i32 - 6) as f64;
            let scale = if precision == Precision::F32 {
                0.01
            } else {
                1.0
            };
            for j in 0..n {
                for i in 0..m {
                    let exact: f64 = (0..k).map(|kk| val(i, kk) * val(j + 3, kk) * scale).sum();
                    assert!((want[j * m + i] as f64 - exact).abs() <= 1e-4 * (1.0 + exact.abs()));
                }
            }
            for kernel in &all[1..] {
                let (_, got) = run_product(kernel, m, k, n, 1).unwrap();
                for (g, w) in got.iter().zip(&want) {
                    if precision == Precision::I8 {
                        assert_eq!(g, w, "{}", kernel.name());
                    } else {
                        // f32 kernels differ in summation order only
                        assert!(
                            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                            "{}: {g} vs {w}",
                            kernel.name()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_damaged_choice_file_is_rebuilt() {
        let dir = std::env::temp_dir().join(format!("ge-kc-{}", std::process::id()));
        let path = dir.join("kernels.txt");
        let mut m = Measured::open(Some(&path));
        assert_eq!(m.report, ChoiceReport::default());
        let k = m.choose(Precision::F32, 64, 64, 64).unwrap();
        m.save().unwrap();
        let mut again = Measured::open(Some(&path));
        assert_eq!(
            again.choose(Precision::F32, 64, 64, 64).unwrap().name(),
            k.name()
        );
        assert_eq!(again.report.remembered, 1);
        std::fs::write(&path, format!("{MAGIC}\ngarbage\n")).unwrap();
        let mut damaged = Measured::open(Some(&path));
        assert!(damaged.report.rebuilt.is_some());
        damaged.choose(Precision::F32, 64, 64, 64).unwrap();
        assert_eq!(damaged.report.measured, 1);
        damaged.save().unwrap();
        assert!(Measured::open(Some(&path)).report.rebuilt.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
