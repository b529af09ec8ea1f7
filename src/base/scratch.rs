//! Per-thread scratch buffers for the compute loops (the GEMM's packed blocks of B, the
//! pooling bands): each lives in a thread-local of the thread that uses it, grows once to
//! the largest request and is then reused, so the steady state allocates nothing.

use std::cell::RefCell;
use std::thread::LocalKey;

/// A thread's scratch buffer: `thread_local! { static S: Scratch = Scratch::new(); }`.
pub(crate) struct Scratch(RefCell<Vec<f32>>);

impl Scratch {
    /// An empty buffer.
    pub(crate) const fn new() -> Scratch {
        Scratch(RefCell::new(Vec::new()))
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
        if buf.len() < len + SLACK {
            buf.resize(len + SLACK, 0.0);
        }
        let skip = (ALIGN - buf.as_ptr().addr() % ALIGN) % ALIGN / std::mem::size_of::<f32>();
        f(&mut buf[skip..skip + len])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! { static T: Scratch = const { Scratch::new() }; }

    #[test]
    fn slices_are_cache_line_aligned_and_sized() {
        for len in [0, 1, 7, 16, 1000, 33, 100_000] {
            with(&T, len, |buf| {
                assert_eq!(buf.len(), len);
                assert_eq!(buf.as_ptr().addr() % ALIGN, 0, "len {len}");
            });
        }
    }
}
