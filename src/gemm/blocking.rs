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
