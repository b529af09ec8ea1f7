//! Micro-kernels: one generic MR x NR body, thin `#[target_feature]` shells per ISA.
//!
//! ```text
//!            k ->                       NR columns (NV vectors of LANES)
//!   A panel  [a0 a1 .. a(MR-1)] per k   B panel  [b0 .. b(NR-1)] per k
//!
//!   acc[i][v] += splat(A[i, k]) * B[k, v*LANES .. (v+1)*LANES]     for i < MR, v < NV
//! ```
//!
//! The accumulators (`MR * NV` vectors) stay in registers for the whole K slice; each k
//! step loads NV vectors of B and broadcasts MR scalars of A. After the slice the tile is
//! stored through the epilogue: on the first K slice `C = acc + bias`, on later ones
//! `C += acc`, and on the last one ReLU if asked. The summation order per element is
//! fixed by K alone, so any split of M and N gives bitwise identical results.
//!
//! This module also owns [`MatMut`], the mutable view of C that can be split into
//! disjoint row or column blocks for threads; it is the only place raw pointers into C
//! exist.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
#[cfg(target_arch = "aarch64")]
pub mod neon;
pub mod portable;

use std::marker::PhantomData;

use super::blocking::BlockSizes;
use crate::cpu::Isa;
use crate::error::Result;
use crate::simd::SimdF32;

/// Largest MR and NR of any kernel (sizes of stack tiles).
pub const MAX_MR: usize = 16;
/// Largest NR of any kernel.
pub const MAX_NR: usize = 64;

/// How far ahead of its k step (in f32 values, 3 KiB) a tile prefetches its A panel. A
/// Winograd product at batch 1 (N of 49-81 tiles) reads each panel of its weights once,
/// and from memory, since the linear layers have flushed the caches since the previous
/// inference; the hardware prefetcher restarts at every panel and product. Measured by
/// alternating call by call in one process, batch 1: whole network 0.96x at two threads,
/// 0.95x at one (conv2-5 0.86-0.94x); 384 and 1536 within 1% of this; warm SGEMM shapes
/// unchanged or up to 5% faster.
const A_AHEAD: usize = 768;

/// A mutable `rows x cols` view of row-major C with leading dimension `ld`.
///
/// Like `&mut [f32]`, but splittable into disjoint column blocks as well as row blocks.
pub struct MatMut<'a> {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    ld: usize,
    _borrow: PhantomData<&'a mut [f32]>,
}

// SAFETY: a MatMut is an exclusive borrow of the elements it covers (no two views
// overlap), exactly like `&mut [f32]`, which is Send.
unsafe impl Send for MatMut<'_> {}

