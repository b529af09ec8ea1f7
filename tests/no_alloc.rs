//! The steady-state inference path allocates nothing: after warm-up calls (which size the
//! workspace and each pool thread's packing buffer), `infer_into` at the same batch makes
//! no heap allocation, on the calling thread or on the model's pool threads, with
//! batching across callers on or off.
// A counting global allocator is `unsafe impl GlobalAlloc`: the only unsafe code here.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_infer_allocates_nothing() {
    let plan = alexnet::synthetic::spec_plan();
    let weights = alexnet::synthetic::weight_file(&plan, 1).expect("weights");
    let plain = alexnet::Model::builder().threads(2).from_bytes(weights.clone()).expect("model");
    // With batching on, a single caller leads one-image batches through the staging
    // buffers, which were allocated when the model opened.
    let batched = alexnet::Model::builder()
        .threads(2)
        .batching(4, std::time::Duration::from_millis(1))
        .from_bytes(weights)
        .expect("model");
    for (model, batch) in [(&plain, 1), (&plain, 3), (&batched, 1)] {
        let input = alexnet::synthetic::input(&plan, 2, batch);
        let mut out = vec![0.0f32; batch * model.num_classes()];
        // Warm-up: the workspace grows to this batch and every pool thread's packing
        // buffer to its largest block (which thread packs what varies, so run a few).
        for _ in 0..4 {
            model.infer_into(&input, &mut out).expect("infer");
        }
        ALLOCATIONS.store(0, Ordering::SeqCst);
        COUNTING.store(true, Ordering::SeqCst);
        for _ in 0..3 {
            model.infer_into(&input, &mut out).expect("infer");
        }
        COUNTING.store(false, Ordering::SeqCst);
        assert_eq!(ALLOCATIONS.load(Ordering::SeqCst), 0, "batch {batch}: allocations in steady state");
    }
}
