//! im2col straight into a kernel's activation panels: the patch of each output pixel of a
//! chunk is written where the kernel reads it, so no unpacked patch matrix ever exists.
//!
//! Consumes an NHWC map (f32, or the staged i8 codes), the window geometry and the panel
//! layout (`r` pixels per panel; plain k-outer or K=4-inner); produces filled panels.
//! Patch order is `(ky, kx, c)`, matching the canonical weight order.

use super::plan::Geom;

/// Window geometry of one convolution, as the panel writer needs it.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    in_h: usize,
    in_w: usize,
    /// Channels per input pixel (all groups).
    cin: usize,
    cin_g: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    pt: usize,
    pl: usize,
    out_w: usize,
}

impl Window {
    /// The window of `geom` for groups of `cin_g` input channels.
    pub fn of(geom: &Geom, _groups: usize, cin_g: usize) -> Window {
        Window {
            in_h: geom.input.h,
            in_w: geom.input.w,
            cin: geom.input.c,
            cin_g,
            kh: geom.kernel[0],
            kw: geom.kernel[1],
            sh: geom.stride[0],
            sw: geom.stride[1],
            pt: geom.pad[0],
            pl: geom.pad[1],
            out_w: geom.output.w,
        }
    }

    /// Patch length (the product's depth).
    pub fn k(&self) -> usize {
        self.kh * self.kw * self.cin_g
    }

    /// Where output pixel `p` reads kernel tap `(ky, kx)`: its input pixel's channels from
    /// `c_off` in `src`, or `pad` when the tap falls in the padding.
    ///
    /// # Safety
    /// `src` must hold the whole input map.
    #[inline(always)]
    unsafe fn patch_row<T>(
        &self,
        src: *const T,
        pad: *const T,
        c_off: usize,
        p: usize,
        ky: usize,
        kx: usize,
    ) -> *const T {
        let (oy, ox) = (p / self.out_w, p % self.out_w);
        let iy = (oy * self.sh + ky) as isize - self.pt as isize;
        let ix = (ox * self.sw + kx) as isize - self.pl as isize;
        let inside = iy >= 0 && iy < self.in_h as isize && ix >= 0 && ix < self.in_w as isize;
        if inside {
            src.add((iy as usize * self.in_w + ix as usize) * self.cin + c_off)
        } else {
            pad
        }
    }
}

/// Writes the patches of output pixels `p0..p0 + n` for `group` into panels of `r` pixels,
/// `panel_len` elements apart, at `dst`. `pad` holds the padding value per input channel.
/// `K4`: the K=4-inner i8 layout; else plain k-outer.
///
/// # Safety
/// `src` must hold the whole input map, `dst` room for `ceil(n / r)` panels.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub unsafe fn im2col<T: Copy, const K4: bool>(
    win: &Window,
    src: *const T,
    pad: &[T],
    group: usize,
    p0: usize,
    n: usize,
    r: usize,
    panel_len: usize,
    dst: *mut T,
) {
    let cg = win.cin_g;
    let c_off = group * cg;
    let pad = &pad[c_off..c_off + cg];
    let words = K4 && cg % 4 == 0 && std::mem::size_of::<T>() == 1;
    // one element of the panel per lane and k: a T in the plain layout, a 32-bit word
    // (4 channels) in the K4 layout; else (K4, channels not a multiple of 4) single bytes
    let (pad_p, per) = (pad.as_ptr(), if words { cg / 4 } else { cg });
    let done = match (words, K4) {
        (true, _) => by_panels::<T, u32, 1>(win, src, pad_p, c_off, per, p0, n, r, panel_len, dst),
        (false, false) => {
            by_panels::<T, T, 1>(win, src, pad_p, c_off, per, p0, n, r, panel_len, dst)
        }
        (false, true) => {
            by_panels::<T, T, 4>(win, src, pad_p, c_off, per, p0, n, r, panel_len, dst)
        }
    };
    if done {
        return;
    }
    by_pixels::<T, K4>(win, src, pad, c_off, p0, n, r, panel_len, dst)
}

