//! Running a [`Plan`]: one pass over NHWC maps in the arena, threads in lockstep (a barrier
//! after every step), each thread working on its own pixel chunks or weight rows.
//!
//! Consumes a plan, a [`Workspace`] (arena, staging, per-thread panels and kernel scratch,
//! all sized at plan time) and an NCHW f32 input; produces the graph outputs as f32 vectors.

use std::sync::{Arc, Barrier};

use tract_data::internal::TensorView;
use tract_data::prelude::*;
use tract_linalg::mmm::{
    AsInputValue, EagerPackedInput, FusedSpec, PackedExoticFact, ScratchSpace,
};
use tract_linalg::multithread::{multithread_tract_scope, Executor};
use tract_linalg::BinOp;

use super::im2col::{im2col, Window};
use super::ir::{Act, Axis, Post};
use super::kernels::PanelLayout;
use super::plan::{DepthwiseStep, GemmStep, IntEpilogue, Plan, Step};
use super::NativeError;

/// A kernel's per-thread buffers: its activation panels and its scratch space.
struct Kit {
    /// The kernel (name and packing index) they were made for.
    kind: (String, usize),
    /// Bytes the panel buffer holds.
    bytes: usize,
    panels: EagerPackedInput,
    scratch: Box<dyn ScratchSpace>,
}

/// Per-thread buffers.
struct Local {
    /// Kits in the order of the plan's kernels (then kits of other plans' kernels).
    kits: Vec<Kit>,
    acc: Tensor,
    dw: Vec<i32>,
}

/// Everything a pass writes. Not tied to one plan: [`Workspace::fit`] grows it for any
/// plan (never shrinks it), so the networks of a process can share their workspaces and
/// hold as many as passes run at once, sized for the largest.
pub struct Workspace {
    arena: Tensor,
    staging: Tensor,
    locals: Vec<Local>,
}

fn kerr(e: impl std::fmt::Display) -> NativeError {
    NativeError::Kernel(format!("{e:#}"))
}

fn zeros<T: Datum + tract_data::internal::tract_num_traits::Zero>(
    len: usize,
) -> Result<Tensor, NativeError> {
    Tensor::zero_aligned::<T>(&[len.max(1)], 128).map_err(kerr)
}

impl Kit {
    /// Bytes of the panel buffer for panels of `bytes`, with a 256-byte margin past the
    /// last panel.
    fn room(bytes: usize) -> usize {
        bytes.max(64) + 256
    }

    fn new(k: &super::kernels::Kernel, bytes: usize) -> Kit {
        let bytes = Kit::room(bytes);
        Kit {
            kind: (k.name().to_string(), k.packing),
            bytes,
            panels: EagerPackedInput {
                fact: PackedExoticFact {
                    format: k.mmm.packings()[k.packing].1.clone(),
                    mn: 0.to_dim(),
                    k: 0,
                },
                packed: Arc::new(unsafe { Blob::new_for_size_and_align(bytes, 128) }),
                panel_bytes: 0,
                mn: 0,
            },
            scratch: unsafe { k.mmm.allocate_scratch_space() },
        }
    }
}

impl Local {
    /// Grows the buffers for `plan` and puts the kits in its kernel order (reusing every
    /// kit already made for one of its kernels, so alternating plans allocate nothing).
    fn fit(&mut self, plan: &Plan, channels: usize) -> Result<(), NativeError> {
        if self.acc.len() < plan.acc_len {
            self.acc = zeros::<i32>(plan.acc_len)?;
        }
        if self.dw.len() < channels {
            self.dw = vec![0; channels];
        }
        for (i, (k, &bytes)) in plan.kernels.iter().zip(&plan.panel_bytes).enumerate() {
            let found = self.kits[i..]
                .iter()
                .position(|kit| kit.kind.0 == k.name() && kit.kind.1 == k.packing);
            match found {
                Some(j) => self.kits.swap(i, i + j),
                None => {
                    self.kits.push(Kit::new(k, bytes));
                    let last = self.kits.len() - 1;
                    self.kits.swap(i, last);
                }
            }
            if self.kits[i].bytes < Kit::room(bytes) {
                self.kits[i] = Kit::new(k, bytes);
            }
        }
        Ok(())
    }
}

