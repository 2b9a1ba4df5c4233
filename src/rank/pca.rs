//! The projection behind the gallery search index: an orthonormal basis of the subspace that
//! holds most of the gallery's energy (uncentred PCA by randomised subspace iteration).
//!
//! Consumes sample rows (image-major, `rows x dim` f32) and a target size; produces `dims`
//! orthonormal rows of length `dim` (row-major f32). Any orthonormal basis keeps the search
//! exact (the bounds in [`super::search`] hold for every orthonormal projection); a basis that
//! captures more energy only makes the prefilter tighter. Matrix products go through
//! `matrixmultiply` (blocked SIMD sgemm); orthonormalisation is modified Gram-Schmidt in f64.

/// Deterministic Gaussian-ish numbers (xorshift64*, sum of four uniforms) for the start basis.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normalish(&mut self) -> f64 {
        (0..4).map(|_| self.uniform()).sum::<f64>() - 2.0
    }
}

/// `c (m x n) = a (m x k) * b (k x n)`, all row-major; `a_t` reads `a` as the transpose of a
/// stored `k x m` matrix.
pub(crate) fn matmul(m: usize, k: usize, n: usize, a: &[f32], a_t: bool, b: &[f32], c: &mut [f32]) {
    if m == 0 || k == 0 || n == 0 {
        c.iter_mut().for_each(|x| *x = 0.0);
        return;
    }
    let ok = a.len() >= m * k && b.len() >= k * n && c.len() >= m * n;
    if !ok {
        // Callers size every buffer from the same numbers; refuse instead of reading past.
        return;
    }
    let (rsa, csa) = if a_t {
        (1, m as isize)
    } else {
        (k as isize, 1)
    };
    // SAFETY: the three slices are at least as long as the strides address (checked above),
    // `c` does not alias `a` or `b` (distinct borrows).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Orthonormalises the `cols` columns of `v` (`dim x cols`, row-major) in place; a column
/// that vanishes (rank deficiency) is replaced by a fresh random direction.
fn orthonormalise(v: &mut [f32], dim: usize, cols: usize, rng: &mut Rng) {
    let mut basis: Vec<Vec<f64>> = Vec::with_capacity(cols);
    for j in 0..cols {
        let mut col: Vec<f64> = (0..dim).map(|r| f64::from(v[r * cols + j])).collect();
        for attempt in 0..4 {
            for _ in 0..2 {
                for b in &basis {
                    let p: f64 = b.iter().zip(&col).map(|(x, y)| x * y).sum();
                    col.iter_mut().zip(b).for_each(|(c, x)| *c -= p * x);
                }
            }
            let norm = col.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm > 1e-6 || attempt == 3 {
                let inv = if norm > 0.0 { 1.0 / norm } else { 0.0 };
                col.iter_mut().for_each(|x| *x *= inv);
                break;
            }
            col = (0..dim).map(|_| rng.normalish()).collect();
        }
        basis.push(col);
    }
    for (j, b) in basis.iter().enumerate() {
        for (r, x) in b.iter().enumerate() {
            v[r * cols + j] = *x as f32;
        }
    }
}

/// `dims` orthonormal rows (row-major, `dims x dim`) spanning the dominant subspace of the
/// sample rows `a` (`rows x dim`): randomised subspace iteration (`iterations` products with
/// `a^T a`) from a seeded start. `dims` is capped at `dim`; with `dims == dim` the result is
/// a full orthonormal basis (the projection then keeps everything).
pub fn principal_basis(
    a: &[f32],
    rows: usize,
    dim: usize,
    dims: usize,
    iterations: usize,
    seed: u64,
) -> Vec<f32> {
    let cols = dims.min(dim);
    let mut rng = Rng::new(seed);
    if cols == dim {
        let mut id = vec![0.0f32; dim * dim];
        (0..dim).for_each(|i| id[i * dim + i] = 1.0);
        return id;
    }
    let mut v: Vec<f32> = (0..dim * cols).map(|_| rng.normalish() as f32).collect();
    orthonormalise(&mut v, dim, cols, &mut rng);
    let rows = rows.min(a.len() / dim.max(1));
    let mut y = vec![0.0f32; rows * cols];
    let mut z = vec![0.0f32; dim * cols];
    for _ in 0..iterations {
        matmul(rows, dim, cols, a, false, &v, &mut y);
        matmul(dim, rows, cols, a, true, &y, &mut z);
        std::mem::swap(&mut v, &mut z);
        orthonormalise(&mut v, dim, cols, &mut rng);
    }
    // rows of the result = columns of v
    let mut p = vec![0.0f32; cols * dim];
    for r in 0..dim {
        for j in 0..cols {
            p[j * dim + r] = v[r * cols + j];
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_by_hand_and_transposed() {
        // a = [[1,2,3],[4,5,6]], b = [[1,0],[0,1],[1,1]]
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let mut c = [0.0; 4];
        matmul(2, 3, 2, &a, false, &b, &mut c);
        assert_eq!(c, [4.0, 5.0, 10.0, 11.0]);
        // a^T (3x2) * [[1],[1]] = column sums of a as rows: [5, 7, 9]
        let mut d = [0.0; 3];
        matmul(3, 2, 1, &a, true, &[1.0, 1.0], &mut d);
        assert_eq!(d, [5.0, 7.0, 9.0]);
    }

    #[test]
    fn basis_is_orthonormal_and_finds_the_planted_subspace() {
        // 200 rows in 40 dims: energy in dims 3 and 17 only, plus tiny noise.
        let (rows, dim) = (200, 40);
        let mut rng = Rng::new(5);
        let mut a = vec![0.0f32; rows * dim];
        for r in 0..rows {
            for c in 0..dim {
                a[r * dim + c] = (rng.normalish() * 1e-3) as f32;
            }
            a[r * dim + 3] += rng.normalish() as f32;
            a[r * dim + 17] += rng.normalish() as f32;
        }
        let p = principal_basis(&a, rows, dim, 4, 3, 1);
        assert_eq!(p.len(), 4 * dim);
        for i in 0..4 {
            for j in 0..4 {
                let d: f32 = (0..dim).map(|c| p[i * dim + c] * p[j * dim + c]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((d - want).abs() < 1e-5, "rows {i},{j}: {d}");
            }
        }
        // the planted axes are (almost) inside the span
        for axis in [3, 17] {
            let captured: f32 = (0..4).map(|i| p[i * dim + axis].powi(2)).sum();
            assert!(captured > 0.999, "axis {axis}: {captured}");
        }
    }

    #[test]
    fn full_size_basis_is_the_identity() {
        let p = principal_basis(&[1.0; 6], 2, 3, 8, 2, 1);
        assert_eq!(p, vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    }
}
