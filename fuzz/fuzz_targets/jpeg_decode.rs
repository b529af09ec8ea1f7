//! The libjpeg-compatible JPEG decoder on raw bytes. The harness lives in the library,
//! shared with the corpus replay tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| alexnet::fuzzing::jpeg_decode(data));