impl Workspace {
    /// Buffers for `plan`.
    pub fn new(plan: &Plan) -> Result<Workspace, NativeError> {
        let mut ws = Workspace {
            arena: zeros::<f32>(1)?,
            staging: zeros::<i8>(1)?,
            locals: Vec::new(),
        };
        ws.fit(plan)?;
        Ok(ws)
    }

    /// Makes the buffers fit `plan`: each grows where it is too small for it. What a
    /// previous pass left in them is never read (every step writes its whole output before
    /// a later step reads it).
    pub fn fit(&mut self, plan: &Plan) -> Result<(), NativeError> {
        if self.arena.len() < plan.arena {
            self.arena = zeros::<f32>(plan.arena)?;
        }
        if self.staging.len() < plan.staging {
            self.staging = zeros::<i8>(plan.staging)?;
        }
        while self.locals.len() < plan.threads {
            self.locals.push(Local {
                kits: Vec::new(),
                acc: zeros::<i32>(1)?,
                dw: Vec::new(),
            });
        }
        let channels = plan.values.iter().map(|v| v.c).max().unwrap_or(1);
        for local in self.locals.iter_mut().take(plan.threads) {
            local.fit(plan, channels)?;
        }
        Ok(())
    }

    /// Bytes of the buffers (arena, staging, panels, accumulators).
    pub fn bytes(&self) -> usize {
        let locals: usize = self
            .locals
            .iter()
            .map(|l| l.kits.iter().map(|k| k.bytes).sum::<usize>() + l.acc.len() * 4)
            .sum();
        self.arena.len() * 4 + self.staging.len() + locals
    }
}

#[derive(Clone, Copy)]
struct Mem {
    arena: *mut f32,
    staging: *mut i8,
}
unsafe impl Send for Mem {}
unsafe impl Sync for Mem {}

/// Runs one pass: `input` NCHW f32 of the plan's input shape; returns every output
/// flattened in ONNX order.
pub fn run(plan: &Plan, ws: &mut Workspace, input: &[f32]) -> Result<Vec<Vec<f32>>, NativeError> {
    run_timed(plan, ws, input, None)
}

/// [`run`], adding each step's wall time (seconds, measured by the first thread between
/// the barriers that end the steps) to `times` (one entry per step of the plan).
pub fn run_timed(
    plan: &Plan,
    ws: &mut Workspace,
    input: &[f32],
    times: Option<&mut [f64]>,
) -> Result<Vec<Vec<f32>>, NativeError> {
    let s = plan.values[0];
    if input.len() != s.len() {
        return Err(NativeError::Input {
            expected: s.len(),
            got: input.len(),
        });
    }
    ws.fit(plan)?;
    let mem = Mem {
        arena: ws.arena.as_ptr_mut::<f32>().map_err(kerr)?,
        staging: ws.staging.as_ptr_mut::<i8>().map_err(kerr)?,
    };
    // NCHW -> NHWC
    unsafe {
        let dst = mem.arena.add(plan.offsets[0]);
        let hw = s.pixels();
        for c in 0..s.c {
            for p in 0..hw {
                *dst.add(p * s.c + c) = input[c * hw + p];
            }
        }
    }
    let arena_t: &Tensor = &ws.arena;
    let barrier = Barrier::new(plan.threads);
    let results: Vec<Result<(), NativeError>> = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        let mut locals = ws.locals.iter_mut().take(plan.threads).enumerate();
        let first = locals.next();
        for (t, local) in locals {
            let barrier = &barrier;
            handles.push(scope.spawn(move || worker(plan, mem, arena_t, local, t, barrier, None)));
        }
        let mut out = Vec::new();
        if let Some((t, local)) = first {
            out.push(worker(plan, mem, arena_t, local, t, &barrier, times));
        }
        for h in handles {
            out.push(
                h.join().unwrap_or_else(|_| {
                    Err(NativeError::Kernel("a worker thread panicked".into()))
                }),
            );
        }
        out
    });
    for r in results {
        r?;
    }
    let mut outs = Vec::new();
    for o in &plan.outputs {
        let s = plan.values[o.value];
        let src =
            unsafe { std::slice::from_raw_parts(mem.arena.add(plan.offsets[o.value]), s.len()) };
        if o.nchw {
            let hw = s.pixels();
            let mut v = vec![0f32; s.len()];
            for p in 0..hw {
                for c in 0..s.c {
                    v[c * hw + p] = src[p * s.c + c];
                }
            }
            outs.push(v);
        } else {
            outs.push(src.to_vec());
        }
    }
    Ok(outs)
}

