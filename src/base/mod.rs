//! The shared base every compute layer stands on: the splittable view of an output
//! matrix ([`mat`]), task splitting ([`split`]) and its census ([`census`]), per-thread scratch ([`scratch`]), short
//! copies ([`copy`]) and the scalar rules that kernels apply lane by lane ([`scalar`]).
//!
//! It imports nothing but `std` and `wide`; `simd`, `gemm`, `ops` and `model` build on it.
//! The scalar references (`crate::reference`) deliberately do not: an oracle that shared
//! these helpers with the code it checks would share its mistakes.

pub mod census;
pub mod copy;
pub mod mat;
pub mod scalar;
pub mod scratch;
pub mod split;
