//! Each layer kind of the spec network on one image (batch 1) and on 16, at 1 and 2
//! threads: `layers/<layer>/b<batch>/<threads>t`. Convolutions report FLOP/s
//! (2 * M * N * K), linear layers bytes of weights streamed per second, pooling+LRN
//! values produced per second. Also the layers only some variants have (within-channel
//! LRN, average and adaptive pooling), batch 1.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use alexnet::cpu::Cpu;
use alexnet::gemm;
use alexnet::ops::im2col::ConvGeom;
use alexnet::ops::pool_lrn::{pool_lrn, Order, PoolLrn};
use alexnet::ops::{avgpool, conv, linear, lrn};
use alexnet::plan::{AdaptiveAvgPool, AvgPool, Lrn, LrnWithin, MaxPool, Pads};
use alexnet::{synthetic, Isa};

fn pools() -> Vec<(usize, rayon::ThreadPool)> {
    [1, 2].into_iter().map(|t| (t, rayon::ThreadPoolBuilder::new().num_threads(t).build().expect("pool"))).collect()
}

fn convs(c: &mut Criterion) {
    let cpu = Cpu::new(Isa::detect()).expect("kernel");
    // (name, in channels, in side, out channels, k, stride, pad, groups)
    let layers = [
        ("conv1", 3, 227, 96, 11, 4, 0, 1),
        ("conv2", 96, 27, 256, 5, 1, 2, 2),
        ("conv3", 256, 13, 384, 3, 1, 1, 1),
        ("conv4", 384, 13, 384, 3, 1, 1, 2),
        ("conv5", 384, 13, 256, 3, 1, 1, 2),
    ];
    let mut group = c.benchmark_group("layers");
    group.sample_size(15);
    for (name, ci, side, co, k, s, p, groups) in layers {
        let out_side = (side + 2 * p - k) / s + 1;
        let g = ConvGeom {
            cg: ci / groups,
            h: side,
            w: side,
            kh: k,
            kw: k,
            sh: s,
            sw: s,
            pads: Pads::uniform(p as u32),
            oh: out_side,
            ow: out_side,
        };
        let w = synthetic::fill(1, co * g.k(), 0.1);
        let og = co / groups;
        let packed = conv::pack_weights(&w, &g, groups, og, gemm::blocks(cpu).mr);
        let bias = synthetic::fill(2, co, 0.1);
        for batch in [1, 16] {
            let input = synthetic::fill(3, batch * ci * side * side, 1.0);
            let mut out = vec![0.0; batch * co * g.n()];
            let mut scratch = vec![0.0; conv::scratch_len(&g, co, batch).max(conv::fixed_scratch_len(&g, ci, co))];
            let mut phased = vec![0.0; batch * conv::phased_len(&g, ci)];
            for (t, pool) in pools() {
                group.throughput(Throughput::Elements((2 * co * g.k() * g.n() * batch) as u64));
                group.bench_function(BenchmarkId::from_parameter(format!("{name}/b{batch}/{t}t")), |bch| {
                    bch.iter(|| {
                        pool.install(|| {
                            conv::conv2d(
                                cpu,
                                &input,
                                batch,
                                &g,
                                &packed,
                                &bias,
                                true,
                                &mut out,
                                &mut scratch,
                                &mut phased,
                            )
                        })
                    })
                });
            }
        }
    }
    group.finish();
}

fn pool_lrn_and_linear(c: &mut Criterion) {
    let cpu = Cpu::new(Isa::detect()).expect("kernel");
    let mut group = c.benchmark_group("layers");
    group.sample_size(15);
    let pool = MaxPool { kernel: [3, 3], stride: [2, 2], pads: Pads::default(), ceil_mode: false };
    let lrn = Lrn { size: 5, alpha: 1e-4, beta: 0.75, bias: 1.0 };
    for (name, ch, side, order) in [
        ("pool1+lrn1", 96, 55, Order::PoolThenLrn),
        ("lrn1+pool1", 96, 55, Order::LrnThenPool),
        ("pool2+lrn2", 256, 27, Order::PoolThenLrn),
    ] {
        let o = (side - 3) / 2 + 1;
        let p = PoolLrn { pool: pool.clone(), lrn: lrn.clone(), order, input: [ch, side, side], out: [o, o] };
        let input = synthetic::fill(4, ch * side * side, 1.0);
        let mut out = vec![0.0; ch * o * o];
        for (t, tp) in pools() {
            group.throughput(Throughput::Elements((ch * o * o) as u64));
            group.bench_function(BenchmarkId::from_parameter(format!("{name}/b1/{t}t")), |bch| {
                bch.iter(|| tp.install(|| pool_lrn(cpu, &input, &p, &mut out)))
            });
        }
    }
    // The other plan vocabulary, at AlexNet's sizes: Caffe's within-channel LRN on the
    // pooled conv1 map, a Caffe AVE pool of the same geometry, and torchvision's adaptive
    // pool of the 7x7 map a 256 px input gives.
    let within = LrnWithin { size: 5, alpha: 1e-4, beta: 0.75, bias: 1.0 };
    let avg =
        AvgPool { kernel: [3, 3], stride: [2, 2], pads: Pads::default(), ceil_mode: true, count_include_pad: true };
    let adaptive = AdaptiveAvgPool { out: [6, 6] };
    let (x27, x55, x7) = (
        synthetic::fill(8, 96 * 27 * 27, 1.0),
        synthetic::fill(9, 96 * 55 * 55, 1.0),
        synthetic::fill(10, 256 * 49, 1.0),
    );
    let mut out = vec![0.0; 96 * 55 * 55];
    for (t, tp) in pools() {
        group.throughput(Throughput::Elements(96 * 27 * 27));
        group.bench_function(BenchmarkId::from_parameter(format!("lrn_within1/b1/{t}t")), |bch| {
            bch.iter(|| tp.install(|| lrn::lrn_within(cpu, &x27, [96, 27, 27], &within, &mut out)))
        });
        group.throughput(Throughput::Elements(96 * 27 * 27));
        group.bench_function(BenchmarkId::from_parameter(format!("avgpool1/b1/{t}t")), |bch| {
            bch.iter(|| tp.install(|| avgpool::avgpool(cpu, &x55, [96, 55, 55], &avg, [27, 27], &mut out)))
        });
        group.throughput(Throughput::Elements(256 * 36));
        group.bench_function(BenchmarkId::from_parameter(format!("adaptive_avgpool/b1/{t}t")), |bch| {
            bch.iter(|| tp.install(|| avgpool::adaptive_avgpool(cpu, &x7, [256, 7, 7], &adaptive, &mut out)))
        });
    }
    for (name, m, k) in [("fc6", 4096, 9216), ("fc7", 4096, 4096), ("fc8", 1000, 4096)] {
        let w = synthetic::fill(5, m * k, 0.01);
        let b = synthetic::fill(6, m, 0.1);
        for batch in [1, 16] {
            let x = synthetic::fill(7, batch * k, 1.0);
            let mut y = vec![0.0; batch * m];
            for (t, tp) in pools() {
                group.throughput(Throughput::Bytes((4 * m * k) as u64));
                group.bench_function(BenchmarkId::from_parameter(format!("{name}/b{batch}/{t}t")), |bch| {
                    bch.iter(|| tp.install(|| linear::linear(cpu, &x, batch, &w, &b, m, k, true, &mut y)))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, convs, pool_lrn_and_linear);
criterion_main!(benches);