impl<'a> MatMut<'a> {
    /// View `data` as `rows x cols` with leading dimension `ld`.
    ///
    /// # Panics
    /// If `data` is too short or `ld < cols` (a caller bug, never input-dependent).
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize, ld: usize) -> Self {
        assert!(ld >= cols, "leading dimension {ld} < columns {cols}");
        let need = if rows == 0 || cols == 0 { 0 } else { (rows - 1) * ld + cols };
        assert!(data.len() >= need, "C has {} values, view needs {need}", data.len());
        MatMut { ptr: data.as_mut_ptr(), rows, cols, ld, _borrow: PhantomData }
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Split into rows `[0, r)` and `[r, rows)`.
    pub fn split_rows(self, r: usize) -> (MatMut<'a>, MatMut<'a>) {
        assert!(r <= self.rows);
        // SAFETY: offset r*ld stays within (or one past) the borrowed region when r <= rows.
        let lower = unsafe { self.ptr.add(if r < self.rows { r * self.ld } else { 0 }) };
        (
            MatMut { ptr: self.ptr, rows: r, cols: self.cols, ld: self.ld, _borrow: PhantomData },
            MatMut { ptr: lower, rows: self.rows - r, cols: self.cols, ld: self.ld, _borrow: PhantomData },
        )
    }

    /// Split into columns `[0, c)` and `[c, cols)`.
    pub fn split_cols(self, c: usize) -> (MatMut<'a>, MatMut<'a>) {
        assert!(c <= self.cols);
        // SAFETY: c <= cols <= ld, so the offset stays within the first row's span.
        let right = unsafe { self.ptr.add(if c < self.cols { c } else { 0 }) };
        (
            MatMut { ptr: self.ptr, rows: self.rows, cols: c, ld: self.ld, _borrow: PhantomData },
            MatMut { ptr: right, rows: self.rows, cols: self.cols - c, ld: self.ld, _borrow: PhantomData },
        )
    }

    /// Copy the `h x w` block at `(i, j)` into `tile` (leading dimension `ldt`).
    pub fn read_block(&self, i: usize, j: usize, h: usize, w: usize, tile: &mut [f32], ldt: usize) {
        assert!(i + h <= self.rows && j + w <= self.cols && w <= ldt && tile.len() >= h * ldt);
        for r in 0..h {
            // SAFETY: (i + r, j .. j + w) lies inside the view (checked above).
            let src = unsafe { std::slice::from_raw_parts(self.ptr.add((i + r) * self.ld + j), w) };
            tile[r * ldt..r * ldt + w].copy_from_slice(src);
        }
    }

    /// Copy `tile` (leading dimension `ldt`) into the `h x w` block at `(i, j)`.
    pub fn write_block(&mut self, i: usize, j: usize, h: usize, w: usize, tile: &[f32], ldt: usize) {
        assert!(i + h <= self.rows && j + w <= self.cols && w <= ldt && tile.len() >= h * ldt);
        for r in 0..h {
            // SAFETY: (i + r, j .. j + w) lies inside the view, which we borrow exclusively.
            let dst = unsafe { std::slice::from_raw_parts_mut(self.ptr.add((i + r) * self.ld + j), w) };
            dst.copy_from_slice(&tile[r * ldt..r * ldt + w]);
        }
    }

    /// Row `i` of the view.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        assert!(i < self.rows);
        // SAFETY: row i (cols values from ptr + i*ld) lies inside the view, which we
        // borrow exclusively for the lifetime of the returned slice.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(i * self.ld), self.cols) }
    }

    /// Pointer to element `(i, j)` and the leading dimension, for a kernel writing the
    /// `mr x nr` block there, after checking it lies inside the view.
    fn block_ptr(&mut self, i: usize, j: usize, mr: usize, nr: usize) -> (*mut f32, usize) {
        assert!(i + mr <= self.rows && j + nr <= self.cols, "tile ({i}, {j}) {mr}x{nr} outside view");
        // SAFETY: (i, j) is inside the view (checked above).
        (unsafe { self.ptr.add(i * self.ld + j) }, self.ld)
    }
}

/// How a tile is stored: see the module doc.
#[derive(Clone, Copy, Debug)]
pub struct Store<'a> {
    /// First K slice: overwrite C with `acc + bias`; otherwise `C += acc`.
    pub first: bool,
    /// Apply ReLU after storing (last K slice only).
    pub relu: bool,
    /// `MR` per-row bias values (used on the first slice).
    pub row_bias: Option<&'a [f32]>,
    /// `NR` per-column bias values (used on the first slice).
    pub col_bias: Option<&'a [f32]>,
}

impl Store<'_> {
    /// The bias pointers a raw kernel takes (null: none), after checking that the row
    /// bias holds `rows` values and the column bias `cols`.
    fn bias_ptrs(&self, rows: usize, cols: usize) -> (*const f32, *const f32) {
        let rb = self.row_bias.map_or(std::ptr::null(), |s| {
            assert!(s.len() >= rows, "row bias too short");
            s.as_ptr()
        });
        let cb = self.col_bias.map_or(std::ptr::null(), |s| {
            assert!(s.len() >= cols, "column bias too short");
            s.as_ptr()
        });
        (rb, cb)
    }
}

