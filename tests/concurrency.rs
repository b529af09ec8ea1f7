//! Many threads sharing one `Model`: 8 threads each run 50 inferences on their own
//! inputs (batch 1 or 2, mixed entry points) and every result must equal, bit for bit,
//! the one computed sequentially beforehand. Exercises the workspace cache, the model's
//! pool shared by concurrent callers, and `Send + Sync`.

use std::sync::Arc;

use alexnet::plan::{Layer, Pads, Plan, Preprocess};
use alexnet::synthetic::{self, layers};
use alexnet::Model;

fn plan() -> Plan {
    let conv = |name: &str, out, k, s, p, g| layers::conv(name, out, k, s, Pads::uniform(p), g, true);
    let pool = || layers::max_pool(3, 2, Pads::default(), false);
    layers::plan(
        [3, 67, 67],
        Preprocess::caffe(),
        vec![
            conv("conv1", 16, 11, 4, 0, 1),
            pool(),
            layers::lrn(),
            conv("conv2", 24, 5, 1, 2, 2),
            layers::lrn(),
            pool(),
            conv("conv3", 32, 3, 1, 1, 1),
            Layer::Flatten,
            layers::linear("fc6", 48, true),
            layers::linear("fc7", 10, false),
            Layer::Softmax,
        ],
    )
}

#[test]
fn eight_threads_sharing_one_model_match_sequential_results() {
    const THREADS: usize = 8;
    const RUNS: usize = 50;
    let plan = plan();
    let model = Arc::new(Model::builder().threads(2).from_bytes(synthetic::weight_file(&plan, 5).unwrap()).unwrap());
    let job = |t: usize, r: usize| {
        let batch = 1 + (t + r) % 2;
        synthetic::input(&plan, (t * RUNS + r) as u64, batch)
    };
    let expected: Vec<Vec<Vec<f32>>> =
        (0..THREADS).map(|t| (0..RUNS).map(|r| model.infer(&job(t, r)).unwrap()).collect()).collect();
    let expected = Arc::new(expected);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (model, expected, inputs) =
                (Arc::clone(&model), Arc::clone(&expected), (0..RUNS).map(|r| job(t, r)).collect::<Vec<_>>());
            std::thread::spawn(move || {
                for (r, input) in inputs.iter().enumerate() {
                    let got = if r % 2 == 0 {
                        model.infer(input).unwrap()
                    } else {
                        let mut out = vec![0.0; expected[t][r].len()];
                        model.infer_into(input, &mut out).unwrap();
                        out
                    };
                    let same = got.iter().zip(&expected[t][r]).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same && got.len() == expected[t][r].len(),
                        "thread {t} run {r} differs from the sequential result"
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a worker thread panicked");
    }
}
