//! One model under many callers: admission in arrival order with a bound on concurrent
//! calls, batching across callers (bitwise the same results as alone), timeouts.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use alexnet::plan::{Layer, Pads, Plan, Preprocess};
use alexnet::synthetic::{self, layers};
use alexnet::{Error, Model};

fn plan() -> Plan {
    layers::plan(
        [3, 35, 35],
        Preprocess::caffe(),
        vec![
            layers::conv("conv1", 16, 5, 2, Pads::uniform(1), 1, true),
            layers::max_pool(3, 2, Pads::default(), false),
            layers::lrn(),
            layers::conv("conv2", 24, 3, 1, Pads::uniform(1), 2, true),
            Layer::Flatten,
            layers::linear("fc6", 40, true),
            layers::linear("fc7", 10, false),
            Layer::Softmax,
        ],
    )
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// `callers` threads, started together, each running `runs` single-image inferences
/// on its own inputs; every result must be the one computed alone beforehand.
fn hammer(model: &Arc<Model>, plan: &Plan, callers: usize, runs: usize) {
    let input = |c: usize, r: usize| synthetic::input(plan, (c * runs + r) as u64, 1);
    let alone = Model::builder().threads(1).from_bytes(synthetic::weight_file(plan, 3).unwrap()).unwrap();
    let want: Arc<Vec<Vec<Vec<u32>>>> = Arc::new(
        (0..callers).map(|c| (0..runs).map(|r| bits(&alone.infer(&input(c, r)).unwrap())).collect()).collect(),
    );
    let start = Arc::new(Barrier::new(callers));
    let handles: Vec<_> = (0..callers)
        .map(|c| {
            let (model, want, start) = (Arc::clone(model), Arc::clone(&want), Arc::clone(&start));
            let inputs: Vec<Vec<f32>> = (0..runs).map(|r| input(c, r)).collect();
            std::thread::spawn(move || {
                start.wait();
                for (r, x) in inputs.iter().enumerate() {
                    let got = model.infer(x).unwrap();
                    assert_eq!(bits(&got), want[c][r], "caller {c} run {r}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn batched_callers_get_exactly_their_alone_results() {
    let plan = plan();
    let bytes = synthetic::weight_file(&plan, 3).unwrap();
    let model = Arc::new(Model::builder().threads(2).batching(6, Duration::from_millis(20)).from_bytes(bytes).unwrap());
    assert_eq!(model.max_batch(), Some(6));
    hammer(&model, &plan, 12, 15);
    let (batches, images) = model.batch_counts().unwrap();
    assert_eq!(images, 12 * 15, "every single-image call went through a shared batch");
    // Twelve callers started together with a 20 ms linger: some batches held several.
    assert!(batches < images, "{batches} batches for {images} images");
    // Calls that cannot batch still run: a batch of two, a raw call, a timed call.
    let two = synthetic::input(&plan, 99, 2);
    let both = model.infer(&two).unwrap();
    let per = plan.input.iter().product::<u32>() as usize;
    let first = model.infer_timeout(&two[..per], Duration::from_secs(60)).unwrap();
    assert_eq!(bits(&first), bits(&both[..10]));
}

#[test]
fn many_callers_on_a_bounded_model_match_sequential_results() {
    let plan = plan();
    for concurrency in [1, 2, 3] {
        let bytes = synthetic::weight_file(&plan, 3).unwrap();
        let model = Arc::new(Model::builder().threads(2).max_concurrency(concurrency).from_bytes(bytes).unwrap());
        assert_eq!(model.max_concurrency(), concurrency);
        assert_eq!(model.batch_counts(), None);
        hammer(&model, &plan, 9, 8);
    }
}

#[test]
fn a_call_that_cannot_start_in_time_times_out_and_does_no_work() {
    let plan = plan();
    let bytes = synthetic::weight_file(&plan, 3).unwrap();
    let model = Arc::new(Model::builder().threads(1).max_concurrency(1).from_bytes(bytes).unwrap());
    let big = synthetic::input(&plan, 1, 64);
    let one = synthetic::input(&plan, 2, 1);
    let want = model.infer(&one).unwrap();
    // Another caller keeps the model busy with large batches.
    let busy = {
        let (model, big) = (Arc::clone(&model), big.clone());
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_millis(1500);
            while Instant::now() < until {
                model.infer(&big).unwrap();
            }
        })
    };
    let mut timed_out = 0;
    let mut out = vec![f32::NAN; 10];
    let until = Instant::now() + Duration::from_millis(1200);
    while Instant::now() < until {
        match model.infer_into_timeout(&one, &mut out, Duration::ZERO) {
            Err(Error::Timeout { .. }) => {
                timed_out += 1;
                // A call that gave up wrote nothing.
                assert!(out.iter().all(|v| v.is_nan()), "a timed-out call wrote its output");
            }
            Ok(()) => {
                assert_eq!(bits(&out), bits(&want));
                out.fill(f32::NAN);
            }
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    busy.join().unwrap();
    assert!(timed_out > 0, "no call with a zero timeout met a busy model");
    // The model is still fully usable, and a generous timeout simply runs.
    assert_eq!(bits(&model.infer_timeout(&one, Duration::from_secs(60)).unwrap()), bits(&want));
}

#[test]
fn batching_too_large_for_the_workspace_cap_is_refused_at_open() {
    let plan = plan();
    let bytes = synthetic::weight_file(&plan, 3).unwrap();
    let err = Model::builder().max_workspace_bytes(1 << 20).batching(1000, Duration::ZERO).from_bytes(bytes);
    assert!(matches!(err, Err(Error::BatchTooLarge { batch: 1000, .. })), "{err:?}");
}
