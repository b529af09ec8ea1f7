//! Replays every committed fuzz seed and crash artifact of the library's targets through
//! the same harnesses the fuzzers run (`alexnet::fuzzing`), so CI keeps them without a
//! fuzzer. (The importers' corpora are replayed by the converter's own tests.)

use std::path::Path;

fn replay(target: &str, harness: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for dir in [root.join("corpus").join(target), root.join("artifacts").join(target)] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten().filter(|e| e.path().is_file()) {
            let bytes = std::fs::read(e.path()).expect("readable seed");
            let r = std::panic::catch_unwind(|| harness(&bytes));
            assert!(r.is_ok(), "{} failed its harness", e.path().display());
            count += 1;
        }
    }
    assert!(count > 0, "the {target} corpus is committed");
}

#[test]
fn weights_file_corpus() {
    replay("weights_file", alexnet::fuzzing::weights_file);
}

#[test]
fn roundtrip_corpus() {
    replay("roundtrip", alexnet::fuzzing::roundtrip);
}

#[test]
fn gemm_diff_corpus() {
    replay("gemm_diff", alexnet::fuzzing::gemm_diff);
}

#[test]
fn conv_diff_corpus() {
    replay("conv_diff", alexnet::fuzzing::conv_diff);
}

#[test]
fn cpu_info_corpus() {
    replay("cpu_info", alexnet::fuzzing::cpu_info);
}

#[test]
fn pool_lrn_diff_corpus() {
    replay("pool_lrn_diff", alexnet::fuzzing::pool_lrn_diff);
}

#[cfg(feature = "image")]
#[test]
fn image_preprocess_corpus() {
    replay("image_preprocess", alexnet::fuzzing::image_preprocess);
}

#[cfg(feature = "image")]
#[test]
fn jpeg_decode_corpus() {
    replay("jpeg_decode", alexnet::fuzzing::jpeg_decode);
}
