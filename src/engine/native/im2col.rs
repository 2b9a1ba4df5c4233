//! im2col straight into a kernel's activation panels: the patch of each output pixel of a
//! chunk is written where the kernel reads it, so no unpacked patch matrix ever exists.
//!
//! Consumes an NHWC map (f32, or the staged i8 codes), the window geometry and the panel
//! layout (`r` pixels per panel; plain k-outer or K=4-inner); produces filled panels.
//! Patch order is `(ky, kx, c)`, matching the canonical weight order.

use super::plan::Geom;

/// Widest panel the word-wise writer handles (tract-linalg's i8 kernels use 4 to 16).
const MAX_R: usize = 32;

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
    if words && r <= MAX_R {
        // panel by panel, writing each panel in order: for every 4 channels, one 32-bit word
        // per pixel of the panel, read from the panel's `r` patch rows
        let mut rows = [std::ptr::null::<u32>(); MAX_R];
        for j0 in (0..n).step_by(r) {
            let lanes = r.min(n - j0);
            let panel = dst.add((j0 / r) * panel_len) as *mut u32;
            for ky in 0..win.kh {
                for kx in 0..win.kw {
                    for (lane, row) in rows.iter_mut().enumerate().take(lanes) {
                        let p = p0 + j0 + lane;
                        let (oy, ox) = (p / win.out_w, p % win.out_w);
                        let iy = (oy * win.sh + ky) as isize - win.pt as isize;
                        let ix = (ox * win.sw + kx) as isize - win.pl as isize;
                        let inside =
                            iy >= 0 && iy < win.in_h as isize && ix >= 0 && ix < win.in_w as isize;
                        *row = if inside {
                            src.add((iy as usize * win.in_w + ix as usize) * win.cin + c_off)
                                as *const u32
                        } else {
                            pad.as_ptr() as *const u32
                        };
                    }
                    let k0 = (ky * win.kw + kx) * cg / 4;
                    for q in 0..cg / 4 {
                        let out = panel.add((k0 + q) * r);
                        for (lane, row) in rows.iter().enumerate().take(lanes) {
                            *out.add(lane) = row.add(q).read_unaligned();
                        }
                    }
                }
            }
        }
        return;
    }
    for j in 0..n {
        let p = p0 + j;
        let (oy, ox) = (p / win.out_w, p % win.out_w);
        let panel = dst.add((j / r) * panel_len);
        let lane = j % r;
        for ky in 0..win.kh {
            let iy = (oy * win.sh + ky) as isize - win.pt as isize;
            for kx in 0..win.kw {
                let ix = (ox * win.sw + kx) as isize - win.pl as isize;
                let inside = iy >= 0 && iy < win.in_h as isize && ix >= 0 && ix < win.in_w as isize;
                let row: *const T = if inside {
                    src.add((iy as usize * win.in_w + ix as usize) * win.cin + c_off)
                } else {
                    pad.as_ptr()
                };
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