/// Pixel by pixel, any panel width (the reference the panel writer is tested against).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn by_pixels<T: Copy, const K4: bool>(
    win: &Window,
    src: *const T,
    pad: &[T],
    c_off: usize,
    p0: usize,
    n: usize,
    r: usize,
    panel_len: usize,
    dst: *mut T,
) {
    let cg = win.cin_g;
    let words = K4 && cg % 4 == 0 && std::mem::size_of::<T>() == 1;
    for j in 0..n {
        let p = p0 + j;
        let panel = dst.add((j / r) * panel_len);
        let lane = j % r;
        for ky in 0..win.kh {
            for kx in 0..win.kw {
                let row = win.patch_row(src, pad.as_ptr(), c_off, p, ky, kx);
                let k0 = (ky * win.kw + kx) * cg;
                if words {
                    // 4 channels = one 32-bit word of the K4 layout
                    let w = panel as *mut u32;
                    let s = row as *const u32;
                    for q in 0..cg / 4 {
                        *w.add((k0 / 4 + q) * r + lane) = s.add(q).read_unaligned();
                    }
                } else if K4 {
                    for c in 0..cg {
                        let k = k0 + c;
                        *panel.add((k / 4) * r * 4 + lane * 4 + k % 4) = *row.add(c);
                    }
                } else {
                    let base = panel.add(k0 * r + lane);
                    for c in 0..cg {
                        *base.add(c * r) = *row.add(c);
                    }
                }
            }
        }
    }
}