/// The generic micro-kernel body. Instantiated only inside `#[target_feature]` shells.
/// It computes `MR` rows of an A panel whose k steps are `a_stride` apart and the first
/// `NV * LANES` columns of a B panel whose rows are `b_stride` apart: the full kernel
/// reads whole panels, the narrow one the left part of B's, the short one the top rows
/// of A's (for the last panel of an M that is not a multiple of the panel height).
///
/// # Safety
/// The CPU supports `V`'s instructions; `a` is valid for reads of `k` runs of `MR` values
/// `a_stride` apart, `b` for reads of `k` rows of `NV * LANES` values `b_stride` apart,
/// `c` for writes of `MR` rows of `NV * LANES` values at stride `ldc`; `row_bias` (if
/// non-null) for `MR` reads, `col_bias` for `NV * LANES` reads.
#[inline(always)]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
pub(crate) unsafe fn tile<V: SimdF32, const MR: usize, const NV: usize>(
    k: usize,
    a: *const f32,
    a_stride: usize,
    b: *const f32,
    b_stride: usize,
    c: *mut f32,
    ldc: usize,
    row_bias: *const f32,
    col_bias: *const f32,
    first: bool,
    relu: bool,
) {
    let lanes = V::LANES;
    let nr = NV * lanes;
    // SAFETY: pointer ranges as promised by the caller (this fn's contract); V's
    // instructions are available.
    unsafe {
        // Bring the C tile towards L1 while the K loop runs: its rows are far apart in
        // memory and would otherwise miss at the store.
        for i in 0..MR {
            V::prefetch(c.add(i * ldc));
            V::prefetch(c.add(i * ldc + nr - 1));
        }
        let mut acc = [[V::zero(); NV]; MR];
        let (mut a, mut b) = (a, b);
        for _ in 0..k {
            // A's panel is read once per product where B is narrow (a Winograd product at
            // batch 1: from memory, since the linear layers flushed the caches); fetch it
            // well ahead, across the end of the panel into the next one.
            V::prefetch(a.wrapping_add(A_AHEAD));
            let mut bv = [V::zero(); NV];
            for v in 0..NV {
                bv[v] = V::load(b.add(v * lanes));
            }
            for i in 0..MR {
                let av = V::splat(*a.add(i));
                for v in 0..NV {
                    acc[i][v] = av.mul_add(bv[v], acc[i][v]);
                }
            }
            a = a.add(a_stride);
            b = b.add(b_stride);
        }
        for i in 0..MR {
            let row = c.add(i * ldc);
            for v in 0..NV {
                let p = row.add(v * lanes);
                let mut x = acc[i][v];
                if first {
                    if !row_bias.is_null() {
                        x = x.add(V::splat(*row_bias.add(i)));
                    }
                    if !col_bias.is_null() {
                        x = x.add(V::load(col_bias.add(v * lanes)));
                    }
                } else {
                    x = V::load(p).add(x);
                }
                if relu {
                    x = x.relu();
                }
                x.store(p);
            }
        }
    }
}

/// Columns one call of the edge kernel (`columns`) computes side by side (one FMA chain each).
pub const COLUMNS: usize = 4;

