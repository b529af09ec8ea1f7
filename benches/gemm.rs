//! SGEMM on AlexNet's shapes, per ISA and thread count, plus each ISA's FMA peak.
//!
//! Ids: `sgemm/<isa>/<shape>/<threads>t` with throughput 2*M*N*K elements (criterion's
//! "elem/s" is then FLOP/s), timing the product from packed A and plain row-major B as a
//! conv layer uses it, on the shapes of `synthetic::benchmark_gemm_shapes`; `fma_peak/<isa>/<threads>t` runs independent FMA chains, with
//! throughput in FLOPs, so every sgemm figure reads as a fraction of it.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use alexnet::cpu::Cpu;
use alexnet::gemm::{self, Bias, Epilogue, PackedA, RowMajor};
use alexnet::{probe, synthetic};

fn sgemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("sgemm");
    group.sample_size(20);
    for cpu in Cpu::all() {
        for (name, m, k, n) in synthetic::benchmark_gemm_shapes() {
            let a = PackedA::pack(&synthetic::fill(1, m * k, 1.0), m, k, gemm::blocks(cpu).mr);
            let b = synthetic::fill(2, k * n, 1.0);
            let bias = synthetic::fill(3, m, 1.0);
            let mut out = vec![0.0f32; m * n];
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
                group.throughput(Throughput::Elements((2 * m * n * k) as u64));
                let id = BenchmarkId::from_parameter(format!("{}/{name}/{threads}t", cpu.isa()));
                group.bench_function(id, |bch| {
                    bch.iter(|| {
                        pool.install(|| {
                            let ep = Epilogue { bias: Bias::Row(&bias), relu: true };
                            gemm::sgemm(cpu, &a, &RowMajor { data: &b, ld: n }, n, &mut out, n, ep)
                        })
                    })
                });
            }
        }
    }
    group.finish();
}

fn fma_peak(c: &mut Criterion) {
    let mut group = c.benchmark_group("fma_peak");
    group.sample_size(20);
    const ITERS: usize = 1 << 20;
    for cpu in Cpu::all() {
        for threads in [1, 2] {
            let (flops, _) = probe::fma_loop(cpu, 1);
            group.throughput(Throughput::Elements((flops as usize * ITERS * threads) as u64));
            group.bench_function(BenchmarkId::from_parameter(format!("{}/{threads}t", cpu.isa())), |bch| {
                bch.iter(|| {
                    std::thread::scope(|s| {
                        let hs: Vec<_> = (0..threads).map(|_| s.spawn(|| probe::fma_loop(cpu, ITERS))).collect();
                        hs.into_iter().map(|h| h.join().map(|r| r.1).unwrap_or(0.0)).sum::<f32>()
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, fma_peak, sgemm);
criterion_main!(benches);