fn share(n: usize, t: usize, threads: usize) -> std::ops::Range<usize> {
    (n * t / threads)..(n * (t + 1) / threads)
}

fn worker(
    plan: &Plan,
    mem: Mem,
    arena: &Tensor,
    local: &mut Local,
    t: usize,
    barrier: &Barrier,
    mut times: Option<&mut [f64]>,
) -> Result<(), NativeError> {
    multithread_tract_scope(Executor::SingleThread, || {
        // every thread reaches every barrier, even after an error, so none waits forever
        let mut status = Ok(());
        let mut clock = std::time::Instant::now();
        for (i, step) in plan.steps.iter().enumerate() {
            if status.is_ok() {
                status = run_step(plan, step, mem, arena, local, t, barrier);
            } else if let Step::Gemm(g) = step {
                if g.int.is_some() {
                    barrier.wait();
                }
            } else if let Step::Depthwise(d) = step {
                if d.int.is_some() {
                    barrier.wait();
                }
            }
            barrier.wait();
            if let Some(slot) = times.as_deref_mut().and_then(|t| t.get_mut(i)) {
                let now = std::time::Instant::now();
                *slot += (now - clock).as_secs_f64();
                clock = now;
            }
        }
        status
    })
}

/// Round half to even of `x` where `|x| < 2^22` (callers clamp first): adding and taking
/// away 1.5 x 2^23 leaves the nearest integer under the default rounding mode, without
/// the library call `round_ties_even` becomes on a baseline x86-64 build.
#[inline(always)]
fn round_even_small(x: f32) -> f32 {
    const M: f32 = 12_582_912.0;
    (x + M) - M
}

/// Whether this CPU runs the x86-64-v3 instructions (AVX2, FMA) the step code is also
/// compiled for (checked once).
#[cfg(target_arch = "x86_64")]
fn has_v3() -> bool {
    static V3: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *V3.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    })
}

/// One step, with the element loops (quantization, im2col, epilogues) compiled for AVX2 and
/// FMA where the CPU has them. The results are the same either way: Rust never contracts a
/// multiply and an add, and `mul_add` is one rounding on both paths.
fn run_step(
    plan: &Plan,
    step: &Step,
    mem: Mem,
    arena: &Tensor,
    local: &mut Local,
    t: usize,
    barrier: &Barrier,
) -> Result<(), NativeError> {
    #[cfg(target_arch = "x86_64")]
    if has_v3() {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn v3(
            plan: &Plan,
            step: &Step,
            mem: Mem,
            arena: &Tensor,
            local: &mut Local,
            t: usize,
            barrier: &Barrier,
        ) -> Result<(), NativeError> {
            step_body(plan, step, mem, arena, local, t, barrier)
        }
        // SAFETY: the CPU has AVX2 and FMA
        return unsafe { v3(plan, step, mem, arena, local, t, barrier) };
    }
    step_body(plan, step, mem, arena, local, t, barrier)
}

