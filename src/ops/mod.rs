//! Layer operators of the runtime, and their scalar references.
//!
//! Each operator works on one image (conv, pool, LRN) or a batch (linear, softmax), in
//! the runtime's layouts, on the caller's rayon pool. `reference` holds the oracles.

pub mod conv;
pub mod im2col;
pub mod linear;
pub mod lrn;
pub mod maxpool;
pub mod pool_lrn;
pub mod reference;
pub mod softmax;
pub mod winograd;
