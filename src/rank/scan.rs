//! The code scan of the search index: int8 query code x int8 image codes, i32 sums.
//!
//! Consumes the image codes (`images x dims` i8, image-major) and a query code (`dims` i8);
//! produces one i32 dot product per image. The loop is written so that the compiler
//! vectorises it (32 independent i32 lanes of widened i8 products); on x86_64 a copy compiled
//! for AVX2 is picked at run time when the CPU has it (the crate's baseline target is SSE2).
//! [`dots_f32`] is the earlier float-per-value loop, kept to measure the speed-up against.

/// Lanes of the accumulator (a multiple of every SIMD width in use).
const LANES: usize = 32;

/// `a . b` in i32 (exact: `dims * 127 * 127` stays far below `i32::MAX` for any code length
/// under 130 000).
#[inline(always)]
fn dot_body(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: i32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += i32::from(x[l]) * i32::from(y[l]);
        }
    }
    acc.iter().sum::<i32>() + tail
}

#[inline(always)]
fn dots_body(codes: &[i8], query: &[i8], out: &mut [i32]) {
    let d = query.len().max(1);
    for (o, c) in out.iter_mut().zip(codes.chunks_exact(d)) {
        *o = dot_body(query, c);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dots_avx2(codes: &[i8], query: &[i8], out: &mut [i32]) {
    dots_body(codes, query, out);
}

/// Dot products of `query` with each of the codes in `codes` (`out.len()` codes of
/// `query.len()` values each, image-major) into `out`. Extra codes are ignored; missing ones
/// leave their `out` entries untouched.
pub fn dots_i8(codes: &[i8], query: &[i8], out: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above); the function only does
            // safe slice arithmetic.
            unsafe { dots_avx2(codes, query, out) };
            return;
        }
    }
    dots_body(codes, query, out);
}

/// The earlier scan loop: f32 query code times each int8 value converted to f32, 16 f32
/// lanes. Kept as the baseline for the speed comparison; same layout as [`dots_i8`].
pub fn dots_f32(codes: &[i8], query: &[f32], out: &mut [f32]) {
    let d = query.len().max(1);
    for (o, code) in out.iter_mut().zip(codes.chunks_exact(d)) {
        let mut acc = [0.0f32; 16];
        let (cq, cc) = (query.chunks_exact(16), code.chunks_exact(16));
        let tail: f32 = cq
            .remainder()
            .iter()
            .zip(cc.remainder())
            .map(|(q, &c)| q * f32::from(c))
            .sum();
        for (q, c) in cq.zip(cc) {
            for l in 0..16 {
                acc[l] += q[l] * f32::from(c[l]);
            }
        }
        *o = acc.iter().sum::<f32>() + tail;
    }
}

/// A query code: `values ~ scale * code`, with `err = |values - scale * code|` (f32, a little
/// rounded up so it stays an upper bound).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryCode {
    /// int8 values, in -127..=127.
    pub code: Vec<i8>,
    /// The step of one code unit.
    pub scale: f32,
    /// Norm of the rounding error.
    pub err: f32,
}

impl QueryCode {
    /// Symmetric int8 code of `values` (max |value| maps to 127).
    pub fn new(values: &[f32]) -> QueryCode {
        let max = values.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let scale = max / 127.0;
        let mut e2 = 0.0f64;
        let code = values
            .iter()
            .map(|&v| {
                let q = if scale > 0.0 {
                    (v / scale).round().clamp(-127.0, 127.0)
                } else {
                    0.0
                };
                e2 += (f64::from(v) - f64::from(q) * f64::from(scale)).powi(2);
                q as i8
            })
            .collect();
        QueryCode {
            code,
            scale,
            err: (e2.sqrt() * (1.0 + 1e-6) + 1e-9) as f32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(n: usize, d: usize, seed: u64) -> Vec<i8> {
        let mut x = seed | 1;
        (0..n * d)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x % 255) as i32 - 127) as i8
            })
            .collect()
    }

    #[test]
    fn integer_dots_equal_the_reference_sums_and_the_float_loop() {
        for d in [256, 70, 5] {
            let c = codes(50, d, 3);
            let q = codes(1, d, 9);
            let mut got = vec![0i32; 50];
            dots_i8(&c, &q, &mut got);
            let qf: Vec<f32> = q.iter().map(|&x| f32::from(x)).collect();
            let mut flt = vec![0.0f32; 50];
            dots_f32(&c, &qf, &mut flt);
            for i in 0..50 {
                let want: i32 = (0..d)
                    .map(|j| i32::from(q[j]) * i32::from(c[i * d + j]))
                    .sum();
                assert_eq!(got[i], want, "d {d} image {i}");
                assert_eq!(flt[i], want as f32, "d {d} image {i} (exact in f32)");
            }
        }
        // extreme values do not overflow
        let c = vec![-127i8; 4096];
        let mut out = [0i32; 1];
        dots_i8(&c, &c, &mut out);
        assert_eq!(out[0], 4096 * 127 * 127);
    }

    #[test]
    fn query_code_error_is_the_rounding_error() {
        let v = [0.5f32, -0.25, 0.1, 0.0];
        let q = QueryCode::new(&v);
        assert_eq!(q.code[0], 127);
        assert_eq!(q.code[1], -64);
        let e: f32 = v
            .iter()
            .zip(&q.code)
            .map(|(x, &c)| (x - q.scale * f32::from(c)).powi(2))
            .sum::<f32>()
            .sqrt();
        assert!(q.err >= e && q.err < e * 1.001 + 1e-6, "{} vs {e}", q.err);
        let zero = QueryCode::new(&[0.0; 3]);
        assert_eq!(zero.code, vec![0, 0, 0]);
        assert!(zero.err < 1e-6);
    }
}