#[inline(always)]
fn step_body(
    plan: &Plan,
    step: &Step,
    mem: Mem,
    arena: &Tensor,
    local: &mut Local,
    t: usize,
    barrier: &Barrier,
) -> Result<(), NativeError> {
    let threads = plan.threads;
    unsafe {
        match step {
            Step::Map {
                input,
                output,
                post,
            } => {
                // the output's layout: a Reshape to [1, n, k] copies the same values
                // into rows of k (the compiled-file check holds both lengths equal)
                let s = plan.values[*output];
                let (src, dst) = (
                    mem.arena.add(plan.offsets[*input]),
                    mem.arena.add(plan.offsets[*output]),
                );
                for p in share(s.pixels(), t, threads) {
                    std::ptr::copy_nonoverlapping(src.add(p * s.c), dst.add(p * s.c), s.c);
                    let row = std::slice::from_raw_parts_mut(dst.add(p * s.c), s.c);
                    apply(post, row, 0, p, plan, mem);
                }
            }
            Step::MaxPool {
                input,
                output,
                geom,
            } => {
                let (src, dst) = (
                    mem.arena.add(plan.offsets[*input]),
                    mem.arena.add(plan.offsets[*output]),
                );
                let (i, o) = (geom.input, geom.output);
                for p in share(o.pixels(), t, threads) {
                    let (oy, ox) = (p / o.w, p % o.w);
                    let out = std::slice::from_raw_parts_mut(dst.add(p * o.c), o.c);
                    out.fill(f32::NEG_INFINITY);
                    for ky in 0..geom.kernel[0] {
                        let iy = (oy * geom.stride[0] + ky) as isize - geom.pad[0] as isize;
                        if iy < 0 || iy >= i.h as isize {
                            continue;
                        }
                        for kx in 0..geom.kernel[1] {
                            let ix = (ox * geom.stride[1] + kx) as isize - geom.pad[1] as isize;
                            if ix < 0 || ix >= i.w as isize {
                                continue;
                            }
                            let row = std::slice::from_raw_parts(
                                src.add((iy as usize * i.w + ix as usize) * i.c),
                                i.c,
                            );
                            for (a, b) in out.iter_mut().zip(row) {
                                *a = a.max(*b);
                            }
                        }
                    }
                }
            }
            Step::Resize(r) => {
                let (i, o) = (plan.values[r.input], plan.values[r.output]);
                let (src, dst) = (
                    mem.arena.add(plan.offsets[r.input]),
                    mem.arena.add(plan.offsets[r.output]),
                );
                for p in share(o.pixels(), t, threads) {
                    let from = r.rows[p / o.w] * i.w + r.cols[p % o.w];
                    std::ptr::copy_nonoverlapping(src.add(from * i.c), dst.add(p * o.c), o.c);
                }
            }
            Step::Concat(cat) => {
                let o = plan.values[cat.output];
                let dst = mem.arena.add(plan.offsets[cat.output]);
                match cat.axis {
                    Axis::Channels => {
                        for p in share(o.pixels(), t, threads) {
                            let mut c0 = 0;
                            for v in &cat.inputs {
                                let c = plan.values[*v].c;
                                let src = mem.arena.add(plan.offsets[*v] + p * c);
                                std::ptr::copy_nonoverlapping(src, dst.add(p * o.c + c0), c);
                                c0 += c;
                            }
                        }
                    }
                    Axis::Pixels => {
                        let mut at = 0;
                        for v in &cat.inputs {
                            let len = plan.values[*v].len();
                            let part = share(len, t, threads);
                            let src = mem.arena.add(plan.offsets[*v] + part.start);
                            std::ptr::copy_nonoverlapping(
                                src,
                                dst.add(at + part.start),
                                part.len(),
                            );
                            at += len;
                        }
                    }
                }
            }
            Step::Gemm(g) => {
                if let Some(e) = &g.int {
                    quantize(plan, g.input, g.geom.input.c, e, mem, t);
                    barrier.wait();
                }
                gemm(plan, g, mem, arena, local, t)?;
            }
            Step::Depthwise(d) => {
                if let Some(e) = &d.int {
                    quantize(plan, d.input, d.geom.input.c, e, mem, t);
                    barrier.wait();
                }
                depthwise(plan, d, mem, local, t);
            }
        }
    }
    Ok(())
}

