//! Fully connected layer, `y[n] = W x[n] + b`, read straight from the weight file.
//!
//! W (`[out, in]`, 96% of AlexNet's bytes) is never copied or packed: at every batch
//! size the kernel's register-blocked GEMV reads it where the map has it, 4 rows x 4
//! images per pass, so it streams from memory once per call. Each (row, image) result is
//! computed by the same arithmetic however rows and images are grouped, so results do not
//! depend on the thread count or on the batch.

use crate::base::census;
use crate::base::mat::MatMut;
use crate::base::scalar;
use crate::base::split::par_column_blocks;
use crate::cpu::Cpu;
use crate::gemm::kernel::i8::Kernel;
use crate::gemm::{gemv, Weight};
use crate::quant::InputQuant;

/// Rows of W per parallel task.
const ROWS_PER_TASK: usize = 32;

/// `y [batch, m] = relu?(x [batch, k] W^T + b)` with `w` `[m, k]` row-major, read in place
/// (f32, or bf16 bit patterns widened to f32 as they load).
///
/// Output columns (W's rows) are split across the pool in fixed blocks; each task streams
/// its rows of W once and applies them to every image of the batch (4 rows x 4 images
/// per pass, the inputs staying in L2). At batch 1 this is a GEMV at the memory bandwidth.
/// Each task sees W from its first row to the end, so at batch > 4 it fetches the next
/// task's first rows ahead too.
#[allow(clippy::too_many_arguments)]
pub fn linear<E: Weight>(
    cpu: Cpu,
    x: &[f32],
    batch: usize,
    w: &[E],
    b: &[f32],
    m: usize,
    k: usize,
    relu: bool,
    y: &mut [f32],
) {
    let out = MatMut::new(&mut y[..batch * m], batch, m, m);
    par_column_blocks(out, ROWS_PER_TASK, &|r0, mut dst| {
        let rows = dst.cols();
        census::work(crate::gemm::flops(batch, rows, k));
        gemv(cpu, &w[r0 * k..], k, &x[..batch * k], &mut dst);
        for n in 0..batch {
            for (o, &bias) in dst.row_mut(n).iter_mut().zip(&b[r0..r0 + rows]) {
                let v = *o + bias;
                *o = if relu { scalar::relu(v) } else { v };
            }
        }
    });
}

/// [`linear`] with bf16 weights and activations on a CPU that multiplies bf16 natively
/// (`vdpbf16ps`): `x` is rounded to bf16 pairs into `pairs` (at least `batch *`
/// [`crate::gemm::pairs_len`]`(k)` values, as f32 storage) once, then every task streams its rows of W
/// against it. Per byte of W that is one load and one dot product, where widening bf16
/// for f32 FMAs takes three more instructions, which on one core held the stream below
/// the bandwidth.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub fn linear_bf16(
    tok: crate::gemm::kernel::bf16::Avx512Bf16,
    x: &[f32],
    batch: usize,
    w: &[u16],
    b: &[f32],
    (m, k): (usize, usize),
    relu: bool,
    y: &mut [f32],
    pairs: &mut [f32],
) {
    use crate::gemm::kernel::bf16 as k16;
    let ldx = crate::gemm::pairs_len(k);
    let xs: &mut [u32] = bytemuck::cast_slice_mut(&mut pairs[..batch * ldx]);
    // By index, not chunks_exact_mut: K = 0 gives zero-length rows.
    for n in 0..batch {
        k16::to_pairs(tok, &x[n * k..(n + 1) * k], k, &mut xs[n * ldx..(n + 1) * ldx]);
    }
    let xs: &[u32] = xs;
    let out = MatMut::new(&mut y[..batch * m], batch, m, m);
    par_column_blocks(out, ROWS_PER_TASK, &|r0, mut dst| {
        let rows = dst.cols();
        census::work(crate::gemm::flops(batch, rows, k));
        k16::gemv(tok, &w[r0 * k..], k, xs, &mut dst);
        for n in 0..batch {
            for (o, &bias) in dst.row_mut(n).iter_mut().zip(&b[r0..r0 + rows]) {
                let v = *o + bias;
                *o = if relu { scalar::relu(v) } else { v };
            }
        }
    });
}

