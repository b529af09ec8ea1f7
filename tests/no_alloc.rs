//! The steady-state inference path allocates nothing: after warm-up calls (which size the
//! workspace and each pool thread's packing buffer), `infer_into` at the same batch makes
//! no heap allocation, on the calling thread or on the model's pool threads.
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
    let model = alexnet::Model::builder()
        .threads(2)
        .from_bytes(alexnet::synthetic::weight_file(&plan, 1).expect("weights"))
        .expect("model");
    for batch in [1, 3] {
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
