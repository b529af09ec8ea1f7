//! int8 reference operators: the rules of `docs/reliability.md` ("int8") written out
//! again in plain loops, independent of `crate::quant` and of the kernels, so that an int8
//! kernel's result can be checked bit for bit.

/// Per-row `(codes, scales)` of a `[rows, k]` weight: `s = max|w| / 127` (1 for a zero
/// row), codes `round_ties_even(w / s)` in `-127..=127`.
pub fn quantize_weights(w: &[f32], rows: usize, k: usize) -> (Vec<i8>, Vec<f32>) {
    let mut codes = Vec::with_capacity(rows * k);
    let mut scales = Vec::with_capacity(rows);
    for r in 0..rows {
        let row = &w[r * k..(r + 1) * k];
        let mut max = 0.0f32;
        for &v in row {
            if v.abs() > max {
                max = v.abs();
            }
        }
        let s = if max > 0.0 { max / 127.0 } else { 1.0 };
        for &v in row {
            let q = (v / s).round_ties_even();
            codes.push(q.clamp(-127.0, 127.0) as i8);
        }
        scales.push(s);
    }
    (codes, scales)
}

/// `(scale, 1 / scale, zero point)` of one image's activations, or `None` when a value
/// is not finite.
pub fn act_params(x: &[f32]) -> Option<(f32, f32, i32)> {
    let mut lo = 0.0f32;
    let mut hi = 0.0f32;
    for &v in x {
        if !v.is_finite() {
            return None;
        }
        if v < lo {
            lo = v;
        }
        if v > hi {
            hi = v;
        }
    }
    let s = (hi - lo) / 255.0;
    if s > 0.0 && s.is_finite() {
        let z = (-lo / s).round_ties_even().clamp(0.0, 255.0) as i32;
        Some((s, 1.0 / s, z))
    } else {
        Some((1.0, 1.0, 0))
    }
}

/// [`act_params`], or with a layer's fixed `(scale, zero point)` when it has them: the
/// same parameters for every image, values past the range saturating; `None` still when
/// a value is not finite.
pub fn act_params_as(x: &[f32], fixed: Option<(f32, f32)>) -> Option<(f32, f32, i32)> {
    let found = act_params(x)?;
    Some(match fixed {
        Some((s, z)) => (s, 1.0 / s, z as i32),
        None => found,
    })
}

/// The codes of `x` under `p` (as [`act_params`] gives them).
pub fn codes(x: &[f32], p: (f32, f32, i32)) -> Vec<u8> {
    x.iter().map(|&v| code(v, p) as u8).collect()
}

/// The code of `x` under `(scale, inv, zero)`.
fn code(x: f32, (_, inv, zero): (f32, f32, i32)) -> i32 {
    // Saturating: a quotient past i32's range (a tiny fixed scale, a huge input) is 0 or
    // 255 like any other outside the codes.
    let q = ((x * inv).round_ties_even() as i32).saturating_add(zero);
    q.clamp(0, 255)
}

/// `f32(sum) * (weight scale * activation scale) + bias`, then ReLU; NaN for a poisoned
/// image (`None` parameters).
fn output(sum: i32, ws: f32, p: Option<(f32, f32, i32)>, bias: f32, relu: bool) -> f32 {
    let Some((s, _, _)) = p else { return f32::NAN };
    let y = sum as f32 * (ws * s) + bias;
    if relu && y < 0.0 {
        0.0
    } else {
        y
    }
}

/// int8 linear layer: `x` `[batch, k]` quantized per image (or with `fixed`
/// parameters), `codes` `[m, k]` with per-row `scales`.
#[allow(clippy::too_many_arguments)]
pub fn linear(
    x: &[f32],
    batch: usize,
    codes: &[i8],
    scales: &[f32],
    bias: &[f32],
    m: usize,
    k: usize,
    (fixed, relu): (Option<(f32, f32)>, bool),
) -> Vec<f32> {
    let mut out = Vec::with_capacity(batch * m);
    for n in 0..batch {
        let xs = &x[n * k..(n + 1) * k];
        out.extend(linear_with(xs, act_params_as(xs, fixed), codes, scales, bias, m, k, relu));
    }
    out
}

/// One input of [`linear`] quantized with the given parameters (`None`: poisoned). The
/// sum runs over `(q_x - zero) q_w`, which equals the production form
/// `sum q_x q_w - zero sum q_w` exactly.
#[allow(clippy::too_many_arguments)]
pub fn linear_with(
    xs: &[f32],
    p: Option<(f32, f32, i32)>,
    codes: &[i8],
    scales: &[f32],
    bias: &[f32],
    m: usize,
    k: usize,
    relu: bool,
) -> Vec<f32> {
    let mut out = vec![0.0f32; m];
    for r in 0..m {
        let mut sum = 0i32;
        if let Some(p) = p {
            for j in 0..k {
                sum += (code(xs[j], p) - p.2) * codes[r * k + j] as i32;
            }
        }
        out[r] = output(sum, scales[r], p, bias[r], relu);
    }
    out
}

/// int8 direct convolution of one image (arguments as [`super::conv2d`], weights as
/// codes and per-output-channel scales); padding is the code of 0, the zero point, so it
/// adds nothing to `(q_x - zero) q_w`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    input: &[f32],
    [c, h, w]: [usize; 3],
    codes: &[i8],
    scales: &[f32],
    bias: &[f32],
    o: usize,
    [kh, kw]: [usize; 2],
    [sh, sw]: [usize; 2],
    pads: crate::plan::Pads,
    groups: usize,
    [oh, ow]: [usize; 2],
    (fixed, relu): (Option<(f32, f32)>, bool),
) -> Vec<f32> {
    let (cg, og) = (c / groups, o / groups);
    let p = act_params_as(&input[..c * h * w], fixed);
    let mut out = vec![0.0f32; o * oh * ow];
    for oc in 0..o {
        let g = oc / og;
        for y in 0..oh {
            for x in 0..ow {
                let mut sum = 0i32;
                for ic in 0..cg {
                    for ky in 0..kh {
                        let iy = (y * sh + ky) as isize - pads.top as isize;
                        for kx in 0..kw {
                            let ix = (x * sw + kx) as isize - pads.left as isize;
                            if iy < 0 || iy >= h as isize || ix < 0 || ix >= w as isize {
                                continue;
                            }
                            let Some(p) = p else { continue };
                            let v = input[((g * cg + ic) * h + iy as usize) * w + ix as usize];
                            sum += (code(v, p) - p.2) * codes[((oc * cg + ic) * kh + ky) * kw + kx] as i32;
                        }
                    }
                }
                out[(oc * oh + y) * ow + x] = output(sum, scales[oc], p, bias[oc], relu);
            }
        }
    }
    out
}
