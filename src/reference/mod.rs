//! Scalar reference operators: the oracle every fast kernel is tested against.
//!
//! Plain loops in the definition's own order, no blocking, no SIMD, no threads. Layouts
//! are those of the runtime: one image's activation is CHW, a batch is `[N, ...]`.
//!
//! Independent of what it checks: nothing here calls production code (not even its scalar
//! helpers), and production code never calls this module. It is compiled for the crate's
//! own tests and, behind the `internals` feature, for the integration tests, benches and
//! fuzz targets.

pub mod int8;
mod network;

pub use network::{network, network_int8};

use crate::plan::{AdaptiveAvgPool, AvgPool, Lrn, LrnWithin, MaxPool, Pads};

/// Direct convolution of one image. `input` is `[c, h, w]`, `weight` `[o, c/groups, kh, kw]`,
/// `bias` `[o]`; returns `[o, oh, ow]` (`oh`, `ow` given by the caller's plan).
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    input: &[f32],
    [c, h, w]: [usize; 3],
    weight: &[f32],
    bias: &[f32],
    o: usize,
    [kh, kw]: [usize; 2],
    [sh, sw]: [usize; 2],
    pads: Pads,
    groups: usize,
    [oh, ow]: [usize; 2],
    relu: bool,
) -> Vec<f32> {
    let cg = c / groups;
    let og = o / groups;
    let mut out = vec![0.0f32; o * oh * ow];
    for oc in 0..o {
        let g = oc / og;
        for y in 0..oh {
            for x in 0..ow {
                let mut acc = bias[oc];
                for ic in 0..cg {
                    for ky in 0..kh {
                        let iy = (y * sh + ky) as isize - pads.top as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..kw {
                            let ix = (x * sw + kx) as isize - pads.left as isize;
                            if ix < 0 || ix >= w as isize {
                                continue;
                            }
                            let v = input[((g * cg + ic) * h + iy as usize) * w + ix as usize];
                            acc += v * weight[((oc * cg + ic) * kh + ky) * kw + kx];
                        }
                    }
                }
                out[(oc * oh + y) * ow + x] = if relu { self::relu(acc) } else { acc };
            }
        }
    }
    out
}

/// ReLU that lets NaN through.
pub fn relu(v: f32) -> f32 {
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

/// Max with sticky NaN: once a NaN is seen it wins.
pub fn max_nan(m: f32, v: f32) -> f32 {
    if v > m || v.is_nan() {
        v
    } else {
        m
    }
}

/// Max pooling of one `[c, h, w]` image into `[c, oh, ow]`; padded cells are ignored.
pub fn maxpool(input: &[f32], [c, h, w]: [usize; 3], p: &MaxPool, [oh, ow]: [usize; 2]) -> Vec<f32> {
    let mut out = vec![0.0f32; c * oh * ow];
    for ch in 0..c {
        for y in 0..oh {
            for x in 0..ow {
                let mut m = f32::NEG_INFINITY;
                for ky in 0..p.kernel[0] as usize {
                    let iy = (y * p.stride[0] as usize + ky) as isize - p.pads.top as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for kx in 0..p.kernel[1] as usize {
                        let ix = (x * p.stride[1] as usize + kx) as isize - p.pads.left as isize;
                        if ix < 0 || ix >= w as isize {
                            continue;
                        }
                        m = max_nan(m, input[(ch * h + iy as usize) * w + ix as usize]);
                    }
                }
                out[(ch * oh + y) * ow + x] = m;
            }
        }
    }
    out
}

/// Average pooling of one `[c, h, w]` image into `[c, oh, ow]` (sums in f64): the
/// window's input cells summed, divided by the window clipped to the padded input
/// (`count_include_pad`) or by the input cells it covers.
pub fn avgpool(input: &[f32], [c, h, w]: [usize; 3], p: &AvgPool, [oh, ow]: [usize; 2]) -> Vec<f32> {
    let mut out = vec![0.0f32; c * oh * ow];
    let (hp, wp) = ((h + p.pads.top as usize + p.pads.bottom as usize) as isize, (w + p.pads.left as usize + p.pads.right as usize) as isize);
    for ch in 0..c {
        for y in 0..oh {
            for x in 0..ow {
                let (mut sum, mut cells, mut padded) = (0.0f64, 0usize, 0usize);
                for ky in 0..p.kernel[0] as usize {
                    let py = (y * p.stride[0] as usize + ky) as isize;
                    for kx in 0..p.kernel[1] as usize {
                        let px = (x * p.stride[1] as usize + kx) as isize;
                        if py < hp && px < wp {
                            padded += 1;
                        }
                        let (iy, ix) = (py - p.pads.top as isize, px - p.pads.left as isize);
                        if iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize {
                            sum += input[(ch * h + iy as usize) * w + ix as usize] as f64;
                            cells += 1;
                        }
                    }
                }
                let n = if p.count_include_pad { padded } else { cells };
                out[(ch * oh + y) * ow + x] = (sum / n.max(1) as f64) as f32;
            }
        }
    }
    out
}

/// Adaptive average pooling of one `[c, h, w]` image to `p.out` (sums in f64): output `i`
/// of `n` along a side of `m` averages cells `floor(i m / n) .. ceil((i + 1) m / n)`.
pub fn adaptive_avgpool(input: &[f32], [c, h, w]: [usize; 3], p: &AdaptiveAvgPool) -> Vec<f32> {
    let [oh, ow] = [p.out[0] as usize, p.out[1] as usize];
    let span = |i: usize, n: usize, m: usize| (i * m / n, ((i + 1) * m).div_ceil(n));
    let mut out = vec![0.0f32; c * oh * ow];
    for ch in 0..c {
        for y in 0..oh {
            let (y0, y1) = span(y, oh, h);
            for x in 0..ow {
                let (x0, x1) = span(x, ow, w);
                let mut sum = 0.0f64;
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        sum += input[(ch * h + iy) * w + ix] as f64;
                    }
                }
                out[(ch * oh + y) * ow + x] = (sum / ((y1 - y0) * (x1 - x0)) as f64) as f32;
            }
        }
    }
    out
}

