//! NEON: an 8 x 12 tile (8 rows x 3 q registers).
//!
//! 24 accumulators + 3 of B + 1 broadcast = 28 of the 32 registers. Per k step: 3 vector
//! loads, 8 broadcasts, 24 FMAs.

use super::{MicroKernel, Tile};
use crate::cpu::Neon;

impl MicroKernel for Neon {
    type Full = Tile<8, 3>;
    type Narrow = Tile<8, 1>;
    type Short = Tile<8, 3>;
    type ShortNarrow = Tile<8, 1>;
}
