//! The bf16 GEMM: `C = epilogue(A B)` with A's panels in bf16 pairs
//! ([`PackedA::into_bf16`]), B rounded to bf16 as it is packed, products summed in f32
//! by `vdpbf16ps` (`kernel::bf16`). The model's bf16 convolutions run here on CPUs with
//! AVX512_BF16; elsewhere their bf16-rounded weights run the f32 kernels.
//!
//! The loops are the f32 driver's (jc, pc, ic, jr, ir; see [`super`]), simpler: every B
//! block is packed (through the f32 packer, then rounded into pairs), partial tiles are
//! stored with masks, and threads split M or N by the same `best_cut` as the f32 driver, never K, so
//! results are bitwise identical for any thread count.

use super::kernel::bf16::{self as k16, Avx512Bf16, MR, NARROW_NR, NR};
use super::{balanced_kc, split_tasks, store_bias_only, Bias, BlockSizes, Epilogue, PackB, PackedA};
use crate::base::mat::MatMut;
use crate::base::scratch::{self, Scratch};
use crate::cpu::Cpu;

/// Rows of A per L2-resident block (120 x 512 bf16: 120 KiB).
const MC: usize = 120;
/// Depth of a K slice, even: a 32-column B micro-panel is 32 KiB, in L1; AlexNet's
/// convolutions (K = 48 .. 384 in Winograd's products, 363 for conv1) run one slice.
const KC: usize = 512;
/// Columns of B per packed block (512 x 512 bf16: 512 KiB, in L2).
const NC: usize = 512;
/// The blocks, for the thread split.
const BLOCKS: BlockSizes = BlockSizes { mr: MR, nr: NR, mc: MC, kc: KC, nc: NC };
/// Packing a panel (the f32 pack, then rounding into pairs) costs about this many tiles.
const PACK_COST_IN_TILES: f64 = 1.5;

thread_local! {
    /// Each thread's f32 pack of a B block, before rounding.
    pub(crate) static PACK_F32: Scratch = const { crate::base::scratch::new_scratch!() };
    /// Each thread's B block as bf16 pairs (`u32`s in an f32 buffer).
    pub(crate) static PACK_PAIRS: Scratch = const { crate::base::scratch::new_scratch!() };
}

/// Whether `cpu` runs the bf16 kernel: an AVX-512 model on a CPU with AVX512_BF16.
pub fn supported(cpu: Cpu) -> bool {
    matches!(cpu, Cpu::Avx512(_)) && Avx512Bf16::new().is_some()
}

/// [`super::sgemm_view`] for an A in bf16 pairs.
///
/// # Panics
/// If the CPU lacks AVX512_BF16 (a caller bug: such an A is made only where
/// [`supported`] holds) or A's panels are not [`MR`] rows.
pub(super) fn sgemm_view<B: PackB>(a: &PackedA, b: &B, c: MatMut<'_>, ep: Epilogue<'_>, tasks: usize) {
    let tok = Avx512Bf16::new().expect("bf16 weights on a CPU without AVX512_BF16");
    assert_eq!(a.mr(), MR, "A packed for another kernel");
    let cost = (BLOCKS, NARROW_NR, PACK_COST_IN_TILES);
    split_tasks(cost, c, (0, 0), tasks, &|c, at| serial(tok, a, b, c, at, ep));
}

/// The five loops over one thread's block of C: rows `i0..`, columns `j0..` of the whole.
fn serial<B: PackB>(
    tok: Avx512Bf16,
    a: &PackedA,
    b: &B,
    mut c: MatMut<'_>,
    (i0, j0): (usize, usize),
    ep: Epilogue<'_>,
) {
    let (m, n, k) = (c.rows(), c.cols(), a.k());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        return store_bias_only(&mut c, i0, j0, ep);
    }
    crate::base::census::work(super::flops(m, n, k));
    // Slices of whole pairs, so that every slice but the last starts on one.
    let kc = balanced_kc(k, KC).next_multiple_of(2);
    let cols = NC.min(n.next_multiple_of(NR));
    scratch::with(&PACK_F32, cols * kc.min(k), |f32s| {
        scratch::with(&PACK_PAIRS, cols * kc.min(k).div_ceil(2), |buf| {
            let pairs: &mut [u32] = bytemuck::cast_slice_mut(buf);
            let mut rbias = [0.0f32; MR];
            let mut cbias = [0.0f32; NR];
            for jc in (0..n).step_by(NC) {
                let ncur = NC.min(n - jc);
                let panels = ncur.div_ceil(NR);
                for pc in (0..k).step_by(kc) {
                    let kcur = kc.min(k - pc);
                    let kp = kcur.div_ceil(2);
                    let (first, relu) = (pc == 0, ep.relu && pc + kcur == k);
                    b.pack(pc, pc + kcur, j0 + jc, j0 + jc + ncur, NR, f32s);
                    for q in 0..panels {
                        let src = &f32s[q * NR * kcur..(q + 1) * NR * kcur];
                        k16::pairs(tok, src, kcur, &mut pairs[q * NR * kp..(q + 1) * NR * kp]);
                    }
                    for ic in (0..m).step_by(MC) {
                        let mcur = MC.min(m - ic);
                        for jr in (0..ncur).step_by(NR) {
                            let w = NR.min(ncur - jr);
                            let bp = &pairs[(jr / NR) * NR * kp..(jr / NR + 1) * NR * kp];
                            let col_bias = match ep.bias {
                                Bias::Col(cb) if first => {
                                    let at = j0 + jc + jr;
                                    cbias[..w].copy_from_slice(&cb[at..at + w]);
                                    Some(&cbias[..w])
                                }
                                _ => None,
                            };
                            for ir in (ic..ic + mcur).step_by(MR) {
                                let h = MR.min(m - ir);
                                let ap = a.pair_panel((i0 + ir) / MR, pc / 2, pc / 2 + kp);
                                let row_bias = match ep.bias {
                                    Bias::Row(rb) if first => {
                                        rbias[..h].copy_from_slice(&rb[i0 + ir..i0 + ir + h]);
                                        Some(&rbias[..h])
                                    }
                                    _ => None,
                                };
                                let st = k16::Store { first, relu, row_bias, col_bias };
                                k16::run_tile(tok, kp, ap, bp, &mut c, (ir, jc + jr), (h, w), &st);
                            }
                        }
                    }
                }
            }
        })
    });
}
