//! Whole-network forward pass on the spec network with synthetic weights, batch 1 and 16,
//! at 1 and 2 threads. `alexnet-bench` gives the per-run distribution; this gives
//! criterion's statistics and history.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn forward(c: &mut Criterion) {
    let plan = alexnet::synthetic::spec_plan();
    let bytes = alexnet::synthetic::weight_file(&plan, 1).expect("synthetic weights");
    let mut group = c.benchmark_group("forward/spec");
    group.sample_size(10);
    for threads in [1, 2] {
        let model = alexnet::Model::builder().threads(threads).from_bytes(bytes.clone()).expect("model");
        for batch in [1, 16] {
            let input = alexnet::synthetic::input(&plan, 1, batch);
            let mut out = vec![0.0; batch * model.num_classes()];
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(format!("b{batch}/{threads}t"), |b| {
                b.iter(|| model.infer_into(&input, &mut out).expect("infer"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
