//! Loading hostile weight files (the "Weight files" section of `docs/reliability.md`):
//! truncated, mis-tagged, oversized, malformed, misplaced and misaligned contents, and
//! paths that are not regular files, each expecting its typed error; the same validation
//! from bytes, mapped and owned opens; and what the format accepts on purpose (NaN
//! weights, a checksum verified only on request).

use alexnet::plan::{Conv, Layer, Pads, Plan, Preprocess};
use alexnet::synthetic::layers;
use alexnet::weights::format::{self, Dtype, Layout, TensorEntry};
use alexnet::{synthetic, Error, Model, WeightFile};

fn small_plan() -> Plan {
    layers::plan(
        [3, 16, 16],
        Preprocess::torchvision(),
        vec![
            layers::conv("conv1", 4, 3, 2, Pads::uniform(1), 1, true),
            Layer::Flatten,
            layers::linear("fc", 5, false),
            Layer::Softmax,
        ],
    )
}

fn good_bytes() -> Vec<u8> {
    synthetic::weight_file(&small_plan(), 1).unwrap()
}

fn open(bytes: Vec<u8>) -> Result<WeightFile, Error> {
    WeightFile::from_bytes(bytes)
}

/// The valid table for `small_plan`, and its data section.
fn parts() -> (Plan, Vec<TensorEntry>, Vec<u8>) {
    let bytes = good_bytes();
    let f = open(bytes.clone()).unwrap();
    let data_offset = u64::from_le_bytes(bytes[24..32].try_into().unwrap()) as usize;
    (f.plan().clone(), f.tensors().to_vec(), bytes[data_offset..].to_vec())
}

fn with_table(edit: impl FnOnce(&mut Plan, &mut Vec<TensorEntry>, &mut Vec<u8>)) -> Result<WeightFile, Error> {
    let (mut plan, mut table, mut data) = parts();
    edit(&mut plan, &mut table, &mut data);
    open(format::assemble(&plan, &table, &data).unwrap())
}

#[test]
fn valid_file_opens_and_round_trips() {
    let f = open(good_bytes()).unwrap();
    assert_eq!(f.plan(), &small_plan());
    assert!(f.verify_checksum().unwrap());
    let weights = synthetic::weights(&small_plan(), 1).unwrap();
    for t in &weights {
        assert_eq!(f.tensor(&t.name).unwrap(), &t.data[..]);
    }
}

#[test]
fn empty_or_short_file_is_truncated() {
    assert!(matches!(open(vec![]), Err(Error::Truncated { .. })));
    assert!(matches!(open(good_bytes()[..63].to_vec()), Err(Error::Truncated { .. })));
}

#[test]
fn truncation_at_every_boundary_is_refused() {
    let bytes = good_bytes();
    for cut in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
        let r = open(bytes[..cut].to_vec());
        assert!(r.is_err(), "cut at {cut} accepted");
    }
}

#[test]
fn bad_magic_version_or_byte_order_is_refused() {
    let mut b = good_bytes();
    b[0] = b'X';
    assert!(matches!(open(b), Err(Error::BadMagic)));
    let mut b = good_bytes();
    b[8] = 2;
    assert!(matches!(open(b), Err(Error::UnsupportedVersion { found: 2, .. })));
    let mut b = good_bytes();
    b[12..16].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    assert!(matches!(open(b), Err(Error::ByteOrder(_))));
}

#[test]
fn huge_header_lengths_and_layer_count_are_capped() {
    let mut b = good_bytes();
    b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(open(b), Err(Error::TooLarge { .. })));
    let mut b = good_bytes();
    b[16..24].copy_from_slice(&(1u64 << 20).to_le_bytes());
    assert!(matches!(open(b), Err(Error::Truncated { .. })));
    let mut b = good_bytes();
    b[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(open(b), Err(Error::Overflow(_))));
    // Layer count (after input, color, scale, mean, std, resize = 12+1+4+12+12+4 bytes).
    let mut b = good_bytes();
    b[64 + 45..64 + 49].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(open(b), Err(Error::TooLarge { what: "layer count", .. })));
    let mut b = good_bytes();
    b[64 + 45..64 + 49].copy_from_slice(&200u32.to_le_bytes());
    assert!(open(b).is_err());
}

