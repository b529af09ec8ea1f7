//! The int8 GEMM: `C = dequant(A B)` with A's int8 codes in quad panels
//! ([`PackedI8`]), B's `u8` codes (one image's, quantized by its [`ActParams`]) packed
//! into quads by a [`PackQuads`] source, sums exact in i32 (`kernel::i8`), and the store
//! dequantizing by [`crate::quant`]'s rule. The model's int8 convolutions run here.
//!
//! K is never sliced (an i32 sum must not pass through f32 halfway): B is packed in
//! blocks of whole-K panels sized for L2, and A rows in blocks that stay in L2 with
//! them. Threads split M or N by the f32 driver's `best_cut`, never K; the sums are
//! integers, so results are bitwise identical for any thread count and any ISA.

use super::kernel::i8::{self as k8, Dequant, Kernel, MR, NR};
use super::{split_tasks, BlockSizes};
use crate::base::mat::MatMut;
use crate::base::scratch::{self, Scratch};
use crate::quant::ActParams;

/// Bytes of packed B per block (its panels over the whole K), for L2.
const B_BLOCK_BYTES: usize = 384 << 10;
/// Bytes of A per row block, for L2 beside B's block.
const A_BLOCK_BYTES: usize = 256 << 10;
/// Packing a panel of byte quads costs about this many tiles.
const PACK_COST_IN_TILES: f64 = 1.0;

thread_local! {
    /// Each thread's block of B as `u8` quads (`u32`s in an f32 buffer).
    pub(crate) static PACK_QUADS: Scratch = const { crate::base::scratch::new_scratch!() };
}

/// A `k x n` matrix of `u8` codes that packs itself into [`NR`]-column panels of byte
/// quads.
pub trait PackQuads: Sync {
    /// Write columns `j0..j1` over the whole K as panels into `out`: panel `q` (columns
    /// `j0 + q*NR ..`) at `out[q * kq * NR ..]` with `kq = k.div_ceil(4)`, quad `p` of it
    /// `NR` values, value `c` holding rows `4p .. 4p + 3` of column `c` (low byte first);
    /// rows past `k` and columns past `j1` are zero.
    fn pack(&self, k: usize, j0: usize, j1: usize, out: &mut [u32]);
}

/// A row-major `k x n` matrix of codes with leading dimension `ld`.
#[derive(Clone, Copy, Debug)]
pub struct RowMajorU8<'a> {
    /// The codes.
    pub data: &'a [u8],
    /// Leading dimension.
    pub ld: usize,
}

impl PackQuads for RowMajorU8<'_> {
    fn pack(&self, k: usize, j0: usize, j1: usize, out: &mut [u32]) {
        let kq = k.div_ceil(4);
        for (q, j) in (j0..j1).step_by(NR).enumerate() {
            let w = NR.min(j1 - j);
            for p in 0..kq {
                // The quad's four rows (an empty row past k), each the panel's w columns.
                let rows: [&[u8]; 4] = std::array::from_fn(|t| match 4 * p + t {
                    r if r < k => &self.data[r * self.ld + j..r * self.ld + j + w],
                    _ => &[],
                });
                let dst = &mut out[(q * kq + p) * NR..(q * kq + p + 1) * NR];
                for (c, d) in dst.iter_mut().enumerate() {
                    *d = u32::from_le_bytes(rows.map(|r| r.get(c).copied().unwrap_or(0)));
                }
            }
        }
    }
}

/// Conv weights as int8 codes for the int8 GEMM: `m x k`, in [`MR`]-row panels of `k / 4`
/// (rounded up) quads, zero past `m` and `k`; with each row's scale and code sum.
#[derive(Clone, Debug)]
pub struct PackedI8 {
    m: usize,
    k: usize,
    panels: Vec<u32>,
    scales: Vec<f32>,
    sums: Vec<i32>,
    /// Every code lies in `[-SMALL_CODE, SMALL_CODE]` ([`Kernel::for_weights`]).
    small: bool,
}

impl PackedI8 {
    /// Pack row-major `m x k` codes with their per-row `scales`.
    ///
    /// # Panics
    /// If `codes` or `scales` is too short (caller bugs).
    pub fn pack(codes: &[i8], scales: &[f32], m: usize, k: usize) -> PackedI8 {
        assert!(codes.len() >= m * k && scales.len() >= m, "int8 weights too short");
        let kq = k.div_ceil(4);
        let mut panels = vec![0u32; m.div_ceil(MR) * kq * MR];
        for r in 0..m {
            let (panel, i) = (r / MR, r % MR);
            for (p, quad) in codes[r * k..(r + 1) * k].chunks(4).enumerate() {
                let mut bytes = [0u8; 4];
                for (b, &c) in bytes.iter_mut().zip(quad) {
                    *b = c as u8;
                }
                panels[(panel * kq + p) * MR + i] = u32::from_le_bytes(bytes);
            }
        }
        let sums = crate::quant::row_sums(codes, m, k);
        let small = codes[..m * k].iter().all(|c| c.unsigned_abs() <= k8::SMALL_CODE as u8);
        PackedI8 { m, k, panels, scales: scales[..m].to_vec(), sums, small }
    }

