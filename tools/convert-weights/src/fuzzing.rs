//! Fuzz harnesses for the importers, one per cargo-fuzz target in `fuzz/`, shared with
//! `tests/fuzz_corpus.rs`, which replays the committed corpora and crash artifacts.

use crate::{convert_bytes, InputFormat, Options};

/// Bytes of `format` through its importer: a network or an error, never a panic; whatever
/// converts must serialise and open.
pub fn import(format: InputFormat, data: &[u8]) {
    if let Ok(converted) = convert_bytes(data, format, None, &Options::default()) {
        let bytes =
            alexnet::weights::format::to_bytes(&converted.plan, &converted.tensors).expect("conversions serialise");
        alexnet::WeightFile::from_bytes(bytes).expect("serialised conversions open");
    }
}
