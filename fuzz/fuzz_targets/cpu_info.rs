//! The tuning table's readers of OS reports and its core classification. The harness lives in the library, shared with the corpus replay tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| alexnet::fuzzing::cpu_info(data));
