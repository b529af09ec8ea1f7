//! The 6x6 transforms of Winograd's F(2x2, 5x5) (`ops::winograd`), written once over
//! [`Lanes`]: `f32` for one tile (the tests' oracle) or a vector holding one tile per
//! lane, for runs of [`TW`] tiles along a tile row. The vector forms run on AVX2 inside a
//! `#[target_feature]` shell (the AVX-512 kernels' CPUs have AVX2 too) or on `wide`
//! (NEON on aarch64, SSE2 on a plain x86-64 build). Every lane does the operations of the
//! one-tile form in the same order (no fused multiply-add), so results are bitwise the
//! same on every ISA.
//!
//! The input is prepared in two phases per row (even columns, then odd), so the six
//! columns of every window of a run are plain loads: phase `p` shifted by `s` holds
//! window column `2 s + p` of each tile.
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

/// `B^T d` for the 6x6 `B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0;
/// 0 2 -1 -2 1 0; 0 4 0 -5 0 1]`.
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

/// `Y = A^T M A` of the tile(s) whose position `xi` (`6 i + j`) is `m(xi)`: [`at6`] down
/// column `j` gives `a_j` (both output rows), folded at once into the two output columns,
/// `y0 = a_0 + a_1 + a_2 + a_3 + a_4` and `y1 = a_1 - a_2 + 2 a_3 - 2 a_4 + a_5` in that
/// order, so that only the sums stay live. Returns `[y0, y1]`, each by output row.
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
pub enum Simd6 {
    /// 8-lane AVX2 vectors.
    #[cfg(target_arch = "x86_64")]
    Avx2(super::Avx2),
    /// `wide`'s 8 lanes.
    Portable,
}

/// Values a run reads past its first one: window row 5, odd phase, shifted by 2, one
/// vector.
pub fn input_reach(row: usize, phase: usize) -> usize {
    5 * row + phase + 2 + TW
}

impl Simd6 {
    /// AVX2 where the CPU has it and `wide` is not asked for, else `wide`.
    pub fn new(portable: bool) -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(t) = super::Avx2::new().filter(|_| !portable) {
            return Simd6::Avx2(t);
        }
        let _ = portable;
        Simd6::Portable
    }

    /// `V = B^T d B` of the `TW` tiles whose windows start at `x[0]` (rows `row` apart,
    /// odd columns `phase` after the even ones): position `xi` of tile `l` goes to
    /// `out[xi * ldo + l]`.
    ///
    /// # Panics
    /// If `x` is shorter than [`input_reach`] or `out` than `35 * ldo + TW` (caller bugs).
    pub fn input(self, x: &[f32], row: usize, phase: usize, out: &mut [f32], ldo: usize) {
        assert!(x.len() >= input_reach(row, phase) && out.len() >= 35 * ldo + TW, "winograd input run out of bounds");
        let (x, out) = (x.as_ptr(), out.as_mut_ptr());
        match self {
            // SAFETY: the token proves AVX2; the lengths were checked above.
            #[cfg(target_arch = "x86_64")]
            Simd6::Avx2(_) => unsafe { input_avx2(x, row, phase, out, ldo) },
            // SAFETY: `wide` needs no runtime feature; the lengths were checked above.
            Simd6::Portable => unsafe { input_body::<super::portable::F32x8>(x, row, phase, out, ldo) },
        }
    }

    /// `Y = A^T M A`, plus `bias`, then ReLU if asked, for the `TW` tiles whose position
    /// `xi` is at `m[xi * ld ..]`: the two output rows of the run, each tile's two
    /// columns side by side.
    ///
    /// # Panics
    /// If `m` is shorter than `35 * ld + TW` (a caller bug).
    pub fn output(self, m: &[f32], ld: usize, bias: f32, relu: bool) -> [[f32; 2 * TW]; 2] {
        assert!(m.len() >= 35 * ld + TW, "winograd output run out of bounds");
        let mut y = [[0.0f32; 2 * TW]; 2];
        let (m, out) = (m.as_ptr(), y.as_mut_ptr().cast::<f32>());
        match self {
            // SAFETY: the token proves AVX2; `m` was checked above; `y` holds 4 * TW values.
            #[cfg(target_arch = "x86_64")]
            Simd6::Avx2(_) => unsafe { output_avx2(m, ld, bias, relu, out) },
            // SAFETY: `wide` needs no runtime feature; as above.
            Simd6::Portable => unsafe { output_body::<super::portable::F32x8>(m, ld, bias, relu, out) },
        }
        y
    }
}

/// # Safety
/// The CPU supports AVX2; see [`input_body`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn input_avx2(x: *const f32, row: usize, phase: usize, out: *mut f32, ldo: usize) {
    // SAFETY: forwarded contract.
    unsafe { input_body::<super::avx2::F32x8>(x, row, phase, out, ldo) }
}

/// # Safety
/// The CPU supports AVX2; see [`output_body`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn output_avx2(m: *const f32, ld: usize, bias: f32, relu: bool, out: *mut f32) {
    // SAFETY: forwarded contract.
    unsafe { output_body::<super::avx2::F32x8>(m, ld, bias, relu, out) }
}

