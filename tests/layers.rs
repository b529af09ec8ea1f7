//! The runtime against the scalar reference network, on small plans covering every layer
//! kind and AlexNet variant: CaffeNet and paper order, groups, asymmetric pads, ceil mode,
//! even LRN windows, other betas, within-channel LRN, non-square inputs, standalone ReLU,
//! batches.

use alexnet::plan::{AdaptiveAvgPool, AvgPool, Layer, Lrn, LrnWithin, Pads, Plan, Preprocess, Shape};
use alexnet::reference;
use alexnet::synthetic::{self, layers::conv, layers::linear as fc, layers::max_pool as pool};
use alexnet::{Model, WeightFile};

/// An LRN with a window of `size` and exponent `beta` (odd sizes and betas on purpose).
fn lrn(size: u32, beta: f32) -> Layer {
    Layer::Lrn(Lrn { size, alpha: 1e-3, beta, bias: 1.5 })
}
/// A within-channel LRN (Caffe's `WITHIN_CHANNEL`) over a `size x size` square.
fn lrn_within(size: u32, beta: f32) -> Layer {
    Layer::LrnWithin(LrnWithin { size, alpha: 5e-3, beta, bias: 1.0 })
}
fn plan(input: [u32; 3], layers: Vec<Layer>) -> Plan {
    synthetic::layers::plan(input, Preprocess::caffe(), layers)
}

/// Small plans, one per variant or corner.
fn plans() -> Vec<(&'static str, Plan)> {
    let p0 = Pads::default();
    let p1 = Pads::uniform(1);
    let tail = Pads { top: 0, left: 0, bottom: 1, right: 1 };
    vec![
        (
            "caffenet order, groups",
            plan(
                [3, 67, 67],
                vec![
                    conv("conv1", 8, 11, 4, p0, 1, true),
                    pool(3, 2, p0, false),
                    lrn(5, 0.75),
                    conv("conv2", 12, 5, 1, Pads::uniform(2), 2, true),
                    pool(3, 2, p0, false),
                    lrn(5, 0.75),
                    conv("conv3", 16, 3, 1, p1, 1, true),
                    conv("conv4", 16, 3, 1, p1, 2, true),
                    conv("conv5", 8, 3, 1, p1, 2, true),
                    pool(3, 2, p0, false),
                    Layer::Flatten,
                    fc("fc6", 24, true),
                    fc("fc7", 20, true),
                    fc("fc8", 10, false),
                    Layer::Softmax,
                ],
            ),
        ),
        (
            "paper order, tail pads",
            plan(
                [3, 64, 64],
                vec![
                    conv("conv1", 6, 11, 4, p0, 1, true),
                    lrn(5, 0.75),
                    pool(3, 2, tail, false),
                    conv("conv2", 8, 5, 1, Pads::uniform(2), 2, true),
                    lrn(5, 0.75),
                    pool(3, 2, p0, false),
                    Layer::Flatten,
                    fc("fc6", 17, true),
                    fc("fc8", 5, false),
                    Layer::Softmax,
                ],
            ),
        ),
        (
            "odd: non-square, asymmetric conv pads, ceil mode, even LRN, beta 0.6, standalone relu",
            plan(
                [3, 29, 37],
                vec![
                    conv("conv1", 5, 5, 2, Pads { top: 1, left: 2, bottom: 0, right: 1 }, 1, false),
                    Layer::Relu,
                    pool(3, 2, p0, true),
                    lrn(4, 0.6),
                    conv("conv2", 7, 3, 1, p1, 1, true),
                    pool(2, 2, tail, true),
                    Layer::Relu,
                    Layer::Flatten,
                    fc("fc1", 9, false),
                    Layer::Relu,
                    fc("fc2", 3, false),
                ],
            ),
        ),
        (
            "average pools: padded with and without the pad count, ceil mode, adaptive 6x6",
            plan(
                [3, 71, 59],
                vec![
                    conv("conv1", 6, 11, 4, Pads::uniform(2), 1, true),
                    Layer::AvgPool(AvgPool {
                        kernel: [3, 3],
                        stride: [2, 2],
                        pads: Pads { top: 1, left: 0, bottom: 1, right: 1 },
                        ceil_mode: true,
                        count_include_pad: true,
                    }),
                    conv("conv2", 8, 3, 1, p1, 1, true),
                    Layer::AvgPool(AvgPool {
                        kernel: [2, 3],
                        stride: [1, 2],
                        pads: p1,
                        ceil_mode: false,
                        count_include_pad: false,
                    }),
                    Layer::AdaptiveAvgPool(AdaptiveAvgPool { out: [6, 6] }),
                    Layer::Flatten,
                    fc("fc6", 12, true),
                    fc("fc8", 5, false),
                ],
            ),
        ),
        (
            "within-channel LRN: 3x3 after a pool, 7x7 wider than its 3x3 map, beta 0.6",
            plan(
                [3, 41, 47],
                vec![
                    conv("conv1", 6, 5, 2, p1, 1, true),
                    pool(3, 2, p0, true),
                    lrn_within(3, 0.75),
                    conv("conv2", 8, 3, 2, p0, 1, true),
                    Layer::AvgPool(AvgPool {
                        kernel: [3, 3],
                        stride: [2, 2],
                        pads: p1,
                        ceil_mode: true,
                        count_include_pad: true,
                    }),
                    lrn_within(7, 0.6),
                    Layer::Flatten,
                    fc("fc1", 5, false),
                    Layer::Softmax,
                ],
            ),
        ),
        (
            "torchvision shape, logits",
            plan(
                [3, 63, 63],
                vec![
                    conv("conv1", 16, 11, 4, Pads::uniform(2), 1, true),
                    pool(3, 2, p0, false),
                    conv("conv2", 24, 5, 1, Pads::uniform(2), 1, true),
                    pool(3, 2, p0, false),
                    conv("conv3", 20, 3, 1, p1, 1, true),
                    Layer::Flatten,
                    fc("fc6", 40, true),
                    fc("fc8", 10, false),
                ],
            ),
        ),
    ]
}

