//! Vectors, and the one mechanism that runs code written once on every instruction set.
//!
//! [`SimdF32`] has just what the kernels need (zero, splat, load, store, fused
//! multiply-add, arithmetic, ReLU, masked loads and stores). Every method is
//! `#[inline(always)]` and `unsafe`: it may use instructions the caller must have checked
//! for, and takes raw pointers.
//!
//! A per-ISA body is a [`Job`]: a struct of arguments whose `run` is generic over the
//! instruction set ([`Simd`], implemented by the capability tokens of [`crate::cpu`]).
//! [`Simd::vectorize`] runs a job inside the token's `#[target_feature]` shell, the one
//! shell per ISA, so that the job's `#[inline(always)]` body and the vector methods it
//! calls compile to that ISA's instructions (memchr's `Vector`, pulp's `WithSimd`).
//! Kernel bodies (GEMM tiles, the GEMV, LRN, Winograd transforms, the FMA probe) run this
//! way; drivers around them (the GEMM's loops, the thread splits) get a static token type
//! from the model's runtime [`Cpu`] through `cpu::dispatch!` and are monomorphised per ISA
//! with no features enabled. Closures inside a kernel body are compiled without the
//! shell's features (their vector operations would become calls), so bodies use loops and
//! `#[inline(always)]` functions only.
//!
//! A new ISA is a token, its vector type and its [`Simd`] impl here, and one arm in
//! `cpu::dispatch!`; every job then runs on it.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
#[cfg(target_arch = "aarch64")]
pub mod neon;
pub mod portable;

use crate::cpu::{Cpu, Isa};

/// Code written once for every instruction set.
///
/// Kernel bodies mark `run` `#[inline(always)]`, so that it inlines into the shell of
/// [`Simd::vectorize`].
pub trait Job {
    /// What the job returns.
    type Output;
    /// Run on instruction set `S`; `s` proves the CPU supports it.
    fn run<S: Simd>(self, s: S) -> Self::Output;
}

/// An instruction set, as the type of its capability token.
///
/// # Safety
/// Implement only for a token type whose values exist only where the CPU runs every
/// instruction of `F32` (and of the features `vectorize` enables), and where `x8` may
/// make its token: holding a
/// value is the proof that calling their methods is sound.
pub unsafe trait Simd: Copy + Send + Sync + 'static {
    /// The ISA.
    const ISA: Isa;
    /// The widest f32 vector.
    type F32: SimdF32;
    /// The token of this CPU's 8-lane f32 vectors (one lane per tile of a Winograd run):
    /// itself where `F32` has 8 lanes.
    type X8: Simd;
    /// That token.
    fn x8(self) -> Self::X8;
    /// Independent chains of `F32` FMAs that keep every FMA pipe busy within the
    /// register file (pipes x latency, at most the registers left after two operands):
    /// the FMA-peak probe's width.
    const FMA_CHAINS: usize;
    /// Run `job` with this instruction set's target features enabled.
    fn vectorize<J: Job>(self, job: J) -> J::Output;
}

impl Cpu {
    /// Run `job` inside this CPU's target-feature shell ([`Simd::vectorize`]).
    #[inline]
    pub fn vectorize<J: Job>(self, job: J) -> J::Output {
        crate::cpu::dispatch!(self, t => t.vectorize(job))
    }
}

