//! The transforms of Winograd's F(2x2, 3x3) (4x4 tiles) and F(3x3, 5x5) (7x7 tiles),
//! written once over [`Lanes`]: `f32` for one tile (the tests' oracle) or a vector holding
//! one tile per lane, for runs of [`TW`] tiles along a tile row. The vector forms run on
//! each ISA's 8-lane vectors ([`Simd::x8`]: AVX2 on x86-64, also for the AVX-512 kernels,
//! whose shell compiles the 7x7 transforms slower; `wide` elsewhere) inside their
//! target-feature shell. Every lane does the operations of the one-tile form in the
//! same order (no fused multiply-add), so results are bitwise the same on every ISA.
//!
//! Tiles are `m` columns apart (2, or 3 for 7x7 tiles: [`step`]) and the input is
//! prepared in `m` phases per row (columns `0, m, 2m, ..`, then `1, m + 1, ..`), so the
//! columns of every window of a run are plain loads: phase `c % m` shifted by `c / m`
//! holds window column `c` of each tile.
#![allow(unsafe_code)]

use std::ops::{Add, Mul, Sub};

use crate::cpu::Cpu;
use crate::simd::{Job, Simd, SimdF32};

/// Tiles per run: one per lane of an 8-lane vector.
pub const TW: usize = 8;

/// What the transforms compute in.
pub trait Lanes: Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> {
    /// `x` in every lane (a method, so that only a value already made can make another).
    fn splat(self, x: f32) -> Self;
}

impl Lanes for f32 {
    #[inline(always)]
    fn splat(self, x: f32) -> Self {
        x
    }
}

