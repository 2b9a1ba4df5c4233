//! Storage of embedding vectors inside the gallery blob.
//!
//! Consumes `f32` vectors and a [`Storage`]; produces the bytes one vector occupies in the
//! blob, and back. Layouts (all little-endian):
//! - [`Storage::F16`]: `width` IEEE half floats, 2 bytes each.
//! - [`Storage::I8`]: one `f32` scale, then `width` signed bytes; value = `q * scale`,
//!   symmetric with `scale = max|x| / 127` (a zero vector stores scale 0).

use super::Storage;
use half::f16;

/// Bytes one vector of `width` values occupies in the blob, or `None` on overflow.
pub fn vector_bytes(storage: Storage, width: u32) -> Option<usize> {
    let w = usize::try_from(width).ok()?;
    match storage {
        Storage::F16 => w.checked_mul(2),
        Storage::I8 => w.checked_add(4),
    }
}

/// Appends the stored form of `v` to `out`.
///
/// Fails (with the offending value) when a value is not finite or, for f16, outside the
/// f16 range (|x| > 65504); `out` is unchanged then.
pub fn encode(storage: Storage, v: &[f32], out: &mut Vec<u8>) -> Result<(), f32> {
    if let Some(&bad) = v.iter().find(|x| !x.is_finite()) {
        return Err(bad);
    }
    match storage {
        Storage::F16 => {
            if let Some(&bad) = v.iter().find(|x| !f16::from_f32(**x).is_finite()) {
                return Err(bad);
            }
            out.reserve(v.len() * 2);
            for &x in v {
                out.extend_from_slice(&f16::from_f32(x).to_le_bytes());
            }
        }
        Storage::I8 => {
            let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            let scale = max / 127.0;
            out.reserve(v.len() + 4);
            out.extend_from_slice(&scale.to_le_bytes());
            for &x in v {
                let q = if scale > 0.0 {
                    (x / scale).round().clamp(-127.0, 127.0) as i8
                } else {
                    0
                };
                out.extend_from_slice(&q.to_le_bytes());
            }
        }
    }
    Ok(())
}

/// Decodes one stored vector of `width` values from `bytes` (exactly
/// [`vector_bytes`]`(storage, width)` long) into `out` (cleared first).
///
/// Returns `false` when the length does not fit or a decoded value is not finite.
pub fn decode(storage: Storage, width: u32, bytes: &[u8], out: &mut Vec<f32>) -> bool {
    out.clear();
    if vector_bytes(storage, width) != Some(bytes.len()) {
        return false;
    }
    match storage {
        Storage::F16 => {
            out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()),
            );
        }
        Storage::I8 => {
            let (head, values) = bytes.split_at(4);
            let scale = f32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            if !scale.is_finite() || scale < 0.0 {
                return false;
            }
            out.extend(values.iter().map(|&b| f32::from(b as i8) * scale));
        }
    }
    out.iter().all(|x| x.is_finite())
}

/// The f32 value of the finite f16 with bits `h`, exactly (subnormals included), written so
/// that the compiler vectorises a loop of it: the exponent and mantissa moved into an f32's
/// place give the value times 2^-112, and the multiplication by 2^112 is exact. Infinities and
/// NaNs are not handled (a gallery's stored values were checked finite when it was read).
#[inline(always)]
fn finite_f16_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let magnitude = f32::from_bits((h & 0x7fff) << 13) * f32::from_bits(0x7780_0000);
    f32::from_bits(magnitude.to_bits() | ((h & 0x8000) << 16))
}