/// Offset of the tensor count in `good_bytes()`: just before the first table entry
/// (a u16 name length, then "conv1.weight"); the label count is the u32 before it.
fn tensor_count_at(b: &[u8]) -> usize {
    b.windows(14).position(|w| w == b"\x0c\x00conv1.weight").unwrap() - 4
}

#[test]
fn huge_tensor_label_and_layer_counts_are_capped() {
    let at = tensor_count_at(&good_bytes());
    let mut b = good_bytes();
    assert_eq!(u32::from_le_bytes(b[at..at + 4].try_into().unwrap()), 4, "tensor count located");
    b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(open(b), Err(Error::TooLarge { what: "tensor count", value: 0xffff_ffff, .. })));
    // Under the cap but more entries than the metadata could hold.
    let mut b = good_bytes();
    b[at..at + 4].copy_from_slice(&1000u32.to_le_bytes());
    assert!(matches!(open(b), Err(Error::Truncated { what: "tensor count", .. })));
    let mut b = good_bytes();
    b[at - 4..at].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(open(b), Err(Error::TooLarge { what: "label count", .. })));
    let mut b = good_bytes();
    b[at - 4..at].copy_from_slice(&(1u32 << 19).to_le_bytes());
    assert!(matches!(open(b), Err(Error::Truncated { what: "label count", .. })));
    // The layer cap is exact: 257 is refused as too large, 256 gets as far as parsing.
    let mut b = good_bytes();
    b[64 + 45..64 + 49].copy_from_slice(&257u32.to_le_bytes());
    assert!(matches!(open(b), Err(Error::TooLarge { what: "layer count", value: 257, limit: 256 })));
    let mut b = good_bytes();
    b[64 + 45..64 + 49].copy_from_slice(&256u32.to_le_bytes());
    let r = open(b);
    assert!(r.is_err() && !matches!(r, Err(Error::TooLarge { .. })), "{r:?}");
    // Tensor rank above the cap (the rank byte follows the name, dtype and layout).
    let mut b = good_bytes();
    let rank_at = at + 4 + 2 + 12 + 2;
    assert_eq!(b[rank_at], 4, "rank located");
    b[rank_at] = 200;
    assert!(matches!(open(b), Err(Error::TooLarge { what: "tensor rank", value: 200, .. })));
}

/// An edit of a valid file's bytes.
type ByteEdit = dyn Fn(&mut Vec<u8>);

#[test]
fn path_and_bytes_share_one_validation() {
    // The same hostile bytes give the same error variant from memory, mapped and owned.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.alexnet");
    let at = tensor_count_at(&good_bytes());
    let edits: Vec<(&str, Box<ByteEdit>)> = vec![
        ("empty", Box::new(|b| b.clear())),
        ("short header", Box::new(|b| b.truncate(40))),
        ("magic", Box::new(|b| b[1] = b'x')),
        ("version", Box::new(|b| b[8] = 9)),
        ("byte order", Box::new(|b| b[12..16].reverse())),
        ("metadata length", Box::new(|b| b[16..24].copy_from_slice(&u64::MAX.to_le_bytes()))),
        ("tensor count", Box::new(move |b| b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes()))),
        ("trailing byte", Box::new(|b| b.push(0))),
        ("cut data", Box::new(|b| b.truncate(b.len() - 4))),
    ];
    for (what, edit) in edits {
        let mut b = good_bytes();
        edit(&mut b);
        std::fs::write(&path, &b).unwrap();
        let from_bytes = std::mem::discriminant(&open(b).unwrap_err());
        let mapped = std::mem::discriminant(&Model::open(&path).unwrap_err());
        let owned = std::mem::discriminant(&Model::open_owned(&path).unwrap_err());
        assert_eq!(from_bytes, mapped, "{what}: mapped open differs from bytes");
        assert_eq!(from_bytes, owned, "{what}: owned open differs from bytes");
    }
}