/// Values of the f32 scratch [`linear_i8`] takes for `batch` images of `k` inputs: the
/// `u8` codes (four to a value) and three values of parameters per image.
pub fn i8_scratch_len(k: usize, batch: usize) -> usize {
    batch * (k.div_ceil(4) + 3)
}

/// [`linear`] at int8: each image's input quantized as `quant` says (by its own range,
/// or fixed; an image with a value that is not finite gets NaN outputs) into
/// `scratch` ([`i8_scratch_len`] values), then W's codes read in place, 4 rows x 4 images
/// per pass (4 rows x 1 for the last images), the exact sums dequantized by the row's
/// scale and code sum (`sums`).
#[allow(clippy::too_many_arguments)]
pub fn linear_i8(
    kern: Kernel,
    x: &[f32],
    batch: usize,
    (w, scales, sums): (&[i8], &[f32], &[i32]),
    b: &[f32],
    (m, k): (usize, usize),
    (quant, relu): (InputQuant, bool),
    y: &mut [f32],
    scratch: &mut [f32],
) {
    use crate::gemm::kernel::i8::{dots, quantize_row, range, Ahead, GEMV_IMAGES as V, GEMV_ROWS as R};
    let ldx = k.div_ceil(4) * 4;
    let (codes, params) = scratch[..i8_scratch_len(k, batch)].split_at_mut(batch * ldx / 4);
    let codes: &mut [u8] = bytemuck::cast_slice_mut(codes);
    // By index, not chunks_exact_mut: K = 0 gives zero-length rows.
    for n in 0..batch {
        let xs = &x[n * k..(n + 1) * k];
        let act = quant.params(range(kern, xs));
        quantize_row(kern, xs, &act, &mut codes[n * ldx..(n + 1) * ldx]);
        params[3 * n..3 * n + 3].copy_from_slice(&[act.scale, act.inv, act.zero as f32]);
    }
    let (codes, params) = (&*codes, &*params);
    let act = |n: usize| (params[3 * n], params[3 * n + 2] as i32);
    let out = MatMut::new(&mut y[..batch * m], batch, m, m);
    par_column_blocks(out, 4 * ROWS_PER_TASK, &|r0, mut dst| {
        let rows = dst.cols();
        census::work(crate::gemm::flops(batch, rows, k));
        let mut put = |n: usize, r: usize, acc: i32| {
            let (sx, zero) = act(n);
            let g = r0 + r;
            dst.row_mut(n)[r] = crate::quant::dequantize(acc, zero * sums[g], scales[g] * sx, b[g], relu);
        };
        let mut r = 0;
        while r < rows {
            let wr = &w[(r0 + r) * k..];
            let mut n = 0;
            if rows - r >= 2 * R && batch < V {
                // Few images: 8 rows a pass, 8 streams from memory for the prefetchers.
                for n in 0..batch {
                    let s = dots::<{ 2 * R }, 1>(kern, wr, k, &codes[n * ldx..], ldx, None);
                    (0..2 * R).for_each(|i| put(n, r + i, s[0][i]));
                }
                r += 2 * R;
            } else if rows - r >= R {
                // Passes over this block: groups of V images, then one per image left.
                let passes = batch / V + batch % V;
                let next = wr.get(R * k..2 * R * k);
                let ahead = |pass: usize| match next {
                    Some(rows) if pass > 0 => Some(Ahead { rows, phase: pass - 1, phases: passes - 1 }),
                    _ => None,
                };
                let mut pass = 0;
                while batch - n >= V {
                    let s = dots::<R, V>(kern, wr, k, &codes[n * ldx..], ldx, ahead(pass));
                    (0..V).for_each(|v| (0..R).for_each(|i| put(n + v, r + i, s[v][i])));
                    (n, pass) = (n + V, pass + 1);
                }
                for n in n..batch {
                    let s = dots::<R, 1>(kern, wr, k, &codes[n * ldx..], ldx, ahead(pass));
                    (0..R).for_each(|i| put(n, r + i, s[0][i]));
                    pass += 1;
                }
                r += R;
            } else {
                for n in 0..batch {
                    put(n, r, dots::<1, 1>(kern, wr, k, &codes[n * ldx..], ldx, None)[0][0]);
                }
                r += 1;
            }
        }
    });
}