/// The edge kernel for the last few columns of a B panel (at most [`COLUMNS`] per
/// call): the `MR` rows of the A panel lie along the vector lanes (zero-filled past
/// `MR`) and each column is one chain of FMAs with B's value broadcast, so `w` columns
/// cost `COLUMNS` FMAs per k step where a narrow tile costs `MR`. Each element is the
/// same chain of FMAs over k as in [`tile`], then the same epilogue in the same order
/// (`acc + row bias + column bias` on the first slice, `C + acc` after, ReLU last), so
/// its result does not depend on the kernel that computed it. Columns `w..COLUMNS`
/// repeat column `w - 1` (free: the chains' latency sets the pace) and are not stored;
/// only the first `h` rows are.
///
/// # Safety
/// The CPU supports `V`'s instructions; `MR <= 4 * LANES`; `1 <= w <= COLUMNS`, `h <=
/// MR`; `a` is valid for reads of `k` runs of `MR` values `a_stride` apart, `b` for
/// reads of `k` rows of `w` values `b_stride` apart, `c` for reads and writes of `h`
/// rows of `w` values at stride `ldc`; `row_bias` (if non-null) for `MR` reads,
/// `col_bias` for `w`.
#[inline(always)]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
pub(crate) unsafe fn columns<V: SimdF32, const MR: usize>(
    k: usize,
    a: *const f32,
    a_stride: usize,
    b: *const f32,
    b_stride: usize,
    (h, w): (usize, usize),
    c: *mut f32,
    ldc: usize,
    row_bias: *const f32,
    col_bias: *const f32,
    first: bool,
    relu: bool,
) {
    const RV: usize = 4;
    let lanes = V::LANES;
    let rv = MR.div_ceil(lanes);
    let cols: [usize; COLUMNS] = std::array::from_fn(|q| q.min(w - 1));
    // SAFETY: pointer ranges as promised by the caller (this fn's contract); V's
    // instructions are available.
    unsafe {
        let mut acc = [[V::zero(); COLUMNS]; RV];
        let (mut a, mut b) = (a, b);
        for _ in 0..k {
            let mut av = [V::zero(); RV];
            for r in 0..rv {
                av[r] = V::load_first(a.add(r * lanes), MR - r * lanes);
            }
            for q in 0..COLUMNS {
                let bq = V::splat(*b.add(cols[q]));
                for r in 0..rv {
                    acc[r][q] = av[r].mul_add(bq, acc[r][q]);
                }
            }
            a = a.add(a_stride);
            b = b.add(b_stride);
        }
        let mut lane = [0.0f32; 64];
        for q in 0..w {
            for r in 0..rv {
                let rows = h.saturating_sub(r * lanes).min(lanes);
                let at = |l: usize| c.add((r * lanes + l) * ldc + q);
                let mut x = acc[r][q];
                if first {
                    if !row_bias.is_null() {
                        x = x.add(V::load_first(row_bias.add(r * lanes), MR - r * lanes));
                    }
                    if !col_bias.is_null() {
                        x = x.add(V::splat(*col_bias.add(q)));
                    }
                } else {
                    for l in 0..rows {
                        lane[l] = *at(l);
                    }
                    x = V::load(lane.as_ptr()).add(x);
                }
                if relu {
                    x = x.relu();
                }
                x.store(lane.as_mut_ptr());
                for l in 0..rows {
                    *at(l) = lane[l];
                }
            }
        }
    }
}

/// `CHAINS` independent FMA dependency chains, `iters` times: the FMA-peak probe. Returns a
/// value derived from every chain so the work cannot be optimised away.
///
/// # Safety
/// The CPU supports `V`'s instructions.
#[inline(always)]
pub(crate) unsafe fn fma_chains<V: SimdF32, const CHAINS: usize>(iters: usize) -> f32 {
    // SAFETY: V's instructions are available (this fn's contract); `out` holds at
    // least LANES values.
    unsafe {
        let (x, y) = (V::splat(0.999), V::splat(0.001));
        let mut acc = [V::splat(0.5); CHAINS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = a.mul_add(x, y);
            }
        }
        let mut sum = V::zero();
        for a in acc {
            sum = sum.add(a);
        }
        let mut out = [0.0f32; 64];
        sum.store(out.as_mut_ptr());
        out[..V::LANES].iter().sum()
    }
}

