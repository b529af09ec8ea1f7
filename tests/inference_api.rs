//! The inference API's refusals and documented edge cases (the "Inference API" section
//! of `docs/reliability.md`), each expecting its exact typed error or documented
//! behaviour: input and output lengths, empty and huge batches (refused before anything
//! batch-sized is allocated, including a batch whose workspace size overflows), unaligned
//! caller buffers, non-finite and subnormal inputs, top-k and label files. Elsewhere:
//! forcing an ISA the CPU lacks (`weight_file.rs`, `hostile_cli.rs`), agreement with the
//! scalar reference on every ISA and thread count (`kernels.rs`, `layers.rs`), concurrent
//! callers (`concurrency.rs`) and images (`image_input.rs`).
//!
//! A counting global allocator records the largest single allocation made by the calling
//! thread, so "refused before allocating" is checked, not assumed.
// A counting global allocator is `unsafe impl GlobalAlloc`: the only unsafe code here.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use alexnet::plan::{Layer, Pads, Plan, Preprocess};
use alexnet::synthetic::layers::{conv, linear, max_pool};
use alexnet::{labels, synthetic, Error, Model, DEFAULT_MAX_WORKSPACE_BYTES};

struct Tracking;

thread_local! {
    /// Largest allocation (bytes) this thread has requested since the last reset.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    /// Bytes this thread has requested since the last reset.
    static TOTAL: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    let _ = TOTAL.try_with(|t| t.set(t.get() + size));
}

// SAFETY: forwards to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Run `f` and return its result with (largest allocation, total bytes allocated) on
/// this thread while it ran.
fn tracked<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    LARGEST.with(|l| l.set(0));
    TOTAL.with(|t| t.set(0));
    let r = f();
    (r, LARGEST.with(Cell::get), TOTAL.with(Cell::get))
}

fn plan(input: [u32; 3], layers: Vec<Layer>) -> Plan {
    synthetic::layers::plan(input, Preprocess::torchvision(), layers)
}

/// `[3, 16, 16]` -> conv 3x3/2 -> flatten -> linear 5 -> softmax.
fn small() -> Plan {
    plan(
        [3, 16, 16],
        vec![conv("conv1", 4, 3, 2, Pads::uniform(1), 1, true), Layer::Flatten, linear("fc", 5, false), Layer::Softmax],
    )
}

/// One input value per image, 2^28 values (1 GiB) of activation per image: conv 1x1
/// padded to 2048 x 2048 with 64 channels, pooled to 2 x 2, one class.
fn deep() -> Plan {
    let pads = Pads { top: 1023, left: 1023, bottom: 1024, right: 1024 };
    let pool = max_pool(1024, 1024, Pads::default(), false);
    plan([1, 1, 1], vec![conv("conv1", 64, 1, 1, pads, 1, true), pool, Layer::Flatten, linear("fc", 1, false)])
}

/// One input value per image, 2^20 classes: the output dwarfs the input.
fn wide() -> Plan {
    plan([1, 1, 1], vec![Layer::Flatten, linear("fc", 1 << 20, false)])
}

