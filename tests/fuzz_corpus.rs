//! Replays every committed fuzz seed and crash artifact as an ordinary test, so CI keeps
//! them without a fuzzer. Each input must give a result or an error, never a panic.

use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in [root.join("corpus").join(target), root.join("artifacts").join(target)] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            if e.path().is_file() {
                out.push((e.path().display().to_string(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out
}

#[test]
fn weights_file_corpus_never_panics() {
    let cases = inputs("weights_file");
    assert!(!cases.is_empty(), "the weights_file corpus is committed");
    for (name, bytes) in cases {
        let r = std::panic::catch_unwind(|| {
            if let Ok(m) = alexnet::Model::builder().threads(1).max_workspace_bytes(64 << 20).from_bytes(bytes) {
                let _ = m.infer(&vec![0.0; m.input_len()]);
            }
        });
        assert!(r.is_ok(), "{name} panicked");
    }
}
