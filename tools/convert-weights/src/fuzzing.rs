//! Fuzz harnesses for the importers, one per cargo-fuzz target in `fuzz/`, shared with
//! `tests/fuzz_corpus.rs`, which replays the committed corpora and crash artifacts.

use crate::{convert_bytes, InputFormat, Options};

/// Bytes of `format` through its importer: a network or an error, never a panic; whatever
/// converts must serialise and open.
pub fn import(format: InputFormat, data: &[u8]) {
    if let Ok(converted) = convert_bytes(data, format, None, &Options::default()) {
        // At f32, and at int8 when the model brought its own quantization.
        let mut precisions = vec![alexnet::Precision::F32];
        if converted.is_quantized() {
            precisions.push(alexnet::Precision::Int8);
        }
        for p in precisions {
            let bytes = converted.to_bytes_as(p).expect("conversions serialise");
            alexnet::WeightFile::from_bytes(bytes).expect("serialised conversions open");
        }
    }
}

/// Text through the prototxt parser; a net that parses (it may carry its own blobs) goes
/// on through the Caffe importer as a caffemodel of its own.
pub fn prototxt(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(net) = crate::caffe::parse_prototxt(text) {
        use prost::Message as _;
        import(InputFormat::Caffe, &net.encode_to_vec());
    }
}
