//! Portable vectors on `wide`: 8 f32 lanes, lowered at compile time to whatever the
//! build's target features allow (SSE2 on a plain x86-64 build, NEON on aarch64).
#![allow(unsafe_code)]

use wide::f32x8;

use super::{Job, Simd, SimdF32};
use crate::cpu::{Isa, Portable};

/// 8 f32 lanes.
#[derive(Clone, Copy)]
pub struct F32x8(f32x8);

// SAFETY: `wide` uses only instructions enabled at compile time, so every CPU that runs
// this build runs these; loads and stores go through arrays, unaligned.
unsafe impl SimdF32 for F32x8 {
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        F32x8(f32x8::ZERO)
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        F32x8(f32x8::splat(x))
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: `p` is valid for 8 reads (trait contract); read_unaligned has no
        // alignment requirement.
        F32x8(f32x8::from(unsafe { p.cast::<[f32; 8]>().read_unaligned() }))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: `p` is valid for 8 writes (trait contract).
        unsafe { p.cast::<[f32; 8]>().write_unaligned(self.0.to_array()) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        F32x8(self.0.mul_add(b.0, c.0))
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        F32x8(self.0 + b.0)
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        F32x8(self.0 - b.0)
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        F32x8(self.0 * b.0)
    }
    #[inline(always)]
    unsafe fn div(self, b: Self) -> Self {
        F32x8(self.0 / b.0)
    }
    #[inline(always)]
    unsafe fn sqrt(self) -> Self {
        F32x8(self.0.sqrt())
    }
    #[inline(always)]
    unsafe fn max_plain(self, b: Self) -> Self {
        F32x8(self.0.max(b.0))
    }
    #[inline(always)]
    unsafe fn relu(self) -> Self {
        // Keep x where x >= 0 or NaN: blend zero in only where x < 0.
        let neg = self.0.simd_lt(f32x8::ZERO);
        F32x8(neg.select(f32x8::ZERO, self.0))
    }
}

// SAFETY: `wide` uses only instructions the build targets, which every CPU running the
// binary has; no shell is needed.
unsafe impl Simd for Portable {
    const ISA: Isa = Isa::Portable;
    type F32 = F32x8;
    type X8 = Self;
    const FMA_CHAINS: usize = 6;
    #[inline]
    fn x8(self) -> Self::X8 {
        self
    }
    #[inline]
    fn vectorize<J: Job>(self, job: J) -> J::Output {
        job.run(self)
    }
}
