//! The converter's one error type.
//!
//! Each variant names the cause precisely enough for a user to fix the input (the op and
//! node, the tensor, the flag). Every message is a single line: the binary prints it as
//! `convert-weights: <error>` and exits 1. Errors from the dependencies (protobuf decoding,
//! safetensors, zip) and from the `alexnet` library are wrapped, not flattened to strings,
//! so callers can still match on them.

use std::path::PathBuf;

/// Everything that can go wrong while converting weights.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// An ONNX operator this converter does not map to a layer.
    #[error("unsupported op {op} at node '{node}'")]
    UnsupportedOp {
        /// The node's `op_type` (with its domain when not the default one).
        op: String,
        /// The node's name (or its first output when it has no name).
        node: String,
    },
    /// A supported operator used in a way the layer plan cannot express (an average pool
    /// that is not an identity, an `Add` that is not a bias, ...).
    #[error("unsupported {op} at node '{node}': {reason}")]
    UnsupportedUse {
        /// The node's `op_type`.
        op: String,
        /// The node's name.
        node: String,
        /// Why it cannot be converted.
        reason: String,
    },
    /// A tensor (ONNX initializer or constant, state-dict key) that is needed is absent.
    #[error("missing tensor '{name}' ({context})")]
    MissingTensor {
        /// Tensor name.
        name: String,
        /// Who needs it.
        context: String,
    },
    /// A `torch.save` file whose pickle cannot be read, or that asks for anything a
    /// state dict does not need (the unpickler runs no code).
    #[error("torch.save file: {0}")]
    Pickle(String),
    /// State-dict keys the torchvision layout needs but the file lacks.
    #[error("missing state-dict keys: {}", .0.join(", "))]
    MissingKeys(Vec<String>),
    /// State-dict keys the torchvision layout does not use.
    #[error("unexpected state-dict keys: {}", .0.join(", "))]
    UnexpectedKeys(Vec<String>),
    /// A tensor or activation shape that disagrees with what the layer needs.
    #[error("shape error: {0}")]
    BadShape(String),
    /// An operator attribute with a wrong type or an unsupported value.
    #[error("node '{node}': attribute '{attribute}': {reason}")]
    BadAttribute {
        /// The node's name.
        node: String,
        /// Attribute name.
        attribute: String,
        /// What is wrong.
        reason: String,
    },
    /// Tensor data that cannot be read: unsupported dtype, length not matching the shape,
    /// bad external-data reference.
    #[error("tensor '{name}': {reason}")]
    BadTensor {
        /// Tensor name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The graph is not a single chain from one image input to one output.
    #[error("graph: {0}")]
    BadGraph(String),
    /// A command-line option or option value that is invalid.
    #[error("{0}")]
    InvalidOption(String),
    /// `--check-finite` found NaN or infinite weights.
    #[error("{values} non-finite weights in {tensors} tensors (--check-finite); output not written")]
    NonFinite {
        /// Tensors with at least one non-finite value.
        tensors: usize,
        /// Non-finite values in total.
        values: u64,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A Caffe model, prototxt or mean file that cannot be read or converted (the
    /// message names the layer).
    #[error("caffe: {0}")]
    Caffe(String),
    /// The input is not a well-formed ONNX protobuf.
    #[error("cannot decode ONNX protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The input is not a well-formed safetensors file.
    #[error("safetensors: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
    /// The input is not a well-formed zip (`.npz`) archive.
    #[error("npz: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// An error from the `alexnet` library (plan validation, `.npy` parsing, writing).
    #[error(transparent)]
    Alexnet(#[from] alexnet::Error),
}

/// Result alias used across the crate.
pub type Result<T, E = ConvertError> = std::result::Result<T, E>;