/// `B^T d` for F(2x2, 3x3)'s `B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]`.
#[inline(always)]
pub fn bt4<T: Lanes>([d0, d1, d2, d3]: [T; 4]) -> [T; 4] {
    [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
}

/// `A^T m` for F(2x2, 3x3)'s `A^T = [1 1 1 0; 0 1 -1 -1]`.
#[inline(always)]
pub fn at4<T: Lanes>([m0, m1, m2, m3]: [T; 4]) -> [T; 2] {
    [m0 + m1 + m2, m1 - m2 - m3]
}

/// F(2x2, 3x3)'s `Y = A^T M A` of the tile(s) whose position `xi` (`4 i + j`) is `m(xi)`:
/// [`at4`] down each column, then along the two rows that gives. Returns `[y0, y1]`, the
/// two output columns, each by output row.
#[inline(always)]
pub fn at4_tile<T: Lanes>(m: impl Fn(usize) -> T) -> [[T; 2]; 2] {
    #[inline(always)]
    fn a<T: Lanes>(m: &impl Fn(usize) -> T, j: usize) -> [T; 2] {
        at4([m(j), m(4 + j), m(8 + j), m(12 + j)])
    }
    let (a0, a1, a2, a3) = (a(&m, 0), a(&m, 1), a(&m, 2), a(&m, 3));
    let r0 = at4([a0[0], a1[0], a2[0], a3[0]]);
    let r1 = at4([a0[1], a1[1], a2[1], a3[1]]);
    [[r0[0], r1[0]], [r0[1], r1[1]]]
}

/// `B^T d` for F(3x3, 5x5) at the points 0, 1, -1, 2, -2, 1/2 and infinity: `B^T = [-2 4
/// 5/2 -5 -1/2 1 0; 0 2 -2 -9/2 1/2 1 0; 0 -2 6 -7/2 -3/2 1 0; 0 1 -3/2 -2 3/2 1 0; 0 -1
/// 5/2 0 -5/2 1 0; 0 4 0 -5 0 1 0; 0 -2 4 5/2 -5 -1/2 1]` (halves are exact in binary).
#[inline(always)]
pub fn bt7<T: Lanes>([d0, d1, d2, d3, d4, d5, d6]: [T; 7]) -> [T; 7] {
    let (half, one5, two, two5, three5) = (d0.splat(0.5), d0.splat(1.5), d0.splat(2.0), d0.splat(2.5), d0.splat(3.5));
    let (four, four5, five, six) = (d0.splat(4.0), d0.splat(4.5), d0.splat(5.0), d0.splat(6.0));
    [
        four * d1 - two * d0 + two5 * d2 - five * d3 - half * d4 + d5,
        two * (d1 - d2) - four5 * d3 + half * d4 + d5,
        six * d2 - two * d1 - three5 * d3 - one5 * d4 + d5,
        d1 - one5 * d2 - two * d3 + one5 * d4 + d5,
        two5 * (d2 - d4) - d1 + d5,
        four * d1 - five * d3 + d5,
        four * d2 - two * d1 + two5 * d3 - five * d4 - half * d5 + d6,
    ]
}

/// `A^T m` for F(3x3, 5x5)'s `A^T = [1 1 1 1 1 1 0; 0 1 -1 2 -2 1/2 0; 0 1 1 4 4 1/4 1]`.
#[inline(always)]
pub fn at7<T: Lanes>([m0, m1, m2, m3, m4, m5, m6]: [T; 7]) -> [T; 3] {
    let (quarter, half, two, four) = (m0.splat(0.25), m0.splat(0.5), m0.splat(2.0), m0.splat(4.0));
    let (p1, n1, p2, n2) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
    [m0 + p1 + p2 + m5, n1 + two * n2 + half * m5, p1 + four * p2 + quarter * m5 + m6]
}

/// F(3x3, 5x5)'s `Y = A^T M A` of the tile(s) whose position `xi` (`7 i + j`) is `m(xi)`:
/// [`at7`] down column `j` gives `a_j` (the three output rows), folded at once into the
/// three output columns (`y0 = a_0 + .. + a_5`, `y1 = a_1 - a_2 + 2 a_3 - 2 a_4 + a_5 / 2`,
/// `y2 = a_1 + a_2 + 4 a_3 + 4 a_4 + a_5 / 4 + a_6`, in that order), so that only the sums
/// stay live. Returns `[y0, y1, y2]`, each by output row.
#[inline(always)]
pub fn at7_tile<T: Lanes>(m: impl Fn(usize) -> T) -> [[T; 3]; 3] {
    #[inline(always)]
    fn a<T: Lanes>(m: &impl Fn(usize) -> T, j: usize) -> [T; 3] {
        at7([m(j), m(7 + j), m(14 + j), m(21 + j), m(28 + j), m(35 + j), m(42 + j)])
    }
    let (a0, a1) = (a(&m, 0), a(&m, 1));
    let (quarter, half, two, four) = (a0[0].splat(0.25), a0[0].splat(0.5), a0[0].splat(2.0), a0[0].splat(4.0));
    let (mut y0, mut y1, mut y2) = ([a0[0] + a1[0], a0[1] + a1[1], a0[2] + a1[2]], a1, a1);
    let a2 = a(&m, 2);
    for r in 0..3 {
        (y0[r], y1[r], y2[r]) = (y0[r] + a2[r], y1[r] - a2[r], y2[r] + a2[r]);
    }
    let a3 = a(&m, 3);
    for r in 0..3 {
        (y0[r], y1[r], y2[r]) = (y0[r] + a3[r], y1[r] + two * a3[r], y2[r] + four * a3[r]);
    }
    let a4 = a(&m, 4);
    for r in 0..3 {
        (y0[r], y1[r], y2[r]) = (y0[r] + a4[r], y1[r] - two * a4[r], y2[r] + four * a4[r]);
    }
    let a5 = a(&m, 5);
    for r in 0..3 {
        (y0[r], y1[r], y2[r]) = (y0[r] + a5[r], y1[r] + half * a5[r], y2[r] + quarter * a5[r]);
    }
    let a6 = a(&m, 6);
    for r in 0..3 {
        y2[r] = y2[r] + a6[r];
    }
    [y0, y1, y2]
}

/// A vector of `V` in the transforms' arithmetic. Invariant: a `Vector` exists only
/// where the CPU supports `V` (it is made by the unsafe [`Vector::load`], or from
/// another one), so its arithmetic is safe, like a capability token's methods.
#[derive(Clone, Copy)]
struct Vector<V>(V);

impl<V: SimdF32> Vector<V> {
    /// # Safety
    /// The CPU supports `V`, and `p` is valid for `V::LANES` reads.
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: forwarded contract.
        Vector(unsafe { V::load(p) })
    }

    /// # Safety
    /// `p` is valid for `V::LANES` writes.
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the CPU supports V (type invariant); `p` (caller).
        unsafe { self.0.store(p) }
    }

    /// # Safety
    /// `n <= V::LANES`, and `p` is valid for `n` writes.
    #[inline(always)]
    unsafe fn store_first(self, p: *mut f32, n: usize) {
        // SAFETY: the CPU supports V (type invariant); `p` and `n` (caller).
        unsafe { self.0.store_first(p, n) }
    }
}

