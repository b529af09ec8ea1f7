//! Class labels and top-k selection.

use crate::error::{Error, Result};

/// The 1000 ImageNet (ILSVRC-2012) class names, in the standard class-index order.
pub fn imagenet() -> Vec<&'static str> {
    include_str!("imagenet_classes.txt").lines().collect()
}

/// The `k` most probable classes of one image, best first, as (class index, value).
/// Ties keep the lower index first; NaN sorts last.
pub fn top_k(probs: &[f32], k: usize) -> Result<Vec<(usize, f32)>> {
    if k == 0 || k > probs.len() {
        return Err(Error::InvalidArgument(format!("top-k of {k} outside 1..={}", probs.len())));
    }
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (probs[a], probs[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => a.cmp(&b),
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b)),
        }
    });
    Ok(idx.into_iter().take(k).map(|i| (i, probs[i])).collect())
}

/// Labels for `classes` outputs: the file's own, else ImageNet's for 1000 classes, else
/// the class indices.
pub fn for_model(file_labels: &[String], classes: usize) -> Vec<String> {
    if file_labels.len() == classes {
        return file_labels.to_vec();
    }
    let imagenet = imagenet();
    if classes == imagenet.len() {
        return imagenet.into_iter().map(str::to_owned).collect();
    }
    (0..classes).map(|i| i.to_string()).collect()
}

/// Read a label file (one label per line) and check it has `classes` lines.
pub fn read_label_file(path: &std::path::Path, classes: usize) -> Result<Vec<String>> {
    // A FIFO or device would block or never end: only regular files are read.
    let meta = std::fs::metadata(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    if !meta.is_file() {
        return Err(Error::NotRegularFile(path.to_path_buf()));
    }
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let labels: Vec<String> = text.lines().map(|l| l.trim_end_matches('\r').to_owned()).collect();
    if labels.len() != classes {
        return Err(Error::InvalidArgument(format!(
            "label file {} has {} lines, the model has {classes} classes",
            path.display(),
            labels.len()
        )));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_and_checks() {
        let p = [0.1, 0.5, f32::NAN, 0.4];
        assert_eq!(top_k(&p, 2).unwrap(), vec![(1, 0.5), (3, 0.4)]);
        assert!(top_k(&p, 0).is_err());
        assert!(top_k(&p, 5).is_err());
        assert_eq!(top_k(&p, 4).unwrap()[3].0, 2);
    }

    #[test]
    fn imagenet_has_1000_classes() {
        assert_eq!(imagenet().len(), 1000);
    }
}
