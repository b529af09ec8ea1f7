//! Fully connected layer, `y[n] = W x[n] + b`, read straight from the weight file.
//!
//! Output rows are split across the pool; each task reads its rows of W once and applies
//! each row to every image of the batch while it is in cache, so W (96% of AlexNet's
//! bytes) streams from the map once per call at any batch size. Tasks write `y`
//! transposed (`[m, batch]`, contiguous per task) into scratch, which is then transposed
//! into place; at batch 1 the two layouts coincide and no scratch is used. The dot product
//! keeps 16 partial sums combined in a fixed order, so results do not depend on the split.

use rayon::prelude::*;

use super::reference::relu1;

/// Rows of W per parallel task.
const ROWS_PER_TASK: usize = 16;

/// Dot product with 16 independent partial sums (auto-vectorised), reduced pairwise.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    let mut width = 16;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            acc[l] += acc[l + width];
        }
    }
    acc[0] + tail
}

/// `y [batch, m] = relu?(x [batch, k] W^T + b)` with `w` `[m, k]` row-major.
/// `scratch` holds at least `batch * m` values when `batch > 1`.
#[allow(clippy::too_many_arguments)]
pub fn linear(
    x: &[f32],
    batch: usize,
    w: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    relu: bool,
    y: &mut [f32],
    scratch: &mut [f32],
) {
    let yt: &mut [f32] = if batch == 1 { &mut y[..m] } else { &mut scratch[..m * batch] };
    yt.par_chunks_mut(ROWS_PER_TASK * batch).enumerate().for_each(|(t, block)| {
        let i0 = t * ROWS_PER_TASK;
        for (r, out) in block.chunks_mut(batch).enumerate() {
            let i = i0 + r;
            let row = &w[i * k..(i + 1) * k];
            for (n, o) in out.iter_mut().enumerate() {
                let v = b[i] + dot(row, &x[n * k..(n + 1) * k]);
                *o = if relu { relu1(v) } else { v };
            }
        }
    });
    if batch > 1 {
        for n in 0..batch {
            for i in 0..m {
                y[n * m + i] = scratch[i * batch + n];
            }
        }
    }
}