#[test]
fn malformed_plan_or_tensor_table_is_refused() {
    // Not UTF-8.
    let mut b = good_bytes();
    let at = b.windows(5).position(|w| w == b"conv1").unwrap();
    b[at] = 0xff;
    assert!(matches!(open(b), Err(Error::Malformed(_))));
    // Unknown layer kind (the first layer tag follows the layer count).
    let mut b = good_bytes();
    b[64 + 49] = 99;
    assert!(matches!(open(b), Err(Error::Malformed(_))));
    // Duplicate, missing.
    assert!(matches!(with_table(|_, t, _| t[3].name = "fc.weight".into()), Err(Error::DuplicateTensor(_))));
    assert!(matches!(with_table(|_, t, _| t[3].name = "fc.other".into()), Err(Error::MissingTensor(_))));
    // Impossible hyperparameters.
    let set_conv = |f: fn(&mut Conv)| {
        with_table(move |p, _, _| {
            if let Layer::Conv(c) = &mut p.layers[0] {
                f(c)
            }
        })
    };
    assert!(matches!(set_conv(|c| c.stride = [0, 1]), Err(Error::InvalidLayer { .. })));
    assert!(matches!(set_conv(|c| c.kernel = [40, 3]), Err(Error::InvalidLayer { .. })));
    assert!(matches!(set_conv(|c| c.groups = 2), Err(Error::InvalidLayer { .. })));
    assert!(matches!(set_conv(|c| c.groups = 0), Err(Error::InvalidLayer { .. })));
    assert!(matches!(set_conv(|c| c.out_channels = u32::MAX), Err(Error::InvalidLayer { .. })));
    let r = with_table(|p, _, _| p.layers.swap(0, 1));
    assert!(matches!(r, Err(Error::InvalidLayer { .. })), "{r:?}");
    let r = with_table(|p, _, _| p.labels = vec!["a".into()]);
    assert!(matches!(r, Err(Error::Malformed(_))), "{r:?}");
    let r = with_table(|p, _, _| p.preprocess.std = [0.0, 1.0, 1.0]);
    assert!(matches!(r, Err(Error::Malformed(_))), "{r:?}");
}

#[test]
fn unsupported_dtype_or_layout_is_refused() {
    let mut b = good_bytes();
    let at = b.windows(12).position(|w| w == b"conv1.weight").unwrap() + 12;
    b[at] = 7;
    assert!(matches!(open(b), Err(Error::UnsupportedDtype { code: 7, .. })));
    let mut b = good_bytes();
    b[at + 1] = 9;
    assert!(matches!(open(b), Err(Error::UnsupportedLayout { code: 9, .. })));
    let _ = (Dtype::F32, Layout::RowMajor);
}

#[test]
fn tensor_shape_disagreeing_with_the_plan_is_a_mismatch() {
    let r = with_table(|_, t, _| t[0].shape = vec![4, 3, 9, 1]);
    assert!(matches!(r, Err(Error::ShapeMismatch { .. })), "{r:?}");
    let r = with_table(|p, _, _| {
        if let Layer::Linear(l) = &mut p.layers[2] {
            l.out_features = 6
        }
    });
    assert!(matches!(r, Err(Error::ShapeMismatch { .. })), "{r:?}");
}

#[test]
fn overflowing_sizes_are_refused() {
    let r = with_table(|_, t, _| t[0].shape = vec![u64::MAX, 2, 3, 3]);
    assert!(matches!(r, Err(Error::Overflow(_))), "{r:?}");
    let r = with_table(|_, t, _| t[0].offset = u64::MAX - 63);
    assert!(matches!(r, Err(Error::Overflow(_))), "{r:?}");
    let r = with_table(|p, _, _| p.input = [3, u32::MAX, 16]);
    assert!(matches!(r, Err(Error::InvalidLayer { .. })), "{r:?}");
}

