//! Arbitrary bytes through the weight-file validation; anything accepted must also run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = alexnet::Model::builder().threads(1).max_workspace_bytes(64 << 20).from_bytes(data.to_vec()) {
        // A file that validates must be runnable: one image of zeros, no panic.
        let input = vec![0.0f32; model.input_len().min(1 << 20)];
        if input.len() == model.input_len() {
            let _ = model.infer(&input);
        }
    }
});
