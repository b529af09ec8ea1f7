//! Micro-kernels: one generic `MR x NR` body (`tile`), one edge body for a panel's last
//! few columns (`edge`), and per ISA a table entry ([`MicroKernel`]) saying which tile
//! sizes it runs. Cache blocks are the core's: [`crate::tuning`].
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
//! The bodies run inside the ISA's target-feature shell ([`crate::simd::Simd::vectorize`]);
//! [`run_tile`] and [`run_edge`] are their safe entry points, checking every length once
//! per call.
#![allow(unsafe_code)]

mod edge;
mod gemv;
pub mod i8;
mod tile;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod bf16;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;
mod portable;

pub use gemv::{gemv, Weight};

use std::marker::PhantomData;

use crate::base::mat::MatMut;
use crate::simd::{Job, Simd, SimdF32};

/// Largest MR of any kernel (sizes of stack tiles).
pub const MAX_MR: usize = 16;
/// Largest NR of any kernel.
pub const MAX_NR: usize = 64;
/// Columns one call of the edge kernel computes side by side (one FMA chain each).
pub const COLUMNS: usize = 4;

/// One ISA's GEMM configuration: its register tiles (as [`Tile`] types, so the generic
/// bodies get their sizes as constants) and cache blocks. Each entry lives in the ISA's
/// file under `gemm/kernel/`, with the reasons for its choices.
pub trait MicroKernel: Simd {
    /// The full `MR x NR` tile.
    type Full: TileShape;
    /// `MR` rows and fewer columns: a last B panel with at most `NARROW_NR` columns reads
    /// the left part of a full-width panel. `Full` itself where the ISA has none.
    type Narrow: TileShape;
    /// Fewer rows, `NR` columns: a last A panel with at most `SHORT_MR` rows reads the top
    /// rows of a full-height panel. `Full` itself where the ISA has none.
    type Short: TileShape;
    /// Fewer rows and fewer columns.
    type ShortNarrow: TileShape;
    /// Whether the driver reads a row-major B in place rather than packing it: worth it
    /// where a k step is long enough to hide loads from rows far apart.
    const B_IN_PLACE: bool = false;
    /// Whether a panel's last few columns run the edge kernel: worth it where `MR` is well
    /// above [`COLUMNS`] (a narrow tile costs `MR` FMAs per k step, the edge kernel 4).
    const EDGE: bool = false;

    /// Rows of the full tile: the height of A's panels.
    const MR: usize = Self::Full::MR;
    /// Columns of the full tile: the width of B's panels.
    const NR: usize = Self::Full::NV * <Self::F32 as SimdF32>::LANES;
    /// Columns of the narrow tile.
    const NARROW_NR: usize = Self::Narrow::NV * <Self::F32 as SimdF32>::LANES;
    /// Rows of the short tiles.
    const SHORT_MR: usize = Self::Short::MR;
}

/// A register tile's size, as a type (see [`Tile`]).
pub trait TileShape {
    /// Rows.
    const MR: usize;
    /// Vectors per row.
    const NV: usize;
    /// Run `tile::tile` at this size on vectors `V`.
    ///
    /// # Safety
    /// As `Call::new`, for a `MR x NV * LANES` tile; the CPU supports `V`.
    unsafe fn tile<V: SimdF32>(call: &Call);
    /// Run `edge::columns` with this tile's `MR` rows on vectors `V`.
    ///
    /// # Safety
    /// As `Call::new`, for the `h x w` block of the call (`w <=` `COLUMNS`); the CPU
    /// supports `V` and `MR <= 4 * LANES`.
    unsafe fn edge<V: SimdF32>(call: &Call);
}

/// The `MR x (NV vectors)` register tile.
pub struct Tile<const MR: usize, const NV: usize>;

impl<const MR: usize, const NV: usize> TileShape for Tile<MR, NV> {
    const MR: usize = MR;
    const NV: usize = NV;
    #[inline(always)]
    unsafe fn tile<V: SimdF32>(call: &Call) {
        // SAFETY: forwarded contract.
        unsafe { tile::tile::<V, MR, NV>(call) }
    }
    #[inline(always)]
    unsafe fn edge<V: SimdF32>(call: &Call) {
        // SAFETY: forwarded contract.
        unsafe { edge::columns::<V, MR>(call) }
    }
}

/// The operands of one micro-kernel call, as raw pointers. Made only by the unsafe
/// `Call::new`, whose contract makes a value a promise that they are valid for the
/// kernel it is passed to.
#[derive(Clone, Copy, Debug)]
pub struct Call {
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
    /// The block of C an edge call stores: `h` rows, `w` columns.
    hw: (usize, usize),
}

impl Call {
    /// # Safety
    /// For a tile of `MR` rows and `NR` columns (or an edge block of `hw`): `a` is valid
    /// for reads of `k` runs of `MR` values `a_stride` apart, `b` for reads of `k` rows of
    /// `NR` (edge: `w`) values `b_stride` apart, `c` for reads and writes of `MR` (edge:
    /// `h`) rows of `NR` (edge: `w`) values at stride `ldc`; `row_bias` (if non-null) for
    /// `MR` reads, `col_bias` (if non-null) for `NR` (edge: `w`) reads.
    #[allow(clippy::too_many_arguments)]
    unsafe fn new(
        k: usize,
        (a, a_stride): (*const f32, usize),
        (b, b_stride): (*const f32, usize),
        (c, ldc): (*mut f32, usize),
        (row_bias, col_bias): (*const f32, *const f32),
        st: &Store<'_>,
        hw: (usize, usize),
    ) -> Call {
        Call { k, a, a_stride, b, b_stride, c, ldc, row_bias, col_bias, first: st.first, relu: st.relu, hw }
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

/// A tile of shape `Sh` as a [`Job`].
struct TileJob<Sh>(Call, PhantomData<Sh>);

impl<Sh: TileShape> Job for TileJob<Sh> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, _: S) {
        // SAFETY: the call's operands are valid for this shape (`Call::new`'s contract, met
        // by `run_tile`), and `S`'s token proves its vectors' instructions.
        unsafe { Sh::tile::<S::F32>(&self.0) }
    }
}