#[test]
fn out_of_bounds_overlapping_gapped_or_trailing_data_is_refused() {
    let r = with_table(|_, t, _| t[3].offset += 64);
    assert!(matches!(r, Err(Error::TensorOutOfBounds { .. })), "{r:?}");
    let r = with_table(|_, t, _| t[1].offset = t[0].offset);
    assert!(matches!(r, Err(Error::OverlappingTensors { .. })), "{r:?}");
    let r = with_table(|_, _, d| d.extend_from_slice(&[0; 64]));
    assert!(matches!(r, Err(Error::TrailingBytes(64))), "{r:?}");
    let r = with_table(|_, t, _| t[1].len = 12);
    assert!(matches!(r, Err(Error::TensorLength { .. })), "{r:?}");
    let mut b = good_bytes();
    b.push(0);
    assert!(matches!(open(b), Err(Error::TrailingBytes(1))));
    // A gap bigger than alignment padding between two tensors.
    let r = with_table(|_, t, d| {
        d.splice(t[3].offset as usize..t[3].offset as usize, [0u8; 64]);
        t[3].offset += 64;
    });
    assert!(matches!(r, Err(Error::Gap { .. })), "{r:?}");
}

#[test]
fn misaligned_tensor_offset_is_refused() {
    let r = with_table(|_, t, _| t[1].offset += 4);
    assert!(matches!(r, Err(Error::Misaligned { .. })), "{r:?}");
}

#[test]
fn nan_weights_are_accepted() {
    let r = with_table(|_, t, d| {
        let o = t[0].offset as usize;
        d[o..o + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    let f = r.unwrap();
    assert!(f.tensor("conv1.weight").unwrap()[0].is_nan());
}

#[test]
fn checksum_mismatch_is_detected_on_request() {
    let mut b = good_bytes();
    let last = b.len() - 1;
    b[last] ^= 0x40;
    let f = open(b.clone()).unwrap();
    assert!(matches!(f.verify_checksum(), Err(Error::ChecksumMismatch { .. })));
    assert!(matches!(Model::builder().verify_checksum(true).from_bytes(b), Err(Error::ChecksumMismatch { .. })));
}

#[test]
fn non_regular_paths_are_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(Model::open(dir.path()), Err(Error::NotRegularFile(_))));
    assert!(matches!(Model::open(dir.path().join("missing")), Err(Error::Io { .. })));
    #[cfg(unix)]
    {
        let fifo = dir.path().join("fifo");
        let ok = std::process::Command::new("mkfifo").arg(&fifo).status().map(|s| s.success()).unwrap_or(false);
        if ok {
            assert!(matches!(Model::open(&fifo), Err(Error::NotRegularFile(_))));
            assert!(matches!(Model::open_owned(&fifo), Err(Error::NotRegularFile(_))));
        }
        assert!(matches!(Model::open("/dev/null"), Err(Error::NotRegularFile(_))));
    }
    let empty = dir.path().join("empty.alexnet");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(Model::open(&empty), Err(Error::Truncated { .. })));
}

#[test]
fn mapped_and_owned_opens_give_the_same_results() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.alexnet");
    format::write_file(&path, &small_plan(), &synthetic::weights(&small_plan(), 1).unwrap()).unwrap();
    let mapped = Model::open(&path).unwrap();
    let owned = Model::open_owned(&path).unwrap();
    assert!(mapped.weight_file().is_mapped());
    assert!(!owned.weight_file().is_mapped());
    let x = synthetic::input(&small_plan(), 4, 2);
    assert_eq!(mapped.infer(&x).unwrap(), owned.infer(&x).unwrap());
    // The writer replaced the file atomically: no temp file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn large_file_writes_and_opens_the_same_in_both_modes() {
    // A linear layer of 256 inputs x 9000 outputs: the file (about 9.3 MB) spans two whole
    // 4 MiB write blocks of the writer and a partial one.
    let mut plan = small_plan();
    plan.layers[2] = layers::linear("fc", 9_000, false);
    plan.layers.insert(3, layers::linear("fc2", 5, false));
    let tensors = synthetic::weights(&plan, 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.alexnet");
    format::write_file(&path, &plan, &tensors).unwrap();
    let written = std::fs::read(&path).unwrap();
    assert!(written.len() > 8 << 20, "{} bytes", written.len());
    assert_eq!(written, format::to_bytes(&plan, &tensors).unwrap());
    let (mapped, owned) = (Model::open(&path).unwrap(), Model::open_owned(&path).unwrap());
    assert!(mapped.weight_file().verify_checksum().unwrap() && owned.weight_file().verify_checksum().unwrap());
    for t in &tensors {
        assert_eq!(owned.weight_file().tensor(&t.name).unwrap(), &t.data[..]);
    }
    let x = synthetic::input(&plan, 2, 5);
    assert_eq!(mapped.infer(&x).unwrap(), owned.infer(&x).unwrap());
}