impl<V: SimdF32> Vector<V> {
    /// ReLU, NaN kept ([`SimdF32::relu`]).
    #[inline(always)]
    fn relu(self) -> Self {
        // SAFETY: the CPU supports V (type invariant).
        Vector(unsafe { self.0.relu() })
    }

    /// The lanes of `self` and `b` alternated ([`SimdF32::zip`]).
    #[inline(always)]
    fn zip(self, b: Self) -> (Self, Self) {
        // SAFETY: the CPU supports V (type invariant).
        let (lo, hi) = unsafe { self.0.zip(b.0) };
        (Vector(lo), Vector(hi))
    }
}

impl<V: SimdF32> Add for Vector<V> {
    type Output = Self;
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        // SAFETY: the CPU supports V (type invariant).
        Vector(unsafe { self.0.add(b.0) })
    }
}

impl<V: SimdF32> Sub for Vector<V> {
    type Output = Self;
    #[inline(always)]
    fn sub(self, b: Self) -> Self {
        // SAFETY: the CPU supports V (type invariant).
        Vector(unsafe { self.0.sub(b.0) })
    }
}

impl<V: SimdF32> Mul for Vector<V> {
    type Output = Self;
    #[inline(always)]
    fn mul(self, b: Self) -> Self {
        // SAFETY: the CPU supports V (type invariant).
        Vector(unsafe { self.0.mul(b.0) })
    }
}

impl<V: SimdF32> Lanes for Vector<V> {
    #[inline(always)]
    fn splat(self, x: f32) -> Self {
        // SAFETY: the CPU supports V (type invariant: `self` exists).
        Vector(unsafe { V::splat(x) })
    }
}

/// Columns between the tiles of `n x n` tiles (`n` 4 or 7): outputs per tile side.
pub const fn step(n: usize) -> usize {
    if n == 7 {
        3
    } else {
        2
    }
}

/// Values a run of `n x n` tiles (`n` 4 or 7) reads from its first one: window row `n
/// - 1`, the window column furthest in (phase `c % m` shifted by `c / m`), one vector.
pub fn input_reach(n: usize, row: usize, phase: usize) -> usize {
    let m = step(n);
    let far = (0..n).map(|c| (c % m) * phase + c / m).max().unwrap_or(0);
    (n - 1) * row + far + TW
}