fn model(plan: &Plan) -> Model {
    Model::builder().threads(2).from_bytes(synthetic::weight_file(plan, 1).unwrap()).unwrap()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn empty_batch_and_wrong_input_length_are_typed_errors() {
    let m = model(&small());
    let per = m.input_len();
    assert_eq!(per, 3 * 16 * 16);
    let mut out = vec![0.0f32; 5];
    assert!(matches!(m.infer(&[]), Err(Error::EmptyBatch)));
    assert!(matches!(m.infer_into(&[], &mut out), Err(Error::EmptyBatch)));
    assert!(matches!(m.infer_into(&[], &mut []), Err(Error::EmptyBatch)));
    assert!(matches!(m.infer_raw_into(&[], &mut out), Err(Error::EmptyBatch)));
    // Lengths that are not a whole number of images: one value, one short, one over, a
    // [3, 15, 16] image (wrong height), two images and a row.
    for len in [1, per - 1, per + 1, 3 * 15 * 16, 2 * per + 16] {
        let x = vec![0.25f32; len];
        let is_len = |r: Result<_, Error>| {
            matches!(r, Err(Error::InputLength { per_image, found, ref shape })
                if per_image == per && found == len && shape == "[N, 3, 16, 16]")
        };
        assert!(is_len(m.infer(&x).map(|_| ())), "infer, {len} values");
        assert!(is_len(m.infer_into(&x, &mut out)), "infer_into, {len} values");
        assert!(is_len(m.infer_raw_into(&x, &mut out)), "infer_raw_into, {len} values");
        // The input is checked before the output.
        assert!(is_len(m.infer_into(&x, &mut [])), "infer_into, {len} values, empty output");
    }
    // Documented: the batch is input.len() / (C*H*W); two images flat are a batch of 2,
    // each equal to its own call.
    let x = synthetic::input(&small(), 3, 2);
    let both = m.infer(&x).unwrap();
    assert_eq!(both.len(), 10);
    assert_eq!(bits(&both[..5]), bits(&m.infer(&x[..per]).unwrap()));
    assert_eq!(bits(&both[5..]), bits(&m.infer(&x[per..]).unwrap()));
}

#[test]
fn huge_batch_is_refused_before_allocating() {
    // 16 images of one value each need 16 GiB of workspace here: over the default cap.
    let m = model(&deep());
    assert_eq!((m.input_len(), m.num_classes()), (1, 1));
    let x = vec![0.5f32; 16];
    let mut out = vec![0.0f32; 16];
    let too_large = |r: &Result<(), Error>| {
        matches!(r, Err(Error::BatchTooLarge { batch: 16, limit_bytes: DEFAULT_MAX_WORKSPACE_BYTES }))
    };
    let (r, largest, _) = tracked(|| m.infer_into(&x, &mut out));
    assert!(too_large(&r), "{r:?}");
    assert!(largest < 1 << 16, "infer_into allocated {largest} bytes before refusing");
    let (r, largest, _) = tracked(|| m.infer(&x).map(|_| ()));
    assert!(too_large(&r), "{r:?}");
    assert!(largest < 1 << 16, "infer allocated {largest} bytes before refusing");
    // A lower cap is honoured the same way; batch 1 still runs under the default.
    let capped = Model::builder().max_workspace_bytes(1 << 20).from_bytes(synthetic::weight_file(&small(), 1).unwrap());
    let capped = capped.unwrap();
    let x = synthetic::input(&small(), 1, 256);
    assert!(matches!(capped.infer(&x), Err(Error::BatchTooLarge { batch: 256, limit_bytes: 1_048_576 })));
    assert_eq!(capped.infer(&x[..capped.input_len()]).unwrap().len(), 5);
}

#[test]
fn infer_checks_the_cap_before_allocating_its_output() {
    // 16 one-value images, 2^20 classes: a 64 MiB output for a 64-byte input. The cap
    // refuses the batch, so nothing batch-sized may be allocated first. (Unfixed, the same
    // path turns an 8192-value input into a 32 GiB allocation and an OOM abort.)
    let m = Model::builder().max_workspace_bytes(1 << 20).from_bytes(synthetic::weight_file(&wide(), 1).unwrap());
    let m = m.unwrap();
    let (r, largest, _) = tracked(|| m.infer(&[0.5f32; 16]).map(|_| ()));
    assert!(matches!(r, Err(Error::BatchTooLarge { batch: 16, .. })), "{r:?}");
    assert!(largest < 1 << 20, "infer allocated {largest} bytes before refusing the batch");
}

#[test]
fn a_call_allocates_no_more_than_the_cap() {
    // conv1 (stride 2) on the largest activation: its phased input is as large as the
    // image. Find the smallest cap that accepts batch 4, then check the first call at
    // that cap (which grows the workspace from nothing) stays within it.
    let p = plan(
        [3, 64, 64],
        vec![conv("conv1", 2, 3, 2, Pads::uniform(1), 1, true), Layer::Flatten, linear("fc", 3, false)],
    );
    let bytes = synthetic::weight_file(&p, 1).unwrap();
    let x = synthetic::input(&p, 2, 4);
    let mut out = vec![0.0f32; 12];
    let mut accepts = |cap: u64| {
        let m = Model::builder().threads(1).max_workspace_bytes(cap).from_bytes(bytes.clone()).unwrap();
        match m.infer_into(&x, &mut out) {
            Ok(()) => true,
            Err(Error::BatchTooLarge { .. }) => false,
            Err(e) => panic!("{e}"),
        }
    };
    let (mut lo, mut hi) = (0u64, 1u64 << 30);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if accepts(mid) {
            hi = mid
        } else {
            lo = mid
        }
    }
    let m = Model::builder().threads(1).max_workspace_bytes(hi).from_bytes(bytes).unwrap();
    let (r, _, total) = tracked(|| m.infer_into(&x, &mut out));
    r.unwrap();
    // Slack for the workspace cache's own bookkeeping.
    assert!(total as u64 <= hi + 4096, "a call capped at {hi} bytes allocated {total}");
}