/// Cross-channel LRN of one `[c, h, w]` image (ONNX definition, computed in f64).
pub fn lrn(input: &[f32], [c, h, w]: [usize; 3], p: &Lrn) -> Vec<f32> {
    let size = p.size as usize;
    let before = (size - 1) / 2;
    let after = size - 1 - before;
    let hw = h * w;
    let mut out = vec![0.0f32; input.len()];
    for ch in 0..c {
        let lo = ch.saturating_sub(before);
        let hi = (ch + after).min(c - 1);
        for i in 0..hw {
            let mut s = 0.0f64;
            for cc in lo..=hi {
                let v = input[cc * hw + i] as f64;
                s += v * v;
            }
            let d = (p.bias as f64 + p.alpha as f64 / size as f64 * s).powf(p.beta as f64);
            out[ch * hw + i] = (input[ch * hw + i] as f64 / d) as f32;
        }
    }
    out
}

/// Within-channel LRN of one `[c, h, w]` image (Caffe's `WITHIN_CHANNEL`: the mean of the
/// squares over the zero-padded `size x size` square, computed in f64).
pub fn lrn_within(input: &[f32], [c, h, w]: [usize; 3], p: &LrnWithin) -> Vec<f32> {
    let r = (p.size as isize - 1) / 2;
    let mut out = vec![0.0f32; input.len()];
    for ch in 0..c {
        for y in 0..h as isize {
            for x in 0..w as isize {
                let mut s = 0.0f64;
                for yy in y - r..=y + r {
                    for xx in x - r..=x + r {
                        if (0..h as isize).contains(&yy) && (0..w as isize).contains(&xx) {
                            let v = input[(ch * h + yy as usize) * w + xx as usize] as f64;
                            s += v * v;
                        }
                    }
                }
                let mean = s / (p.size as f64 * p.size as f64);
                let at = (ch * h + y as usize) * w + x as usize;
                out[at] = (input[at] as f64 / (p.bias as f64 + p.alpha as f64 * mean).powf(p.beta as f64)) as f32;
            }
        }
    }
    out
}

/// `x` rounded to the nearest bfloat16 value (ties to even), as f32: the oracle for the
/// weight file's bf16 encoder. Written from the definition, not from the bit trick the
/// encoder uses: of the two bf16 neighbours of `x` (its bits truncated to the top 16, and
/// the next value away from zero) it takes the nearer, measured in f64; on a tie, the
/// one with an even last bit. NaN stays NaN.
pub fn bf16_round(x: f32) -> f32 {
    if x.is_nan() || x.is_infinite() {
        return x;
    }
    let down = f32::from_bits(x.to_bits() & 0xffff_0000);
    if down == x {
        return x;
    }
    // The next bf16 away from zero (may be infinity: 0x7f80_0000 after the largest).
    let up = f32::from_bits((x.to_bits() & 0xffff_0000) + 0x1_0000);
    let (dd, du) = ((x as f64 - down as f64).abs(), (up as f64 - x as f64).abs());
    // Past the largest finite bf16 the "up" neighbour is infinity: IEEE rounds to it
    // when x is at least halfway to 2^128 (the next power of two), so measure from there.
    let du = if up.is_infinite() { (2f64.powi(128) - (x as f64).abs()).abs() } else { du };
    if dd < du || (dd == du && (down.to_bits() >> 16) & 1 == 0) {
        down
    } else {
        up
    }
}

/// `y[n] = W x[n] + b` for a batch: `x` is `[batch, k]`, `w` `[m, k]`, returns `[batch, m]`.
pub fn linear(x: &[f32], batch: usize, w: &[f32], b: &[f32], m: usize, k: usize, relu: bool) -> Vec<f32> {
    let mut y = vec![0.0f32; batch * m];
    for n in 0..batch {
        for i in 0..m {
            let mut acc = b[i];
            for j in 0..k {
                acc += w[i * k + j] * x[n * k + j];
            }
            y[n * m + i] = if relu { self::relu(acc) } else { acc };
        }
    }
    y
}

/// Plain `C = A B` with row-major `A [m, k]`, `B [k, n]`: the GEMM oracle.
pub fn sgemm(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                acc += a[i * k + p] * b[p * n + j];
            }
            c[i * n + j] = acc;
        }
    }
    c
}

/// Numerically stable softmax of each row of `[rows, n]` (computed in f64).
pub fn softmax(x: &[f32], n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(n) {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, max_nan) as f64;
        let s: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
        out.extend(row.iter().map(|&v| ((v as f64 - m).exp() / s) as f32));
    }
    out
}