/// `V = B^T d B` of the `TW` `n x n` tiles (`n` 4 or 7) whose windows start at `x[0]`
/// (rows `row` apart, phase `p` of the columns `p * phase` after the first): position
/// `xi` of tile `l` goes to `out[xi * ldo + l]`.
///
/// # Panics
/// If `n` is neither 4 nor 7, `x` is shorter than [`input_reach`] or `out` than `(n^2 -
/// 1) * ldo + TW` (caller bugs).
pub fn input(cpu: Cpu, n: usize, x: &[f32], row: usize, phase: usize, out: &mut [f32], ldo: usize) {
    assert!(matches!(n, 4 | 7), "winograd tiles of {n}");
    let fits = x.len() >= input_reach(n, row, phase) && out.len() >= (n * n - 1) * ldo + TW;
    assert!(fits, "winograd input run out of bounds");
    let job = Input { n, x: x.as_ptr(), row, phase, out: out.as_mut_ptr(), ldo };
    crate::cpu::dispatch!(cpu, t => t.x8().vectorize(job));
}

/// `Y = A^T M A`, plus `bias`, then ReLU if asked, for the `TW` `n x n` tiles whose
/// position `xi` is at `m[xi * ld ..]`, into `out`: the first `rows` (1 ..= `m`) output
/// rows of the run at `out[r * stride ..]`, `cols` (up to `m TW`) values each, each
/// tile's `m` columns side by side (`m` = [`step`]). Nothing else of `out` is written.
///
/// # Panics
/// If `n` is neither 4 nor 7, `rows` or `cols` is out of range, or `m` or `out` is too
/// short (caller bugs).
#[allow(clippy::too_many_arguments)]
pub fn output(
    cpu: Cpu,
    n: usize,
    m: &[f32],
    ld: usize,
    (bias, relu): (f32, bool),
    out: &mut [f32],
    stride: usize,
    (rows, cols): (usize, usize),
) {
    assert!(matches!(n, 4 | 7), "winograd tiles of {n}");
    assert!(m.len() >= (n * n - 1) * ld + TW, "winograd output run out of bounds");
    let step = step(n);
    assert!((1..=step).contains(&rows) && cols <= step * TW && (rows - 1) * stride + cols <= out.len());
    let dst = Dst { p: out.as_mut_ptr(), stride, rows, cols };
    let job = Output { n, m: m.as_ptr(), ld, bias, relu, dst };
    crate::cpu::dispatch!(cpu, t => t.x8().vectorize(job));
}

/// [`input`]'s checked operands as a [`Job`]; made only there.
struct Input {
    n: usize,
    x: *const f32,
    row: usize,
    phase: usize,
    out: *mut f32,
    ldo: usize,
}

impl Job for Input {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, _: S) {
        let Input { n, x, row, phase, out, ldo } = self;
        assert_eq!(<S::F32 as SimdF32>::LANES, TW, "runs need one lane per tile");
        // SAFETY: `input` checked n and the lengths; `S`'s token proves its vectors.
        unsafe {
            if n == 4 {
                input_body::<S::F32, 4>(x, row, phase, out, ldo)
            } else {
                input_body::<S::F32, 7>(x, row, phase, out, ldo)
            }
        }
    }
}

/// [`output`]'s checked operands as a [`Job`]; made only there.
struct Output {
    n: usize,
    m: *const f32,
    ld: usize,
    bias: f32,
    relu: bool,
    dst: Dst,
}

impl Job for Output {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, _: S) {
        let Output { n, m, ld, bias, relu, dst } = self;
        assert_eq!(<S::F32 as SimdF32>::LANES, TW, "runs need one lane per tile");
        // SAFETY: `output` checked n, `m` and `out`; `S`'s token proves its vectors.
        unsafe {
            if n == 4 {
                output_body::<S::F32, 4>(m, ld, bias, relu, dst)
            } else {
                output_body::<S::F32, 7>(m, ld, bias, relu, dst)
            }
        }
    }
}

/// Where a run's output rows go: `rows` rows `stride` apart from `p`, `cols` values each.
#[derive(Clone, Copy)]
struct Dst {
    p: *mut f32,
    stride: usize,
    rows: usize,
    cols: usize,
}

