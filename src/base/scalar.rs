//! The scalar rules of the runtime: what ReLU and max do with NaN. Vector kernels apply
//! the same rules lane by lane (`SimdF32::relu`, the pooling's NaN-sticky path).

/// ReLU that lets NaN through (`NaN < 0` is false).
#[inline(always)]
pub fn relu(v: f32) -> f32 {
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

/// Max with sticky NaN: once a NaN is seen it wins.
#[inline(always)]
pub fn max_nan(m: f32, v: f32) -> f32 {
    if v > m || v.is_nan() {
        v
    } else {
        m
    }
}
