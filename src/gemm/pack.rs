//! Packing: the layouts the micro-kernels read.
//!
//! **A (weights)** is packed once into MR-row panels over the whole K: panel `i` holds
//! rows `i*MR .. i*MR+MR`, column by column (`MR` consecutive values per k), zero rows
//! padding the last panel. A K slice `[p0, p1)` of a panel is then one contiguous run.
//!
//! **B (activations)** is packed per call, per `KC x NC` block, into NR-column panels:
//! for each k, `NR` consecutive values, zero columns padding the last panel. Any B source
//! implements [`PackB`]: a row-major matrix, or im2col of an image (in `ops`). A
//! row-major matrix also offers itself as it is ([`PackB::direct`]): the kernels take B
//! at any row stride, so the driver may read its whole panels in place.

use crate::base::copy::copy_short;

/// Weights packed into MR-row panels over the whole K.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PackedA {
    mr: usize,
    m: usize,
    k: usize,
    data: Vec<f32>,
    /// The same panels as bf16 pairs once [`PackedA::into_bf16`] has run (then `data`
    /// is empty): per pair of k steps `mr` values, row r's k = 2p in the low half and
    /// 2p + 1 in the high half, a last odd k paired with zero.
    pairs: Vec<u32>,
    /// MC, KC and NC chosen for these weights ([`PackedA::set_blocks`]), if any.
    blocks: Option<[usize; 3]>,
}

impl PackedA {
    /// Pack the row-major `m x k` matrix `a` (leading dimension `k`) into `mr`-row panels.
    pub fn pack(a: &[f32], m: usize, k: usize, mr: usize) -> PackedA {
        let mut packed = PackedA::default();
        packed.repack(a, m, k, mr);
        packed
    }

    /// [`PackedA::pack`] into this value's storage, reusing its allocation: no allocation
    /// once it has held a matrix at least as large.
    pub fn repack(&mut self, a: &[f32], m: usize, k: usize, mr: usize) {
        let panels = m.div_ceil(mr);
        self.pairs = Vec::new();
        self.data.clear();
        self.data.resize(panels * mr * k, 0.0);
        for (pi, panel) in self.data.chunks_exact_mut(mr * k.max(1)).enumerate().take(panels) {
            // Written in order, read from the panel's rows side by side (a scatter down
            // the panel, row by row, wrote to a new cache line nearly every value).
            let rows = &a[pi * mr * k..];
            let h = mr.min(m - pi * mr);
            for (p, col) in panel.chunks_exact_mut(mr).enumerate() {
                for (r, x) in col.iter_mut().enumerate().take(h) {
                    *x = rows[r * k + p];
                }
            }
        }
        (self.mr, self.m, self.k) = (mr, m, k);
    }

    /// An `m x k` matrix of zeros in `mr`-row panels, to be filled through
    /// [`PackedA::panels_mut`].
    pub(crate) fn zeroed(m: usize, k: usize, mr: usize) -> PackedA {
        PackedA { mr, m, k, data: vec![0.0; m.div_ceil(mr) * mr * k], pairs: Vec::new(), blocks: None }
    }

    /// The panels, in order: panel `pi` holds rows `pi * mr ..`, value `(r, p)` at
    /// `p * mr + r`.
    pub(crate) fn panels_mut(&mut self) -> std::slice::ChunksExactMut<'_, f32> {
        self.data.chunks_exact_mut((self.mr * self.k).max(1))
    }

    /// The panels as bf16 pairs for the bf16 kernel (each value rounded to nearest even),
    /// in place of the f32 ones.
    pub fn into_bf16(mut self) -> PackedA {
        use crate::weights::format::bf16_from_f32;
        if self.is_bf16() {
            return self;
        }
        let (mr, kp) = (self.mr, self.k.div_ceil(2));
        let panels = self.m.div_ceil(mr);
        let mut pairs = vec![0u32; panels * mr * kp];
        for (pi, out) in pairs.chunks_exact_mut((mr * kp).max(1)).enumerate().take(panels) {
            let panel = &self.data[pi * mr * self.k..(pi + 1) * mr * self.k];
            for (p, run) in out.chunks_exact_mut(mr).enumerate() {
                for (r, x) in run.iter_mut().enumerate() {
                    let lo = bf16_from_f32(panel[2 * p * mr + r]) as u32;
                    let hi = panel.get((2 * p + 1) * mr + r).map_or(0, |&v| bf16_from_f32(v) as u32);
                    *x = lo | hi << 16;
                }
            }
        }
        self.data = Vec::new();
        self.pairs = pairs;
        self
    }

    /// Whether the panels are bf16 pairs ([`PackedA::into_bf16`]).
    pub fn is_bf16(&self) -> bool {
        !self.pairs.is_empty()
    }

    /// Pairs `[q0, q1)` of panel `pi` in bf16 form: `mr * (q1 - q0)` values (for the
    /// bf16 GEMM, which exists on x86-64 only).
    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub(crate) fn pair_panel(&self, pi: usize, q0: usize, q1: usize) -> &[u32] {
        let base = pi * self.mr * self.k.div_ceil(2);
        &self.pairs[base + q0 * self.mr..base + q1 * self.mr]
    }

    /// Run products with these weights at MC, KC and NC `blocks` (the model's
    /// [`crate::tuning::Tuning`]) instead of the process's default. The f32 kernels only:
    /// the bf16 kernel keeps its own blocks.
    pub fn set_blocks(&mut self, blocks: [usize; 3]) {
        self.blocks = Some(blocks);
    }

    /// The blocks [`PackedA::set_blocks`] chose, if it ran.
    pub fn blocks(&self) -> Option<[usize; 3]> {
        self.blocks
    }

    /// Panel height.
    pub fn mr(&self) -> usize {
        self.mr
    }
    /// Logical rows.
    pub fn m(&self) -> usize {
        self.m
    }
    /// Logical columns (depth).
    pub fn k(&self) -> usize {
        self.k
    }

    /// The K slice `[p0, p1)` of panel `pi`: `mr * (p1 - p0)` values.
    #[inline]
    pub(crate) fn panel(&self, pi: usize, p0: usize, p1: usize) -> &[f32] {
        let base = pi * self.mr * self.k;
        &self.data[base + p0 * self.mr..base + p1 * self.mr]
    }
}