/// Panel by panel, each panel written in order: for every (ky, kx) the `r` patch rows of the
/// panel's pixels are found once, then each of their `per` elements `E` (the pixel's
/// channels as `E`s) is copied to the `r` lanes of its k: consecutive when `K == 1`, 4
/// apart in the K=4-inner layout when `K == 4` (`E` then one byte of it). `r` is a constant
/// for the panel widths tract-linalg's kernels use, so the lane loop unrolls; returns false
/// (nothing written) for another width.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn by_panels<T: Copy, E: Copy, const K: usize>(
    win: &Window,
    src: *const T,
    pad: *const T,
    c_off: usize,
    per: usize,
    p0: usize,
    n: usize,
    r: usize,
    panel_len: usize,
    dst: *mut T,
) -> bool {
    macro_rules! widths {
        ($($w:literal)*) => {
            match r {
                $($w => panels::<T, E, K, $w>(win, src, pad, c_off, per, p0, n, panel_len, dst),)*
                _ => return false,
            }
        };
    }
    widths!(2 3 4 5 6 8 12 16 32);
    true
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn panels<T: Copy, E: Copy, const K: usize, const R: usize>(
    win: &Window,
    src: *const T,
    pad: *const T,
    c_off: usize,
    per: usize,
    p0: usize,
    n: usize,
    panel_len: usize,
    dst: *mut T,
) {
    let mut rows = [std::ptr::null::<E>(); R];
    for j0 in (0..n).step_by(R) {
        let lanes = R.min(n - j0);
        let panel = dst.add((j0 / R) * panel_len) as *mut E;
        for ky in 0..win.kh {
            for kx in 0..win.kw {
                // lanes past the last pixel repeat it: the kernel ignores their columns, and
                // every lane of the panel is then written the same way
                for (lane, row) in rows.iter_mut().enumerate() {
                    let p = p0 + j0 + lane.min(lanes - 1);
                    *row = win.patch_row(src, pad, c_off, p, ky, kx) as *const E;
                }
                let k0 = (ky * win.kw + kx) * per;
                for q in 0..per {
                    let k = k0 + q;
                    let out = panel.add((k / K) * R * K + k % K);
                    for (lane, row) in rows.iter().enumerate() {
                        *out.add(lane * K) = row.add(q).read_unaligned();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::native::ir::Shape;

    /// One convolution's shape, as the definition-only reference reads it.
    #[derive(Clone, Copy)]
    struct Case {
        h: usize,
        w: usize,
        c: usize,
        k: usize,
        s: usize,
        pd: usize,
        groups: usize,
    }

    /// The value the definition of im2col puts at depth `k` of output pixel `p` for `group`
    /// (patch order `(ky, kx, c)`): the input pixel under that tap, or the channel's padding.
    /// Written from the definition alone, sharing no code with the writers under test.
    fn by_definition<T: Copy>(t: Case, x: &[T], pad: &[T], group: usize, p: usize, k: usize) -> T {
        let cg = t.c / t.groups;
        let ow = (t.w + 2 * t.pd - t.k) / t.s + 1;
        let (ky, kx, c) = (k / (t.k * cg), (k / cg) % t.k, k % cg);
        let iy = (p / ow * t.s + ky) as i64 - t.pd as i64;
        let ix = (p % ow * t.s + kx) as i64 - t.pd as i64;
        let channel = group * cg + c;
        if (0..t.h as i64).contains(&iy) && (0..t.w as i64).contains(&ix) {
            x[(iy as usize * t.w + ix as usize) * t.c + channel]
        } else {
            pad[channel]
        }
    }

    /// Writes the panels of pixels `p0..p0 + n` for `group` with [`im2col`] and with
    /// [`by_pixels`], and checks every patch value of every pixel of both against
    /// [`by_definition`] at the place the layout gives it: `k * r + lane` (plain k-outer) or
    /// `(k / 4) * 4r + 4 * lane + k % 4` (K=4-inner), in panel `j / r`.
    #[allow(clippy::too_many_arguments)]
    fn same<T: Copy + Default + PartialEq + std::fmt::Debug, const K4: bool>(
        t: Case,
        win: &Window,
        x: &[T],
        pad: &[T],
        group: usize,
        (p0, n): (usize, usize),
        r: usize,
        len: usize,
    ) {
        let cg = win.cin_g;
        let size = n.div_ceil(r) * len;
        let (mut a, mut b) = (vec![T::default(); size], vec![T::default(); size]);
        let group_pad = &pad[group * cg..(group + 1) * cg];
        let (src, c_off) = (x.as_ptr(), group * cg);
        unsafe {
            im2col::<T, K4>(win, src, pad, group, p0, n, r, len, a.as_mut_ptr());
            by_pixels::<T, K4>(win, src, group_pad, c_off, p0, n, r, len, b.as_mut_ptr());
        }
        for j in 0..n {
            let (panel, lane) = (j / r * len, j % r);
            for k in 0..win.k() {
                let at = panel
                    + if K4 {
                        (k / 4) * 4 * r + 4 * lane + k % 4
                    } else {
                        k * r + lane
                    };
                let want = by_definition(t, x, pad, group, p0 + j, k);
                assert_eq!(
                    a[at], want,
                    "im2col: K4 {K4} r {r} group {group} pixel {j} k {k}"
                );
                assert_eq!(
                    b[at], want,
                    "by_pixels: K4 {K4} r {r} group {group} pixel {j} k {k}"
                );
            }
        }
    }

    /// Both writers put every patch value where the kernels read it, in both layouts, at
    /// every width the panel writer handles, with padding, strides, groups and a last panel
    /// that is not full.
    #[test]
    fn panels_hold_the_patches_the_definition_gives() {
        let cases = [
            // (h, w, c, k, stride, pad, groups)
            (7, 9, 8, 3, 1, 1, 1),
            (8, 8, 16, 3, 2, 1, 2),
            (5, 6, 4, 1, 1, 0, 1),
            (6, 7, 12, 3, 1, 0, 3),
            (9, 8, 3, 3, 2, 1, 1),
        ];
        for (h, w, c, k, s, pd, groups) in cases {
            let t = Case {
                h,
                w,
                c,
                k,
                s,
                pd,
                groups,
            };
            let oh = (h + 2 * pd - k) / s + 1;
            let ow = (w + 2 * pd - k) / s + 1;
            let geom = Geom {
                input: Shape { h, w, c },
                output: Shape { h: oh, w: ow, c: 4 },
                kernel: [k, k],
                stride: [s, s],
                pad: [pd, pd],
            };
            let cg = c / groups;
            let win = Window::of(&geom, groups, cg);
            let x: Vec<i8> = (0..h * w * c).map(|i| (i * 37 % 251) as i8).collect();
            let xf: Vec<f32> = x.iter().map(|&v| v as f32 * 0.5).collect();
            let pad: Vec<i8> = (0..c).map(|i| -(i as i8) - 1).collect();
            let padf: Vec<f32> = pad.iter().map(|&v| v as f32).collect();
            for r in [2, 3, 4, 5, 6, 8, 12, 16, 32] {
                for group in 0..groups {
                    let (p0, n) = (1, oh * ow - 1);
                    let len = win.k().div_ceil(4) * 4 * r;
                    same::<f32, false>(t, &win, &xf, &padf, group, (p0, n), r, len);
                    same::<i8, true>(t, &win, &x, &pad, group, (p0, n), r, len);
                }
            }
        }
    }
}