fn model(plan: &Plan, threads: usize) -> Model {
    let bytes = synthetic::weight_file(plan, 3).expect("synthetic file");
    Model::builder().threads(threads).from_bytes(bytes).expect("model")
}

fn max_rel_err(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale
}

#[test]
fn runtime_matches_reference_network() {
    for (name, plan) in plans() {
        let file = WeightFile::from_bytes(synthetic::weight_file(&plan, 3).unwrap()).unwrap();
        for isa in alexnet::Isa::ALL.into_iter().filter(|i| i.is_supported()) {
            let bytes = synthetic::weight_file(&plan, 3).unwrap();
            let model = Model::builder().threads(2).isa(isa).from_bytes(bytes).unwrap();
            check_against_reference(&format!("{name} [{isa}]"), &model, &plan, &file);
        }
    }
}

fn check_against_reference(name: &str, model: &Model, plan: &Plan, file: &WeightFile) {
    {
        for batch in [1, 3] {
            let input = synthetic::input(plan, 11, batch);
            let mut got = vec![0.0; batch * model.num_classes()];
            model.infer_raw_into(&input, &mut got).unwrap();
            let want = reference::network(file, &input).unwrap();
            let err = max_rel_err(&got, &want);
            assert!(err < 1e-4, "{name} batch {batch}: relative error {err}");
        }
    }
}

#[test]
fn bitwise_identical_across_thread_counts() {
    for (name, plan) in plans() {
        let input = synthetic::input(&plan, 5, 2);
        let one = model(&plan, 1).infer(&input).unwrap();
        for threads in [2, 3, 4, 5, 8, 16] {
            let many = model(&plan, threads).infer(&input).unwrap();
            assert!(
                one.iter().zip(&many).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name}: {threads} threads differ from 1"
            );
        }
    }
}

