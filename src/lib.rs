//! # alexnet
//!
//! A CPU inference runtime for AlexNet-family networks: the original network (groups,
//! LRN before or after pooling, 224 or 227 input), CaffeNet, and torchvision's variant.
//!
//! ```no_run
//! use alexnet::Model;
//! let model = Model::builder().threads(2).open("alexnet.alexnet")?; // mmap, validate
//! let [c, h, w] = model.input_shape();
//! let input = vec![0.0f32; c * h * w];                  // one preprocessed image, CHW
//! let probs = model.infer(&input)?;                      // [1, classes]
//! let best = alexnet::top_k(&probs, 5)?;                 // (class, probability), best first
//! # Ok::<(), alexnet::Error>(())
//! ```
//!
//! Weights live in a flat, versioned, self-describing file (see `docs/weight-format.md`)
//! that `convert-weights` makes from ONNX, safetensors or npz. [`Model::open`] maps it and
//! validates every byte of structure before first use; weight tensors are read in place.
//! The network comes from the file's [`plan::Plan`]: nothing about AlexNet is hard-wired.
//!
//! A [`Model`] is `Send + Sync`: share it (e.g. in an `Arc`) and call [`Model::infer`]
//! from any number of threads. It owns a rayon pool sized by [`ModelBuilder::threads`].
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

#[cfg(target_endian = "big")]
compile_error!("alexnet weight files are little-endian and viewed in place; big-endian hosts are not supported");

pub mod cpu;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gemm;
#[cfg(feature = "image")]
pub mod image;
pub mod labels;
mod model;
pub mod npy;
pub mod ops;
pub mod plan;
mod scratch;
pub mod simd;
pub mod synthetic;
pub mod weights;

pub use cpu::Isa;
pub use error::{Error, Result};
pub use labels::top_k;
pub use model::{Model, ModelBuilder, DEFAULT_MAX_WORKSPACE_BYTES};
pub use plan::{Plan, Preprocess};
pub use weights::{OpenMode, WeightFile};