/// Row by row of `B^T d` (down the window's rows, for every column of every tile), then
/// `B^T` along that row, each position stored as it is made.
///
/// # Safety
/// The CPU supports `V` (`V::LANES == TW`); `N` is 4 or 7; `x` is valid for
/// [`input_reach`] reads and `out` for `TW` writes at `xi * ldo` for every `xi < N^2`.
#[inline(always)]
unsafe fn input_body<V: SimdF32, const N: usize>(x: *const f32, row: usize, phase: usize, out: *mut f32, ldo: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        if N == 4 {
            input_row4::<V, 0>(x, row, phase, out, ldo);
            input_row4::<V, 1>(x, row, phase, out, ldo);
            input_row4::<V, 2>(x, row, phase, out, ldo);
            input_row4::<V, 3>(x, row, phase, out, ldo);
        } else {
            input_row7::<V, 0>(x, row, phase, out, ldo);
            input_row7::<V, 1>(x, row, phase, out, ldo);
            input_row7::<V, 2>(x, row, phase, out, ldo);
            input_row7::<V, 3>(x, row, phase, out, ldo);
            input_row7::<V, 4>(x, row, phase, out, ldo);
            input_row7::<V, 5>(x, row, phase, out, ldo);
            input_row7::<V, 6>(x, row, phase, out, ldo);
        }
    }
}

// No closures below: a closure is compiled without the shell's target features, and
// the vector operations in it would become calls.

/// Row `I` of `B^T d` for window column `c` of every tile of a run of 4x4 tiles.
///
/// # Safety
/// As [`input_body`] with `N == 4`, and `c < 4`.
#[inline(always)]
unsafe fn column4<V: SimdF32, const I: usize>(x: *const f32, row: usize, phase: usize, c: usize) -> Vector<V> {
    let at = (c % 2) * phase + c / 2;
    // SAFETY: a * row + at with a < 4 is within input_reach (caller).
    let d = unsafe {
        [
            Vector::<V>::load(x.add(at)),
            Vector::load(x.add(at + row)),
            Vector::load(x.add(at + 2 * row)),
            Vector::load(x.add(at + 3 * row)),
        ]
    };
    bt4(d)[I]
}

/// Row `I` of a run's `V` for 4x4 tiles.
///
/// # Safety
/// As [`input_body`] with `N == 4`.
#[inline(always)]
unsafe fn input_row4<V: SimdF32, const I: usize>(x: *const f32, row: usize, phase: usize, out: *mut f32, ldo: usize) {
    // SAFETY: columns 0..4 (caller).
    let w = unsafe {
        bt4([
            column4::<V, I>(x, row, phase, 0),
            column4::<V, I>(x, row, phase, 1),
            column4::<V, I>(x, row, phase, 2),
            column4::<V, I>(x, row, phase, 3),
        ])
    };
    // SAFETY: positions 4 I .. 4 I + 4 < 16 are writable (caller).
    unsafe { store_positions(w, 4 * I, out, ldo) }
}

/// Row `I` of `B^T d` for window column `c` of every tile of a run of 7x7 tiles (three
/// phases: column `c` is phase `c % 3` shifted by `c / 3`).
///
/// # Safety
/// As [`input_body`] with `N == 7`, and `c < 7`.
#[inline(always)]
unsafe fn column7<V: SimdF32, const I: usize>(x: *const f32, row: usize, phase: usize, c: usize) -> Vector<V> {
    let at = (c % 3) * phase + c / 3;
    // SAFETY: a * row + at with a < 7 is within input_reach (caller).
    let d = unsafe {
        [
            Vector::<V>::load(x.add(at)),
            Vector::load(x.add(at + row)),
            Vector::load(x.add(at + 2 * row)),
            Vector::load(x.add(at + 3 * row)),
            Vector::load(x.add(at + 4 * row)),
            Vector::load(x.add(at + 5 * row)),
            Vector::load(x.add(at + 6 * row)),
        ]
    };
    bt7(d)[I]
}

