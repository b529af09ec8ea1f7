//! Fully connected layer, `y[n] = W x[n] + b`, read straight from the weight file.
//!
//! W (`[out, in]`, 96% of AlexNet's bytes) is never copied. At batch 1 a GEMV streams it
//! once, output rows split across the pool; the dot product keeps 16 partial sums
//! combined in a fixed order, so results do not depend on the split. At batch N the layer
//! is a GEMM `Y = X W^T` whose B operand packs panels straight from W in the map, so W is
//! still read once per call whatever the batch.

use rayon::prelude::*;

use super::reference::relu1;
use crate::gemm::{sgemm, Bias, Epilogue, Kernel, PackedA, Transposed};

/// Rows of W per parallel task.
const ROWS_PER_TASK: usize = 32;

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

/// Sum of a slice with 16 partial sums (auto-vectorised): a streaming-read probe.
pub fn sum(a: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let mut chunks = a.chunks_exact(16);
    for x in &mut chunks {
        for l in 0..16 {
            acc[l] += x[l];
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// Batch 1: `y [m] = relu?(W x + b)` with `w` `[m, k]` row-major, rows split across the
/// pool in fixed blocks; the kernel's GEMV streams 4 rows at a time, so W is read once,
/// straight from the map, by all threads.
#[allow(clippy::too_many_arguments)]
pub fn gemv(kernel: Kernel, x: &[f32], w: &[f32], b: &[f32], m: usize, k: usize, relu: bool, y: &mut [f32]) {
    y[..m].par_chunks_mut(ROWS_PER_TASK).enumerate().for_each(|(t, out)| {
        let r0 = t * ROWS_PER_TASK;
        kernel.gemv(&w[r0 * k..(r0 + out.len()) * k], k, &x[..k], out);
        for (o, &bias) in out.iter_mut().zip(&b[r0..]) {
            let v = *o + bias;
            *o = if relu { relu1(v) } else { v };
        }
    });
}

/// Batch N: `Y [batch, m] = relu?(X W^T + b)` as a GEMM with A = X (packed into `xa`, the
/// small operand) and B = W^T read straight from the weight file, bias per column.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    kernel: Kernel,
    x: &[f32],
    batch: usize,
    w: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    relu: bool,
    y: &mut [f32],
    xa: &mut PackedA,
) {
    xa.repack(&x[..batch * k], batch, k, kernel.blocks().mr);
    let ep = Epilogue { bias: Bias::Col(b), relu };
    sgemm(kernel, xa, &Transposed { data: w, ld: k }, m, &mut y[..batch * m], m, ep);
}
