//! Replays the importers' committed fuzz seeds and crash artifacts through the same
//! harness the fuzzers run (`alexnet_convert::fuzzing::import`).

use std::path::Path;

use alexnet_convert::InputFormat;

fn replay(target: &str, format: InputFormat) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut count = 0;
    for dir in [root.join("corpus").join(target), root.join("artifacts").join(target)] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten().filter(|e| e.path().is_file()) {
            let bytes = std::fs::read(e.path()).expect("readable seed");
            let r = std::panic::catch_unwind(|| alexnet_convert::fuzzing::import(format, &bytes));
            assert!(r.is_ok(), "{} failed its harness", e.path().display());
            count += 1;
        }
    }
    assert!(count > 0, "the {target} corpus is committed");
}

#[test]
fn onnx_corpus() {
    replay("onnx_import", InputFormat::Onnx);
}

#[test]
fn safetensors_corpus() {
    replay("safetensors_import", InputFormat::Safetensors);
}

#[test]
fn npz_corpus() {
    replay("npz_import", InputFormat::Npz);
}

#[test]
fn pth_corpus() {
    replay("pth_import", InputFormat::Pth);
}

#[test]
fn caffe_corpus() {
    replay("caffe_import", InputFormat::Caffe);
}

#[test]
fn prototxt_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut count = 0;
    for dir in [root.join("corpus/prototxt_import"), root.join("artifacts/prototxt_import")] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten().filter(|e| e.path().is_file()) {
            let bytes = std::fs::read(e.path()).expect("readable seed");
            let r = std::panic::catch_unwind(|| alexnet_convert::fuzzing::prototxt(&bytes));
            assert!(r.is_ok(), "{} failed its harness", e.path().display());
            count += 1;
        }
    }
    assert!(count > 0, "the prototxt_import corpus is committed");
}
