//! AVX2 with FMA vectors ("avx2" everywhere in this crate means AVX2 + FMA): 8 f32
//! lanes in a ymm register.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use super::{Job, Simd, SimdF32};
use crate::cpu::{Avx2, Isa};

/// 8 f32 lanes.
#[derive(Clone, Copy)]
pub struct F32x8(__m256);

// SAFETY: every method uses only AVX and FMA instructions, which the trait's contract
// requires the caller to have checked; loads and stores are unaligned.
unsafe impl SimdF32 for F32x8 {
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: AVX is available (trait contract).
        F32x8(unsafe { _mm256_setzero_ps() })
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        // SAFETY: as above.
        F32x8(unsafe { _mm256_set1_ps(x) })
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: `p` is valid for 8 reads (trait contract).
        F32x8(unsafe { _mm256_loadu_ps(p) })
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> Self {
        // SAFETY: `p` is valid for 8 u16 reads (trait contract); zero-extend and shift are
        // AVX2.
        F32x8(unsafe { _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast())))) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: `p` is valid for 8 writes (trait contract).
        unsafe { _mm256_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: FMA is available.
        F32x8(unsafe { _mm256_fmadd_ps(self.0, b.0, c.0) })
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        // SAFETY: AVX is available.
        F32x8(unsafe { _mm256_add_ps(self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const f32) {
        // SAFETY: prefetch is a hint (SSE, part of x86-64) and never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) }
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        // SAFETY: AVX is available (trait contract).
        F32x8(unsafe { _mm256_sub_ps(self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        // SAFETY: AVX is available (trait contract).
        F32x8(unsafe { _mm256_mul_ps(self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn div(self, b: Self) -> Self {
        // SAFETY: AVX is available (trait contract).
        F32x8(unsafe { _mm256_div_ps(self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn sqrt(self) -> Self {
        // SAFETY: AVX is available (trait contract).
        F32x8(unsafe { _mm256_sqrt_ps(self.0) })
    }
    #[inline(always)]
    unsafe fn max_plain(self, b: Self) -> Self {
        // SAFETY: AVX is available.
        F32x8(unsafe { _mm256_max_ps(self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn relu(self) -> Self {
        // max(0, x) returns the second operand when either is NaN: NaN is kept.
        // SAFETY: AVX is available.
        F32x8(unsafe { _mm256_max_ps(_mm256_setzero_ps(), self.0) })
    }
    #[inline(always)]
    unsafe fn store_first(self, p: *mut f32, n: usize) {
        // Lane i is written where i < n (the mask's sign bit).
        // SAFETY: AVX2 is available; masked-off lanes are neither written nor faulted on,
        // and p is valid for the n written ones (caller).
        unsafe {
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), lanes);
            _mm256_maskstore_ps(p, mask, self.0);
        }
    }
    #[inline(always)]
    unsafe fn unzip(self, b: Self) -> (Self, Self) {
        // Within each 128-bit half: [s0 s2 b0 b2 | s4 s6 b4 b6] (even) and the odd ones;
        // then the 64-bit quarters reordered to [s0 s2 s4 s6 | b0 b2 b4 b6].
        // SAFETY: AVX2 is available.
        unsafe {
            let e = _mm256_shuffle_ps::<0b10_00_10_00>(self.0, b.0);
            let o = _mm256_shuffle_ps::<0b11_01_11_01>(self.0, b.0);
            let fix = |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)));
            (F32x8(fix(e)), F32x8(fix(o)))
        }
    }
    #[inline(always)]
    unsafe fn zip(self, b: Self) -> (Self, Self) {
        // Within each 128-bit half: lo = [s0 b0 s1 b1 | s4 b4 s5 b5], hi = [s2 b2 s3 b3 |
        // s6 b6 s7 b7]; then the low halves together, and the high ones.
        // SAFETY: AVX is available.
        unsafe {
            let (lo, hi) = (_mm256_unpacklo_ps(self.0, b.0), _mm256_unpackhi_ps(self.0, b.0));
            (F32x8(_mm256_permute2f128_ps::<0x20>(lo, hi)), F32x8(_mm256_permute2f128_ps::<0x31>(lo, hi)))
        }
    }
}

/// The AVX2 shell: `job` compiled with AVX2 and FMA.
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn shell<J: Job>(t: Avx2, job: J) -> J::Output {
    job.run(t)
}

// SAFETY: an `Avx2` exists only after a check for AVX2 and FMA, which cover every
// instruction of F32x8 and the shell.
unsafe impl Simd for Avx2 {
    const ISA: Isa = Isa::Avx2;
    type F32 = F32x8;
    type X8 = Self;
    const FMA_CHAINS: usize = 12;
    #[inline]
    fn x8(self) -> Self::X8 {
        self
    }
    #[inline]
    fn vectorize<J: Job>(self, job: J) -> J::Output {
        // SAFETY: the token proves AVX2 and FMA.
        unsafe { shell(self, job) }
    }
}
