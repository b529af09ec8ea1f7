//! The transforms of Winograd's F(2x2, 3x3) (4x4 tiles) and F(2x2, 5x5) (6x6 tiles)
//! (`ops::winograd`), written once over [`Lanes`]: `f32` for one tile (the tests'
//! oracle) or a vector holding one tile per lane, for runs of [`TW`] tiles along a tile
//! row. The vector forms run on AVX2 inside a `#[target_feature]` shell (the AVX-512
//! kernels' CPUs have AVX2 too) or on `wide` (NEON on aarch64, SSE2 on a plain x86-64
//! build). Every lane does the operations of the one-tile form in the same order (no fused
//! multiply-add), so results are bitwise the same on every ISA.
//!
//! Tiles are 2 columns apart and the input is prepared in two phases per row (even
//! columns, then odd), so the columns of every window of a run are plain loads: phase
//! `c % 2` shifted by `c / 2` holds window column `c` of each tile.
#![allow(unsafe_code)]

use std::ops::{Add, Mul, Sub};

use super::SimdF32;

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

/// `B^T d` for F(2x2, 5x5)'s `B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1
/// 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]`.
#[inline(always)]
pub fn bt6<T: Lanes>([d0, d1, d2, d3, d4, d5]: [T; 6]) -> [T; 6] {
    let (two, four, five) = (d0.splat(2.0), d0.splat(4.0), d0.splat(5.0));
    let (p, q) = (d4 - four * d2, d3 - four * d1);
    let (s, e) = (d4 - d2, two * (d3 - d1));
    [four * d0 - five * d2 + d4, p + q, p - q, s + e, s - e, four * d1 - five * d3 + d5]
}