/// Row by row of `B^T d` ([`bt6`] down the window's rows, for the six columns of every
/// tile), then [`bt6`] along that row, each position stored as it is made.
///
/// # Safety
/// The CPU supports `V` (`V::LANES == TW`); `x` is valid for [`input_reach`] reads and
/// `out` for `TW` writes at `xi * ldo` for every `xi < 36`.
#[inline(always)]
unsafe fn input_body<V: SimdF32>(x: *const f32, row: usize, phase: usize, out: *mut f32, ldo: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        input_row::<V, 0>(x, row, phase, out, ldo);
        input_row::<V, 1>(x, row, phase, out, ldo);
        input_row::<V, 2>(x, row, phase, out, ldo);
        input_row::<V, 3>(x, row, phase, out, ldo);
        input_row::<V, 4>(x, row, phase, out, ldo);
        input_row::<V, 5>(x, row, phase, out, ldo);
    }
}

/// Row `I` of a run's `V`.
///
/// # Safety
/// As [`input_body`].
#[inline(always)]
unsafe fn input_row<V: SimdF32, const I: usize>(x: *const f32, row: usize, phase: usize, out: *mut f32, ldo: usize) {
    /// Row `I` of `B^T d` for window column `2 s + p` of every tile.
    ///
    /// # Safety
    /// As [`input_body`], with `s < 3` and `p < 2`.
    #[inline(always)]
    unsafe fn column<V: SimdF32, const I: usize>(x: *const f32, row: usize, at: usize) -> Vector<V> {
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
    // SAFETY: at = p * phase + s with p < 2, s < 3 (the contract above).
    let w = unsafe {
        bt6([
            column::<V, I>(x, row, 0),
            column::<V, I>(x, row, phase),
            column::<V, I>(x, row, 1),
            column::<V, I>(x, row, phase + 1),
            column::<V, I>(x, row, 2),
            column::<V, I>(x, row, phase + 2),
        ])
    };
    for (j, wj) in w.into_iter().enumerate() {
        // SAFETY: 6 I + j < 36, so the TW values at (6 I + j) * ldo are writable (caller).
        unsafe { wj.store(out.add((6 * I + j) * ldo)) };
    }
}

/// [`at6_tile`] on `TW` tiles, plus `bias`, then ReLU if asked; `out` gets the two output
/// rows, `2 TW` values each, the tiles' two columns interleaved.
///
/// # Safety
/// The CPU supports `V` (`V::LANES == TW`); `m` is valid for `TW` reads at `xi * ld` for
/// every `xi < 36`, `out` for `4 * TW` writes.
#[inline(always)]
unsafe fn output_body<V: SimdF32>(m: *const f32, ld: usize, bias: f32, relu: bool, out: *mut f32) {
    // SAFETY: xi < 36 (at6_tile's positions) are in bounds (caller).
    let [y0, y1] = at6_tile(|xi| unsafe { Vector::<V>::load(m.add(xi * ld)) });
    let b = y0[0].splat(bias);
    for r in 0..2 {
        let (c0, c1) = (y0[r] + b, y1[r] + b);
        let (c0, c1) = if relu { (c0.relu(), c1.relu()) } else { (c0, c1) };
        let (lo, hi) = c0.zip(c1);
        // SAFETY: row r's 2 TW values are within out's 4 TW (caller).
        unsafe {
            lo.store(out.add(2 * r * TW));
            hi.store(out.add(2 * r * TW + TW));
        }
    }
}

#[cfg(test)]
mod tests {
    //! Small enough for Miri: one run each way, on every vector kind this CPU has.
    use super::*;
    use std::array::from_fn;

    #[test]
    fn runs_match_the_one_tile_forms_bitwise() {
        let (row, phase, ld) = (2 * TW + 6, TW + 3, 9);
        let x: Vec<f32> = (0..input_reach(row, phase)).map(|i| ((i * 7919) % 29) as f32 / 7.0 - 2.0).collect();
        let m: Vec<f32> = (0..35 * ld + TW).map(|i| ((i * 104_729) % 31) as f32 / 5.0 - 3.0).collect();
        for simd in [Simd6::new(false), Simd6::new(true)] {
            let mut v = vec![f32::NAN; 36 * TW];
            simd.input(&x, row, phase, &mut v, TW);
            for t in 0..TW {
                // Window column 2 s + p of tile t: phase p at t + s.
                let d: [[f32; 6]; 6] = from_fn(|a| from_fn(|c| x[a * row + (c % 2) * phase + t + c / 2]));
                let cols: [[f32; 6]; 6] = from_fn(|k| bt6(from_fn(|i| d[i][k])));
                for i in 0..6 {
                    let w = bt6(from_fn(|k| cols[k][i]));
                    for (j, wj) in w.iter().enumerate() {
                        assert_eq!(v[(6 * i + j) * TW + t].to_bits(), wj.to_bits(), "{simd:?} tile {t} ({i}, {j})");
                    }
                }
            }
            for relu in [false, true] {
                let y = simd.output(&m, ld, -0.5, relu);
                for t in 0..TW {
                    let [y0, y1] = at6_tile(|xi| m[xi * ld + t]);
                    for r in 0..2 {
                        for (c, val) in [y0[r], y1[r]].into_iter().enumerate() {
                            let val = val + -0.5;
                            let want = if relu && val < 0.0 { 0.0 } else { val };
                            assert_eq!(y[r][2 * t + c].to_bits(), want.to_bits(), "{simd:?} tile {t} ({r}, {c})");
                        }
                    }
                }
            }
        }
    }
}
