//! Caffe importer (binary caffemodel). The harness lives in the library, shared with the corpus replay tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| alexnet_convert::fuzzing::import(alexnet_convert::InputFormat::Caffe, data));
