//! How far a reduced precision's results are from f32's on the same inputs:
//! `alexnet-bench --accuracy N` runs both models and reports [`Agreement`].

use serde::Serialize;

/// Agreement of a model's probabilities with the f32 reference's, over a set of images.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Agreement {
    /// Images compared.
    pub images: usize,
    /// Fraction of images whose top-1 class is the reference's.
    pub top1_agreement: f64,
    /// Mean over images of |top-5 ∩ reference top-5| / 5.
    pub top5_overlap: f64,
    /// Largest |log p - log p_ref| over each image's reference top-5 classes.
    pub max_abs_dlogp: f64,
    /// Median of the same.
    pub median_abs_dlogp: f64,
}

/// Indices of the `k` largest values, largest first (ties: lower index first; NaN last).
fn top(row: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap_or_else(|| row[a].is_nan().cmp(&row[b].is_nan())));
    idx.truncate(k);
    idx
}

/// Compare `got` with `reference`, both `[images, classes]` probabilities. The log-prob
/// differences are taken on the reference's five most likely classes per image, where
/// they matter; elsewhere both are tiny and their logs mostly noise.
pub fn compare(reference: &[f32], got: &[f32], classes: usize) -> Agreement {
    let images = reference.len().min(got.len()).checked_div(classes).unwrap_or(0);
    let (mut top1, mut overlap, mut dlogp) = (0usize, 0usize, Vec::new());
    let k = classes.min(5);
    for i in 0..images {
        let (r, g) = (&reference[i * classes..(i + 1) * classes], &got[i * classes..(i + 1) * classes]);
        let (tr, tg) = (top(r, k), top(g, k));
        top1 += (tr.first() == tg.first()) as usize;
        overlap += tr.iter().filter(|c| tg.contains(c)).count();
        for &c in &tr {
            let lr = (r[c] as f64).max(1e-30).ln();
            let lg = (g[c] as f64).max(1e-30).ln();
            dlogp.push((lr - lg).abs());
        }
    }
    dlogp.sort_by(f64::total_cmp);
    let n = images.max(1) as f64;
    Agreement {
        images,
        top1_agreement: top1 as f64 / n,
        top5_overlap: overlap as f64 / (n * k.max(1) as f64),
        max_abs_dlogp: dlogp.last().copied().unwrap_or(0.0),
        median_abs_dlogp: dlogp.get(dlogp.len() / 2).copied().unwrap_or(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_results_agree_fully() {
        let p = [0.1f32, 0.5, 0.2, 0.05, 0.05, 0.1, 0.6, 0.1, 0.1, 0.05, 0.05, 0.1];
        let a = compare(&p, &p, 6);
        assert_eq!(
            a,
            Agreement { images: 2, top1_agreement: 1.0, top5_overlap: 1.0, max_abs_dlogp: 0.0, median_abs_dlogp: 0.0 }
        );
    }

    #[test]
    fn a_swapped_top1_and_a_changed_probability_are_counted() {
        // 6 classes: image 0 keeps its order, image 1 swaps its two best classes.
        let r = [0.5f32, 0.2, 0.1, 0.1, 0.06, 0.04, 0.5, 0.2, 0.1, 0.1, 0.06, 0.04];
        let g = [0.5f32, 0.2, 0.1, 0.1, 0.06, 0.04, 0.2, 0.5, 0.1, 0.1, 0.06, 0.04];
        let a = compare(&r, &g, 6);
        assert_eq!(a.images, 2);
        assert_eq!(a.top1_agreement, 0.5);
        assert_eq!(a.top5_overlap, 1.0);
        assert!((a.max_abs_dlogp - (0.5f64.ln() - 0.2f64.ln()).abs()).abs() < 1e-6);
        assert_eq!(a.median_abs_dlogp, 0.0);
        // Class 5 replacing class 4 in the top 5 costs one of five.
        let g2 = [0.5f32, 0.2, 0.1, 0.1, 0.04, 0.06];
        assert!((compare(&r[..6], &g2, 6).top5_overlap - 0.8).abs() < 1e-12);
    }
}
