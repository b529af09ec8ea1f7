//! Sharing work between threads, by recursive halving on the caller's rayon pool.
//!
//! Every split here depends on the shape of the work and the number of tasks only, and
//! each piece of work is computed the same way whichever thread runs it, so results never
//! depend on the thread count.

use std::ops::Range;

use super::census::task;
use super::mat::MatMut;

/// Threads for the two halves when `count` equal items are cut after `half` of them:
/// proportional shares, each at least 1 (`tasks >= 2`).
pub fn share(tasks: usize, half: usize, count: usize) -> (usize, usize) {
    let left = (tasks * half / count.max(1)).clamp(1, tasks.max(2) - 1);
    (left, tasks.max(2) - left)
}

/// Run `leaf(items, data, tasks)` over the items `0..count` split into contiguous ranges
/// until a range holds one item or has one thread: halves side by side (`rayon::join`),
/// threads shared by [`share`]. `split(data, at)` cuts the data of a range after its
/// first `at` items. A leaf with several items and one thread runs them itself.
pub fn halve<D: Send>(
    count: usize,
    tasks: usize,
    data: D,
    split: &(dyn Fn(D, usize) -> (D, D) + Sync),
    leaf: &(dyn Fn(Range<usize>, D, usize) + Sync),
) {
    fn go<D: Send>(
        items: Range<usize>,
        tasks: usize,
        data: D,
        split: &(dyn Fn(D, usize) -> (D, D) + Sync),
        leaf: &(dyn Fn(Range<usize>, D, usize) + Sync),
    ) {
        let count = items.len();
        if count <= 1 || tasks <= 1 {
            return leaf(items, data, tasks.max(1));
        }
        let half = count / 2;
        let (lt, rt) = share(tasks, half, count);
        let (l, r) = split(data, half);
        let mid = items.start + half;
        rayon::join(
            || task(|| go(items.start..mid, lt, l, split, leaf)),
            || task(|| go(mid..items.end, rt, r, split, leaf)),
        );
    }
    if count > 0 {
        go(0..count, tasks, data, split, leaf);
    }
}

/// Run `f(j0, block)` on the column blocks `[j0, j0 + width)` of `c` (the last one may be
/// narrower), in parallel on the current pool by recursive halving. Block boundaries
/// depend on `width` only, never on the thread count.
pub fn par_column_blocks(c: MatMut<'_>, width: usize, f: &(dyn Fn(usize, MatMut<'_>) + Sync)) {
    fn go(c: MatMut<'_>, j0: usize, width: usize, f: &(dyn Fn(usize, MatMut<'_>) + Sync)) {
        let blocks = c.cols().div_ceil(width);
        if blocks <= 1 {
            if c.cols() > 0 {
                f(j0, c);
            }
            return;
        }
        let cut = blocks / 2 * width;
        let (l, r) = c.split_cols(cut);
        rayon::join(|| task(|| go(l, j0, width, f)), || task(|| go(r, j0 + cut, width, f)));
    }
    go(c, 0, width.max(1), f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn shares_are_proportional_and_never_empty() {
        assert_eq!(share(2, 1, 2), (1, 1));
        assert_eq!(share(4, 1, 3), (1, 3));
        assert_eq!(share(3, 2, 4), (1, 2));
        for tasks in 2..9 {
            for count in 2..12 {
                let (l, r) = share(tasks, count / 2, count);
                assert!(l >= 1 && r >= 1 && l + r == tasks, "{tasks} {count}");
            }
        }
    }

    #[test]
    fn halving_covers_every_item_once() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for (count, tasks) in [(1, 1), (5, 1), (5, 2), (7, 3), (3, 8), (0, 2)] {
            let mut data = vec![0u32; count];
            let seen = Mutex::new(Vec::new());
            pool.install(|| {
                halve(count, tasks, &mut data[..], &|d, at| d.split_at_mut(at), &|items, d, t| {
                    assert_eq!(items.len(), d.len());
                    assert!(t >= 1);
                    d.iter_mut().for_each(|v| *v += 1);
                    seen.lock().unwrap().push(items);
                });
            });
            assert!(data.iter().all(|&v| v == 1), "{count} items, {tasks} tasks");
            let mut ranges = seen.into_inner().unwrap();
            ranges.sort_by_key(|r| r.start);
            assert_eq!(ranges.iter().map(|r| r.len()).sum::<usize>(), count);
        }
    }

    #[test]
    fn column_blocks_cover_every_column_once() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for (cols, width) in [(169, 16), (160, 16), (15, 16), (16, 16), (33, 16), (1, 1), (7, 3)] {
            let mut data = vec![0.0f32; 2 * cols];
            let blocks = Mutex::new(Vec::new());
            pool.install(|| {
                let f = |j0: usize, mut b: MatMut<'_>| {
                    for r in 0..b.rows() {
                        b.row_mut(r)[..].iter_mut().for_each(|v| *v += 1.0);
                    }
                    blocks.lock().unwrap().push((j0, b.cols()));
                };
                let c = MatMut::new(&mut data, 2, cols, cols);
                par_column_blocks(c, width, &f)
            });
            assert!(data.iter().all(|&v| v == 1.0), "{cols} cols of {width}");
            let mut blocks = blocks.into_inner().unwrap();
            blocks.sort();
            let (j, w) = *blocks.last().unwrap();
            assert_eq!(j + w, cols);
            for &(j0, w) in &blocks[..blocks.len() - 1] {
                assert!(w == width && j0 % width == 0, "{cols} cols: block {j0}+{w}");
            }
            assert!(w <= width, "{cols} cols: last block {w}");
        }
    }
}
