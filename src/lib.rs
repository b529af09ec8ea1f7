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
//! Weights live in a flat, versioned, self-describing file (`docs/weight-format.md`) that
//! `convert-weights` makes from ONNX, safetensors or npz. [`Model::open`] maps it and
//! validates every byte of structure before first use; weight tensors are read in place.
//! The network comes from the file's [`Plan`]: nothing about AlexNet is hard-wired.
//!
//! A [`Model`] is `Send + Sync`: share it (e.g. in an `Arc`) and call [`Model::infer`]
//! from any number of threads. It owns a rayon pool sized by [`ModelBuilder::threads`].
//!
//! The public API is what an embedder needs: [`Model`] and [`ModelBuilder`], [`Error`],
//! [`Isa`], the [`plan`] and its preprocessing (read them, or build one to write a file
//! with [`weights`]), the `image` front end (default feature `image`), [`labels`] and
//! [`top_k`]. The kernels, layer operators and their scalar references are internal; the
//! `internals` feature exposes them (hidden from the docs, with no stability promise) to
//! this project's benches, tests, fuzz targets and CLIs.
// `unsafe` and its documentation are policed by the workspace lints (Cargo.toml).
#![warn(missing_docs)]

#[cfg(target_endian = "big")]
compile_error!("alexnet weight files are little-endian and viewed in place; big-endian hosts are not supported");

/// Declares internal modules: private in a normal build, public (and hidden from the
/// docs) with the `internals` feature. With `test_only`, compiled only for the crate's
/// own tests or with the feature. Without the feature, items that only the benches and
/// tests reach are dead code by design: the lint is off there (builds with the feature,
/// as in this workspace's CI, check the modules' private items).
macro_rules! internal {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {$(
        $(#[$attr])*
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        pub mod $name;
        $(#[$attr])*
        #[cfg(not(feature = "internals"))]
        #[allow(dead_code)]
        mod $name;
    )*};
    (test_only: $($(#[$attr:meta])* $name:ident),* $(,)?) => {$(
        $(#[$attr])*
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        pub mod $name;
        $(#[$attr])*
        #[cfg(all(test, not(feature = "internals")))]
        #[allow(dead_code)]
        mod $name;
    )*};
}

// Layers, bottom to top: each module imports only from those before it.
pub mod error;
internal! {
    // Instruction sets and their capability tokens.
    cpu,
    // Choices per microarchitecture: the cores' table.
    tuning,
    // The shared base: matrix views, task splitting, scratch, scalar rules.
    base,
    // int8 quantization: the rules every int8 path shares.
    quant,
    // Vectors and the per-ISA dispatch.
    simd,
    // SGEMM and GEMV.
    gemm,
    // Layer operators.
    ops,
}
#[cfg(feature = "image")]
pub mod image;
pub mod labels;
mod model;
pub mod plan;
mod precision;
pub mod weights;

// Apart from the layers: the oracle and the tools of this project's own benches, tests
// and CLIs. Production code never calls them.
internal! { test_only:
    // Scalar references: the oracle of every kernel and of the whole network.
    reference,
    // Machine probes: FMA peak, read bandwidth.
    probe,
    // Deterministic synthetic networks.
    synthetic,
    // `.npy` files.
    npy,
}
/// Fuzz harnesses, shared with the tests that replay their corpora.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod fuzzing;

pub use base::census::Partition;
pub use cpu::Isa;
pub use error::{Error, Result};
pub use labels::top_k;
pub use model::{Model, ModelBuilder, DEFAULT_MAX_WORKSPACE_BYTES};
pub use plan::{Plan, Preprocess};
pub use precision::Precision;
pub use tuning::Uarch;
pub use weights::{OpenMode, WeightFile};
