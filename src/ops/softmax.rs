//! Numerically stable softmax over each image's features (subtract the max first).

use crate::base::scalar::max_nan;

/// Softmax each row of `[rows, n]` in place. A NaN anywhere in a row makes the row NaN.
pub fn softmax_rows(x: &mut [f32], n: usize) {
    for row in x.chunks_mut(n) {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, max_nan);
        let mut sum = 0.0f32;
        for v in row.iter_mut() {
            *v = (*v - m).exp();
            sum += *v;
        }
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}
