//! SGEMM: `C = A B + bias`, optional ReLU, with A = weights, B = activations.
//!
//! Roles are fixed (see `style.md`): A is `M x K` row-major (OIHW weights), B is `K x N`
//! row-major (im2col of one image, N = OH*OW), C is `M x N` (CHW output).
//!
//! This is the first, simple driver: rows of C are split across the caller's rayon pool,
//! and each task sweeps K in cache-sized slices with an auto-vectorised row update.
//! Every element of C is accumulated in the same order (bias, then k = 0, 1, ...) whatever
//! the split, so results are bitwise identical for any thread count. The cache-blocked,
//! packed, hand-vectorised SGEMM replaces the inner loops later without changing this
//! contract.

pub mod reference;

use rayon::prelude::*;

/// What is applied as C is produced: per-row bias, then optional ReLU.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    /// One value per row of C.
    pub bias: &'a [f32],
    /// Clamp negatives to zero after the bias.
    pub relu: bool,
}

/// Rows of C per parallel task.
const ROWS_PER_TASK: usize = 8;
/// Columns of C updated together: one row slice of C stays in L1.
const NC: usize = 512;
/// Depth of the K slice: a `KC x NC` slice of B stays in L2.
const KC: usize = 256;

/// `C[m, n] = epilogue(A[m, k] B[k, n])`; all row-major and densely packed.
///
/// Runs on the current rayon pool (the model installs its own).
pub fn sgemm(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32], ep: Epilogue<'_>) {
    let (a, b, c) = (&a[..m * k], &b[..k * n], &mut c[..m * n]);
    let bias = &ep.bias[..m];
    c.par_chunks_mut(n * ROWS_PER_TASK).enumerate().for_each(|(t, c_rows)| {
        let i0 = t * ROWS_PER_TASK;
        for (r, c_row) in c_rows.chunks_mut(n).enumerate() {
            c_row.fill(bias[i0 + r]);
        }
        // jc: column slices of C; pc: K slices of B, reused by every row of this task.
        for j0 in (0..n).step_by(NC) {
            let j1 = (j0 + NC).min(n);
            for p0 in (0..k).step_by(KC) {
                let p1 = (p0 + KC).min(k);
                for (r, c_row) in c_rows.chunks_mut(n).enumerate() {
                    let a_row = &a[(i0 + r) * k..(i0 + r + 1) * k];
                    let c_seg = &mut c_row[j0..j1];
                    for p in p0..p1 {
                        let av = a_row[p];
                        let b_seg = &b[p * n + j0..p * n + j1];
                        for (cv, bv) in c_seg.iter_mut().zip(b_seg) {
                            *cv += av * bv;
                        }
                    }
                }
            }
        }
        if ep.relu {
            for v in c_rows.iter_mut() {
                *v = crate::ops::reference::relu1(*v);
            }
        }
    });
}
