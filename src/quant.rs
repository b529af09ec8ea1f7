//! int8 quantization: the rules every int8 path shares (`docs/reliability.md`, "int8").
//!
//! - **Weights**: symmetric per output channel. Row `r` of a `[rows, k]` weight has the
//!   scale `s_r = max|w_r| / 127` (1 for an all-zero row) and values
//!   `q = round_ties_even(w / s_r)` in `-127..=127`; `w ~ q s_r`. **7-bit weights**
//!   ([`weight_scales_within`] with [`SEVEN_BIT_CODE`], `convert-weights --weight-bits
//!   7`): `s_r = max|w_r| / 64`, codes in `-64..=64`, which CPUs with AVX2 but no VNNI
//!   multiply as bytes without saturating (`gemm::kernel::i8::SMALL_CODE`); the same
//!   formulas after that.
//! - **Activations**: asymmetric `u8` per image, per layer input: over the image's
//!   values (and 0, so that zero padding is exact) `lo = min`, `hi = max`,
//!   `s = (hi - lo) / 255`, `z = round_ties_even(-lo / s)`, and each value becomes
//!   `clamp(round_ties_even(x / s) + z, 0, 255)`, computed as `x * (1 / s)` (the same
//!   product in scalar and vector code). Per image, not per batch: an image's result
//!   never depends on the others in its batch.
//! - **Fixed activation parameters**: a file may carry `(s, z)` for a layer's input
//!   (`<layer>.input_quant`: from a quantized model, or calibrated at conversion); the
//!   layer then quantizes every image with them (values beyond the range saturate) in
//!   place of its range. The range is still taken, only to find non-finite values.
//! - **Products**: `acc = sum_k q_w q_x` in i32, exact (K is capped so that it cannot
//!   overflow: [`MAX_K`]); every ISA computes the same integer.
//! - **Dequantisation**: `y = f32(acc - z * sum_k q_w) * (s_r * s) + bias`, then ReLU:
//!   a conversion, a product and a sum, rounded in that order (no fused multiply-add),
//!   so results are bitwise identical on every ISA and thread count.
//! - A non-finite input value (NaN, infinity) cannot be quantized: the image's whole
//!   output of that layer is NaN, so it stays visible downstream.

/// Largest K an int8 product takes: `MAX_K * 255 * 127` fits in an i32 with room to
/// subtract the zero-point term. Larger layers run at f32 on dequantized weights.
pub const MAX_K: usize = 1 << 16;

/// How one image's activations map to `u8`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActParams {
    /// Step between two codes.
    pub scale: f32,
    /// `1 / scale`, the factor values are multiplied by.
    pub inv: f32,
    /// The code of 0.0 (`0..=255`).
    pub zero: i32,
}

impl ActParams {
    /// Parameters covering `x` (and 0); `None` if any value is not finite.
    pub fn of(x: &[f32]) -> Option<ActParams> {
        range(x).map(|(lo, hi)| ActParams::from_range(lo, hi))
    }

    /// Fixed parameters (a quantized model's, or calibrated at conversion): `scale` a
    /// positive finite step, `zero` an integer code in `0..=255`; the reason otherwise.
    pub fn fixed(scale: f32, zero: f32) -> Result<ActParams, String> {
        if !(scale.is_finite() && scale > 0.0 && (1.0 / scale).is_finite()) {
            return Err(format!("activation scale {scale} is not a positive finite number"));
        }
        if !(0.0..=255.0).contains(&zero) || zero.fract() != 0.0 {
            return Err(format!("activation zero point {zero} is not an integer in 0..=255"));
        }
        Ok(ActParams { scale, inv: 1.0 / scale, zero: zero as i32 })
    }

    /// Parameters for the range `(lo, hi)` of some values and 0 (as [`range`] finds it),
    /// or the poisoned parameters when there is none (a value was not finite).
    pub fn of_range(found: Option<(f32, f32)>) -> ActParams {
        found.map_or(ActParams::POISONED, |(lo, hi)| ActParams::from_range(lo, hi))
    }

    /// Parameters for values in `lo..=hi` (`lo <= 0 <= hi`, both finite).
    pub fn from_range(lo: f32, hi: f32) -> ActParams {
        let scale = (hi - lo) / 255.0;
        if !(scale > 0.0 && scale.is_finite()) {
            return ActParams { scale: 1.0, inv: 1.0, zero: 0 };
        }
        let zero = (-lo / scale).round_ties_even().clamp(0.0, 255.0) as i32;
        ActParams { scale, inv: 1.0 / scale, zero }
    }

    /// The code of `x`: `round_ties_even(x / scale) + zero` saturated to `0..=255`. The
    /// quotient is clamped to +-[`QUOTIENT_LIMIT`] first (which no code can tell apart,
    /// the zero point being in `0..=255`), so that no input, however far outside the
    /// range, overflows the addition.
    #[inline]
    pub fn quantize(&self, x: f32) -> u8 {
        let t = (x * self.inv).clamp(-QUOTIENT_LIMIT, QUOTIENT_LIMIT);
        (t.round_ties_even() as i32 + self.zero).clamp(0, 255) as u8
    }

    /// Parameters that mark an image whose input was not finite: its outputs become NaN.
    pub const POISONED: ActParams = ActParams { scale: f32::NAN, inv: 0.0, zero: 0 };
}