    /// Whether every code lies in `[-SMALL_CODE, SMALL_CODE]` (7-bit weights, as
    /// quantizers write them for CPUs without VNNI), so that [`Kernel::for_weights`] may
    /// multiply the bytes as they are.
    pub fn small(&self) -> bool {
        self.small
    }

    fn panel(&self, p: usize) -> &[u32] {
        let len = self.k.div_ceil(4) * MR;
        &self.panels[p * len..(p + 1) * len]
    }
}

/// What the store applies: the image's activation parameters, bias, ReLU.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    /// How B was quantized (scale and zero point).
    pub act: ActParams,
    /// One value per row of C.
    pub bias: &'a [f32],
    /// ReLU after the bias.
    pub relu: bool,
}

/// `C (m x n, leading dimension ldc) = dequant(A B)` with B from `b` (`k x n`) on `tasks`
/// threads of the current pool.
///
/// # Panics
/// If `c` or the bias is too short (caller bugs).
#[allow(clippy::too_many_arguments)]
pub fn gemm<B: PackQuads>(
    kern: Kernel,
    a: &PackedI8,
    b: &B,
    n: usize,
    c: &mut [f32],
    ldc: usize,
    ep: Epilogue<'_>,
    tasks: usize,
) {
    assert!(ep.bias.len() >= a.m, "int8 bias too short");
    let kern = kern.for_weights(a.small);
    let view = MatMut::new(c, a.m, n, ldc);
    let cost = (BLOCKS, NR / 2, PACK_COST_IN_TILES);
    split_tasks(cost, view, (0, 0), tasks.max(1), &|c, at| serial(kern, a, b, c, at, ep));
}

/// The tile, for the thread split (only MR and NR matter to it).
const BLOCKS: BlockSizes = BlockSizes { mr: MR, nr: NR, mc: MR, kc: 1, nc: NR };

/// One thread's block of C: rows `i0..`, columns `j0..` of the whole.
fn serial<B: PackQuads>(
    kern: Kernel,
    a: &PackedI8,
    b: &B,
    mut c: MatMut<'_>,
    (i0, j0): (usize, usize),
    ep: Epilogue<'_>,
) {
    let (m, n, k) = (c.rows(), c.cols(), a.k);
    if m == 0 || n == 0 {
        return;
    }
    crate::base::census::work(super::flops(m, n, k));
    let kq = k.div_ceil(4);
    let panel_len = kq * NR;
    // Panels per B block and A rows per block, whole panels, at least one.
    let nc = (B_BLOCK_BYTES / (4 * panel_len).max(1)).max(1) * NR;
    let mc = (A_BLOCK_BYTES / (4 * kq * MR).max(1)).max(1) * MR;
    let cols = nc.min(n.next_multiple_of(NR));
    // After B's block, room for one A panel in the kernel's layout if it is not the
    // packed one (widened once per panel and B block, not per tile).
    let wide_len = if kern.a_words() > 1 { kq * MR * kern.a_words() } else { 0 };
    scratch::with(&PACK_QUADS, cols / NR * panel_len + wide_len, |buf| {
        let (quads, wide): (&mut [u32], _) = bytemuck::cast_slice_mut::<f32, u32>(buf).split_at_mut(cols / NR * panel_len);
        let mut zero_term = [0i32; MR];
        let mut scale = [0.0f32; MR];
        let mut bias = [0.0f32; MR];
        for jc in (0..n).step_by(nc) {
            let ncur = nc.min(n - jc);
            let panels = ncur.div_ceil(NR);
            b.pack(k, j0 + jc, j0 + jc + ncur, &mut quads[..panels * panel_len]);
                for ic in (0..m).step_by(mc) {
                    let mcur = mc.min(m - ic);
                    // One A panel against every B panel of the block, its dequantization
                    // terms computed once. At a small K (conv1's 396) the A panel and each
                    // B panel fit in L1 together; at conv2-5's the B panels are deeper than
                    // L1 and stream from L2 in either loop order.
                    for ir in (ic..ic + mcur).step_by(MR) {
                        let h = MR.min(m - ir);
                        let rows = i0 + ir..i0 + ir + h;
                        for (t, r) in rows.clone().enumerate() {
                            zero_term[t] = ep.act.zero * a.sums[r];
                            scale[t] = a.scales[r] * ep.act.scale;
                        }
                        bias[..h].copy_from_slice(&ep.bias[rows]);
                        let dq = Dequant { zero_term: &zero_term, scale: &scale, bias: &bias, relu: ep.relu };
                        let ap = k8::panel_for(kern, a.panel((i0 + ir) / MR), wide);
                        for q in 0..panels {
                            let (jr, w) = (q * NR, NR.min(ncur - q * NR));
                            let bp = &quads[q * panel_len..(q + 1) * panel_len];
                            k8::run_tile(kern, kq, ap, bp, &mut c, (ir, jc + jr), (h, w), &dq);
                        }
                    }
                }
            }
    });
}