/// [`decode`] of a vector already checked (every stored value was checked finite when the
/// gallery was read or the vector added), each value times `factor`, into `out`; `bits` is
/// scratch space. The f16 loop is one the compiler vectorises ([`finite_f16_to_f32`]):
/// the search reads every stored vector of a gallery per photo. Returns `false` when the
/// length does not fit.
pub fn decode_scaled(
    storage: Storage,
    width: u32,
    bytes: &[u8],
    factor: f32,
    bits: &mut Vec<u16>,
    out: &mut Vec<f32>,
) -> bool {
    if vector_bytes(storage, width) != Some(bytes.len()) {
        out.clear();
        return false;
    }
    match storage {
        Storage::F16 => {
            // the stored little-endian halves read in place where they are aligned (a
            // gallery's vectors are, in the buffer it was read into), else copied first
            #[cfg(target_endian = "little")]
            // SAFETY: every bit pattern is a valid u16; only the aligned middle is used
            let (pre, aligned, _) = unsafe { bytes.align_to::<u16>() };
            #[cfg(not(target_endian = "little"))]
            let (pre, aligned): (&[u8], &[u16]) = (bytes, &[]);
            let words: &[u16] = if pre.is_empty() && aligned.len() * 2 == bytes.len() {
                aligned
            } else {
                bits.clear();
                bits.extend(
                    bytes
                        .chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]])),
                );
                bits
            };
            out.clear();
            out.extend(words.iter().map(|&h| finite_f16_to_f32(h) * factor));
        }
        Storage::I8 => {
            let (head, values) = bytes.split_at(4);
            let scale = f32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            out.clear();
            out.extend(values.iter().map(|&b| f32::from(b as i8) * scale * factor));
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_finite_f16_converts_exactly() {
        for h in 0..=u16::MAX {
            let want = f16::from_bits(h).to_f32();
            if want.is_finite() {
                assert_eq!(finite_f16_to_f32(h).to_bits(), want.to_bits(), "{h:#06x}");
            }
        }
    }

    #[test]
    fn decode_scaled_is_decode_times_the_factor() {
        let v: Vec<f32> = (0..37).map(|i| (i as f32 - 18.0) * 0.37).collect();
        for storage in [Storage::F16, Storage::I8] {
            let mut bytes = Vec::new();
            encode(storage, &v, &mut bytes).unwrap();
            let (mut plain, mut scaled, mut bits) = (Vec::new(), Vec::new(), Vec::new());
            assert!(decode(storage, 37, &bytes, &mut plain));
            assert!(decode_scaled(
                storage,
                37,
                &bytes,
                0.25,
                &mut bits,
                &mut scaled
            ));
            let want: Vec<f32> = plain.iter().map(|x| x * 0.25).collect();
            assert_eq!(scaled, want, "{storage:?}");
            // at an odd address (copied first) the same values
            let mut shifted = vec![0u8];
            shifted.extend_from_slice(&bytes);
            assert!(decode_scaled(
                storage,
                37,
                &shifted[1..],
                0.25,
                &mut bits,
                &mut scaled
            ));
            assert_eq!(scaled, want, "{storage:?} unaligned");
            assert!(!decode_scaled(
                storage,
                36,
                &bytes,
                1.0,
                &mut bits,
                &mut scaled
            ));
        }
    }

    fn roundtrip(storage: Storage, v: &[f32]) -> Vec<f32> {
        let mut bytes = Vec::new();
        encode(storage, v, &mut bytes).unwrap();
        assert_eq!(
            Some(bytes.len()),
            vector_bytes(storage, v.len() as u32),
            "{storage:?}"
        );
        let mut out = Vec::new();
        assert!(decode(storage, v.len() as u32, &bytes, &mut out));
        out
    }

    #[test]
    fn i8_is_symmetric_with_max_scale() {
        let v = [1.27f32, -0.635, 0.0, 0.01];
        let d = roundtrip(Storage::I8, &v);
        // scale = 0.01: 127, -63.5 -> -64 (round half away from zero), 0, 1
        let want = [1.27f32, -0.64, 0.0, 0.01];
        for (a, b) in d.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{d:?}");
        }
    }

    #[test]
    fn zero_vector_stays_zero() {
        assert_eq!(roundtrip(Storage::I8, &[0.0; 3]), vec![0.0; 3]);
        assert_eq!(roundtrip(Storage::F16, &[0.0; 3]), vec![0.0; 3]);
    }

    #[test]
    fn f16_is_close_and_rejects_out_of_range() {
        let d = roundtrip(Storage::F16, &[0.1, -3.5, 1000.25]);
        assert_eq!(d[1], -3.5);
        assert!((d[0] - 0.1).abs() < 1e-4 && (d[2] - 1000.25).abs() < 0.5);
        let mut out = vec![7u8];
        assert_eq!(encode(Storage::F16, &[1.0, 1e6], &mut out), Err(1e6));
        assert_eq!(
            encode(Storage::I8, &[f32::NAN], &mut out).map_err(|x| x.is_nan()),
            Err(true)
        );
        assert_eq!(out, vec![7u8], "output untouched on failure");
    }

    #[test]
    fn decode_rejects_bad_lengths_and_scales() {
        let mut out = Vec::new();
        assert!(!decode(Storage::F16, 2, &[0; 3], &mut out));
        let mut bad = f32::NAN.to_le_bytes().to_vec();
        bad.push(1);
        assert!(!decode(Storage::I8, 1, &bad, &mut out));
        assert_eq!(vector_bytes(Storage::I8, 3), Some(7));
    }
}