#[test]
fn workspace_size_overflow_is_an_error() {
    // 2^33 one-value images of `deep()` need 2^28 * 2 * 4 bytes each: 2^64 in all. The
    // input and output slices (32 GiB each) live in one sparse file mapped shared, so
    // nothing is committed unless the model touches them, which it must not.
    let batch = 1usize << 33;
    let file = tempfile::tempfile().unwrap();
    file.set_len(2 * 4 * batch as u64).unwrap();
    // SAFETY: the file is anonymous (unlinked from the start) and private to this test: no
    // one else can open it, so no one truncates it while mapped.
    let mut map = unsafe { memmap2::MmapMut::map_mut(&file) }.unwrap();
    let (input, output) = map.split_at_mut(4 * batch);
    let input: &[f32] = bytemuck::cast_slice(input);
    let output: &mut [f32] = bytemuck::cast_slice_mut(output);
    let m = model(&deep());
    let r = m.infer_into(input, output);
    assert!(matches!(r, Err(Error::Overflow(_))), "{r:?}");
    let r = m.infer_raw_into(input, output);
    assert!(matches!(r, Err(Error::Overflow(_))), "{r:?}");
    // Far below the overflow, the same request is simply too large.
    let small = batch / 64;
    let r = m.infer_into(&input[..small], &mut output[..small]);
    assert!(matches!(r, Err(Error::BatchTooLarge { batch: b, .. }) if b == small), "{r:?}");
}

#[test]
fn wrong_output_length_is_refused_and_unaligned_buffers_work() {
    let m = model(&small());
    let per = m.input_len();
    let x = synthetic::input(&small(), 4, 3);
    for len in [0, 1, 14, 16, 100] {
        let mut out = vec![0.0f32; len];
        let r = m.infer_into(&x, &mut out);
        assert!(matches!(r, Err(Error::OutputLength { expected: 15, found }) if found == len), "{len}: {r:?}");
        let r = m.infer_raw_into(&x, &mut out);
        assert!(matches!(r, Err(Error::OutputLength { expected: 15, found }) if found == len), "{len}: {r:?}");
        assert!(out.iter().all(|&v| v == 0.0), "output written on error");
    }
    // Input and output starting one f32 into their allocations (4 bytes off any vector
    // alignment) give the aligned results bit for bit, and nothing is written outside.
    let want = m.infer(&x).unwrap();
    let mut raw_want = vec![0.0f32; 15];
    m.infer_raw_into(&x, &mut raw_want).unwrap();
    for offset in 1..4 {
        let mut shifted = vec![f32::NAN; offset + x.len()];
        shifted[offset..].copy_from_slice(&x);
        let mut out = vec![-7.0f32; offset + 15 + 1];
        m.infer_into(&shifted[offset..], &mut out[offset..offset + 15]).unwrap();
        assert_eq!(bits(&out[offset..offset + 15]), bits(&want), "offset {offset}");
        assert!(out[..offset].iter().chain(&out[offset + 15..]).all(|&v| v == -7.0), "offset {offset}: guard hit");
        m.infer_raw_into(&shifted[offset..], &mut out[offset..offset + 15]).unwrap();
        assert_eq!(bits(&out[offset..offset + 15]), bits(&raw_want), "raw, offset {offset}");
        // A single image from the middle of the shifted batch.
        let one = m.infer(&shifted[offset + per..offset + 2 * per]).unwrap();
        assert_eq!(bits(&one), bits(&want[5..10]), "image 1 alone, offset {offset}");
    }
}