#[test]
fn batch_equals_images_one_by_one() {
    for (name, plan) in plans() {
        let m = model(&plan, 2);
        let input = synthetic::input(&plan, 9, 4);
        let all = m.infer(&input).unwrap();
        let per = m.input_len();
        let k = m.num_classes();
        for n in 0..4 {
            // Every layer computes an image the same way at any batch size: bitwise equal.
            let one = m.infer(&input[n * per..(n + 1) * per]).unwrap();
            assert!(
                one.iter().zip(&all[n * k..(n + 1) * k]).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name}: image {n} differs between batch 1 and batch 4"
            );
        }
    }
}

#[test]
fn probabilities_sum_to_one() {
    for (name, plan) in plans() {
        let m = model(&plan, 1);
        let probs = m.infer(&synthetic::input(&plan, 2, 2)).unwrap();
        for row in probs.chunks(m.num_classes()) {
            let s: f32 = row.iter().sum();
            assert!((s - 1.0).abs() < 1e-5, "{name}: sum {s}");
            assert!(row.iter().all(|p| (0.0..=1.0).contains(p)));
        }
    }
}

#[test]
fn nan_input_flows_through_without_panic() {
    let (_, plan) = &plans()[0];
    let m = model(plan, 2);
    let mut input = synthetic::input(plan, 1, 1);
    input[100] = f32::NAN;
    input[200] = f32::INFINITY;
    input[300] = f32::MIN_POSITIVE / 4.0;
    let out = m.infer(&input).unwrap();
    assert_eq!(out.len(), m.num_classes());
    assert!(out.iter().any(|v| v.is_nan()), "NaN should reach the output");
}

#[test]
fn layer_costs_count_the_direct_convolution_and_the_weights() {
    for (name, plan) in plans() {
        let model = model(&plan, 1);
        let shapes = plan.shapes().unwrap();
        let costs = model.layer_costs();
        assert_eq!(costs.len(), plan.layers.len(), "{name}");
        for (i, layer) in plan.layers.iter().enumerate() {
            let want = match (layer, shapes[i], shapes[i + 1]) {
                (Layer::Conv(cv), Shape::Spatial { c, .. }, Shape::Spatial { h, w, .. }) => {
                    let k = c / cv.groups as usize * (cv.kernel[0] * cv.kernel[1]) as usize;
                    let o = cv.out_channels as usize;
                    (2 * (o * k * h * w) as u64, (4 * o * k) as u64)
                }
                (Layer::Linear(l), Shape::Flat(k), _) => {
                    let m = l.out_features as usize;
                    (2 * (m * k) as u64, (4 * m * k) as u64)
                }
                _ => (0, 0),
            };
            assert_eq!(costs[i], want, "{name}: layer {i}");
        }
    }
}

/// The full-size spec network, at each precision, on pools larger than this machine's
/// cores (every split of every layer at 3, 5, 8 and 16 tasks): the same bits as one thread.
#[test]
fn spec_network_is_bitwise_identical_on_pools_past_two_cores() {
    let plan = synthetic::spec_plan();
    let bytes = synthetic::weight_file(&plan, 1).unwrap();
    let input = synthetic::input(&plan, 4, 2);
    for precision in alexnet::Precision::ALL {
        let open =
            |threads| Model::builder().threads(threads).precision(precision).from_bytes(bytes.clone()).expect("model");
        let one: Vec<u32> = open(1).infer(&input).unwrap().iter().map(|v| v.to_bits()).collect();
        for threads in [3, 5, 8, 16] {
            let many: Vec<u32> = open(threads).infer(&input).unwrap().iter().map(|v| v.to_bits()).collect();
            assert!(one == many, "{precision}: {threads} threads differ from 1");
        }
    }
}

