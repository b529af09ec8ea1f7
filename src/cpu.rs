//! Instruction sets: what this CPU runs, detected once, and the tokens that prove it.
//!
//! [`Isa`] names a kernel family (public: `ModelBuilder::isa`, `ALEXNET_ISA`). A token
//! ([`Avx512`], [`Avx2`], `Neon`, [`Portable`]) is a zero-sized value that only a
//! successful feature check can make, so code holding one may run that family's
//! instructions; [`Cpu`] is the token chosen for a model, carried by it and passed down
//! to every kernel. Nothing below the model detects anything, and forcing an ISA the
//! CPU lacks is an error, never an illegal instruction.

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
            // The AVX-512 kernels use AVX2 vectors too (Winograd's 8-tile runs); every
            // AVX-512 CPU has AVX2 and FMA, but the check says so rather than assume it.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f") && Isa::Avx2.is_supported(),
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

/// Proof that this CPU runs AVX-512F (and AVX2 + FMA). Made only by [`Avx512::new`].
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug)]
pub struct Avx512(());

/// Proof that this CPU runs AVX2 and FMA. Made only by [`Avx2::new`].
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug)]
pub struct Avx2(());

/// Proof that this CPU runs NEON. Made only by [`Neon::new`].
#[cfg(target_arch = "aarch64")]
#[derive(Clone, Copy, Debug)]
pub struct Neon(());

/// The portable family: needs no check (it uses only what the build targets).
#[derive(Clone, Copy, Debug, Default)]
pub struct Portable;

#[cfg(target_arch = "x86_64")]
impl Avx512 {
    /// The token, if the CPU has AVX-512F, AVX2 and FMA.
    pub fn new() -> Option<Self> {
        Isa::Avx512.is_supported().then_some(Avx512(()))
    }

    /// The AVX2 token this one implies (`new` checked AVX2 and FMA too).
    pub fn avx2(self) -> Avx2 {
        Avx2(())
    }
}

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    /// The token, if the CPU has AVX2 and FMA.
    pub fn new() -> Option<Self> {
        Isa::Avx2.is_supported().then_some(Avx2(()))
    }
}

#[cfg(target_arch = "aarch64")]
impl Neon {
    /// The token, if the CPU has NEON.
    pub fn new() -> Option<Self> {
        Isa::Neon.is_supported().then_some(Neon(()))
    }
}

/// The token of the ISA a model runs: one variant per family this build knows. Code
/// generic over the family is reached through `dispatch!`, the
/// crate's one `match` on it.
#[derive(Clone, Copy, Debug)]
pub enum Cpu {
    /// AVX-512F.
    #[cfg(target_arch = "x86_64")]
    Avx512(Avx512),
    /// AVX2 + FMA.
    #[cfg(target_arch = "x86_64")]
    Avx2(Avx2),
    /// NEON.
    #[cfg(target_arch = "aarch64")]
    Neon(Neon),
    /// Portable (`wide`).
    Portable(Portable),
}

impl Cpu {
    /// The token of `isa`, if this CPU runs it.
    pub fn new(isa: Isa) -> Result<Cpu> {
        let missing = Error::UnsupportedIsa(isa.name());
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Avx512::new().map(Cpu::Avx512).ok_or(missing),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Avx2::new().map(Cpu::Avx2).ok_or(missing),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => Neon::new().map(Cpu::Neon).ok_or(missing),
            Isa::Portable => Ok(Cpu::Portable(Portable)),
            #[allow(unreachable_patterns)]
            _ => Err(missing),
        }
    }

    /// The tokens of every ISA this CPU runs, best first.
    #[cfg(any(test, feature = "internals"))]
    pub fn all() -> Vec<Cpu> {
        Isa::ALL.into_iter().filter_map(|i| Cpu::new(i).ok()).collect()
    }

    /// The ISA.
    pub fn isa(self) -> Isa {
        match self {
            #[cfg(target_arch = "x86_64")]
            Cpu::Avx512(_) => Isa::Avx512,
            #[cfg(target_arch = "x86_64")]
            Cpu::Avx2(_) => Isa::Avx2,
            #[cfg(target_arch = "aarch64")]
            Cpu::Neon(_) => Isa::Neon,
            Cpu::Portable(_) => Isa::Portable,
        }
    }
}

/// `dispatch!(cpu, t => body)`: evaluate `body` with `t` bound to the token inside `cpu`,
/// as its own static type, so that `body` may call code generic over any trait the
/// tokens implement (`simd::Simd`, `gemm::MicroKernel`) and is monomorphised per ISA.
/// The one `match` on [`Cpu`] in the crate: a new ISA adds one arm here.
macro_rules! dispatch {
    ($cpu:expr, $t:ident => $body:expr) => {
        match $cpu {
            #[cfg(target_arch = "x86_64")]
            $crate::cpu::Cpu::Avx512($t) => $body,
            #[cfg(target_arch = "x86_64")]
            $crate::cpu::Cpu::Avx2($t) => $body,
            #[cfg(target_arch = "aarch64")]
            $crate::cpu::Cpu::Neon($t) => $body,
            $crate::cpu::Cpu::Portable($t) => $body,
        }
    };
}
pub(crate) use dispatch;

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

    #[test]
    fn tokens_exist_exactly_for_supported_isas() {
        for isa in Isa::ALL {
            assert_eq!(Cpu::new(isa).is_ok(), isa.is_supported(), "{isa}");
        }
        assert!(Cpu::all().iter().all(|c| c.isa().is_supported()));
    }
}
