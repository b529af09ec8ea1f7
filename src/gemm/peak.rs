//! The machine's measured FMA peak, per ISA and thread count: the yardstick every GEMM
//! figure is read against.

use std::time::Instant;

use super::Kernel;

/// Measured peak in GFLOP/s of `kernel`'s ISA on `threads` threads running the FMA probe
/// together for about `millis` milliseconds each (best of three rounds).
pub fn fma_peak_gflops(kernel: Kernel, threads: usize, millis: u64) -> f64 {
    // Calibrate the iteration count to the requested duration on one thread.
    let mut iters = 1 << 16;
    loop {
        let t = Instant::now();
        std::hint::black_box(kernel.fma_loop(iters));
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
            let hs: Vec<_> = (0..threads.max(1)).map(|_| s.spawn(|| kernel.fma_loop(iters))).collect();
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

/// Measured read bandwidth in GB/s: `threads` threads summing disjoint parts of `data`,
/// once. Pass memory that is larger than the caches (e.g. the largest FC weight tensor,
/// read in place from the map) to measure DRAM / page-cache bandwidth. On a shared host a
/// pass can lose a core to a neighbour and the bandwidth drifts by tens of percent over
/// seconds: take the best of several passes, spread over the measurement it is compared
/// with (as `alexnet-bench` does, one pass after each profiled inference).
pub fn read_bandwidth_gbps(data: &[f32], threads: usize) -> f64 {
    let chunk = data.len().div_ceil(threads.max(1)).max(1);
    let t = Instant::now();
    let sum: f32 = std::thread::scope(|s| {
        let hs: Vec<_> = data.chunks(chunk).map(|c| s.spawn(move || crate::ops::linear::sum(c))).collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
    });
    std::hint::black_box(sum);
    (data.len() * 4) as f64 / t.elapsed().as_secs_f64() / 1e9
}