/// Input codes into the staging buffer: `clamp(round(x / scale) + zero) - off` as i8.
#[inline(always)]
unsafe fn quantize(
    plan: &Plan,
    input: usize,
    c: usize,
    e: &super::plan::IntEpilogue,
    mem: Mem,
    t: usize,
) {
    let s = plan.values[input];
    let src = mem.arena.add(plan.offsets[input]);
    let inv = 1.0 / e.q.scale;
    let (lo, hi, zero, off) = (e.q.lo as f32, e.q.hi as f32, e.q.zero as f32, e.off as f32);
    let n = s.len();
    let range = share(n / c.max(1), t, plan.threads);
    // clamp(round(v) + zero, lo, hi) == round(clamp(v, lo - zero, hi - zero)) + zero: the
    // bounds are integers and rounding is monotone
    let (vlo, vhi, shift) = (lo - zero, hi - zero, zero - off);
    // SAFETY (of the conversion): `max` and `min` take the bound over a NaN, so `q` is
    // finite, and it is clamped to i8's range last, so the unchecked conversion is defined;
    // for the valid quantization parameters the planner makes, that clamp changes nothing.
    // Unlike `as`, it compiles to one vector instruction
    let code = |x: f32| unsafe {
        let q = round_even_small((x * inv).max(vlo).min(vhi)) + shift;
        q.clamp(-128.0, 127.0).to_int_unchecked::<i32>() as i8
    };
    match &e.pre {
        Some((sc, sh)) => {
            for p in range {
                let row = std::slice::from_raw_parts(src.add(p * c), c);
                let out = std::slice::from_raw_parts_mut(mem.staging.add(p * c), c);
                for (((o, x), a), b) in out.iter_mut().zip(row).zip(sc).zip(sh) {
                    *o = code(*x * a + b);
                }
            }
        }
        None => {
            // one run over the thread's pixels: rows of few channels (an image's 3) would
            // leave the loop in its scalar tail
            let (a, len) = (range.start * c, range.len() * c);
            let row = std::slice::from_raw_parts(src.add(a), len);
            let out = std::slice::from_raw_parts_mut(mem.staging.add(a), len);
            for (o, x) in out.iter_mut().zip(row) {
                *o = code(*x);
            }
        }
    }
}

#[inline(always)]
unsafe fn gemm(
    plan: &Plan,
    g: &GemmStep,
    mem: Mem,
    arena: &Tensor,
    local: &mut Local,
    t: usize,
) -> Result<(), NativeError> {
    let kernel = &plan.kernels[g.kernel];
    let o = g.geom.output;
    let pixels = o.pixels();
    let chunks = pixels.div_ceil(g.chunk);
    let items = chunks * g.parts.len();
    let win = Window::of(&g.geom, g.groups, g.cin_g);
    let k = win.k();
    let r = kernel.layout.r();
    let panel_bytes = kernel.panel_bytes(k);
    let out_base = mem.arena.add(plan.offsets[g.output]);
    let mut last: Option<(usize, usize)> = None;
    for item in share(items, t, plan.threads) {
        let (chunk, part) = (item / g.parts.len(), &g.parts[item % g.parts.len()]);
        let p0 = chunk * g.chunk;
        let n = g.chunk.min(pixels - p0);
        let kit = &mut local.kits[g.kernel];
        let epi = &mut kit.panels;
        if last != Some((chunk, part.group)) {
            let blob = Arc::get_mut(&mut epi.packed)
                .ok_or_else(|| NativeError::Kernel("shared panel buffer".into()))?;
            let dst = blob.as_bytes_mut().as_mut_ptr();
            match (g.int.as_ref(), kernel.layout) {
                (None, PanelLayout::Plain { .. }) => {
                    let src = mem.arena.add(plan.offsets[g.input]) as *const f32;
                    im2col::<f32, false>(
                        &win,
                        src,
                        &g.pad,
                        part.group,
                        p0,
                        n,
                        r,
                        panel_bytes / 4,
                        dst as *mut f32,
                    );
                }
                (Some(_), layout) => {
                    let src = mem.staging as *const i8;
                    if matches!(layout, PanelLayout::K4 { .. }) {
                        im2col::<i8, true>(
                            &win,
                            src,
                            &g.pad_i8,
                            part.group,
                            p0,
                            n,
                            r,
                            panel_bytes,
                            dst as *mut i8,
                        );
                    } else {
                        im2col::<i8, false>(
                            &win,
                            src,
                            &g.pad_i8,
                            part.group,
                            p0,
                            n,
                            r,
                            panel_bytes,
                            dst as *mut i8,
                        );
                    }
                }
                (None, PanelLayout::K4 { .. }) => {
                    return Err(NativeError::Kernel("f32 with an i8 panel layout".into()))
                }
            }
            epi.fact.k = k;
            epi.fact.mn = n.to_dim();
            epi.mn = n;
            epi.panel_bytes = panel_bytes;
            last = Some((chunk, part.group));
        }
        let row0 = part.group * g.cout_g + part.r0;
        let scratch = &mut *kit.scratch;
        let ldc = o.c as isize;
        let shape = [n, part.rows];
        if g.int.is_none() {
            let strides = [ldc, 1];
            let off = ((plan.offsets[g.output] + p0 * o.c + row0) * 4) as isize;
            let view = TensorView::from_bytes(arena, off, &shape, &strides);
            let store = kernel.mmm.c_from_data_and_strides(4, 1, ldc).wrap(&view);
            let specs = [
                FusedSpec::AddMatMul {
                    a: AsInputValue::Borrowed(&*part.a),
                    b: AsInputValue::Borrowed(&*epi),
                    packing: kernel.packing,
                },
                FusedSpec::BinPerRow(part.bias.view(), BinOp::Add),
                FusedSpec::Store(store),
            ];
            kernel
                .mmm
                .run_with_scratch_space(part.rows, n, scratch, &specs)
                .map_err(kerr)?;
            for p in p0..p0 + n {
                let row = std::slice::from_raw_parts_mut(out_base.add(p * o.c + row0), part.rows);
                apply(&g.post, row, row0, p, plan, mem);
            }
        } else if let Some(e) = &g.int {
            let strides = [part.rows as isize, 1];
            let acc_t = &local.acc;
            let view = TensorView::from_bytes(acc_t, 0, &shape, &strides);
            let store = kernel
                .mmm
                .c_from_data_and_strides(4, 1, part.rows as isize)
                .wrap(&view);
            let specs = [
                FusedSpec::AddMatMul {
                    a: AsInputValue::Borrowed(&*part.a),
                    b: AsInputValue::Borrowed(&*epi),
                    packing: kernel.packing,
                },
                FusedSpec::Store(store),
            ];
            kernel
                .mmm
                .run_with_scratch_space(part.rows, n, scratch, &specs)
                .map_err(kerr)?;
            let acc = std::slice::from_raw_parts(acc_t.as_ptr_unchecked::<i32>(), n * part.rows);
            let rows = row0..row0 + part.rows;
            for j in 0..n {
                let p = p0 + j;
                let row = std::slice::from_raw_parts_mut(out_base.add(p * o.c + row0), part.rows);
                let a = &acc[j * part.rows..(j + 1) * part.rows];
                int_out_row(e, rows.clone(), a, &g.bias, row);
                apply(rest(e, &g.post), row, row0, p, plan, mem);
            }
        }
    }
    Ok(())
}

