//! AVX-512F: a 12 x 32 tile (12 rows x 2 zmm).
//!
//! 24 zmm accumulators + 2 zmm of B + 1 broadcast = 27 of the 32 registers. Per k step:
//! 2 vector loads, 12 scalar broadcasts, 24 FMAs; the FMA ports set the pace.
//!
//! Why 12 rows and not the 14 that would fill the register file: AlexNet's M values (96,
//! 128 per group, 384, 192) are multiples of 12 or close to them, where 14 wastes up to
//! 9% of every tile on zero rows (M = 128: 10 panels of 14 = 140 rows). M = 128 ends in a
//! panel of 8 rows, which the short tiles take. A k step of 24 FMAs is long enough to
//! hide loads of B's rows from wherever they lie, so a row-major B is read in place, and
//! the edge kernel takes a panel's last columns at 4 FMAs a step instead of 12.

use super::{MicroKernel, Tile};
use crate::cpu::Avx512;

impl MicroKernel for Avx512 {
    type Full = Tile<12, 2>;
    type Narrow = Tile<12, 1>;
    type Short = Tile<8, 2>;
    type ShortNarrow = Tile<8, 1>;
    const B_IN_PLACE: bool = true;
    const EDGE: bool = true;
}