/// A vector of `LANES` f32 values.
///
/// # Safety
/// Implementations may only be used where the CPU supports their instructions (the
/// caller holds the matching token); pointer arguments must be valid for `LANES` f32
/// reads or writes. No alignment is required.
pub unsafe trait SimdF32: Copy {
    /// Number of f32 lanes.
    const LANES: usize;
    /// All lanes zero.
    ///
    /// # Safety
    /// The CPU supports the implementation's instructions.
    unsafe fn zero() -> Self;
    /// All lanes `x`.
    ///
    /// # Safety
    /// As [`SimdF32::zero`].
    unsafe fn splat(x: f32) -> Self;
    /// Load `LANES` values from `p` (unaligned).
    ///
    /// # Safety
    /// As [`SimdF32::zero`], and `p` is valid for `LANES` reads.
    unsafe fn load(p: *const f32) -> Self;
    /// Load `LANES` bfloat16 values (bit patterns) from `p` (unaligned), widened to f32
    /// exactly. This default goes through memory; ISAs override it with a zero-extend
    /// and shift.
    ///
    /// # Safety
    /// As [`SimdF32::zero`], and `p` is valid for `LANES` reads.
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> Self {
        const MAX: usize = 16;
        let mut x = [0.0f32; MAX];
        for (i, v) in x.iter_mut().enumerate().take(Self::LANES.min(MAX)) {
            // SAFETY: p is valid for LANES reads (caller); read_unaligned needs no alignment.
            *v = f32::from_bits((unsafe { p.add(i).read_unaligned() } as u32) << 16);
        }
        // SAFETY: x holds LANES <= MAX values.
        unsafe { Self::load(x.as_ptr()) }
    }
    /// Store `LANES` values to `p` (unaligned).
    ///
    /// # Safety
    /// As [`SimdF32::zero`], and `p` is valid for `LANES` writes.
    unsafe fn store(self, p: *mut f32);
    /// `self * b + c`, fused where the ISA has FMA.
    ///
    /// # Safety
    /// As [`SimdF32::zero`].
    unsafe fn mul_add(self, b: Self, c: Self) -> Self;
    /// Lane-wise sum.
    ///
    /// # Safety
    /// As [`SimdF32::zero`].
    unsafe fn add(self, b: Self) -> Self;
    /// Hint that the cache line holding `p` will be read or written soon. Never faults,
    /// whatever `p` is; a no-op where the ISA shell has no prefetch.
    ///
    /// # Safety
    /// As [`SimdF32::zero`].
    #[inline(always)]
    unsafe fn prefetch(p: *const f32) {
        let _ = p;
    }
    /// Lane-wise difference `self - b`.
    ///
    /// # Safety
    /// As [`SimdF32::zero`].
    unsafe fn sub(self, b: Self) -> Self;
    /// Lane-wise maximum of inputs without NaN (which lane wins on a NaN, or between
    /// `-0.0` and `0.0`, is the ISA's).
    ///
    /// # Safety
    /// As [`SimdF32::zero`].
    unsafe fn max_plain(self, b: Self) -> Self;
    /// Lane-wise product.
    ///
    /// # Safety
    /// As [`SimdF32::zero`].
    unsafe fn mul(self, b: Self) -> Self;
    /// Lane-wise quotient `self / b` (IEEE division).
    ///
    /// # Safety
    /// As [`SimdF32::zero`].
    unsafe fn div(self, b: Self) -> Self;
    /// Lane-wise square root (IEEE).
    ///
    /// # Safety
    /// As [`SimdF32::zero`].
    unsafe fn sqrt(self) -> Self;
    /// Lane-wise maximum with zero, NaN preserved (ReLU).
    ///
    /// # Safety
    /// As [`SimdF32::zero`].
    unsafe fn relu(self) -> Self;
    /// Load the first `n` lanes (`n <= LANES`) from `p`, the others zero, reading nothing
    /// past them. This default goes through memory; ISAs with masked loads override it.
    ///
    /// # Safety
    /// As [`SimdF32::zero`], and `p` is valid for `n` reads.
    #[inline(always)]
    unsafe fn load_first(p: *const f32, n: usize) -> Self {
        const MAX: usize = 16;
        let mut x = [0.0f32; MAX];
        // SAFETY: x holds LANES <= MAX values; p is valid for n <= LANES reads (caller).
        unsafe {
            std::ptr::copy_nonoverlapping(p, x.as_mut_ptr(), n.min(Self::LANES).min(MAX));
            Self::load(x.as_ptr())
        }
    }
    /// Store the first `n` lanes (`n <= LANES`) to `p`, nothing past them. This default
    /// goes through memory; ISAs with masked stores override it.
    ///
    /// # Safety
    /// As [`SimdF32::zero`], and `p` is valid for `n` writes.
    #[inline(always)]
    unsafe fn store_first(self, p: *mut f32, n: usize) {
        const MAX: usize = 16;
        let mut x = [0.0f32; MAX];
        // SAFETY: x holds LANES <= MAX values; p is valid for n <= LANES writes (caller).
        unsafe {
            self.store(x.as_mut_ptr());
            std::ptr::copy_nonoverlapping(x.as_ptr(), p, n.min(Self::LANES).min(MAX));
        }
    }
    /// The lanes of `self` and `b` alternated: `([s0, b0, s1, b1, ...], [... s(L-1),
    /// b(L-1)])`. This default goes through memory; ISAs with a shuffle override it.
    ///
    /// # Safety
    /// As [`SimdF32::zero`].
    #[inline(always)]
    unsafe fn zip(self, b: Self) -> (Self, Self) {
        const MAX: usize = 16;
        let l = Self::LANES.min(MAX);
        let (mut x, mut y, mut z) = ([0.0f32; MAX], [0.0f32; MAX], [0.0f32; 2 * MAX]);
        // SAFETY: each array holds at least LANES values; the CPU supports Self (caller).
        unsafe {
            self.store(x.as_mut_ptr());
            b.store(y.as_mut_ptr());
            for i in 0..l {
                (z[2 * i], z[2 * i + 1]) = (x[i], y[i]);
            }
            (Self::load(z.as_ptr()), Self::load(z.as_ptr().add(l)))
        }
    }
    /// The inverse of [`SimdF32::zip`]: the even and the odd lanes of `[self, b]`
    /// (`([s0, s2, .., b0, b2, ..], [s1, s3, .., b1, b3, ..])`). This default goes
    /// through memory; ISAs with a shuffle override it.
    ///
    /// # Safety
    /// As [`SimdF32::zero`].
    #[inline(always)]
    unsafe fn unzip(self, b: Self) -> (Self, Self) {
        const MAX: usize = 16;
        let l = Self::LANES.min(MAX);
        let (mut z, mut e, mut o) = ([0.0f32; 2 * MAX], [0.0f32; MAX], [0.0f32; MAX]);
        // SAFETY: each array holds at least LANES values; the CPU supports Self (caller).
        unsafe {
            self.store(z.as_mut_ptr());
            b.store(z.as_mut_ptr().add(l));
            for i in 0..l {
                (e[i], o[i]) = (z[2 * i], z[2 * i + 1]);
            }
            (Self::load(e.as_ptr()), Self::load(o.as_ptr()))
        }
    }
}

/// Hint that the cache line at `p` will be read, but not at once: fetch it into L2, not
/// L1 (x86 `prefetcht1`; a no-op elsewhere). Any address is allowed: a prefetch never
/// faults and reads nothing architecturally.
#[inline(always)]
pub fn prefetch_l2(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of the x86-64 baseline, and a prefetch never faults or reads
    // architecturally, whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        _mm_prefetch::<_MM_HINT_T1>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Hint that the cache line holding `x` will be read soon (a no-op where unsupported).
#[inline(always)]
pub fn prefetch_read(x: &f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of the x86-64 baseline, and a prefetch never faults or reads
    // architecturally; `x` is a valid reference anyway.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((x as *const f32).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}