/// `R` rows of W times `B` vectors at once: `out[b * ldo + r] = dot(W[r], x[b])`. Each
/// k step loads R weight vectors and B input vectors and does R*B FMAs, so W streams from
/// memory once however many vectors there are. Every (row, vector) pair keeps one vector
/// accumulator, reduced pairwise across lanes, then the scalar tail of K is added: the
/// arithmetic of a pair is the same whatever R and B, so grouping rows or vectors
/// differently (another thread split, another batch) cannot change a result. Along the
/// way it fetches its share of `next` into L2 (hints only: they change no result).
///
/// # Safety
/// The CPU supports `V`'s instructions; `w` is valid for reads of `R` rows of `k` values
/// at stride `ldw`, `x` for `B` rows of `k` at stride `ldx`, `out` for writes at
/// `b * ldo + r` for `b < B`, `r < R`. `next` may point anywhere (it is only prefetched).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemv_block<V: SimdF32, const R: usize, const B: usize>(
    k: usize,
    w: *const f32,
    ldw: usize,
    x: *const f32,
    ldx: usize,
    out: *mut f32,
    ldo: usize,
    next: Prefetch,
) {
    let lanes = V::LANES;
    // SAFETY: pointer ranges as promised by the caller (this fn's contract).
    unsafe {
        let mut acc = [[V::zero(); B]; R];
        // The next 64-byte line (in f32 offsets along a row) whose turn it is to be fetched.
        let mut fetch_at = if next.rows.is_null() { usize::MAX } else { LINE * next.phase };
        let mut p = 0;
        while p + lanes <= k {
            let mut xv = [V::zero(); B];
            for (b, v) in xv.iter_mut().enumerate() {
                *v = V::load(x.add(b * ldx + p));
            }
            if p == fetch_at {
                for r in 0..GEMV_ROWS {
                    crate::simd::prefetch_l2(next.rows.wrapping_add(r * ldw + p));
                }
                fetch_at += LINE * next.phases;
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let wv = V::load(w.add(r * ldw + p));
                for (a, &xb) in row.iter_mut().zip(&xv) {
                    *a = wv.mul_add(xb, *a);
                }
            }
            p += lanes;
        }
        for (r, row) in acc.into_iter().enumerate() {
            for (b, a) in row.into_iter().enumerate() {
                let mut lane = [0.0f32; 64];
                a.store(lane.as_mut_ptr());
                let mut width = lanes;
                while width > 1 {
                    width /= 2;
                    for l in 0..width {
                        lane[l] += lane[l + width];
                    }
                }
                let mut sum = lane[0];
                for q in p..k {
                    sum += *w.add(r * ldw + q) * *x.add(b * ldx + q);
                }
                *out.add(b * ldo + r) = sum;
            }
        }
    }
}

/// A raw tile kernel (a `#[target_feature]` instantiation of `tile`); its contract is
/// `tile`'s, for the kernel's tile width.
pub type TileFn = unsafe fn(
    k: usize,
    a: *const f32,
    b: *const f32,
    b_stride: usize,
    c: *mut f32,
    ldc: usize,
    row_bias: *const f32,
    col_bias: *const f32,
    first: bool,
    relu: bool,
);

/// Rows of W per block of [`Kernel::gemv`].
const GEMV_ROWS: usize = 4;
/// f32 values per 64-byte cache line.
const LINE: usize = 16;

/// What a GEMV pass fetches ahead into L2. With several groups of vectors per block of
/// rows (batch > 4), the first group reads the block from memory and the others from
/// L2; left alone, the memory stream stops while they compute and the next block's first
/// group then waits on it. So each later group fetches its share of the next block's
/// lines (line `i` by the group with `i % phases == phase`) while it computes.
/// Measured on the 2-core EPYC at batch 16: the linear layers 0.88-0.95x the time
/// (one thread, fc6's shape alone: 57 -> 65 GFLOP/s; prefetching into L1 instead made it
/// slower, 51 GFLOP/s, by evicting the vectors the other groups use).
#[derive(Clone, Copy, Debug)]
pub struct Prefetch {
    /// The next block's first row (`GEMV_ROWS` rows at W's stride), or null: nothing.
    rows: *const f32,
    /// Which share of the lines this pass fetches.
    phase: usize,
    /// Shares the lines are dealt into (at least 1).
    phases: usize,
}

impl Prefetch {
    /// Fetch nothing.
    const NONE: Prefetch = Prefetch { rows: std::ptr::null(), phase: 0, phases: 1 };
}

