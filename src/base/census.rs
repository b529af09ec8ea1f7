//! A census of the parallel tasks a layer offers: how many, and how much work each holds.
//!
//! Code that shares work out marks each piece it offers the pool ([`task`]: each side of a
//! `rayon::join`, each item of a parallel iterator); kernels say how much work they do
//! ([`work`]: floating-point operations for products, values read or written times the
//! window for the memory-bound layers). A task's work is what ran inside it on its own
//! thread, less the tasks nested in it: those are counted on their own, wherever they ran.
//!
//! Nothing is recorded except on the threads of a census pool ([`pool`]), which
//! `Model::partition` makes for the purpose; on every other thread a mark costs one
//! thread-local read. The result is a model of the split, not a measurement: it says
//! how evenly the work is cut, which bounds the speed-up at that many threads whatever
//! the machine (`docs/performance.md`, "Scaling").

use std::cell::{Cell, RefCell};
use std::sync::Mutex;

thread_local! {
    /// True on the threads of a census pool.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// The work of the tasks open on this thread, innermost last.
    static OPEN: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

/// The work of every task finished since the last [`take`], on any census thread.
static DONE: Mutex<Vec<f64>> = Mutex::new(Vec::new());

/// Run `f` as one task offered to the pool.
#[inline]
pub fn task<R>(f: impl FnOnce() -> R) -> R {
    if !COUNTING.get() {
        return f();
    }
    OPEN.with_borrow_mut(|o| o.push(0.0));
    let r = f();
    let w = OPEN.with_borrow_mut(|o| o.pop()).unwrap_or(0.0);
    if w > 0.0 {
        DONE.lock().unwrap_or_else(|e| e.into_inner()).push(w);
    }
    r
}

/// Count `units` of work toward the innermost open task (or a task of its own, if none
/// is open).
#[inline]
pub fn work(units: f64) {
    if !COUNTING.get() {
        return;
    }
    let open = OPEN.with_borrow_mut(|o| o.last_mut().map(|w| *w += units).is_some());
    if !open {
        DONE.lock().unwrap_or_else(|e| e.into_inner()).push(units);
    }
}

/// The work of the tasks finished since the last call, in no particular order.
pub fn take() -> Vec<f64> {
    std::mem::take(&mut *DONE.lock().unwrap_or_else(|e| e.into_inner()))
}

/// A pool of `threads` whose threads count. One census runs at a time (the caller holds
/// [`exclusive`]): the finished tasks of all census pools go to one list.
pub fn pool(threads: usize) -> Result<rayon::ThreadPool, rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("alexnet-census-{i}"))
        .start_handler(|_| COUNTING.set(true))
        .build()
}

/// The lock a census holds while it runs.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a layer's tasks say about its split at `threads` threads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Partition {
    /// Tasks that do any work.
    pub tasks: usize,
    /// The largest task's share of the layer's work (1 for a layer that runs as one task;
    /// `1 / threads` is an even split).
    pub largest: f64,
    /// The layer's work: floating-point operations for products, values moved (times the
    /// window) for the memory-bound layers.
    pub work: f64,
}

impl Partition {
    /// Summarise a layer's tasks.
    pub fn of(tasks: &[f64]) -> Partition {
        let work: f64 = tasks.iter().sum();
        let max = tasks.iter().copied().fold(0.0, f64::max);
        Partition { tasks: tasks.len(), largest: if work > 0.0 { max / work } else { 0.0 }, work }
    }

    /// The speed-up the split allows at `threads` threads: no more than the threads, and
    /// no more than the work over its largest task (which one thread runs alone).
    pub fn speedup_bound(&self, threads: usize) -> f64 {
        if self.largest > 0.0 {
            (1.0 / self.largest).min(threads as f64)
        } else {
            threads as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_nest_and_count_only_on_census_threads() {
        // Off a census pool nothing is recorded.
        task(|| work(5.0));
        let _one = exclusive();
        let _ = take();
        work(1.0);
        assert!(take().is_empty());
        let pool = pool(3).unwrap();
        pool.install(|| {
            task(|| {
                work(2.0);
                // Both halves are tasks of their own; the outer keeps only its own work.
                rayon::join(|| task(|| work(3.0)), || task(|| work(4.0)));
                task(|| {});
            })
        });
        let mut got = take();
        got.sort_by(f64::total_cmp);
        assert_eq!(got, vec![2.0, 3.0, 4.0]);
        let p = Partition::of(&got);
        assert_eq!((p.tasks, p.work), (3, 9.0));
        assert!((p.largest - 4.0 / 9.0).abs() < 1e-12);
        assert_eq!(p.speedup_bound(2), 2.0);
        assert!((p.speedup_bound(16) - 9.0 / 4.0).abs() < 1e-12);
    }
}