#[test]
fn nan_inf_and_subnormal_inputs_behave_as_documented() {
    let p = small();
    let m = model(&p);
    let per = m.input_len();
    let clean = synthetic::input(&p, 6, 1);
    let clean_probs = m.infer(&clean).unwrap();
    // An all-NaN image: NaN reaches every probability, and the other image of the batch
    // is unaffected (equal to its own call bit for bit).
    let mut x = vec![f32::NAN; per];
    x.extend_from_slice(&clean);
    let probs = m.infer(&x).unwrap();
    assert!(probs[..5].iter().all(|v| v.is_nan()), "{:?}", &probs[..5]);
    assert_eq!(bits(&probs[5..]), bits(&clean_probs));
    // A single NaN value: it reaches the output.
    let mut one = clean.clone();
    one[per / 2 + 8] = f32::NAN;
    assert!(m.infer(&one).unwrap().iter().any(|v| v.is_nan()));
    // Infinities: no panic, each probability NaN or within [0, 1].
    for inf in [f32::INFINITY, f32::NEG_INFINITY] {
        let mut y = clean.clone();
        y.iter_mut().step_by(3).for_each(|v| *v = inf);
        let probs = m.infer(&y).unwrap();
        assert_eq!(probs.len(), 5);
        assert!(probs.iter().all(|p| p.is_nan() || (0.0..=1.0).contains(p)), "{inf}: {probs:?}");
    }
    // Subnormal inputs are ordinary numbers: finite probabilities summing to 1, within a
    // rounding of the all-zero image's.
    let sub = vec![f32::MIN_POSITIVE / 8.0; per];
    let zero = m.infer(&vec![0.0; per]).unwrap();
    let probs = m.infer(&sub).unwrap();
    assert!(probs.iter().all(|p| p.is_finite()));
    assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    assert!(probs.iter().zip(&zero).all(|(a, b)| (a - b).abs() < 1e-6), "{probs:?} vs {zero:?}");
    // top_k on NaN probabilities: NaN sorts last (documented), no panic.
    let t = labels::top_k(&[f32::NAN, 0.2, f32::NAN, 0.7], 4).unwrap();
    assert_eq!(t.iter().map(|&(c, _)| c).collect::<Vec<_>>(), vec![3, 1, 0, 2]);
}

#[test]
fn top_k_and_label_files_refuse_bad_counts_and_paths() {
    let probs = [0.1f32, 0.3, 0.2, 0.4];
    for k in [0, 5, usize::MAX] {
        assert!(matches!(labels::top_k(&probs, k), Err(Error::InvalidArgument(_))), "k = {k}");
    }
    assert!(matches!(labels::top_k(&[], 1), Err(Error::InvalidArgument(_))));
    assert_eq!(labels::top_k(&probs, 4).unwrap(), vec![(3, 0.4), (1, 0.3), (2, 0.2), (0, 0.1)]);
    assert_eq!(labels::top_k(&probs, 1).unwrap(), vec![(3, 0.4)]);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("labels.txt");
    for (text, lines) in [("a\nb\n", 2), ("a\nb\nc\nd\n", 4), ("", 0), ("a\nb\nc", 3)] {
        std::fs::write(&file, text).unwrap();
        let r = labels::read_label_file(&file, 3);
        if lines == 3 {
            assert_eq!(r.unwrap(), vec!["a", "b", "c"]);
        } else {
            assert!(matches!(r, Err(Error::InvalidArgument(_))), "{lines} lines for 3 classes: {r:?}");
        }
    }
    // CRLF line ends are stripped.
    std::fs::write(&file, "x\r\ny\r\nz\r\n").unwrap();
    assert_eq!(labels::read_label_file(&file, 3).unwrap(), vec!["x", "y", "z"]);
    assert!(matches!(labels::read_label_file(dir.path(), 3), Err(Error::NotRegularFile(_))));
    assert!(matches!(labels::read_label_file(&dir.path().join("missing"), 3), Err(Error::Io { .. })));
    std::fs::write(&file, [0xffu8, 0xfe, b'\n']).unwrap();
    assert!(matches!(labels::read_label_file(&file, 1), Err(Error::Io { .. })), "non-UTF-8 label file");
    #[cfg(unix)]
    assert!(matches!(labels::read_label_file(std::path::Path::new("/dev/null"), 3), Err(Error::NotRegularFile(_))));
    // Labels for a model: the file's when they fit, else ImageNet's for 1000, else indices.
    assert_eq!(labels::for_model(&["p".into(), "q".into()], 2), vec!["p", "q"]);
    assert_eq!(labels::for_model(&["p".into()], 2), vec!["0", "1"]);
    assert_eq!(labels::for_model(&[], 1000)[0], labels::imagenet()[0]);
}
