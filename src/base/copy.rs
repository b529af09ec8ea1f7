//! Short copies as fixed-size moves. A slice copy compiles to a call to `memcpy` per
//! row, and for the 13- to 32-value rows of packing and im2col that call is most of the
//! cost.

/// `dst.copy_from_slice(src)` for the short rows of a panel, as 8-lane vector moves.
#[inline(always)]
pub fn copy_short(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d8, s8) in (&mut d).zip(&mut s) {
        let v = wide::f32x8::from(<[f32; 8]>::try_from(s8).unwrap_or([0.0; 8]));
        d8.copy_from_slice(v.as_array());
    }
    for (x, y) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *x = *y;
    }
}

/// `dst.copy_from_slice(src)` for short runs (13 or 27 values, cut at panel edges) of
/// f32 values or of int8 codes four to a `u32`:
/// 8-value chunks and one overlapping last chunk, or two overlapping 4-value moves.
///
/// # Panics
/// If the lengths differ (a caller bug).
#[inline(always)]
pub fn copy_run<T: Copy>(dst: &mut [T], src: &[T]) {
    let n = dst.len();
    assert_eq!(n, src.len(), "copy_run: lengths differ");
    if n >= 8 {
        let mut i = 0;
        while i + 8 <= n {
            move_n::<T, 8>(&mut dst[i..i + 8], &src[i..i + 8]);
            i += 8;
        }
        if i < n {
            move_n::<T, 8>(&mut dst[n - 8..], &src[n - 8..]);
        }
    } else if n >= 4 {
        move_n::<T, 4>(&mut dst[..4], &src[..4]);
        move_n::<T, 4>(&mut dst[n - 4..], &src[n - 4..]);
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    }
}

#[inline(always)]
fn move_n<T: Copy, const N: usize>(dst: &mut [T], src: &[T]) {
    if let (Ok(d), Ok(s)) = (<&mut [T; N]>::try_from(dst), <&[T; N]>::try_from(src)) {
        *d = *s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_length_and_nothing_else() {
        for n in 0..40 {
            let src: Vec<f32> = (0..n).map(|i| i as f32 + 1.0).collect();
            for copy in [copy_run::<f32>, copy_short] {
                let mut dst = vec![f32::NAN; n + 2];
                copy(&mut dst[1..n + 1], &src);
                assert_eq!(&dst[1..n + 1], &src[..], "length {n}");
                assert!(dst[0].is_nan() && dst[n + 1].is_nan(), "length {n} wrote outside");
            }
        }
    }
}
