//! AVX-512F vectors: 16 f32 lanes in a zmm register.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use super::{Job, Simd, SimdF32};
use crate::cpu::{Avx2, Avx512, Isa};

/// 16 f32 lanes.
#[derive(Clone, Copy)]
pub struct F32x16(__m512);

// SAFETY: every method uses only AVX-512F instructions, which the trait's contract
// requires the caller to have checked; loads and stores are unaligned.
unsafe impl SimdF32 for F32x16 {
    const LANES: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: AVX-512F is available (trait contract).
        F32x16(unsafe { _mm512_setzero_ps() })
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        // SAFETY: as above.
        F32x16(unsafe { _mm512_set1_ps(x) })
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: `p` is valid for 16 reads (trait contract).
        F32x16(unsafe { _mm512_loadu_ps(p) })
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> Self {
        // SAFETY: `p` is valid for 16 u16 reads (trait contract); zero-extend and shift
        // are AVX-512F.
        F32x16(unsafe { _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast())))) })
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f32, n: usize) -> Self {
        // SAFETY: masked-off lanes are neither read nor faulted on, and p is valid for the
        // n read ones (trait contract).
        F32x16(unsafe { _mm512_maskz_loadu_ps(((1u32 << n.min(16)) - 1) as u16, p) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: `p` is valid for 16 writes (trait contract).
        unsafe { _mm512_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn store_first(self, p: *mut f32, n: usize) {
        // SAFETY: masked-off lanes are neither written nor faulted on, and p is valid for
        // the n written ones (trait contract).
        unsafe { _mm512_mask_storeu_ps(p, ((1u32 << n.min(16)) - 1) as u16, self.0) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: AVX-512F is available.
        F32x16(unsafe { _mm512_fmadd_ps(self.0, b.0, c.0) })
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        // SAFETY: AVX-512F is available.
        F32x16(unsafe { _mm512_add_ps(self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const f32) {
        // SAFETY: prefetch is a hint (SSE, part of x86-64) and never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) }
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        // SAFETY: AVX-512F is available (trait contract).
        F32x16(unsafe { _mm512_sub_ps(self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        // SAFETY: AVX-512F is available (trait contract).
        F32x16(unsafe { _mm512_mul_ps(self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn div(self, b: Self) -> Self {
        // SAFETY: AVX-512F is available (trait contract).
        F32x16(unsafe { _mm512_div_ps(self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn sqrt(self) -> Self {
        // SAFETY: AVX-512F is available (trait contract).
        F32x16(unsafe { _mm512_sqrt_ps(self.0) })
    }
    #[inline(always)]
    unsafe fn unzip(self, b: Self) -> (Self, Self) {
        // SAFETY: AVX-512F is available; the indices pick lanes 0..32 of [self, b].
        unsafe {
            let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
            let odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
            (F32x16(_mm512_permutex2var_ps(self.0, even, b.0)), F32x16(_mm512_permutex2var_ps(self.0, odd, b.0)))
        }
    }
    #[inline(always)]
    unsafe fn max_plain(self, b: Self) -> Self {
        // SAFETY: AVX-512F is available.
        F32x16(unsafe { _mm512_max_ps(self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn relu(self) -> Self {
        // max(0, x) returns the second operand when either is NaN: NaN is kept.
        // SAFETY: AVX-512F is available.
        F32x16(unsafe { _mm512_max_ps(_mm512_setzero_ps(), self.0) })
    }
}

/// The AVX-512 shell: `job` compiled with AVX-512F (which implies AVX2 and FMA).
///
/// # Safety
/// The CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn shell<J: Job>(t: Avx512, job: J) -> J::Output {
    job.run(t)
}

// SAFETY: an `Avx512` exists only after a check for AVX-512F, AVX2 and FMA, which cover
// every instruction of F32x16 and the shell, and make the `Avx2` token sound.
unsafe impl Simd for Avx512 {
    const ISA: Isa = Isa::Avx512;
    type F32 = F32x16;
    type X8 = Avx2;
    const FMA_CHAINS: usize = 16;
    #[inline]
    fn x8(self) -> Self::X8 {
        self.avx2()
    }
    #[inline]
    fn vectorize<J: Job>(self, job: J) -> J::Output {
        // SAFETY: the token proves AVX-512F.
        unsafe { shell(self, job) }
    }
}