#[test]
fn owned_model_survives_the_file_changing() {
    // The documented escape from "a mapped file must not change": an owned model keeps
    // working, with the same results, after its file is truncated and then rewritten.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.alexnet");
    std::fs::write(&path, good_bytes()).unwrap();
    let owned = Model::open_owned(&path).unwrap();
    let x = synthetic::input(&small_plan(), 8, 2);
    let before = owned.infer(&x).unwrap();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
    assert_eq!(owned.infer(&x).unwrap(), before);
    std::fs::write(&path, vec![0xA5u8; good_bytes().len()]).unwrap();
    assert_eq!(owned.infer(&x).unwrap(), before);
    assert!(matches!(Model::open(&path), Err(Error::BadMagic)));
}

#[test]
fn path_through_a_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, good_bytes()).unwrap();
    assert!(matches!(Model::open(file.join("child")), Err(Error::Io { .. })));
    assert!(matches!(Model::open_owned(file.join("child")), Err(Error::Io { .. })));
    assert!(matches!(WeightFile::open(file.join("child"), alexnet::OpenMode::Mapped), Err(Error::Io { .. })));
}

#[test]
fn mapped_open_copies_no_weight_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.alexnet");
    format::write_file(&path, &small_plan(), &synthetic::weights(&small_plan(), 1).unwrap()).unwrap();
    let f = WeightFile::open(&path, alexnet::OpenMode::Mapped).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    // Views point into the map: their addresses lie inside it, at the tensor's offset.
    let t = f.tensor("fc.weight").unwrap();
    let first = f.tensor("conv1.weight").unwrap();
    let delta = t.as_ptr() as usize - first.as_ptr() as usize;
    let entries = f.tensors();
    let off = |n: &str| entries.iter().find(|e| e.name == n).unwrap().offset as usize;
    assert_eq!(delta, off("fc.weight") - off("conv1.weight"));
    assert_eq!(f.len_bytes(), bytes.len());
}

#[test]
fn inference_api_rejects_bad_requests() {
    let m = Model::builder().threads(1).from_bytes(good_bytes()).unwrap();
    let per = m.input_len();
    assert!(matches!(m.infer(&[]), Err(Error::EmptyBatch)));
    assert!(matches!(m.infer(&vec![0.0; per + 1]), Err(Error::InputLength { .. })));
    let mut out = vec![0.0; 4];
    assert!(matches!(m.infer_into(&vec![0.0; per], &mut out), Err(Error::OutputLength { expected: 5, found: 4 })));
    let capped = Model::builder().max_workspace_bytes(1 << 16).from_bytes(good_bytes()).unwrap();
    assert!(matches!(capped.infer(&vec![0.0; per * 64]), Err(Error::BatchTooLarge { .. })));
    // Unaligned caller buffers work.
    let buf = vec![0.5f32; per + 1];
    let mut outbuf = [0.0f32; 6];
    m.infer_into(&buf[1..], &mut outbuf[1..]).unwrap();
}

#[test]
fn forcing_an_unsupported_isa_is_an_error() {
    for isa in alexnet::Isa::ALL {
        let r = Model::builder().isa(isa).from_bytes(good_bytes());
        if isa.is_supported() {
            assert_eq!(r.unwrap().isa(), isa);
        } else {
            assert!(matches!(r, Err(Error::UnsupportedIsa(_))));
        }
    }
}