/// The census of the spec network's split (`Model::partition`): at batch 1 on 16
/// threads every layer that does a fair share of the work is cut finely enough for a
/// 0.75 x 16 speed-up (the softmax of 1,000 values runs as one task by design), the
/// linear layers' tasks hold exactly their multiply-adds, and taking the census changes
/// nothing the model computes.
#[test]
fn spec_network_splits_for_sixteen_threads_at_batch_one() {
    let plan = synthetic::spec_plan();
    let bytes = synthetic::weight_file(&plan, 1).unwrap();
    let model = Model::builder().threads(2).from_bytes(bytes).unwrap();
    let input = synthetic::input(&plan, 4, 1);
    let before = model.infer(&input).unwrap();
    let split = model.partition(16, 1).unwrap();
    assert_eq!(split.len(), plan.layers.len());
    let costs = model.layer_costs();
    for ((layer, p), (flops, _)) in plan.layers.iter().zip(&split).zip(&costs) {
        // A fused LRN has no work of its own: its pool step holds it.
        let shared = matches!(layer, Layer::Conv(_) | Layer::Linear(_) | Layer::MaxPool(_) | Layer::Lrn(_));
        if shared && p.work > 0.0 {
            assert!(p.speedup_bound(16) >= 12.0, "{layer:?}: {p:?}");
        }
        if let Layer::Linear(_) = layer {
            assert_eq!(p.work, *flops as f64, "{layer:?}");
            assert!(p.tasks >= 16);
        }
        if let Layer::Conv(_) = layer {
            assert!(p.work > 0.0 && p.tasks >= 16, "{layer:?}: {p:?}");
        }
    }
    // The work is the same at any thread count; only its cut changes.
    let one = model.partition(1, 1).unwrap();
    for (a, b) in one.iter().zip(&split) {
        assert!((a.work - b.work).abs() <= 1e-9 * a.work.max(1.0), "work must not depend on the threads");
    }
    assert_eq!(model.infer(&input).unwrap(), before);
    assert!(model.partition(4, 1 << 20).is_err(), "a batch over the workspace cap is refused");
}

/// Every core's entry of the tuning table, forced on this CPU, on layers large enough for
/// its blocks to cut M, K and N: the reference's results, the entry's blocks reported, and
/// bitwise the same on one and three threads.
#[test]
fn every_cores_blocks_run_the_network_here() {
    use alexnet::tuning::{Tuning, Uarch};
    let plan = plan(
        [16, 35, 35],
        vec![
            conv("conv1", 64, 5, 2, Pads::default(), 1, true),
            conv("conv2", 48, 3, 1, Pads::uniform(1), 2, true),
            pool(3, 2, Pads::default(), false),
            Layer::Flatten,
            fc("fc", 10, false),
            Layer::Softmax,
        ],
    );
    let file = WeightFile::from_bytes(synthetic::weight_file(&plan, 3).unwrap()).unwrap();
    let input = synthetic::input(&plan, 11, 2);
    let want = reference::network(&file, &input).unwrap();
    for isa in alexnet::Isa::ALL.into_iter().filter(|i| i.is_supported()) {
        let mut seen = Vec::new();
        for u in Uarch::all() {
            let open = |threads| {
                let bytes = synthetic::weight_file(&plan, 3).unwrap();
                Model::builder().threads(threads).isa(isa).uarch(u).from_bytes(bytes).unwrap()
            };
            let one = open(1);
            let b = one.gemm_blocks();
            assert_eq!(one.uarch(), u);
            assert_eq!([b.mc, b.kc, b.nc], Tuning::forced(u).blocks(b.mr, b.nr), "{isa} {u}");
            // Entries with the same blocks run the same code: one of each is enough.
            if seen.contains(&b) {
                continue;
            }
            seen.push(b);
            let got = one.infer(&input).unwrap();
            let err = max_rel_err(&got, &want);
            assert!(err < 1e-4, "{isa} {u}: relative error {err}");
            let three = open(3).infer(&input).unwrap();
            assert!(got.iter().zip(&three).all(|(x, y)| x.to_bits() == y.to_bits()), "{isa} {u}: threads differ");
        }
        assert!(seen.len() >= 4, "{isa}: the table's entries should differ in their blocks");
    }
}