/// Where [`ActParams::quantize`] clamps `x / scale` before rounding (every SIMD
/// quantizer clamps there too): past it, every zero point gives code 0 or 255.
pub const QUOTIENT_LIMIT: f32 = 512.0;

/// How a layer's input is quantized: from each image's own range, or with fixed
/// parameters. Either way an image with a value that is not finite is poisoned.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InputQuant {
    /// From the image's range ([`ActParams::of_range`]).
    PerImage,
    /// With these parameters; values outside their range saturate at 0 or 255.
    Fixed(ActParams),
}

impl InputQuant {
    /// The parameters for an image whose [`range`] is `found`.
    #[inline]
    pub fn params(&self, found: Option<(f32, f32)>) -> ActParams {
        match (self, found) {
            (_, None) => ActParams::POISONED,
            (InputQuant::PerImage, found) => ActParams::of_range(found),
            (InputQuant::Fixed(p), Some(_)) => *p,
        }
    }
}

/// `(min, max)` of `x` and 0, or `None` if a value is not finite: sixteen independent
/// lanes of plain f32 operations the compiler vectorizes (a lane's `v - v` is 0 for a
/// finite value and NaN otherwise, so their sum flags any NaN or infinity exactly).
/// Inlined into each ISA's target-feature shell by `gemm::kernel::i8::range`.
#[inline(always)]
#[allow(clippy::eq_op)] // `v - v` is the point: 0, or NaN for NaN and infinities
pub fn range(x: &[f32]) -> Option<(f32, f32)> {
    const L: usize = 16;
    let (mut lo, mut hi, mut flag) = ([0.0f32; L], [0.0f32; L], [0.0f32; L]);
    let mut chunks = x.chunks_exact(L);
    for c in &mut chunks {
        for i in 0..L {
            let v = c[i];
            lo[i] = if v < lo[i] { v } else { lo[i] };
            hi[i] = if v > hi[i] { v } else { hi[i] };
            flag[i] += v - v;
        }
    }
    for (i, &v) in chunks.remainder().iter().enumerate() {
        lo[i] = if v < lo[i] { v } else { lo[i] };
        hi[i] = if v > hi[i] { v } else { hi[i] };
        flag[i] += v - v;
    }
    if flag.iter().any(|f| f.is_nan()) {
        return None;
    }
    let lo = lo.iter().fold(0.0f32, |m, &v| if v < m { v } else { m });
    let hi = hi.iter().fold(0.0f32, |m, &v| if v > m { v } else { m });
    Some((lo, hi))
}

/// Per-row scales of a `[rows, k]` weight (see the module rules). Rows are shared out
/// over the current rayon pool (each row's scale is its own: any split gives the same).
pub fn weight_scales(w: &[f32], rows: usize, k: usize) -> Vec<f32> {
    weight_scales_within(w, rows, k, 127)
}

/// The largest code of 7-bit weights.
pub const SEVEN_BIT_CODE: i8 = 64;
const _: () = assert!(SEVEN_BIT_CODE <= crate::gemm::kernel::i8::SMALL_CODE, "7-bit codes must stay small");

/// [`weight_scales`] for codes in `-limit..=limit` (`1..=127`): each row's largest
/// magnitude maps to `limit`.
pub fn weight_scales_within(w: &[f32], rows: usize, k: usize, limit: i8) -> Vec<f32> {
    use rayon::prelude::*;
    let limit = f32::from(limit.clamp(1, 127));
    (0..rows)
        .into_par_iter()
        .map(|r| {
            let max = w[r * k..(r + 1) * k].iter().fold(0.0f32, |m, &v| m.max(v.abs()));
            if max > 0.0 && max.is_finite() {
                max / limit
            } else {
                1.0
            }
        })
        .collect()
}

/// The int8 code of weight `w` at row scale `scale`.
#[inline]
pub fn quantize_weight(w: f32, scale: f32) -> i8 {
    (w / scale).round_ties_even().clamp(-127.0, 127.0) as i8
}

/// `[rows, k]` weights quantized per row with `scales` ([`weight_scales`]), rows shared
/// out over the current rayon pool.
pub fn quantize_weights(w: &[f32], k: usize, scales: &[f32]) -> Vec<i8> {
    use rayon::prelude::*;
    let rows = w.par_chunks(k.max(1)).zip(scales);
    rows.flat_map_iter(|(row, &s)| row.iter().map(move |&v| quantize_weight(v, s))).collect()
}

/// A `[rows, k]` weight's codes and per-row scales.
pub fn quantize(w: &[f32], rows: usize, k: usize) -> (Vec<i8>, Vec<f32>) {
    let scales = weight_scales(w, rows, k);
    (quantize_weights(w, k, &scales), scales)
}

/// Sum of each row's codes of a `[rows, k]` weight: the zero-point correction's factor.
/// Rows are shared out over the current rayon pool.
pub fn row_sums(q: &[i8], rows: usize, k: usize) -> Vec<i32> {
    use rayon::prelude::*;
    (0..rows).into_par_iter().map(|r| q[r * k..(r + 1) * k].iter().map(|&v| v as i32).sum()).collect()
}

/// The dequantisation of one integer sum (see the module rules).
#[inline]
pub fn dequantize(acc: i32, zero_term: i32, scale: f32, bias: f32, relu: bool) -> f32 {
    let y = (acc - zero_term) as f32 * scale + bias;
    if relu {
        crate::base::scalar::relu(y)
    } else {
        y
    }
}
