//! The crate's one error type.
//!
//! Every way a weight file, an input tensor or a caller's request can be wrong has its own
//! variant, so callers (and tests) can match on the cause instead of parsing a message.
//! Nothing in the crate panics on bad input; it returns one of these.

use std::path::PathBuf;

/// Everything that can go wrong when opening a model or running it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the file failed (missing, unreadable, permission denied, ...).
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path that was being read.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The path names a directory, FIFO, socket or device instead of a regular file.
    #[error("{0} is not a regular file")]
    NotRegularFile(PathBuf),
    /// The file ends before a structure it declares.
    #[error("file is truncated: {what} needs {needed} bytes, only {available} present")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Bytes the structure needs.
        needed: u64,
        /// Bytes actually available.
        available: u64,
    },
    /// The first eight bytes are not the format's magic.
    #[error("not an alexnet weight file (bad magic)")]
    BadMagic,
    /// A format version this build does not read.
    #[error("unsupported weight-file version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// Version found in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// The byte-order tag is wrong: the file is big-endian or corrupt.
    #[error("byte-order tag {0:#010x} is not the little-endian tag 0x01020304")]
    ByteOrder(u32),
    /// A count or length in the file exceeds the format's hard cap.
    #[error("{what} is {value}, above the limit of {limit}")]
    TooLarge {
        /// What was counted.
        what: &'static str,
        /// The declared value.
        value: u64,
        /// The cap.
        limit: u64,
    },
    /// The metadata block does not parse (bad UTF-8, unknown tag, trailing bytes, ...).
    #[error("malformed weight-file metadata: {0}")]
    Malformed(String),
    /// A layer's hyperparameters are impossible (zero stride, kernel larger than input, ...).
    #[error("layer {index} ({kind}): {reason}")]
    InvalidLayer {
        /// Position of the layer in the plan.
        index: usize,
        /// Layer kind.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Two tensors share a name.
    #[error("tensor {0:?} appears twice in the tensor table")]
    DuplicateTensor(String),
    /// A layer needs a tensor the file does not have.
    #[error("tensor {0:?} is required by the plan but missing")]
    MissingTensor(String),
    /// The file carries a tensor no layer uses.
    #[error("tensor {0:?} is not used by any layer")]
    UnusedTensor(String),
    /// A dtype code this build does not know.
    #[error("tensor {tensor:?} has unsupported dtype code {code}")]
    UnsupportedDtype {
        /// Tensor name.
        tensor: String,
        /// Dtype code in the file.
        code: u8,
    },
    /// A known dtype where it is not allowed (a bf16 bias, weights of mixed dtypes), or a
    /// tensor read as a dtype it is not.
    #[error("tensor {tensor:?} is {found}, expected {expected}")]
    WrongDtype {
        /// Tensor name.
        tensor: String,
        /// What was required.
        expected: &'static str,
        /// What the file has.
        found: &'static str,
    },
    /// A tensor whose values cannot be used (an int8 scale that is zero, negative or
    /// not finite).
    #[error("tensor {tensor:?}: {reason}")]
    InvalidTensorValue {
        /// Tensor name.
        tensor: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A layout code this build does not know, or one not valid for that tensor.
    #[error("tensor {tensor:?} has unsupported layout code {code}")]
    UnsupportedLayout {
        /// Tensor name.
        tensor: String,
        /// Layout code in the file.
        code: u8,
    },
    /// A tensor's shape disagrees with what the plan needs.
    #[error("tensor {tensor:?} has shape {found:?}, the plan needs {expected:?}")]
    ShapeMismatch {
        /// Tensor name.
        tensor: String,
        /// Shape the plan implies.
        expected: Vec<u64>,
        /// Shape in the file.
        found: Vec<u64>,
    },
    /// A size computation overflowed.
    #[error("size overflow computing {0}")]
    Overflow(&'static str),
    /// A tensor's bytes extend past the data section.
    #[error("tensor {tensor:?} (offset {offset}, {len} bytes) runs past the data section ({data_len} bytes)")]
    TensorOutOfBounds {
        /// Tensor name.
        tensor: String,
        /// Offset in the data section.
        offset: u64,
        /// Length in bytes.
        len: u64,
        /// Length of the data section.
        data_len: u64,
    },
    /// A tensor's byte length does not match its shape and dtype.
    #[error("tensor {tensor:?} declares {found} bytes, its shape needs {expected}")]
    TensorLength {
        /// Tensor name.
        tensor: String,
        /// Bytes implied by shape and dtype.
        expected: u64,
        /// Bytes declared.
        found: u64,
    },
    /// A tensor starts before the previous one ends.
    #[error("tensor {tensor:?} overlaps tensor {previous:?}")]
    OverlappingTensors {
        /// The later tensor.
        tensor: String,
        /// The tensor it overlaps.
        previous: String,
    },
    /// Tensors are not laid out densely (a gap larger than alignment padding).
    #[error("unaccounted bytes before tensor {tensor:?} (expected offset {expected}, found {found})")]
    Gap {
        /// Tensor name.
        tensor: String,
        /// Where it should start.
        expected: u64,
        /// Where it starts.
        found: u64,
    },
    /// A tensor offset is not aligned as the format promises.
    #[error("tensor {tensor:?} offset {offset} is not {align}-byte aligned")]
    Misaligned {
        /// Tensor name.
        tensor: String,
        /// Its offset.
        offset: u64,
        /// The required alignment.
        align: u64,
    },
    /// Bytes after the last tensor, or a data section that does not end the file.
    #[error("{0} trailing bytes after the data section")]
    TrailingBytes(u64),
    /// The stored checksum does not match the data.
    #[error("checksum mismatch: file says {stored:#018x}, data hashes to {computed:#018x}")]
    ChecksumMismatch {
        /// Checksum in the header.
        stored: u64,
        /// Checksum of the data section.
        computed: u64,
    },
    /// The input tensor does not have the model's shape.
    #[error("input has {found} values, expected batch * {per_image} ({shape})")]
    InputLength {
        /// Values per image.
        per_image: usize,
        /// Values supplied.
        found: usize,
        /// The expected shape, for the message.
        shape: String,
    },
    /// A batch of zero images.
    #[error("batch size must be at least 1")]
    EmptyBatch,
    /// A batch too large for the workspace cap.
    #[error("batch of {batch} needs more than the {limit_bytes}-byte workspace limit")]
    BatchTooLarge {
        /// Requested batch.
        batch: usize,
        /// Workspace cap in bytes.
        limit_bytes: u64,
    },
    /// The caller's output buffer has the wrong length.
    #[error("output buffer has {found} values, expected {expected}")]
    OutputLength {
        /// Values needed.
        expected: usize,
        /// Values supplied.
        found: usize,
    },
    /// An ISA was forced that this CPU (or this build) cannot run.
    #[error("ISA {0} is not supported on this CPU")]
    UnsupportedIsa(&'static str),
    /// An ISA name that is not one of avx512, avx2, neon, portable.
    #[error("unknown ISA {0:?} (expected avx512, avx2, neon or portable)")]
    UnknownIsa(String),
    /// A microarchitecture name that the tuning table does not have.
    #[error("unknown microarchitecture {0:?} (expected one of `alexnet-bench --list-uarch`)")]
    UnknownUarch(String),
    /// The thread pool could not be built.
    #[error("cannot build thread pool: {0}")]
    ThreadPool(String),
    /// An image could not be decoded or is unusable.
    #[error("image {path}: {reason}")]
    Image {
        /// The image path, or `<memory>`.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An invalid argument to an API call (top-k of zero, label count, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// A call with a timeout could not start before it ran out (the model was busy with
    /// earlier calls); it did no work.
    #[error("inference could not start within {waited_ms} ms: the model is busy")]
    Timeout {
        /// How long the call waited, in milliseconds.
        waited_ms: u64,
    },
    /// The batch this call's image was run in failed (a panic in another call's thread:
    /// a bug); the model itself is unaffected and later calls run normally.
    #[error("the shared batch this image ran in failed")]
    BatchFailed,
}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
