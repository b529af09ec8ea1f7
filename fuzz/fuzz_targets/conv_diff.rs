//! One convolution (im2col + SGEMM or Winograd) on every ISA vs the reference. The harness lives in the library, shared with the corpus replay tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| alexnet::fuzzing::conv_diff(data));
