//! Layer operators of the runtime.
//!
//! Each operator works on one image (conv, pool, LRN) or a batch (linear, softmax), in
//! the runtime's layouts, on the caller's rayon pool, with the kernels of the [`Cpu`]
//! token it is given. Their oracles are in `crate::reference`.
//!
//! [`Cpu`]: crate::cpu::Cpu

pub mod avgpool;
pub mod conv;
pub mod conv_i8;
pub mod im2col;
pub mod linear;
pub mod lrn;
pub mod maxpool;
pub mod pool_lrn;
pub mod softmax;
pub mod winograd;
