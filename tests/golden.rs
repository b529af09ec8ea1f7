//! Full-size networks against ONNX Runtime.
//!
//! `tools/make_fixtures.py` built the spec (CaffeNet order, 227), ONNX-zoo (paper order,
//! 224, padded pools) and torchvision networks with weights from the generator in
//! `alexnet::synthetic`, ran them in ONNX Runtime, and committed only the outputs. Here
//! the same weights and inputs are regenerated from the seed, run through the runtime,
//! and compared in log-probability.

use alexnet::{synthetic, Model, Plan};

/// What the test needs from a fixture's `meta.json`.
struct Meta {
    seed: u64,
    batch: usize,
    softmax: bool,
}

fn fixture(name: &str) -> (Meta, Vec<f32>) {
    let dir = format!("{}/tests/fixtures/full/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(format!("{dir}/meta.json")).expect("meta.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("meta.json parses");
    let field = |key: &str| json.get(key).unwrap_or_else(|| panic!("meta.json has no {key}"));
    let meta = Meta {
        seed: field("seed").as_u64().expect("seed"),
        batch: field("batch").as_u64().expect("batch") as usize,
        softmax: field("softmax").as_bool().expect("softmax"),
    };
    let expected = alexnet::npy::read(format!("{dir}/expected.npy").as_ref()).expect("expected.npy").data;
    (meta, expected)
}

fn log_probs(v: &[f32], classes: usize, is_softmax: bool) -> Vec<f64> {
    v.chunks(classes)
        .flat_map(|row| {
            if is_softmax {
                row.iter().map(|&p| (p as f64).max(1e-30).ln()).collect::<Vec<_>>()
            } else {
                let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
                let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
                row.iter().map(|&x| x as f64 - lse).collect()
            }
        })
        .collect()
}

fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0
}

fn check(name: &str, plan: Plan) {
    let (meta, expected) = fixture(name);
    let bytes = synthetic::weight_file(&plan, meta.seed).unwrap();
    let model = Model::builder().threads(2).from_bytes(bytes).unwrap();
    let input = synthetic::input(&plan, meta.seed, meta.batch);
    let classes = model.num_classes();
    let mut got = vec![0.0; meta.batch * classes];
    model.infer_raw_into(&input, &mut got).unwrap();
    assert_eq!(got.len(), expected.len(), "{name}");
    let (a, b) = (log_probs(&got, classes, meta.softmax), log_probs(&expected, classes, meta.softmax));
    // Compare log-probabilities where the probability is not vanishingly small (below
    // e^-30 both sides are just "zero" in f32).
    let worst = a.iter().zip(&b).filter(|(_, y)| **y > -30.0).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    let compared = b.iter().filter(|y| **y > -30.0).count();
    eprintln!("{name}: {compared} log-probabilities compared, worst error {worst:.2e}");
    assert!(compared >= meta.batch * classes / 2, "{name}: too few comparable entries");
    assert!(worst < 1e-3, "{name}: max |log p - log p_ort| = {worst}");
    for n in 0..meta.batch {
        let r = n * classes..(n + 1) * classes;
        assert_eq!(argmax(&got[r.clone()]), argmax(&expected[r]), "{name}: top-1 of image {n}");
    }
}

#[test]
fn spec_network_matches_onnx_runtime() {
    check("spec", synthetic::spec_plan());
}

#[test]
fn spec_network_batch_2_matches_onnx_runtime() {
    check("spec_b2", synthetic::spec_plan());
}

#[test]
fn zoo_network_matches_onnx_runtime() {
    check("zoo", synthetic::zoo_plan());
}

#[test]
fn torchvision_network_matches_onnx_runtime() {
    check("torchvision", synthetic::torchvision_plan());
}
