//! [`Precision`]: the arithmetic a model runs in.

use crate::error::{Error, Result};
use crate::weights::Dtype;

/// The arithmetic a model runs its convolutions and linear layers in.
///
/// f32 is exact and the reference the other modes are measured against
/// (`docs/reliability.md`, "Numerics"). A file stores its weights at one precision and
/// runs at it by default; [`crate::ModelBuilder::precision`] picks another at open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Precision {
    /// IEEE binary32 throughout.
    F32,
    /// bfloat16 weights, products accumulated in f32; bias, ReLU, pooling, LRN and
    /// softmax in f32. The linear layers stream half the bytes of f32.
    Bf16,
    /// int8 weights (symmetric per output channel) times `u8` activations quantized per
    /// image and layer, summed exactly in i32 ([`crate::quant`] has the rules); bias,
    /// ReLU, pooling, LRN and softmax in f32. The linear layers stream a quarter of the
    /// bytes of f32.
    Int8,
}

impl Precision {
    /// Every precision, in order of decreasing exactness.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::Int8];

    /// Lower-case name (`f32`, `bf16`, `int8`), as the CLIs take and print it.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }

    /// Parse a name as [`Precision::name`] prints it (case-insensitive).
    pub fn parse(s: &str) -> Result<Precision> {
        Precision::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(s)).ok_or_else(|| {
            let names: Vec<&str> = Precision::ALL.iter().map(|p| p.name()).collect();
            Error::InvalidArgument(format!("unknown precision {s:?} (expected one of {})", names.join(", ")))
        })
    }

    /// The dtype a weight file stores this precision's weights as.
    pub fn weight_dtype(self) -> Dtype {
        match self {
            Precision::F32 => Dtype::F32,
            Precision::Bf16 => Dtype::Bf16,
            Precision::Int8 => Dtype::I8,
        }
    }

    /// The precision a file whose weights are `dtype` runs at by default.
    pub fn of_weights(dtype: Dtype) -> Precision {
        match dtype {
            Dtype::Bf16 => Precision::Bf16,
            Dtype::I8 => Precision::Int8,
            _ => Precision::F32,
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Precision> {
        Precision::parse(s)
    }
}