/// `A^T m` for F(2x2, 5x5)'s `A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 1]`.
#[inline(always)]
pub fn at6<T: Lanes>([m0, m1, m2, m3, m4, m5]: [T; 6]) -> [T; 2] {
    [m0 + (m1 + m2) + (m3 + m4), (m1 - m2) + m0.splat(2.0) * (m3 - m4) + m5]
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

/// F(2x2, 5x5)'s `Y = A^T M A` of the tile(s) whose position `xi` (`6 i + j`) is `m(xi)`:
/// [`at6`] down column `j` gives `a_j` (both output rows), folded at once into the two
/// output columns, `y0 = a_0 + a_1 + a_2 + a_3 + a_4` and `y1 = a_1 - a_2 + 2 a_3 - 2 a_4 +
/// a_5` in that order, so that only the sums stay live. Returns `[y0, y1]`, each by output
/// row.
#[inline(always)]
pub fn at6_tile<T: Lanes>(m: impl Fn(usize) -> T) -> [[T; 2]; 2] {
    #[inline(always)]
    fn a<T: Lanes>(m: &impl Fn(usize) -> T, j: usize) -> [T; 2] {
        at6([m(j), m(6 + j), m(12 + j), m(18 + j), m(24 + j), m(30 + j)])
    }
    let (a0, a1) = (a(&m, 0), a(&m, 1));
    let two = a0[0].splat(2.0);
    let (mut y0, mut y1) = ([a0[0] + a1[0], a0[1] + a1[1]], a1);
    let a2 = a(&m, 2);
    for r in 0..2 {
        (y0[r], y1[r]) = (y0[r] + a2[r], y1[r] - a2[r]);
    }
    let a3 = a(&m, 3);
    for r in 0..2 {
        (y0[r], y1[r]) = (y0[r] + a3[r], y1[r] + two * a3[r]);
    }
    let a4 = a(&m, 4);
    for r in 0..2 {
        (y0[r], y1[r]) = (y0[r] + a4[r], y1[r] - two * a4[r]);
    }
    let a5 = a(&m, 5);
    for r in 0..2 {
        y1[r] = y1[r] + a5[r];
    }
    [y0, y1]
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

/// Which vectors the transforms run on.
#[derive(Clone, Copy, Debug)]
pub enum Simd {
    /// 8-lane AVX2 vectors.
    #[cfg(target_arch = "x86_64")]
    Avx2(super::Avx2),
    /// `wide`'s 8 lanes.
    Portable,
}

/// Values a run of `n x n` tiles (`n` 4 or 6) reads from its first one: window row `n -
/// 1`, its last column (odd phase, shifted by `n / 2 - 1`), one vector.
pub fn input_reach(n: usize, row: usize, phase: usize) -> usize {
    (n - 1) * row + phase + n / 2 - 1 + TW
}

impl Simd {
    /// AVX2 where the CPU has it and `wide` is not asked for, else `wide`.
    pub fn new(portable: bool) -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(t) = super::Avx2::new().filter(|_| !portable) {
            return Simd::Avx2(t);
        }
        let _ = portable;
        Simd::Portable
    }

    /// `V = B^T d B` of the `TW` `n x n` tiles (`n` 4 or 6) whose windows start at `x[0]`
    /// (rows `row` apart, odd columns `phase` after the even ones): position `xi` of tile
    /// `l` goes to `out[xi * ldo + l]`.
    ///
    /// # Panics
    /// If `n` is neither 4 nor 6, `x` is shorter than [`input_reach`] or `out` than
    /// `(n^2 - 1) * ldo + TW` (caller bugs).
    pub fn input(self, n: usize, x: &[f32], row: usize, phase: usize, out: &mut [f32], ldo: usize) {
        assert!(n == 4 || n == 6, "winograd tiles of {n}");
        let fits = x.len() >= input_reach(n, row, phase) && out.len() >= (n * n - 1) * ldo + TW;
        assert!(fits, "winograd input run out of bounds");
        let (x, out) = (x.as_ptr(), out.as_mut_ptr());
        match (self, n) {
            // SAFETY: the token proves AVX2; n and the lengths were checked above.
            #[cfg(target_arch = "x86_64")]
            (Simd::Avx2(_), 4) => unsafe { input_avx2::<4>(x, row, phase, out, ldo) },
            // SAFETY: as above (n is 6).
            #[cfg(target_arch = "x86_64")]
            (Simd::Avx2(_), _) => unsafe { input_avx2::<6>(x, row, phase, out, ldo) },
            // SAFETY: `wide` needs no runtime feature; n and the lengths checked above.
            (Simd::Portable, 4) => unsafe { input_body::<super::portable::F32x8, 4>(x, row, phase, out, ldo) },
            // SAFETY: as above (n is 6).
            (Simd::Portable, _) => unsafe { input_body::<super::portable::F32x8, 6>(x, row, phase, out, ldo) },
        }
    }

    /// `Y = A^T M A`, plus `bias`, then ReLU if asked, for the `TW` `n x n` tiles whose
    /// position `xi` is at `m[xi * ld ..]`, into `out`: the first `rows` (1 or 2) output
    /// rows of the run at `out[r * stride ..]`, `cols` (up to `2 TW`) values each, each
    /// tile's two columns side by side. Nothing else of `out` is written.
    ///
    /// # Panics
    /// If `n` is neither 4 nor 6, `rows` or `cols` is out of range, or `m` or `out` is
    /// too short (caller bugs).
    #[allow(clippy::too_many_arguments)]
    pub fn output(
        self,
        n: usize,
        m: &[f32],
        ld: usize,
        bias: f32,
        relu: bool,
        out: &mut [f32],
        stride: usize,
        rows: usize,
        cols: usize,
    ) {
        assert!(n == 4 || n == 6, "winograd tiles of {n}");
        assert!(m.len() >= (n * n - 1) * ld + TW, "winograd output run out of bounds");
        assert!((1..=2).contains(&rows) && cols <= 2 * TW && (rows - 1) * stride + cols <= out.len());
        let (m, dst) = (m.as_ptr(), Dst { p: out.as_mut_ptr(), stride, rows, cols });
        match (self, n) {
            // SAFETY: the token proves AVX2; n, `m` and `out` were checked above.
            #[cfg(target_arch = "x86_64")]
            (Simd::Avx2(_), 4) => unsafe { output_avx2::<4>(m, ld, bias, relu, dst) },
            // SAFETY: as above (n is 6).
            #[cfg(target_arch = "x86_64")]
            (Simd::Avx2(_), _) => unsafe { output_avx2::<6>(m, ld, bias, relu, dst) },
            // SAFETY: `wide` needs no runtime feature; as above.
            (Simd::Portable, 4) => unsafe { output_body::<super::portable::F32x8, 4>(m, ld, bias, relu, dst) },
            // SAFETY: as above (n is 6).
            (Simd::Portable, _) => unsafe { output_body::<super::portable::F32x8, 6>(m, ld, bias, relu, dst) },
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

/// # Safety
/// The CPU supports AVX2; see [`input_body`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn input_avx2<const N: usize>(x: *const f32, row: usize, phase: usize, out: *mut f32, ldo: usize) {
    // SAFETY: forwarded contract.
    unsafe { input_body::<super::avx2::F32x8, N>(x, row, phase, out, ldo) }
}

/// # Safety
/// The CPU supports AVX2; see [`output_body`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn output_avx2<const N: usize>(m: *const f32, ld: usize, bias: f32, relu: bool, dst: Dst) {
    // SAFETY: forwarded contract.
    unsafe { output_body::<super::avx2::F32x8, N>(m, ld, bias, relu, dst) }
}

/// Row by row of `B^T d` (down the window's rows, for every column of every tile), then
/// `B^T` along that row, each position stored as it is made.
///
/// # Safety
/// The CPU supports `V` (`V::LANES == TW`); `N` is 4 or 6; `x` is valid for
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
            input_row6::<V, 0>(x, row, phase, out, ldo);
            input_row6::<V, 1>(x, row, phase, out, ldo);
            input_row6::<V, 2>(x, row, phase, out, ldo);
            input_row6::<V, 3>(x, row, phase, out, ldo);
            input_row6::<V, 4>(x, row, phase, out, ldo);
            input_row6::<V, 5>(x, row, phase, out, ldo);
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

/// Row `I` of `B^T d` for window column `c` of every tile of a run of 6x6 tiles.
///
/// # Safety
/// As [`input_body`] with `N == 6`, and `c < 6`.
#[inline(always)]
unsafe fn column6<V: SimdF32, const I: usize>(x: *const f32, row: usize, phase: usize, c: usize) -> Vector<V> {
    let at = (c % 2) * phase + c / 2;
    // SAFETY: a * row + at with a < 6 is within input_reach (caller).
    let d = unsafe {
        [
            Vector::<V>::load(x.add(at)),
            Vector::load(x.add(at + row)),
            Vector::load(x.add(at + 2 * row)),
            Vector::load(x.add(at + 3 * row)),
            Vector::load(x.add(at + 4 * row)),
            Vector::load(x.add(at + 5 * row)),
        ]
    };
    bt6(d)[I]
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

/// Row `I` of a run's `V` for 6x6 tiles.
///
/// # Safety
/// As [`input_body`] with `N == 6`.
#[inline(always)]
unsafe fn input_row6<V: SimdF32, const I: usize>(x: *const f32, row: usize, phase: usize, out: *mut f32, ldo: usize) {
    // SAFETY: columns 0..6 (caller).
    let w = unsafe {
        bt6([
            column6::<V, I>(x, row, phase, 0),
            column6::<V, I>(x, row, phase, 1),
            column6::<V, I>(x, row, phase, 2),
            column6::<V, I>(x, row, phase, 3),
            column6::<V, I>(x, row, phase, 4),
            column6::<V, I>(x, row, phase, 5),
        ])
    };
    // SAFETY: positions 6 I .. 6 I + 6 < 36 are writable (caller).
    unsafe { store_positions(w, 6 * I, out, ldo) }
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

/// [`at4_tile`] or [`at6_tile`] on `TW` tiles, plus `bias`, then ReLU if asked, stored
/// into `dst`: output row `r < dst.rows` at `dst.p + r * dst.stride`, its first
/// `dst.cols` values (the tiles' two columns interleaved).
///
/// # Safety
/// The CPU supports `V` (`V::LANES == TW`); `N` is 4 or 6; `m` is valid for `TW` reads at
/// `xi * ld` for every `xi < N^2`; `dst.rows <= 2`, `dst.cols <= 2 TW`, and `dst.p` is
/// valid for `dst.cols` writes at each of its rows.
#[inline(always)]
unsafe fn output_body<V: SimdF32, const N: usize>(m: *const f32, ld: usize, bias: f32, relu: bool, dst: Dst) {
    // SAFETY: xi < N^2 (the folds' positions) are in bounds (caller).
    let load = |xi: usize| unsafe { Vector::<V>::load(m.add(xi * ld)) };
    let [y0, y1] = if N == 4 { at4_tile(load) } else { at6_tile(load) };
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

#[cfg(test)]
mod tests {
    //! Small enough for Miri: one run each way per tile size, on every vector kind this
    //! CPU has.
    use super::*;
    use std::array::from_fn;

    #[test]
    fn runs_match_the_one_tile_forms_bitwise() {
        let (row, phase, ld) = (2 * TW + 6, TW + 3, 9);
        let x: Vec<f32> = (0..input_reach(6, row, phase)).map(|i| ((i * 7919) % 29) as f32 / 7.0 - 2.0).collect();
        let m: Vec<f32> = (0..35 * ld + TW).map(|i| ((i * 104_729) % 31) as f32 / 5.0 - 3.0).collect();
        for simd in [Simd::new(false), Simd::new(true)] {
            for n in [4, 6] {
                let mut v = vec![f32::NAN; n * n * TW];
                simd.input(n, &x, row, phase, &mut v, TW);
                for t in 0..TW {
                    // Window column c of tile t: phase c % 2 at t + c / 2.
                    let d = |a: usize, c: usize| x[a * row + (c % 2) * phase + t + c / 2];
                    let want: Vec<f32> = if n == 4 {
                        let cols: [[f32; 4]; 4] = from_fn(|k| bt4(from_fn(|i| d(i, k))));
                        (0..4).flat_map(|i| bt4(from_fn(|k| cols[k][i]))).collect()
                    } else {
                        let cols: [[f32; 6]; 6] = from_fn(|k| bt6(from_fn(|i| d(i, k))));
                        (0..6).flat_map(|i| bt6(from_fn(|k| cols[k][i]))).collect()
                    };
                    for (xi, w) in want.iter().enumerate() {
                        assert_eq!(v[xi * TW + t].to_bits(), w.to_bits(), "{simd:?} {n}x{n} tile {t} xi {xi}");
                    }
                }
                for (relu, rows, cols) in [(false, 2, 2 * TW), (true, 2, 2 * TW - 3), (true, 1, TW - 2)] {
                    let stride = 2 * TW + 1;
                    let mut y = vec![f32::NAN; 2 * stride];
                    simd.output(n, &m, ld, -0.5, relu, &mut y, stride, rows, cols);
                    for (k, v) in y.iter().enumerate() {
                        assert_eq!(v.is_nan(), k / stride >= rows || k % stride >= cols, "{simd:?} {n}x{n} wrote {k}");
                    }
                    for t in 0..TW {
                        let one = |xi: usize| m[xi * ld + t];
                        let [y0, y1] = if n == 4 { at4_tile(one) } else { at6_tile(one) };
                        for r in 0..2 {
                            for (c, val) in [y0[r], y1[r]].into_iter().enumerate() {
                                let val = val + -0.5;
                                let want = if relu && val < 0.0 { 0.0 } else { val };
                                if r < rows && 2 * t + c < cols {
                                    let got = y[r * stride + 2 * t + c];
                                    assert_eq!(got.to_bits(), want.to_bits(), "{simd:?} {n}x{n} tile {t} ({r}, {c})");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
