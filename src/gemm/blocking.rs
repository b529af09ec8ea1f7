//! Cache blocking: how big a slice of each operand each loop level keeps resident.
//!
//! With BLIS's loop order (jc, pc, ic, jr, ir), the `KC x NR` micro-panel of B is reused
//! by every MR-row micro-tile of an MC block, so it should sit in L1; the `MC x KC` block
//! of packed A is reused by every NR micro-panel of an NC block, so it should sit in L2;
//! the `KC x NC` packed block of B is reused by every MC block, so it should sit in L2/L3.

/// Block sizes of one kernel family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSizes {
    /// Rows of the micro-tile (A panel height).
    pub mr: usize,
    /// Columns of the micro-tile (B panel width).
    pub nr: usize,
    /// Rows of A per L2-resident block (multiple of `mr`).
    pub mc: usize,
    /// Depth of a K slice: `kc x nr` of B in L1, `mc x kc` of A in L2.
    pub kc: usize,
    /// Columns of B per packed block (multiple of `nr`): `kc x nc` in L2/L3.
    pub nc: usize,
}

/// The variable that forces the f32 kernels' MC, KC and NC for every product in the
/// process, `MC,KC,NC` (e.g. `120,384,512`): block sizes tried on a new CPU side by side
/// without a rebuild. MC is rounded up to whole MR panels and NC to whole NR panels; the
/// register tile stays the kernel's. KC sets where K is sliced, so results change in the
/// last bits with it (they stay the same for any thread count).
pub const BLOCKS_VAR: &str = "ALEXNET_GEMM_BLOCKS";

/// `MC,KC,NC` as [`BLOCKS_VAR`] takes them: three positive integers.
pub fn parse_blocks(s: &str) -> Option<[usize; 3]> {
    let mut it = s.split(',').map(|v| v.trim().parse::<usize>().ok().filter(|&v| v > 0));
    let blocks = [it.next()??, it.next()??, it.next()??];
    it.next().is_none().then_some(blocks)
}

/// [`BLOCKS_VAR`]'s sizes if it is set and valid, read once per process (opening a
/// model checks it: see [`check_forced`]).
pub fn forced() -> Option<[usize; 3]> {
    static FORCED: std::sync::OnceLock<Option<[usize; 3]>> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| std::env::var(BLOCKS_VAR).ok().and_then(|v| parse_blocks(&v)))
}

/// An error message if [`BLOCKS_VAR`] is set but not three positive integers.
pub fn check_forced() -> Result<(), String> {
    match std::env::var(BLOCKS_VAR) {
        Ok(v) if !v.trim().is_empty() && parse_blocks(&v).is_none() => {
            Err(format!("{BLOCKS_VAR}={v:?}: expected MC,KC,NC, three positive integers"))
        }
        _ => Ok(()),
    }
}

impl BlockSizes {
    /// An `mr x nr` tile with blocks MC, KC and NC (MC rounded up to whole MR panels, NC
    /// to whole NR panels).
    pub fn new(mr: usize, nr: usize, [mc, kc, nc]: [usize; 3]) -> BlockSizes {
        BlockSizes { mr, nr, mc: mc.next_multiple_of(mr), kc, nc: nc.next_multiple_of(nr) }
    }

    /// These sizes with MC, KC and NC replaced by `forced` as [`BlockSizes::new`] takes
    /// them, or unchanged.
    pub fn with(self, forced: Option<[usize; 3]>) -> BlockSizes {
        forced.map_or(self, |blocks| BlockSizes::new(self.mr, self.nr, blocks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_sizes_parse_and_round_to_whole_panels() {
        assert_eq!(parse_blocks("120,384,512"), Some([120, 384, 512]));
        assert_eq!(parse_blocks(" 60 , 192,256 "), Some([60, 192, 256]));
        for bad in ["", "120,384", "120,384,512,1", "0,384,512", "a,b,c", "-1,2,3", "1,,3"] {
            assert_eq!(parse_blocks(bad), None, "{bad:?}");
        }
        let b = BlockSizes { mr: 12, nr: 32, mc: 120, kc: 384, nc: 512 };
        assert_eq!(b.with(None), b);
        assert_eq!(b.with(Some([13, 7, 33])), BlockSizes { mr: 12, nr: 32, mc: 24, kc: 7, nc: 64 });
    }
}