/// A raw edge kernel (a `#[target_feature]` instantiation of `columns`); its contract
/// is `columns`'s, for the kernel's `MR` and panel width.
pub type ColumnsFn = unsafe fn(
    k: usize,
    a: *const f32,
    b: *const f32,
    b_stride: usize,
    hw: (usize, usize),
    c: *mut f32,
    ldc: usize,
    row_bias: *const f32,
    col_bias: *const f32,
    first: bool,
    relu: bool,
);

/// A raw GEMV kernel: `gemv_block` for `rows` and `vecs` each 4 or 1, same contract.
pub type GemvFn = unsafe fn(
    rows: usize,
    vecs: usize,
    k: usize,
    w: *const f32,
    ldw: usize,
    x: *const f32,
    ldx: usize,
    out: *mut f32,
    ldo: usize,
    next: Prefetch,
);

/// The FMA-peak probe (`fma_chains`) of an ISA.
pub type PeakFn = unsafe fn(iters: usize) -> f32;

/// What every ISA's kernel offers the driver: its sizes and its raw `#[target_feature]`
/// functions. The safe methods check lengths once, then call them.
///
/// # Safety
/// Implement only for a type whose values prove that the CPU runs the functions'
/// instructions (a capability token of [`crate::simd`]): the safe methods call them
/// with nothing but `self` as that proof.
pub unsafe trait MicroKernel: Copy + Send + Sync {
    /// Tile and block sizes.
    const BLOCKS: BlockSizes;
    /// Columns of the narrow kernel, used for a last B panel with at most this many
    /// columns; equal to `BLOCKS.nr` when the ISA has none.
    const NARROW_NR: usize;
    /// FLOPs per iteration of [`MicroKernel::FMA_PEAK`].
    const PEAK_FLOPS_PER_ITER: usize;
    /// The `MR x NR` kernel.
    const TILE: TileFn;
    /// The `MR x NARROW_NR` kernel, reading the left part of full-width (`NR`) B panels
    /// with the same arithmetic per element as [`MicroKernel::TILE`].
    const TILE_NARROW: TileFn;
    /// Rows of the short kernels, used for a last A panel with at most this many rows;
    /// equal to `BLOCKS.mr` when the ISA has none.
    const SHORT_MR: usize = Self::BLOCKS.mr;
    /// The `SHORT_MR x NR` kernel, reading the top rows of full-height (`MR`) A panels
    /// with the same arithmetic per element as [`MicroKernel::TILE`].
    const TILE_SHORT: TileFn = Self::TILE;
    /// The `SHORT_MR x NARROW_NR` kernel.
    const TILE_SHORT_NARROW: TileFn = Self::TILE_NARROW;
    /// Whether the driver should read a row-major B in place rather than pack it (see
    /// `gemm::read_in_place`): worth it where a k step is long enough to hide loads from
    /// rows far apart (AVX-512's 24 FMAs; AVX2's 6x16 tile ran 0.94-0.98x in place).
    const B_IN_PLACE: bool = false;
    /// The edge kernel for the last few columns of a panel (`columns`), where it is
    /// cheaper than a narrow tile (`MR` well above [`COLUMNS`]).
    const COLUMNS: Option<ColumnsFn> = None;
    /// The GEMV kernel.
    const GEMV: GemvFn;
    /// The FMA-peak probe.
    const FMA_PEAK: PeakFn;

    /// Run the FMA-peak probe for `iters` iterations.
    fn fma_loop(self, iters: usize) -> f32 {
        // SAFETY: `self` proves the ISA (trait contract); the probe touches no memory
        // but its own stack.
        unsafe { (Self::FMA_PEAK)(iters) }
    }

