//! Caffe prototxt (text format) parser and importer. The harness lives in the library,
//! shared with the corpus replay tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| alexnet_convert::fuzzing::prototxt(data));
