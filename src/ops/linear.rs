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

/// Batch 1: `y [m] = relu?(W x + b)` with `w` `[m, k]` row-major, rows split across the
/// pool; W streams once from memory.
pub fn gemv(x: &[f32], w: &[f32], b: &[f32], m: usize, k: usize, relu: bool, y: &mut [f32]) {
    y[..m].par_chunks_mut(ROWS_PER_TASK).enumerate().for_each(|(t, out)| {
        for (r, o) in out.iter_mut().enumerate() {
            let i = t * ROWS_PER_TASK + r;
            let v = b[i] + dot(&w[i * k..(i + 1) * k], &x[..k]);
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