/// An edge block with the rows of shape `Sh` as a [`Job`].
struct EdgeJob<Sh>(Call, PhantomData<Sh>);

impl<Sh: TileShape> Job for EdgeJob<Sh> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, _: S) {
        // SAFETY: as for `TileJob`, met by `run_edge` (which also checks `w`, `h` and the
        // rows against the lanes).
        unsafe { Sh::edge::<S::F32>(&self.0) }
    }
}

/// Compute one `MR x NR` tile into `c` at `(i, j)`, or `SHORT_MR` rows when `short`,
/// `NARROW_NR` columns when `narrow`, from an A panel and B's `k` rows `ldb` apart from
/// `b[0]` (a packed panel: `ldb = NR`). Lengths are checked once.
///
/// # Panics
/// If a panel is too short or the tile lies outside `c` (caller bugs).
#[inline]
#[allow(clippy::too_many_arguments)]
pub fn run_tile<K: MicroKernel>(
    kern: K,
    k: usize,
    a: &[f32],
    (b, ldb): (&[f32], usize),
    c: &mut MatMut<'_>,
    (i, j): (usize, usize),
    st: &Store<'_>,
    (short, narrow): (bool, bool),
) {
    let (tall, full) = (K::MR, K::NR);
    let mr = if short { K::SHORT_MR } else { tall };
    let nr = if narrow { K::NARROW_NR } else { full };
    // B: k rows of nr values, ldb apart (a narrow tile may start inside a panel).
    assert!(ldb >= nr && a.len() >= tall * k && (k == 0 || b.len() >= ldb * (k - 1) + nr), "panels too short");
    let biases = st.bias_ptrs(mr, nr);
    let out = c.block_ptr(i, j, mr, nr);
    // SAFETY: A holds k runs of the panel height (>= mr) values, B k rows of nr values
    // ldb apart, the C block and the biases were checked above.
    let call = unsafe { Call::new(k, (a.as_ptr(), tall), (b.as_ptr(), ldb), out, biases, st, (mr, nr)) };
    match (short, narrow) {
        (false, false) => kern.vectorize(TileJob::<K::Full>(call, PhantomData)),
        (false, true) => kern.vectorize(TileJob::<K::Narrow>(call, PhantomData)),
        (true, false) => kern.vectorize(TileJob::<K::Short>(call, PhantomData)),
        (true, true) => kern.vectorize(TileJob::<K::ShortNarrow>(call, PhantomData)),
    }
}

/// Run the edge kernel on the `h x w` block of `c` at `(i, j)` (`w <=` [`COLUMNS`]), B's
/// columns starting at `b[0]`, its rows `ldb` apart. False (nothing done) if the ISA has
/// no edge kernel ([`MicroKernel::EDGE`]).
///
/// # Panics
/// As [`run_tile`], or if the block is larger than the kernel takes.
#[inline]
#[allow(clippy::too_many_arguments)]
pub fn run_edge<K: MicroKernel>(
    kern: K,
    k: usize,
    a: &[f32],
    (b, ldb): (&[f32], usize),
    c: &mut MatMut<'_>,
    (i, j): (usize, usize),
    (h, w): (usize, usize),
    st: &Store<'_>,
) -> bool {
    if !K::EDGE {
        return false;
    }
    let mr = K::MR;
    assert!((1..=COLUMNS).contains(&w) && h <= mr && mr <= 4 * <K::F32 as SimdF32>::LANES, "edge block {h}x{w}");
    assert!(ldb >= w && a.len() >= mr * k && (k == 0 || b.len() >= ldb * (k - 1) + w), "panels too short");
    let biases = st.bias_ptrs(mr, w);
    let out = c.block_ptr(i, j, h, w);
    // SAFETY: as in `run_tile`, for the h x w block (checked above).
    let call = unsafe { Call::new(k, (a.as_ptr(), mr), (b.as_ptr(), ldb), out, biases, st, (h, w)) };
    kern.vectorize(EdgeJob::<K::Full>(call, PhantomData));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::Cpu;
    use crate::gemm::BlockSizes;

    /// Every kernel's tiles agree with each other and fit the stack tiles, and every
    /// core's blocks come in whole panels of them.
    #[test]
    fn tables_are_consistent() {
        fn check<K: MicroKernel>(_: K) {
            let (mr, nr) = (K::MR, K::NR);
            let name = K::ISA;
            assert!(mr <= MAX_MR && nr <= MAX_NR, "{name}");
            assert_eq!(K::Narrow::MR, mr, "{name}");
            assert_eq!(K::Short::NV, K::Full::NV, "{name}");
            assert_eq!((K::ShortNarrow::MR, K::ShortNarrow::NV), (K::SHORT_MR, K::Narrow::NV), "{name}");
            assert!(K::NARROW_NR <= nr && K::SHORT_MR <= mr, "{name}");
            for u in crate::tuning::Uarch::all() {
                let BlockSizes { mc, kc, nc, .. } = crate::gemm::tuned_blocks::<K>(&crate::tuning::Tuning::forced(u));
                assert!(mc % mr == 0 && nc % nr == 0 && mc > 0 && nc > 0 && kc > 0, "{name} {u}");
            }
        }
        for cpu in Cpu::all() {
            crate::cpu::dispatch!(cpu, t => check(t));
        }
    }
}
