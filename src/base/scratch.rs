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

/// Run `f` on this thread's buffer in `key`, grown to at least `len` values (contents
/// unspecified). Callers make no rayon call inside `f`, so the borrow cannot nest; if it
/// ever did, `f` gets a fresh buffer rather than a panic.
pub(crate) fn with<R>(key: &'static LocalKey<Scratch>, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    key.with(|s| {
        let mut fallback = Vec::new();
        let mut guard = s.0.try_borrow_mut().ok();
        let buf: &mut Vec<f32> = guard.as_deref_mut().unwrap_or(&mut fallback);
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len])
    })
}