/// A source of B (`K x N`) that can write packed NR-column panels of any block of itself.
pub trait PackB: Sync {
    /// Write the block rows `k0..k1`, columns `j0..j1` of B as NR-column panels into
    /// `out`: panel `q` (columns `j0 + q*nr ..`) at `out[q*nr*(k1-k0) ..]`, each k row of
    /// it `nr` consecutive values; columns past `j1` are zero. `out` holds at least
    /// `ceil((j1-j0)/nr) * nr * (k1-k0)` values.
    fn pack(&self, k0: usize, k1: usize, j0: usize, j1: usize, nr: usize, out: &mut [f32]);

    /// Packing one NR-column panel over K costs about this many MR x NR micro-tiles over
    /// the same K. The driver weighs it when it splits C between threads: every thread
    /// packs the columns of its own block, so an M split packs B once per thread.
    const PACK_COST_IN_TILES: f64;

    /// The source as a row-major matrix `(values, leading dimension)`, if it is one: its
    /// whole panels can then be read in place (row `k` of columns `j..` at `values[k * ld +
    /// j..]`) instead of packed.
    fn direct(&self) -> Option<(&[f32], usize)> {
        None
    }
}

/// A row-major `K x N` matrix with leading dimension `ld`.
#[derive(Clone, Copy, Debug)]
pub struct RowMajor<'a> {
    /// The values.
    pub data: &'a [f32],
    /// Distance between rows.
    pub ld: usize,
}

impl PackB for RowMajor<'_> {
    /// Row by row: each source row segment is read once, sequentially, and dealt out to
    /// the panels (walking a panel down all rows would touch a new page nearly every read).
    const PACK_COST_IN_TILES: f64 = 1.25;

    fn direct(&self) -> Option<(&[f32], usize)> {
        Some((self.data, self.ld))
    }

    fn pack(&self, k0: usize, k1: usize, j0: usize, j1: usize, nr: usize, out: &mut [f32]) {
        // Each kernel's width as a constant: the panel loop then compiles to whole vector
        // moves (with the width a run-time value every chunk went through a generic copy).
        match nr {
            8 => self.pack_rows(k0, k1, j0, j1, 8, out),
            12 => self.pack_rows(k0, k1, j0, j1, 12, out),
            16 => self.pack_rows(k0, k1, j0, j1, 16, out),
            32 => self.pack_rows(k0, k1, j0, j1, 32, out),
            _ => self.pack_rows(k0, k1, j0, j1, nr, out),
        }
    }
}

impl RowMajor<'_> {
    /// [`PackB::pack`], inlined into each call of it with `nr` a constant.
    #[inline(always)]
    fn pack_rows(&self, k0: usize, k1: usize, j0: usize, j1: usize, nr: usize, out: &mut [f32]) {
        let kc = k1 - k0;
        for p in 0..kc {
            let src = &self.data[(k0 + p) * self.ld + j0..(k0 + p) * self.ld + j1];
            // Touch the next row's segment (one prefetch per 64-byte line) while this one is
            // dealt out: each segment is a fresh short stream that the hardware prefetcher
            // would only pick up after a few misses.
            let next = (k0 + p + 1) * self.ld;
            for x in self.data.get(next + j0..next + j1).unwrap_or(&[]).iter().step_by(16) {
                crate::simd::prefetch_read(x);
            }
            for (q, part) in src.chunks(nr).enumerate() {
                let dst = &mut out[(q * kc + p) * nr..(q * kc + p + 1) * nr];
                copy_short(&mut dst[..part.len()], part);
                dst[part.len()..].fill(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_major_packs_panels_of_any_width() {
        // Every kernel's width (packed with it as a constant) and widths no kernel has;
        // blocks that start inside the matrix and end in a ragged panel.
        let (k, n, ld) = (7, 45, 47);
        let data: Vec<f32> = (0..k * ld).map(|i| i as f32).collect();
        let b = RowMajor { data: &data, ld };
        for nr in [1usize, 3, 8, 12, 16, 32, 5, 24] {
            for (k0, k1, j0, j1) in [(0usize, k, 0usize, n), (2, 5, 3, 40), (1, 2, 44, 45)] {
                let (kc, panels) = (k1 - k0, (j1 - j0).div_ceil(nr));
                let mut out = vec![f32::NAN; panels * nr * kc];
                b.pack(k0, k1, j0, j1, nr, &mut out);
                for q in 0..panels {
                    for p in 0..kc {
                        for c in 0..nr {
                            let j = j0 + q * nr + c;
                            let want = if j < j1 { data[(k0 + p) * ld + j] } else { 0.0 };
                            assert_eq!(out[(q * kc + p) * nr + c], want, "nr {nr} block {k0}..{k1} x {j0}..{j1}");
                        }
                    }
                }
            }
        }
    }
}