/// Row `I` of a run's `V` for 7x7 tiles.
///
/// # Safety
/// As [`input_body`] with `N == 7`.
#[inline(always)]
unsafe fn input_row7<V: SimdF32, const I: usize>(x: *const f32, row: usize, phase: usize, out: *mut f32, ldo: usize) {
    // SAFETY: columns 0..7 (caller).
    let w = unsafe {
        bt7([
            column7::<V, I>(x, row, phase, 0),
            column7::<V, I>(x, row, phase, 1),
            column7::<V, I>(x, row, phase, 2),
            column7::<V, I>(x, row, phase, 3),
            column7::<V, I>(x, row, phase, 4),
            column7::<V, I>(x, row, phase, 5),
            column7::<V, I>(x, row, phase, 6),
        ])
    };
    // SAFETY: positions 7 I .. 7 I + 7 < 49 are writable (caller).
    unsafe { store_positions(w, 7 * I, out, ldo) }
}

/// Positions `first ..` of a run's `V`: `w[j]` to `out + (first + j) * ldo`.
///
/// # Safety
/// `out` is valid for `TW` writes at each of those positions.
#[inline(always)]
unsafe fn store_positions<V: SimdF32, const K: usize>(w: [Vector<V>; K], first: usize, out: *mut f32, ldo: usize) {
    for (j, wj) in w.into_iter().enumerate() {
        // SAFETY: position first + j is writable (caller).
        unsafe { wj.store(out.add((first + j) * ldo)) };
    }
}

/// [`at4_tile`] or [`at7_tile`] on `TW` tiles, plus `bias`, then ReLU if
/// asked, stored into `dst`: output row `r < dst.rows` at `dst.p + r * dst.stride`, its
/// first `dst.cols` values (the tiles' columns interleaved).
///
/// # Safety
/// The CPU supports `V` (`V::LANES == TW`); `N` is 4 or 7; `m` is valid for `TW` reads
/// at `xi * ld` for every `xi < N^2`; `dst.rows <= step(N)`, `dst.cols <= step(N) TW`,
/// and `dst.p` is valid for `dst.cols` writes at each of its rows.
#[inline(always)]
unsafe fn output_body<V: SimdF32, const N: usize>(m: *const f32, ld: usize, bias: f32, relu: bool, dst: Dst) {
    // SAFETY: xi < N^2 (the folds' positions) are in bounds (caller).
    let load = |xi: usize| unsafe { Vector::<V>::load(m.add(xi * ld)) };
    if N == 7 {
        // SAFETY: forwarded contract.
        return unsafe { output_rows3(at7_tile(load), bias, relu, dst) };
    }
    let [y0, y1] = at4_tile(load);
    let b = y0[0].splat(bias);
    for r in 0..dst.rows {
        let (c0, c1) = (y0[r] + b, y1[r] + b);
        let (c0, c1) = if relu { (c0.relu(), c1.relu()) } else { (c0, c1) };
        let (lo, hi) = c0.zip(c1);
        // SAFETY: row r < rows is valid for `cols` writes (caller).
        unsafe {
            let p = dst.p.add(r * dst.stride);
            if dst.cols >= TW {
                lo.store(p);
                hi.store_first(p.add(TW), dst.cols - TW);
            } else {
                lo.store_first(p, dst.cols);
            }
        }
    }
}