#[inline(always)]
unsafe fn depthwise(plan: &Plan, d: &DepthwiseStep, mem: Mem, local: &mut Local, t: usize) {
    if d.int.is_none() {
        return depthwise_f32(plan, d, mem, t);
    }
    let (i, o) = (d.geom.input, d.geom.output);
    let c = o.c;
    let src = mem.arena.add(plan.offsets[d.input]);
    let dst = mem.arena.add(plan.offsets[d.output]);
    let acc_i = &mut local.dw[..if d.int.is_some() { c } else { 0 }];
    for p in share(o.pixels(), t, plan.threads) {
        let (oy, ox) = (p / o.w, p % o.w);
        let out = std::slice::from_raw_parts_mut(dst.add(p * c), c);
        if let Some(e) = &d.int {
            acc_i.fill(0);
            let shift = e.off - e.q.zero;
            for ky in 0..d.geom.kernel[0] {
                let iy = (oy * d.geom.stride[0] + ky) as isize - d.geom.pad[0] as isize;
                for kx in 0..d.geom.kernel[1] {
                    let ix = (ox * d.geom.stride[1] + kx) as isize - d.geom.pad[1] as isize;
                    if iy < 0 || iy >= i.h as isize || ix < 0 || ix >= i.w as isize {
                        continue; // padding is the zero point: contributes nothing
                    }
                    let tap = ky * d.geom.kernel[1] + kx;
                    let w = &d.wi[tap * c..(tap + 1) * c];
                    let row = std::slice::from_raw_parts(
                        mem.staging.add((iy as usize * i.w + ix as usize) * c),
                        c,
                    );
                    for ch in 0..c {
                        acc_i[ch] += w[ch] * (row[ch] as i32 + shift);
                    }
                }
            }
            int_out_row(e, 0..c, acc_i, &d.bias, out);
            apply(rest(e, &d.post), out, 0, p, plan, mem);
            continue;
        } else {
            out.copy_from_slice(&d.bias);
            for ky in 0..d.geom.kernel[0] {
                let iy = (oy * d.geom.stride[0] + ky) as isize - d.geom.pad[0] as isize;
                for kx in 0..d.geom.kernel[1] {
                    let ix = (ox * d.geom.stride[1] + kx) as isize - d.geom.pad[1] as isize;
                    let tap = ky * d.geom.kernel[1] + kx;
                    let w = &d.w[tap * c..(tap + 1) * c];
                    let row: &[f32] =
                        if iy < 0 || iy >= i.h as isize || ix < 0 || ix >= i.w as isize {
                            &d.pad
                        } else {
                            std::slice::from_raw_parts(
                                src.add((iy as usize * i.w + ix as usize) * c),
                                c,
                            )
                        };
                    for ch in 0..c {
                        out[ch] += w[ch] * row[ch];
                    }
                }
            }
        }
        apply(&d.post, out, 0, p, plan, mem);
    }
}

