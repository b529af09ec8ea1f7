//! The machine's limits, measured: the FMA peak of an ISA on some threads, and the read
//! bandwidth of a stream of weights. Every GEMM and linear-layer figure is read against
//! them (`alexnet-bench`'s per-layer profile, the SGEMM comparisons).
#![allow(unsafe_code)]

use std::time::Instant;

use crate::cpu::Cpu;
use crate::simd::{Job, Simd, SimdF32};

/// Measured peak in GFLOP/s of `cpu`'s ISA on `threads` threads running the FMA probe
/// together for about `millis` milliseconds each (best of three rounds).
pub fn fma_peak_gflops(cpu: Cpu, threads: usize, millis: u64) -> f64 {
    // Calibrate the iteration count to the requested duration on one thread.
    let mut iters = 1 << 16;
    loop {
        let t = Instant::now();
        std::hint::black_box(fma_loop(cpu, iters));
        if t.elapsed().as_millis() as u64 >= millis / 4 || iters >= 1 << 34 {
            let per = t.elapsed().as_secs_f64() / iters as f64;
            iters = ((millis as f64 / 1e3) / per.max(1e-12)) as usize;
            break;
        }
        iters *= 4;
    }
    let mut best = 0.0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let flops: f64 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads.max(1)).map(|_| s.spawn(|| fma_loop(cpu, iters))).collect();
            hs.into_iter()
                .map(|h| {
                    let (f, keep) = h.join().unwrap_or((0.0, 0.0));
                    std::hint::black_box(keep);
                    f
                })
                .sum()
        });
        best = best.max(flops / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}

/// Run the FMA probe for `iters` iterations on this thread: (FLOPs done, a value derived
/// from every chain so the work cannot be optimised away).
pub fn fma_loop(cpu: Cpu, iters: usize) -> (f64, f32) {
    cpu.vectorize(FmaChains { iters })
}

/// The probe: [`Simd::FMA_CHAINS`] independent FMA chains.
struct FmaChains {
    iters: usize,
}

impl Job for FmaChains {
    type Output = (f64, f32);
    #[inline(always)]
    fn run<S: Simd>(self, _: S) -> (f64, f32) {
        let lanes = <S::F32 as SimdF32>::LANES;
        // SAFETY: `S`'s token proves its vectors' instructions.
        let (chains, keep) = unsafe {
            match S::FMA_CHAINS {
                c if c >= 24 => (24, chains::<S::F32, 24>(self.iters)),
                c if c >= 16 => (16, chains::<S::F32, 16>(self.iters)),
                c if c >= 12 => (12, chains::<S::F32, 12>(self.iters)),
                _ => (6, chains::<S::F32, 6>(self.iters)),
            }
        };
        ((2 * lanes * chains * self.iters) as f64, keep)
    }
}

/// `N` independent chains of `a = a * x + y`, `iters` times.
///
/// # Safety
/// The CPU supports `V`'s instructions.
#[inline(always)]
unsafe fn chains<V: SimdF32, const N: usize>(iters: usize) -> f32 {
    // SAFETY: V's instructions are available (this fn's contract); `out` holds at least
    // LANES values.
    unsafe {
        let (x, y) = (V::splat(0.999), V::splat(0.001));
        let mut acc = [V::splat(0.5); N];
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

/// Measured read bandwidth in GB/s: `threads` threads summing disjoint parts of `data`,
/// once. Pass memory larger than the caches (the largest linear weight tensor, read in
/// place from the map) to measure DRAM or page-cache bandwidth. A shared host's bandwidth
/// drifts over seconds: take the best of several passes spread over the measurement it
/// is compared with.
pub fn read_bandwidth_gbps(data: &[u8], threads: usize) -> f64 {
    let chunk = data.len().div_ceil(threads.max(1)).max(1);
    let t = Instant::now();
    let sum: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = data.chunks(chunk).map(|c| s.spawn(move || sum(c))).collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).fold(0, u64::wrapping_add)
    });
    std::hint::black_box(sum);
    data.len() as f64 / t.elapsed().as_secs_f64() / 1e9
}

/// Wrapping sum of a byte slice as 64-bit words, 8 partial sums (auto-vectorised): a plain
/// streaming read that cares nothing for what the bytes hold (integer adds: no slow
/// paths for subnormal or NaN patterns).
fn sum(a: &[u8]) -> u64 {
    let mut acc = [0u64; 8];
    let mut chunks = a.chunks_exact(64);
    for x in &mut chunks {
        for (l, w) in acc.iter_mut().zip(x.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            *l = l.wrapping_add(u64::from_ne_bytes(b));
        }
    }
    let tail = chunks.remainder().iter().fold(0u64, |s, &b| s.wrapping_add(b as u64));
    acc.iter().fold(tail, |s, &v| s.wrapping_add(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_measure_something() {
        for cpu in Cpu::all() {
            let (flops, keep) = fma_loop(cpu, 10);
            assert!(flops > 0.0 && keep.is_finite(), "{}", cpu.isa());
        }
        assert_eq!(sum(&[1; 37]), 37);
        // Two 64-byte blocks (16 words of 0x0101..01) and a 3-byte tail.
        assert_eq!(sum(&[1; 131]), 16u64.wrapping_mul(0x0101_0101_0101_0101) + 3);
        assert!(read_bandwidth_gbps(&vec![1; 1 << 18], 2) > 0.0);
    }
}
