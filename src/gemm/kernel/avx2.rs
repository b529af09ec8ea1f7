//! AVX2 + FMA: a 6 x 16 tile (6 rows x 2 ymm).
//!
//! 12 ymm accumulators + 2 ymm of B + 1 broadcast = 15 of the 16 registers. Per k step:
//! 2 vector loads, 6 broadcasts, 12 FMAs. The k step is short, so B is always packed
//! (rows read in place stall it) and there is no edge kernel (`MR` is close to its 4).

use super::{MicroKernel, Tile};
use crate::cpu::Avx2;

impl MicroKernel for Avx2 {
    type Full = Tile<6, 2>;
    type Narrow = Tile<6, 1>;
    type Short = Tile<6, 2>;
    type ShortNarrow = Tile<6, 1>;
}
