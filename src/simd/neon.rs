//! aarch64 Advanced SIMD vectors: 4 f32 lanes in a q register.
#![allow(unsafe_code)]

use core::arch::aarch64::*;

use super::{Job, Simd, SimdF32};
use crate::cpu::{Isa, Neon, Portable};

/// 4 f32 lanes.
#[derive(Clone, Copy)]
pub struct F32x4(float32x4_t);

// SAFETY: every method uses only NEON instructions, which the trait's contract requires
// the caller to have checked; loads and stores are unaligned.
unsafe impl SimdF32 for F32x4 {
    const LANES: usize = 4;
    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: NEON is available (trait contract).
        F32x4(unsafe { vdupq_n_f32(0.0) })
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        // SAFETY: as above.
        F32x4(unsafe { vdupq_n_f32(x) })
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: `p` is valid for 4 reads (trait contract).
        F32x4(unsafe { vld1q_f32(p) })
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> Self {
        // SAFETY: `p` is valid for 4 u16 reads (trait contract); widening shift is NEON.
        F32x4(unsafe { vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(p))) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: `p` is valid for 4 writes (trait contract).
        unsafe { vst1q_f32(p, self.0) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        // vfmaq_f32(c, a, b) = c + a * b, fused.
        // SAFETY: NEON is available.
        F32x4(unsafe { vfmaq_f32(c.0, self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        // SAFETY: NEON is available.
        F32x4(unsafe { vaddq_f32(self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        // SAFETY: NEON is available (trait contract).
        F32x4(unsafe { vsubq_f32(self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        // SAFETY: NEON is available (trait contract).
        F32x4(unsafe { vmulq_f32(self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn div(self, b: Self) -> Self {
        // SAFETY: NEON is available (trait contract).
        F32x4(unsafe { vdivq_f32(self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn sqrt(self) -> Self {
        // SAFETY: NEON is available (trait contract).
        F32x4(unsafe { vsqrtq_f32(self.0) })
    }
    #[inline(always)]
    unsafe fn unzip(self, b: Self) -> (Self, Self) {
        // SAFETY: NEON is available.
        unsafe { (F32x4(vuzp1q_f32(self.0, b.0)), F32x4(vuzp2q_f32(self.0, b.0))) }
    }
    #[inline(always)]
    unsafe fn max_plain(self, b: Self) -> Self {
        // SAFETY: NEON is available.
        F32x4(unsafe { vmaxq_f32(self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn relu(self) -> Self {
        // Select x where x >= 0 or x is NaN (x < 0 is false for NaN), else 0.
        // SAFETY: NEON is available.
        F32x4(unsafe {
            let neg = vcltq_f32(self.0, vdupq_n_f32(0.0));
            vbslq_f32(neg, vdupq_n_f32(0.0), self.0)
        })
    }
}

/// The NEON shell.
///
/// # Safety
/// The CPU supports NEON.
#[target_feature(enable = "neon")]
unsafe fn shell<J: Job>(t: Neon, job: J) -> J::Output {
    job.run(t)
}

// SAFETY: a `Neon` exists only after a check for NEON, which covers F32x4.
unsafe impl Simd for Neon {
    const ISA: Isa = Isa::Neon;
    type F32 = F32x4;
    type X8 = Portable;
    const FMA_CHAINS: usize = 24;
    #[inline]
    fn x8(self) -> Self::X8 {
        Portable
    }
    #[inline]
    fn vectorize<J: Job>(self, job: J) -> J::Output {
        // SAFETY: the token proves NEON.
        unsafe { shell(self, job) }
    }
}