    /// Compute one `MR x NR` tile into `c` at `(i, j)`, or `SHORT_MR` rows when `short`,
    /// `NARROW_NR` columns when `narrow`, B's `k` rows `ldb` apart from `b[0]` (a packed
    /// panel: `ldb = NR`): safe, lengths checked once.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn tile(
        self,
        k: usize,
        a: &[f32],
        (b, ldb): (&[f32], usize),
        c: &mut MatMut<'_>,
        i: usize,
        j: usize,
        st: &Store<'_>,
        short: bool,
        narrow: bool,
    ) {
        let BlockSizes { mr: tall, nr: full, .. } = Self::BLOCKS;
        let mr = if short { Self::SHORT_MR } else { tall };
        let nr = if narrow { Self::NARROW_NR } else { full };
        // B: k rows of nr values, ldb apart (a narrow tile may start inside a panel).
        assert!(ldb >= nr && a.len() >= tall * k && (k == 0 || b.len() >= ldb * (k - 1) + nr), "panels too short");
        let (rb, cb) = st.bias_ptrs(mr, nr);
        let (cp, ldc) = c.block_ptr(i, j, mr, nr);
        let kernel = match (short, narrow) {
            (false, false) => Self::TILE,
            (false, true) => Self::TILE_NARROW,
            (true, false) => Self::TILE_SHORT,
            (true, true) => Self::TILE_SHORT_NARROW,
        };
        // SAFETY: panel lengths and the C block were checked above; `self` proves the
        // CPU supports this kernel's ISA (trait contract).
        unsafe { kernel(k, a.as_ptr(), b.as_ptr(), ldb, cp, ldc, rb, cb, st.first, st.relu) }
    }
    /// Run [`MicroKernel::COLUMNS`] on the `h x w` block of `c` at `(i, j)` (`w <=`
    /// [`COLUMNS`]), B's columns starting at `b[0]`, its rows `ldb` apart: safe, lengths
    /// checked once. False (nothing done) if the kernel family has no edge kernel.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn columns(
        self,
        k: usize,
        a: &[f32],
        (b, ldb): (&[f32], usize),
        c: &mut MatMut<'_>,
        (i, j): (usize, usize),
        (h, w): (usize, usize),
        st: &Store<'_>,
    ) -> bool {
        let Some(kernel) = Self::COLUMNS else { return false };
        let mr = Self::BLOCKS.mr;
        assert!((1..=COLUMNS).contains(&w) && h <= mr, "edge block {h}x{w}");
        assert!(ldb >= w && a.len() >= mr * k && (k == 0 || b.len() >= ldb * (k - 1) + w), "panels too short");
        let (rb, cb) = st.bias_ptrs(mr, w);
        let (cp, ldc) = c.block_ptr(i, j, h, w);
        // SAFETY: panel lengths and the C block were checked above; `self` proves the
        // CPU supports this kernel's ISA (trait contract).
        unsafe { kernel(k, a.as_ptr(), b.as_ptr(), ldb, (h, w), cp, ldc, rb, cb, st.first, st.relu) };
        true
    }
}

/// A kernel family chosen for this CPU.
#[derive(Clone, Copy, Debug)]
pub enum Kernel {
    /// AVX-512F, `sgemm_12x32`.
    #[cfg(target_arch = "x86_64")]
    Avx512(crate::simd::Avx512),
    /// AVX2 + FMA, `sgemm_6x16`.
    #[cfg(target_arch = "x86_64")]
    Avx2(crate::simd::Avx2),
    /// NEON, `sgemm_8x12`.
    #[cfg(target_arch = "aarch64")]
    Neon(crate::simd::Neon),
    /// Portable on `wide`, `sgemm_4x8`.
    Portable(portable::Portable),
}

