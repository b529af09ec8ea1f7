//! SGEMM on AlexNet's shapes, per ISA and thread count, plus each ISA's FMA peak.
//!
//! Ids: `sgemm/<isa>/<shape>/<threads>t` with throughput 2*M*N*K elements (criterion's
//! "elem/s" is then FLOP/s), timing the product from packed A and plain row-major B as a
//! conv layer uses it, on the shapes of `synthetic::benchmark_gemm_shapes`; `fma_peak/<isa>/<threads>t` runs independent FMA chains, with
//! throughput in FLOPs, so every sgemm figure reads as a fraction of it; `gemm_i8/...`
//! the same for the int8 GEMM on each of this CPU's int8 kernels.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use alexnet::cpu::Cpu;
use alexnet::gemm::{self, Bias, Epilogue, PackedA, RowMajor};
use alexnet::{probe, synthetic};

/// Time `iters` calls of `product` made from inside `pool`, as a model's forward pass
/// makes them (a `pool.install` per call would also time a hand-off to a sleeping worker
/// and back).
fn in_pool(pool: &rayon::ThreadPool, iters: u64, mut product: impl FnMut() + Send) -> std::time::Duration {
    pool.install(|| {
        let start = std::time::Instant::now();
        for _ in 0..iters {
            product();
        }
        start.elapsed()
    })
}

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
                    bch.iter_custom(|iters| {
                        let ep = Epilogue { bias: Bias::Row(&bias), relu: true };
                        in_pool(&pool, iters, || {
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

/// The int8 GEMM (`gemm_i8/<kernel>/<shape>/<threads>t`, throughput 2*M*N*K: read as
/// operations per second against `fma_peak`), on the same shapes: weights packed as the
/// model packs them, B as `u8` codes row-major, dequantized with bias and ReLU.
fn gemm_i8(c: &mut Criterion) {
    use alexnet::gemm::i8::{self as gi8, PackedI8};
    use alexnet::gemm::kernel::i8::Kernel;
    let mut group = c.benchmark_group("gemm_i8");
    group.sample_size(20);
    for kern in Kernel::all().into_iter().filter(|k| !matches!(k, Kernel::Plain)) {
        for (name, m, k, n) in synthetic::benchmark_gemm_shapes() {
            let (codes, scales) = alexnet::quant::quantize(&synthetic::fill(1, m * k, 1.0), m, k);
            let a = PackedI8::pack(&codes, &scales, m, k);
            let b: Vec<u8> = synthetic::fill(2, k * n, 1.0).iter().map(|v| (v * 127.0 + 128.0) as u8).collect();
            let bias = synthetic::fill(3, m, 1.0);
            let act = alexnet::quant::ActParams::from_range(-1.0, 1.0);
            let mut out = vec![0.0f32; m * n];
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
                group.throughput(Throughput::Elements((2 * m * n * k) as u64));
                let id = BenchmarkId::from_parameter(format!("{}/{name}/{threads}t", kern.name()));
                group.bench_function(id, |bch| {
                    bch.iter_custom(|iters| {
                        let ep = gi8::Epilogue { act, bias: &bias, relu: true };
                        let src = gi8::RowMajorU8 { data: &b, ld: n };
                        in_pool(&pool, iters, || gi8::gemm(kern, &a, &src, n, &mut out, n, ep, threads))
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, fma_peak, sgemm, gemm_i8);
criterion_main!(benches);
