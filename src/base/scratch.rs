//! Per-thread scratch buffers for the compute loops (the GEMM's packed blocks of B, the
//! pooling bands): each lives in a thread-local of the thread that uses it, grows to the
//! largest request and is then reused, so the steady state allocates nothing.
//!
//! Which thread runs which block varies from call to call (work stealing, a loaded
//! machine), so a thread may meet a larger request after the warm-up calls than it met
//! during them. Each kind of buffer therefore keeps a process-wide high-water mark, and a
//! thread's buffer grows to it whenever it is used. A mark that rose during a call is
//! also counted (`raised`); the model then grows every pool thread's buffers of every
//! kind to the marks (`presize`, once per rise), so that after the calls that first
//! meet each size no thread allocates, whatever it runs.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::LocalKey;

/// A thread's scratch buffer, with its kind's high-water mark shared by all threads
/// (made by [`new_scratch`]).
pub(crate) struct Scratch(RefCell<Vec<f32>>, &'static AtomicUsize);

impl Scratch {
    /// An empty buffer whose kind's largest request any thread made is kept in `high`
    /// (declare a kind with [`new_scratch`], which makes its mark).
    pub(crate) const fn new(high: &'static AtomicUsize) -> Scratch {
        Scratch(RefCell::new(Vec::new()), high)
    }
}

/// A new kind of scratch buffer with its own high-water mark:
/// `thread_local! { static S: Scratch = const { new_scratch!() }; }`. A kind the inference
/// path uses belongs in the model's list of kinds it grows on every worker.
macro_rules! new_scratch {
    () => {{
        static HIGH: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        $crate::base::scratch::Scratch::new(&HIGH)
    }};
}
pub(crate) use new_scratch;

/// How many times any kind's high-water mark has risen: a caller that saw it change
/// grows every thread's buffers with [`presize`].
static RAISED: AtomicUsize = AtomicUsize::new(0);

/// [`RAISED`]'s count.
pub(crate) fn raised() -> usize {
    RAISED.load(Ordering::Relaxed)
}

/// Grow this thread's buffers of each kind in `keys` to the kind's high-water mark (a
/// thread that has not used a kind yet gets it too), so that no later request of a size
/// already seen allocates here.
pub(crate) fn presize(keys: &[&'static LocalKey<Scratch>]) {
    for key in keys {
        with(key, 0, |_| ());
    }
}

/// Values of slack for aligning a buffer's start to [`ALIGN`] bytes.
const SLACK: usize = ALIGN / std::mem::size_of::<f32>();
/// Alignment of every scratch slice: a cache line, so vector loads and stores of packed
/// panels never straddle two lines whatever address the allocator returned.
const ALIGN: usize = 64;

/// Run `f` on this thread's buffer in `key`, grown to at least `len` values (contents
/// unspecified) and starting on a 64-byte boundary. Callers make no rayon call inside `f`, so the borrow cannot nest; if it
/// ever did, `f` gets a fresh buffer rather than a panic.
pub(crate) fn with<R>(key: &'static LocalKey<Scratch>, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    key.with(|s| {
        let mut fallback = Vec::new();
        let mut guard = s.0.try_borrow_mut().ok();
        let buf: &mut Vec<f32> = guard.as_deref_mut().unwrap_or(&mut fallback);
        let before = s.1.fetch_max(len, Ordering::Relaxed);
        if len > before {
            RAISED.fetch_add(1, Ordering::Relaxed);
        }
        let high = before.max(len);
        if buf.len() < high + SLACK {
            buf.resize(high + SLACK, 0.0);
        }
        let skip = (ALIGN - buf.as_ptr().addr() % ALIGN) % ALIGN / std::mem::size_of::<f32>();
        f(&mut buf[skip..skip + len])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! { static T: Scratch = const { new_scratch!() }; }

    #[test]
    fn slices_are_cache_line_aligned_and_sized() {
        for len in [0, 1, 7, 16, 1000, 33, 100_000] {
            with(&T, len, |buf| {
                assert_eq!(buf.len(), len);
                assert_eq!(buf.as_ptr().addr() % ALIGN, 0, "len {len}");
            });
        }
    }

    thread_local! { static U: Scratch = const { new_scratch!() }; }

    #[test]
    fn a_thread_grows_to_the_largest_request_any_thread_made() {
        std::thread::spawn(|| with(&U, 5000, |_| ())).join().unwrap();
        // This thread asks for less, but gets room for the other thread's request, so a
        // later request of that size here allocates nothing.
        with(&U, 10, |buf| assert_eq!(buf.len(), 10));
        U.with(|s| assert!(s.0.borrow().len() >= 5000 + SLACK));
    }
}