impl Kernel {
    /// The kernels of `isa`, if this CPU runs them.
    pub fn new(isa: Isa) -> Result<Kernel> {
        let missing = crate::Error::UnsupportedIsa(isa.name());
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => crate::simd::Avx512::new().map(Kernel::Avx512).ok_or(missing),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => crate::simd::Avx2::new().map(Kernel::Avx2).ok_or(missing),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => crate::simd::Neon::new().map(Kernel::Neon).ok_or(missing),
            Isa::Portable => Ok(Kernel::Portable(portable::Portable)),
            #[allow(unreachable_patterns)]
            _ => Err(missing),
        }
    }

    /// The ISA.
    pub fn isa(&self) -> Isa {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(_) => Isa::Avx512,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(_) => Isa::Avx2,
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon(_) => Isa::Neon,
            Kernel::Portable(_) => Isa::Portable,
        }
    }

    /// Run the FMA-peak probe; returns (FLOPs done, a value to keep the work alive).
    pub fn fma_loop(&self, iters: usize) -> (f64, f32) {
        fn go<K: MicroKernel>(k: K, iters: usize) -> (f64, f32) {
            ((K::PEAK_FLOPS_PER_ITER * iters) as f64, k.fma_loop(iters))
        }
        match *self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(t) => go(t, iters),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(t) => go(t, iters),
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon(t) => go(t, iters),
            Kernel::Portable(t) => go(t, iters),
        }
    }

    /// `y[b, r] = dot(W[r], x[b])` for the `y.cols()` rows of row-major `w` (`k` columns)
    /// and the `y.rows()` vectors of row-major `x` (`k` columns each): a GEMV for one
    /// vector, a weight-streaming GEMM for a few. Safe: lengths are checked once. `w` may
    /// hold more rows than `y` has columns: the rows after are not computed, but the first
    /// block of them is fetched ahead (see [`Prefetch`]) for the caller's next call.
    pub fn gemv(&self, w: &[f32], k: usize, x: &[f32], y: &mut MatMut<'_>) {
        fn go<K: MicroKernel>(_token: K, w: &[f32], k: usize, x: &[f32], y: &mut MatMut<'_>) {
            let (vecs, rows) = (y.rows(), y.cols());
            assert!(w.len() >= rows * k && x.len() >= vecs * k, "gemv operands too short");
            let groups = vecs / 4 + vecs % 4;
            let mut r = 0;
            while r < rows {
                let rr = if rows - r >= GEMV_ROWS { GEMV_ROWS } else { 1 };
                let (mut b, mut group) = (0, 0);
                while b < vecs {
                    let bb = if vecs - b >= 4 { 4 } else { 1 };
                    let (out, ldy) = y.block_ptr(b, r, bb, rr);
                    // Groups after the first fetch the next block (which may lie past
                    // `rows`, in the caller's next task) while they compute.
                    let next = if group > 0 && (r + rr + GEMV_ROWS) * k <= w.len() {
                        Prefetch { rows: w[(r + rr) * k..].as_ptr(), phase: group - 1, phases: groups - 1 }
                    } else {
                        Prefetch::NONE
                    };
                    group += 1;
                    // SAFETY: rows r..r+rr of w and vectors b..b+bb of x are in bounds
                    // (checked above), as is the output block (block_ptr checked it); the
                    // prefetched rows are inside w too (checked here), and a prefetch never
                    // faults anyway; the token `_token` proves the ISA (trait contract).
                    unsafe {
                        let (wp, xp) = (w.as_ptr().add(r * k), x.as_ptr().add(b * k));
                        K::GEMV(rr, bb, k, wp, k, xp, k, out, ldy, next)
                    };
                    b += bb;
                }
                r += rr;
            }
        }
        match *self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(t) => go(t, w, k, x, y),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(t) => go(t, w, k, x, y),
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon(t) => go(t, w, k, x, y),
            Kernel::Portable(t) => go(t, w, k, x, y),
        }
    }

    /// Tile and block sizes.
    pub fn blocks(&self) -> BlockSizes {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(_) => <crate::simd::Avx512 as MicroKernel>::BLOCKS,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(_) => <crate::simd::Avx2 as MicroKernel>::BLOCKS,
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon(_) => <crate::simd::Neon as MicroKernel>::BLOCKS,
            Kernel::Portable(_) => <portable::Portable as MicroKernel>::BLOCKS,
        }
    }
}
