//! Instruction sets, detected once.
//!
//! [`Isa::detect`] picks the best kernels this CPU runs; [`Isa::from_env`] honours the
//! `ALEXNET_ISA` override (`avx512 | avx2 | neon | portable`). Forcing an ISA the CPU
//! lacks is an error, never an illegal instruction. The chosen `Isa` is carried by the
//! model; no hot path detects anything.

use crate::error::{Error, Result};

/// A kernel family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// x86-64 AVX-512F (zmm registers).
    Avx512,
    /// x86-64 AVX2 with FMA (ymm registers).
    Avx2,
    /// aarch64 Advanced SIMD.
    Neon,
    /// Portable code on the `wide` crate; runs everywhere.
    Portable,
}

impl Isa {
    /// Every ISA, best first.
    pub const ALL: [Isa; 4] = [Isa::Avx512, Isa::Avx2, Isa::Neon, Isa::Portable];

    /// Lower-case name as used by `ALEXNET_ISA` and `--isa`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Neon => "neon",
            Isa::Portable => "portable",
        }
    }

    /// Parse a name (`avx512`, `avx2`, `neon`, `portable`).
    pub fn parse(name: &str) -> Result<Isa> {
        Isa::ALL
            .into_iter()
            .find(|i| i.name() == name.trim().to_ascii_lowercase())
            .ok_or_else(|| Error::UnknownIsa(name.into()))
    }

    /// True when this CPU can run the ISA's kernels.
    pub fn is_supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            Isa::Portable => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The best ISA this CPU supports.
    pub fn detect() -> Isa {
        Isa::ALL.into_iter().find(|i| i.is_supported()).unwrap_or(Isa::Portable)
    }

    /// Check that `self` runs here.
    pub fn require(self) -> Result<Isa> {
        if self.is_supported() {
            Ok(self)
        } else {
            Err(Error::UnsupportedIsa(self.name()))
        }
    }

    /// `ALEXNET_ISA` if set (checked against the CPU), else [`Isa::detect`].
    pub fn from_env() -> Result<Isa> {
        match std::env::var("ALEXNET_ISA") {
            Ok(v) if !v.trim().is_empty() => Isa::parse(&v)?.require(),
            _ => Ok(Isa::detect()),
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for isa in Isa::ALL {
            assert_eq!(Isa::parse(isa.name()).unwrap(), isa);
        }
        assert!(matches!(Isa::parse("sse9"), Err(Error::UnknownIsa(_))));
        assert!(Isa::detect().is_supported());
        assert!(Isa::Portable.require().is_ok());
    }
}
