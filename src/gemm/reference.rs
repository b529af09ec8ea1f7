//! The GEMM oracle: see [`crate::ops::reference::sgemm`], re-exported here so the GEMM
//! module's tests and fuzzers name it where they expect it.

pub use crate::ops::reference::sgemm;