/// `y += w * x`, lane by lane (one pixel's channels).
#[inline(always)]
fn mac(y: &mut [f32], w: &[f32], x: &[f32]) {
    for ((y, w), x) in y.iter_mut().zip(w).zip(x) {
        *y += w * x;
    }
}

/// A float depthwise convolution, one output row at a time: for each tap, the columns whose
/// input pixel is inside the map run as one contiguous sweep (no per-pixel bounds checks),
/// the few edge columns read the padding. The sums are formed in the same order as pixel
/// by pixel (bias, then the taps row by row), so the result is the same.
#[inline(always)]
unsafe fn depthwise_f32(plan: &Plan, d: &DepthwiseStep, mem: Mem, t: usize) {
    let (i, o) = (d.geom.input, d.geom.output);
    let c = o.c;
    let ([kh, kw], [sh, sw], [pt, pl]) = (d.geom.kernel, d.geom.stride, d.geom.pad);
    let src = mem.arena.add(plan.offsets[d.input]);
    let dst = mem.arena.add(plan.offsets[d.output]);
    // columns whose every tap lies inside the input: x * sw >= pl, x * sw + kw - 1 - pl < i.w
    let x_lo = pl.div_ceil(sw).min(o.w);
    let x_hi = if i.w + pl >= kw {
        ((i.w + pl - kw) / sw + 1).min(o.w)
    } else {
        0
    }
    .max(x_lo);
    for oy in share(o.h, t, plan.threads) {
        let out = std::slice::from_raw_parts_mut(dst.add(oy * o.w * c), o.w * c);
        for px in out.chunks_exact_mut(c) {
            px.copy_from_slice(&d.bias);
        }
        for ky in 0..kh {
            let iy = (oy * sh + ky) as isize - pt as isize;
            let row = (iy >= 0 && (iy as usize) < i.h)
                .then(|| std::slice::from_raw_parts(src.add(iy as usize * i.w * c), i.w * c));
            for kx in 0..kw {
                let w = &d.w[(ky * kw + kx) * c..][..c];
                for x in (0..x_lo).chain(x_hi..o.w) {
                    let ix = (x * sw + kx) as isize - pl as isize;
                    let px = match row {
                        Some(r) if ix >= 0 && (ix as usize) < i.w => &r[ix as usize * c..][..c],
                        _ => &d.pad[..],
                    };
                    mac(&mut out[x * c..][..c], w, px);
                }
                let inner = out[x_lo * c..x_hi * c].chunks_exact_mut(c);
                match row {
                    Some(r) if x_hi > x_lo => {
                        let first = x_lo * sw + kx - pl;
                        for (y, px) in inner.zip(r[first * c..].chunks(c).step_by(sw)) {
                            mac(y, w, px);
                        }
                    }
                    _ => inner.for_each(|y| mac(y, w, &d.pad)),
                }
            }
        }
        for (x, px) in out.chunks_exact_mut(c).enumerate() {
            apply(&d.post, px, 0, oy * o.w + x, plan, mem);
        }
    }
}

