//! Portable (`wide`): a 4 x 8 tile (4 rows x 1 eight-lane vector).
//!
//! Sized for the worst case it must run well on, SSE2's 16 xmm registers (a `wide`
//! f32x8 is two xmm there): 8 for accumulators, 2 for B, 2 for the broadcast. NR is a
//! single vector, so there is no narrower tile.

use super::{MicroKernel, Tile};
use crate::cpu::Portable;

impl MicroKernel for Portable {
    type Full = Tile<4, 1>;
    type Narrow = Tile<4, 1>;
    type Short = Tile<4, 1>;
    type ShortNarrow = Tile<4, 1>;
}
