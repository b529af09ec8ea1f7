//! AVX2 + FMA: a 6 x 16 tile (6 rows x 2 ymm).
//!
//! 12 ymm accumulators + 2 ymm of B + 1 broadcast = 15 of the 16 registers. Per k step:
//! 2 vector loads, 6 broadcasts, 12 FMAs. The k step is short, so B is always packed
//! (rows read in place stall it) and there is no edge kernel (`MR` is close to its 4).
//!
//! The short tiles have 4 rows: AlexNet's M values end in a panel of 2 rows (128 =
//! 21 x 6 + 2) or 4 (64 and 256 in torchvision's network), which a 6-row tile would
//! compute with 4 or 2 rows of zeros. 4 rows x 2 ymm still keep 8 FMA chains in flight,
//! as many as the two FMA pipes of 4-cycle latency need.

use super::{MicroKernel, Tile};
use crate::cpu::Avx2;

impl MicroKernel for Avx2 {
    type Full = Tile<6, 2>;
    type Narrow = Tile<6, 1>;
    type Short = Tile<4, 2>;
    type ShortNarrow = Tile<4, 1>;
}