/// Outputs of channels `cs` of an int8 product from their accumulators `acc` (the zero
/// point's correction `corr` is added here), into `out`.
#[inline(always)]
fn int_out_row(
    e: &IntEpilogue,
    cs: std::ops::Range<usize>,
    acc: &[i32],
    bias: &[f32],
    out: &mut [f32],
) {
    let corr = &e.corr[cs.clone()];
    match &e.exact {
        Some(x) => {
            // |q - zero| is at most 255 once clamped: clamping the product to 2^20 first
            // changes no result and keeps the rounding trick exact
            let (lo, hi) = ((x.lo - x.zero) as f32, (x.hi - x.zero) as f32);
            let (xb, abc) = (&x.bias[cs.clone()], &x.abc[cs]);
            for ((((y, a), k), b), m) in out.iter_mut().zip(acc).zip(corr).zip(xb).zip(abc) {
                let t = a.wrapping_add(*k).wrapping_add(*b) as f32;
                let q = round_even_small((t.abs() * m).min(1_048_576.0)) * t.signum();
                *y = q.clamp(lo, hi) * x.scale;
            }
        }
        None => {
            let (mul, bias) = (&e.mul[cs.clone()], &bias[cs]);
            for ((((y, a), k), m), b) in out.iter_mut().zip(acc).zip(corr).zip(mul).zip(bias) {
                *y = a.wrapping_add(*k) as f32 * m + b;
            }
        }
    }
}

/// The steps after an int8 epilogue (its exact requantization already applied).
fn rest<'a>(e: &IntEpilogue, post: &'a [Post]) -> &'a [Post] {
    if e.exact.is_some() {
        &post[1..]
    } else {
        post
    }
}

/// `y = y * scale + shift` with one rounding (fused multiply-add, as the reference's
/// kernels compute it): an instruction inside [`run_step`]'s AVX2 + FMA path.
#[inline(always)]
fn affine(row: &mut [f32], scale: &[f32], shift: &[f32]) {
    for ((y, s), t) in row.iter_mut().zip(scale).zip(shift) {
        *y = y.mul_add(*s, *t);
    }
}

/// Applies `post` to channels `c0..c0 + row.len()` of output pixel `p`.
#[inline(always)]
unsafe fn apply(post: &[Post], row: &mut [f32], c0: usize, p: usize, plan: &Plan, mem: Mem) {
    for step in post {
        match step {
            Post::Affine { scale, shift } => {
                let n = row.len();
                affine(row, &scale[c0..c0 + n], &shift[c0..c0 + n]);
            }
            Post::Act(Act::Relu) => row.iter_mut().for_each(|y| *y = y.max(0.0)),
            Post::Act(Act::Leaky(a)) => {
                // the slope by value: read once, the loop is a vector select
                let a = *a;
                row.iter_mut()
                    .for_each(|y| *y = if *y < 0.0 { *y * a } else { *y })
            }
            Post::Act(Act::Prelu(s)) => {
                for (y, s) in row.iter_mut().zip(&s[c0..]) {
                    let s = *s;
                    *y = if *y < 0.0 { *y * s } else { *y };
                }
            }
            Post::Act(Act::Sigmoid) => row.iter_mut().for_each(|y| *y = 1.0 / (1.0 + (-*y).exp())),
            Post::Softmax => {
                let max = row.iter().fold(f32::NEG_INFINITY, |m, y| m.max(*y));
                let mut sum = 0.0;
                for y in row.iter_mut() {
                    *y = (*y - max).exp();
                    sum += *y;
                }
                row.iter_mut().for_each(|y| *y /= sum);
            }
            Post::Add(v) => {
                let c = plan.values[*v].c;
                let other = std::slice::from_raw_parts(
                    mem.arena.add(plan.offsets[*v] + p * c + c0),
                    row.len(),
                );
                for (y, x) in row.iter_mut().zip(other) {
                    *y += x;
                }
            }
            Post::Requant {
                scale,
                zero,
                lo,
                hi,
            } => {
                let (scale, inv) = (*scale, 1.0 / scale);
                let (l, h) = ((*lo - *zero) as f32, (*hi - *zero) as f32);
                for y in row.iter_mut() {
                    *y = round_even_small((*y * inv).clamp(l, h)) * scale;
                }
            }
        }
    }
}