/// F(3x3, 5x5)'s three output columns `y` (each by output row), plus `bias`, ReLU if
/// asked, into `dst` with each tile's three columns side by side (interleaved through a
/// stack buffer: no three-way vector shuffle).
///
/// # Safety
/// As [`output_body`] with `N == 7`.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn output_rows3<V: SimdF32>(y: [[Vector<V>; 3]; 3], bias: f32, relu: bool, dst: Dst) {
    let b = y[0][0].splat(bias);
    let mut cols = [[0.0f32; TW]; 3];
    let mut line = [0.0f32; 3 * TW];
    for r in 0..dst.rows {
        for (c, out) in cols.iter_mut().enumerate() {
            let v = y[c][r] + b;
            let v = if relu { v.relu() } else { v };
            // SAFETY: `out` holds TW = V::LANES values.
            unsafe { v.store(out.as_mut_ptr()) };
        }
        for (t, three) in line.chunks_exact_mut(3).enumerate() {
            three.copy_from_slice(&[cols[0][t], cols[1][t], cols[2][t]]);
        }
        // SAFETY: row r < rows is valid for `cols <= 3 TW` writes (caller).
        unsafe { std::ptr::copy_nonoverlapping(line.as_ptr(), dst.p.add(r * dst.stride), dst.cols.min(3 * TW)) };
    }
}

#[cfg(test)]
mod tests {
    //! Small enough for Miri: one run each way per tile size, on every vector kind this
    //! CPU has.
    use super::*;
    use std::array::from_fn;

    #[test]
    fn runs_match_the_one_tile_forms_bitwise() {
        let (row, phase, ld) = (3 * TW + 9, TW + 3, 9);
        let x: Vec<f32> = (0..input_reach(7, row, phase)).map(|i| ((i * 7919) % 29) as f32 / 7.0 - 2.0).collect();
        let m: Vec<f32> = (0..48 * ld + TW).map(|i| ((i * 104_729) % 31) as f32 / 5.0 - 3.0).collect();
        for cpu in Cpu::all() {
            for n in [4, 7] {
                let step = step(n);
                let mut v = vec![f32::NAN; n * n * TW];
                input(cpu, n, &x, row, phase, &mut v, TW);
                for t in 0..TW {
                    // Window column c of tile t: phase c % step at t + c / step.
                    let d = |a: usize, c: usize| x[a * row + (c % step) * phase + t + c / step];
                    let want: Vec<f32> = if n == 4 {
                        let cols: [[f32; 4]; 4] = from_fn(|k| bt4(from_fn(|i| d(i, k))));
                        (0..4).flat_map(|i| bt4(from_fn(|k| cols[k][i]))).collect()
                    } else {
                        let cols: [[f32; 7]; 7] = from_fn(|k| bt7(from_fn(|i| d(i, k))));
                        (0..7).flat_map(|i| bt7(from_fn(|k| cols[k][i]))).collect()
                    };
                    for (xi, w) in want.iter().enumerate() {
                        assert_eq!(v[xi * TW + t].to_bits(), w.to_bits(), "{cpu:?} {n}x{n} tile {t} xi {xi}");
                    }
                }
                let full = step * TW;
                for (relu, rows, cols) in
                    [(false, step, full), (true, step, full - 3), (true, 1, TW - 2), (false, 2, TW + 1)]
                {
                    let stride = full + 1;
                    let mut y = vec![f32::NAN; step * stride];
                    output(cpu, n, &m, ld, (-0.5, relu), &mut y, stride, (rows, cols));
                    for (k, v) in y.iter().enumerate() {
                        assert_eq!(v.is_nan(), k / stride >= rows || k % stride >= cols, "{cpu:?} {n}x{n} wrote {k}");
                    }
                    for t in 0..TW {
                        let one = |xi: usize| m[xi * ld + t];
                        let ys: Vec<Vec<f32>> = if n == 4 {
                            at4_tile(one).iter().map(|c| c.to_vec()).collect()
                        } else {
                            at7_tile(one).iter().map(|c| c.to_vec()).collect()
                        };
                        for r in 0..step {
                            for (c, col) in ys.iter().enumerate() {
                                let val = col[r] + -0.5;
                                let want = if relu && val < 0.0 { 0.0 } else { val };
                                if r < rows && step * t + c < cols {
                                    let got = y[r * stride + step * t + c];
                                    assert_eq!(got.to_bits(), want.to_bits(), "{cpu:?} {n}x{n} tile {t} ({r}, {c})");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
