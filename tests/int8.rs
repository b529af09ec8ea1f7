//! int8: the quantization rules against the reference's own, the int8 GEMM, GEMV and
//! convolution on every kernel this CPU runs against the scalar reference bit for bit
//! (the sums are integers, the dequantisation one fixed formula), int8 weight files
//! (round trip, hostile scales), and whole models at int8 against the reference network,
//! across kernels, thread counts and batches.

use alexnet::gemm::i8::{self as gi8, PackedI8};
use alexnet::gemm::kernel::i8::{Kernel, SMALL_CODE};
use alexnet::ops::im2col::ConvGeom;
use alexnet::plan::{Pads, Plan};
use alexnet::quant::ActParams;
use alexnet::weights::format::{self, TensorEntry};
use alexnet::weights::{Dtype, WeightFile};
use alexnet::{reference, synthetic, Error, Isa, Model, Precision};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Values in `[-scale, scale)` with a shift, so that some sets are all positive (zero
/// point 0, as after a ReLU) and some straddle zero.
fn values(seed: u64, len: usize, shift: f32) -> Vec<f32> {
    synthetic::fill(seed, len, 2.0).into_iter().map(|v| v + shift).collect()
}

#[test]
fn activation_parameters_match_the_reference_rule() {
    for (seed, shift) in [(1, 0.0), (2, 5.0), (3, -5.0), (4, 1.5)] {
        let x = values(seed, 999, shift);
        let p = ActParams::of(&x).unwrap();
        let (s, inv, z) = reference::int8::act_params(&x).unwrap();
        assert_eq!((p.scale.to_bits(), p.inv.to_bits(), p.zero), (s.to_bits(), inv.to_bits(), z));
    }
    assert_eq!(ActParams::of(&[0.0; 7]).unwrap().zero, 0);
    assert!(ActParams::of(&[1.0, f32::NAN]).is_none() && reference::int8::act_params(&[f32::INFINITY]).is_none());
    // Weights: the writer's rule against the reference's.
    let w = values(5, 13 * 29, 0.3);
    let scales = alexnet::quant::weight_scales(&w, 13, 29);
    let codes = alexnet::quant::quantize_weights(&w, 29, &scales);
    assert_eq!((codes, bits(&scales)), {
        let (c, s) = reference::int8::quantize_weights(&w, 13, 29);
        (c, bits(&s))
    });
}

/// Inputs far outside a fixed range (a tiny accepted scale, huge or extreme values) get
/// code 0 or 255 on every kernel's quantizers, as the reference says, rather than an
/// overflowed sum; values inside quantize as usual. 37 values: SIMD steps and tails.
#[test]
fn inputs_far_outside_a_fixed_range_saturate_on_every_kernel() {
    use alexnet::gemm::kernel::i8::{quantize_quads, quantize_row};
    let mut x = vec![1e30, -1e30, 3e9, -3e9, f32::MAX, f32::MIN, 1e-31, -2e-30, 0.0, -0.0, 64.0, -100.5, -101.5];
    x.extend(values(21, 37 - x.len(), 0.0).iter().map(|v| v * 300.0));
    for (scale, zero) in [(1e-30, 7.0), (0.5, 200.0), (3.0, 0.0), (1e-3, 255.0)] {
        let p = ActParams::fixed(scale, zero).unwrap();
        let want = reference::int8::codes(&x, (p.scale, p.inv, p.zero));
        for kern in Kernel::all() {
            let mut row = vec![9u8; x.len()];
            quantize_row(kern, &x, &p, &mut row);
            assert_eq!(row, want, "{} row, scale {scale}", kern.name());
            let n = x.len() - 3;
            let mut quads = vec![0u32; n];
            quantize_quads(kern, [Some(&x[..]), None, Some(&x[1..]), Some(&x[3..])], &p, &mut quads);
            for (i, q) in quads.iter().enumerate() {
                let expect = [want[i], p.zero as u8, want[i + 1], want[i + 3]];
                assert_eq!(q.to_le_bytes(), expect, "{} quad {i}, scale {scale}", kern.name());
            }
        }
    }
}

/// The int8 GEMM against the reference (B seen as `n` inputs of `k` values sharing one
/// set of parameters: the reference linear layer on Bᵀ with those parameters).
#[test]
fn int8_gemm_matches_the_reference_bitwise_on_every_kernel() {
    let shapes = [(1, 1, 1), (5, 7, 3), (12, 32, 4), (13, 33, 5), (25, 65, 130), (7, 200, 301), (40, 17, 1030)];
    // Weight codes as quantized (8 bits), and as 7-bit weights (within SMALL_CODE, up
    // to it: AVX2 without VNNI then multiplies the bytes as they are).
    let seven = |c: i8| if c.unsigned_abs() >= 126 { c.signum() * SMALL_CODE } else { c / 2 };
    for (kern, small) in Kernel::all().into_iter().flat_map(|k| [(k, false), (k, true)]) {
        for (m, n, k) in shapes {
            for (shift, relu) in [(0.0, false), (3.0, true), (-1.0, true)] {
                let w = values(11, m * k, 0.1);
                let (codes, scales) = reference::int8::quantize_weights(&w, m, k);
                let codes: Vec<i8> = if small { codes.into_iter().map(seven).collect() } else { codes };
                let b = values(12, k * n, shift);
                let bias = values(13, m, 0.0);
                let act = ActParams::of(&b).unwrap();
                let codes_b = reference::int8::codes(&b, reference::int8::act_params(&b).unwrap());
                let packed = PackedI8::pack(&codes, &scales, m, k);
                // Each row's largest weight quantizes to +-127: 8-bit codes are never small.
                assert_eq!(packed.small(), small, "{m}x{k}");
                let ldc = n + 3;
                let mut c = vec![-7777.0f32; m * ldc];
                let ep = gi8::Epilogue { act, bias: &bias, relu };
                let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
                pool.install(|| {
                    gi8::gemm(kern, &packed, &gi8::RowMajorU8 { data: &codes_b, ld: n }, n, &mut c, ldc, ep, 3)
                });
                let want = reference_gemm(&codes, &scales, &bias, &b, (m, n, k), relu);
                for i in 0..m {
                    assert!(c[i * ldc + n..(i + 1) * ldc].iter().all(|&v| v == -7777.0), "wrote outside");
                    assert_eq!(
                        bits(&c[i * ldc..i * ldc + n]),
                        bits(&want[i * n..(i + 1) * n]),
                        "{} (7-bit weights: {small}) {m}x{n}x{k} row {i}",
                        kern.name()
                    );
                }
            }
        }
    }
}

/// `C = dequant(codes · quant(B))` by the reference's formula, B quantized with the
/// parameters of all its values.
fn reference_gemm(
    codes: &[i8],
    scales: &[f32],
    bias: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    relu: bool,
) -> Vec<f32> {
    let mut out = vec![0.0; m * n];
    for j in 0..n {
        // Column j as one input of k values, quantized by the parameters of all of B.
        let col: Vec<f32> = (0..k).map(|t| b[t * n + j]).collect();
        let y = reference::int8::linear_with(&col, reference::int8::act_params(b), codes, scales, bias, m, k, relu);
        for i in 0..m {
            out[i * n + j] = y[i];
        }
    }
    out
}

/// Fixed input parameters `(scale, zero)` of a layer (as a quantized model gives them):
/// a step small enough that the test values saturate at both ends.
const FIXED: Option<(f32, f32)> = Some((0.0078125, 100.0));

fn quant(fixed: Option<(f32, f32)>) -> alexnet::quant::InputQuant {
    use alexnet::quant::{ActParams, InputQuant};
    fixed.map_or(InputQuant::PerImage, |(s, z)| InputQuant::Fixed(ActParams::fixed(s, z).unwrap()))
}

#[test]
fn int8_linear_matches_the_reference_bitwise_on_every_kernel_and_pool() {
    for kern in Kernel::all() {
        for (m, k, batch) in
            [(1, 1, 1), (3, 5, 2), (4, 64, 4), (5, 65, 5), (37, 127, 9), (33, 4099, 6), (40, 1100, 17), (150, 700, 36)]
        {
            let w = values(21, m * k, 0.0);
            let (codes, scales) = reference::int8::quantize_weights(&w, m, k);
            let sums = alexnet::quant::row_sums(&codes, m, k);
            let mut x = values(22, batch * k, 0.5);
            if batch > 2 {
                x[k + k / 2] = f32::NAN; // image 1 is poisoned; the others must not notice
            }
            let bias = values(23, m, 0.0);
            for (fixed, threads) in [(None, 1), (None, 3), (FIXED, 1), (FIXED, 3)] {
                let want = reference::int8::linear(&x, batch, &codes, &scales, &bias, m, k, (fixed, true));
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut y = vec![0.0; batch * m];
                let mut scratch = vec![0.0; alexnet::ops::linear::i8_scratch_len(k, batch)];
                pool.install(|| {
                    alexnet::ops::linear::linear_i8(
                        kern,
                        &x,
                        batch,
                        (&codes, &scales, &sums),
                        &bias,
                        (m, k),
                        (quant(fixed), true),
                        &mut y,
                        &mut scratch,
                    )
                });
                assert_eq!(bits(&y), bits(&want), "{} m{m} k{k} b{batch} t{threads} {fixed:?}", kern.name());
                if batch > 2 {
                    assert!(y[m..2 * m].iter().all(|v| v.is_nan()) && y[..m].iter().all(|v| !v.is_nan()));
                }
            }
        }
    }
}

#[test]
fn int8_convolution_matches_the_reference_bitwise_on_every_kernel() {
    // (c, h, w, o, k, stride, pads, groups)
    let cases = [
        (3, 17, 15, 8, 5, 2, Pads::uniform(1), 1),
        (4, 9, 9, 6, 3, 1, Pads::uniform(1), 2),
        (6, 11, 7, 12, 5, 1, Pads { top: 2, left: 1, bottom: 0, right: 2 }, 3),
        (1, 12, 12, 5, 11, 4, Pads::uniform(0), 1),
        // Whole blocks of four channels and a last partial block, with groups.
        (10, 8, 9, 4, 3, 1, Pads::uniform(1), 2),
        (8, 7, 10, 13, 5, 1, Pads::uniform(2), 1),
        // Horizontal strides of 4 and 8: the row layout (quads of four columns), with
        // asymmetric padding.
        (3, 23, 21, 6, 11, 4, Pads { top: 1, left: 2, bottom: 0, right: 3 }, 1),
        (2, 9, 30, 4, 5, 8, Pads::uniform(1), 2),
    ];
    for kern in Kernel::all() {
        for (ci, (c, h, w, o, k, s, pads, groups)) in cases.into_iter().enumerate() {
            let (oh, ow) = (
                (h + pads.top as usize + pads.bottom as usize - k) / s + 1,
                (w + pads.left as usize + pads.right as usize - k) / s + 1,
            );
            let geom = ConvGeom { cg: c / groups, h, w, kh: k, kw: k, sh: s, sw: s, pads, oh, ow };
            let wt = values(31, o * (c / groups) * k * k, 0.0);
            let (codes, scales) = reference::int8::quantize_weights(&wt, o, (c / groups) * k * k);
            // The cases cover both quad layouts.
            let row = alexnet::ops::conv_i8::Layout::of(&geom) == alexnet::ops::conv_i8::Layout::Row;
            assert_eq!(row, s % 4 == 0, "case {ci}");
            let packed = alexnet::ops::conv_i8::pack_weights_i8(&codes, &scales, &geom, groups, o / groups);
            let bias = values(32, o, 0.0);
            let batch = 2;
            let input = values(33 + ci as u64, batch * c * h * w, if ci % 2 == 0 { 0.0 } else { 2.5 });
            for fixed in [None, FIXED] {
                let mut want = Vec::new();
                for b in 0..batch {
                    let img = &input[b * c * h * w..(b + 1) * c * h * w];
                    want.extend(reference::int8::conv2d(
                        img,
                        [c, h, w],
                        &codes,
                        &scales,
                        &bias,
                        o,
                        [k, k],
                        [s, s],
                        pads,
                        groups,
                        [oh, ow],
                        (fixed, true),
                    ));
                }
                for threads in [1, 2, 5] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    let mut out = vec![0.0; batch * o * oh * ow];
                    let mut phased = vec![0.0; batch * alexnet::ops::conv_i8::phased_len_i8(&geom, c)];
                    pool.install(|| {
                        alexnet::ops::conv_i8::conv2d_i8(
                            kern,
                            &input,
                            batch,
                            &geom,
                            &packed,
                            &bias,
                            (quant(fixed), true),
                            &mut out,
                            &mut phased,
                        )
                    });
                    assert_eq!(bits(&out), bits(&want), "{} case {ci} t{threads} {fixed:?}", kern.name());
                }
            }
        }
    }
}

fn small() -> Plan {
    synthetic::small_plan()
}

#[test]
fn int8_file_round_trips_at_a_quarter_of_the_weight_bytes() {
    let plan = small();
    let tensors = synthetic::weights(&plan, 3).unwrap();
    let f32_bytes = format::to_bytes(&plan, &tensors).unwrap();
    let i8_bytes = format::to_bytes_as(&plan, &tensors, Dtype::I8).unwrap();
    let file = WeightFile::from_bytes(i8_bytes.clone()).unwrap();
    assert_eq!(file.weight_dtype(), Dtype::I8);
    for t in tensors.iter().filter(|t| t.name.ends_with(".weight")) {
        let rows = t.shape[0] as usize;
        let (codes, scales) = file.tensor_i8(&t.name).unwrap();
        let (want_c, want_s) = reference::int8::quantize_weights(&t.data, rows, t.data.len() / rows);
        assert_eq!((codes, bits(scales)), (&want_c[..], bits(&want_s)), "{}", t.name);
        assert_eq!(file.entry(&t.name).unwrap().len as usize, t.data.len());
        // Dequantized on request, code times scale.
        let k = t.data.len() / rows;
        let deq = file.tensor_f32(&t.name).unwrap();
        assert!(deq.iter().enumerate().all(|(i, &v)| v == want_c[i] as f32 * want_s[i / k]));
    }
    assert!(i8_bytes.len() < f32_bytes.len() / 3);
    assert_eq!(Model::from_bytes(i8_bytes.clone()).unwrap().precision(), Precision::Int8);
    // Opened at f32, an int8 file runs its dequantized weights: the f32 reference on them.
    let model = Model::builder().precision(Precision::F32).from_bytes(i8_bytes.clone()).unwrap();
    let input = synthetic::input(&plan, 3, 2);
    let want = reference::network(&WeightFile::from_bytes(i8_bytes).unwrap(), &input).unwrap();
    let got = model.infer(&input).unwrap();
    assert!(got.iter().zip(&want).all(|(g, e)| (g - e).abs() <= 1e-5), "{got:?} vs {want:?}");
}

#[test]
fn hostile_int8_scales_are_refused() {
    let plan = small();
    let tensors = synthetic::weights(&plan, 4).unwrap();
    let bytes = format::to_bytes_as(&plan, &tensors, Dtype::I8).unwrap();
    let file = WeightFile::from_bytes(bytes.clone()).unwrap();
    let header = format::read_header(&bytes).unwrap();
    let entries: Vec<TensorEntry> = file.tensors().to_vec();
    let data = bytes[header.data_offset as usize..].to_vec();
    let scale = entries.iter().find(|e| e.name == "fc7.weight_scale").unwrap();
    for bad in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
        let mut d = data.clone();
        d[scale.offset as usize + 4..scale.offset as usize + 8].copy_from_slice(&bad.to_le_bytes());
        let err = WeightFile::from_bytes(format::assemble(&plan, &entries, &d).unwrap()).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidTensorValue { tensor, .. } if tensor == "fc7.weight_scale"),
            "{bad}: {err}"
        );
    }
    // A missing scale tensor, and a scale tensor in an f32 file.
    let without: Vec<TensorEntry> = entries.iter().filter(|e| e.name != "conv2.weight_scale").cloned().collect();
    assert!(WeightFile::from_bytes(format::assemble(&plan, &without, &data).unwrap()).is_err());
    // Non-finite weights cannot be written at int8.
    let mut nan = tensors.clone();
    nan[0].data[3] = f32::NAN;
    assert!(format::to_bytes_as(&plan, &nan, Dtype::I8).is_err());
}

#[test]
fn int8_models_match_the_reference_network_across_kernels_threads_and_batches() {
    for plan in [small(), synthetic::torchvision_plan()] {
        let tensors = synthetic::weights(&plan, 5).unwrap();
        let f32 = format::to_bytes(&plan, &tensors).unwrap();
        let i8 = format::to_bytes_as(&plan, &tensors, Dtype::I8).unwrap();
        let batch = 3;
        let input = synthetic::input(&plan, 5, batch);
        let per = input.len() / batch;
        let want = reference::network_int8(&WeightFile::from_bytes(i8.clone()).unwrap(), &input).unwrap();
        let classes = want.len() / batch;
        let mut first: Option<Vec<u32>> = None;
        for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
            let open = |bytes: &Vec<u8>, threads, p: Option<Precision>| {
                let b = Model::builder().threads(threads).isa(isa);
                let b = if let Some(p) = p { b.precision(p) } else { b };
                b.from_bytes(bytes.clone()).unwrap()
            };
            let model = open(&i8, 1, None);
            let mut raw = vec![0.0; want.len()];
            model.infer_raw_into(&input, &mut raw).unwrap();
            // Pools, LRN and softmax are f32 kernels: the reference's own loops differ
            // from them by f32 rounding, which int8 requantisation can turn into one
            // code step of a later layer. Bound: a small fraction of each image's range.
            for (img, (g, e)) in raw.chunks(classes).zip(want.chunks(classes)).enumerate() {
                let range = e.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                for (j, (&g, &e)) in g.iter().zip(e).enumerate() {
                    assert!((g - e).abs() <= 2e-2 * range + 1e-6, "{isa:?} image {img} class {j}: {g} vs {e}");
                }
            }
            // Every ISA, thread count, batch split, and an f32 file opened at int8: the same bits.
            let got = bits(&raw);
            if let Some(f) = &first {
                assert_eq!(&got, f, "{isa:?} differs from the first ISA");
            }
            first = Some(got.clone());
            for threads in [2, 3] {
                let m = open(&f32, threads, Some(Precision::Int8));
                let mut out = vec![0.0; want.len()];
                m.infer_raw_into(&input, &mut out).unwrap();
                assert_eq!(bits(&out), got, "{isa:?} f32 file at int8, {threads} threads");
                for b in 0..batch {
                    let mut one = vec![0.0; classes];
                    m.infer_raw_into(&input[b * per..(b + 1) * per], &mut one).unwrap();
                    assert_eq!(bits(&one), got[b * classes..(b + 1) * classes], "{isa:?} image {b} alone");
                }
            }
        }
    }
}

#[test]
fn a_non_finite_input_poisons_only_its_own_image_at_int8() {
    let plan = small();
    let model =
        Model::builder().precision(Precision::Int8).from_bytes(synthetic::weight_file(&plan, 6).unwrap()).unwrap();
    let mut input = synthetic::input(&plan, 6, 2);
    let per = input.len() / 2;
    input[per + 17] = f32::NAN;
    let mut out = vec![0.0; 2 * model.num_classes()];
    model.infer_raw_into(&input, &mut out).unwrap();
    let c = model.num_classes();
    assert!(out[..c].iter().all(|v| v.is_finite()), "{:?}", &out[..c]);
    assert!(out[c..].iter().all(|v| v.is_nan()));
}

/// tests/fixtures/int8/odd_small.alexnet (`convert-weights` of onnx/odd_small at int8,
/// the first int8 files) must keep opening and giving the results recorded when it was
/// written (`expected.npy`, bit for bit: the rules are fixed), which stay near the
/// reference network at int8 and ONNX Runtime's f32 results. Rewrite the record with
/// `ALEXNET_RECORD_INT8=1` only when the rules change on purpose.
#[test]
fn the_first_int8_file_gives_its_recorded_results() {
    let root = env!("CARGO_MANIFEST_DIR");
    let path = format!("{root}/tests/fixtures/int8/odd_small.alexnet");
    let model = Model::builder().threads(2).open(&path).unwrap();
    assert_eq!(model.precision(), Precision::Int8);
    let dir = format!("{root}/tests/fixtures/onnx/odd_small");
    let input = alexnet::npy::read(format!("{dir}/input.npy").as_ref()).unwrap().data;
    let ort_f32 = alexnet::npy::read(format!("{dir}/expected.npy").as_ref()).unwrap().data;
    let got = model.infer(&input).unwrap();
    let record = format!("{root}/tests/fixtures/int8/expected.npy");
    if std::env::var_os("ALEXNET_RECORD_INT8").is_some() {
        let classes = model.num_classes();
        alexnet::npy::write(record.as_ref(), &[got.len() / classes, classes], &got).unwrap();
    }
    let expected = alexnet::npy::read(record.as_ref()).unwrap().data;
    assert_eq!(bits(&got), bits(&expected), "int8 results changed");
    let reference = reference::network_int8(&WeightFile::open(&path, Default::default()).unwrap(), &input).unwrap();
    for (i, ((&g, &r), &f)) in got.iter().zip(&reference).zip(&ort_f32).enumerate() {
        assert!((g - r).abs() <= 1e-3, "[{i}] {g} vs reference int8 {r}");
        assert!((g - f).abs() <= 0.05, "[{i}] {g} vs ORT f32 {f}");
    }
}

/// `tensors` with fixed int8 input parameters for every conv and linear layer, calibrated
/// on `images` by the f32 model.
fn calibrated(
    plan: &Plan,
    tensors: &[alexnet::weights::OwnedTensor],
    images: &[f32],
) -> Vec<alexnet::weights::OwnedTensor> {
    let model = Model::from_bytes(format::to_bytes(plan, tensors).unwrap()).unwrap();
    let ranges = model.input_ranges(images).unwrap();
    assert_eq!(ranges.len(), plan.tensor_specs().unwrap().iter().filter(|s| s.weight).count());
    let mut out = tensors.to_vec();
    for (weight, (lo, hi)) in ranges {
        let data = format::input_quant_values(lo, hi).to_vec();
        out.push(alexnet::weights::OwnedTensor { name: format::input_quant_name(&weight), shape: vec![2], data });
    }
    out
}

#[test]
fn fixed_input_parameters_are_used_and_match_the_reference_on_every_isa() {
    for plan in [small(), synthetic::torchvision_plan()] {
        let tensors = synthetic::weights(&plan, 7).unwrap();
        let batch = 3;
        let input = synthetic::input(&plan, 7, batch);
        let per = input.len() / batch;
        // Calibrated on the first two images only: the third saturates somewhere.
        let fixed = calibrated(&plan, &tensors, &input[..2 * per]);
        let i8 = format::to_bytes_as(&plan, &fixed, Dtype::I8).unwrap();
        let f32_fixed = format::to_bytes(&plan, &fixed).unwrap();
        let file = WeightFile::from_bytes(i8.clone()).unwrap();
        let want = reference::network_int8(&file, &input).unwrap();
        let per_image = reference::network_int8(
            &WeightFile::from_bytes(format::to_bytes_as(&plan, &tensors, Dtype::I8).unwrap()).unwrap(),
            &input,
        )
        .unwrap();
        assert_ne!(bits(&want), bits(&per_image), "the fixed parameters change the result");
        let classes = want.len() / batch;
        let mut first: Option<Vec<u32>> = None;
        for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
            for (bytes, threads) in [(&i8, 1), (&f32_fixed, 2), (&i8, 3)] {
                let model = Model::builder()
                    .threads(threads)
                    .isa(isa)
                    .precision(Precision::Int8)
                    .from_bytes(bytes.clone())
                    .unwrap();
                let mut raw = vec![0.0; want.len()];
                model.infer_raw_into(&input, &mut raw).unwrap();
                for (g, e) in raw.chunks(classes).zip(want.chunks(classes)) {
                    let range = e.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    assert!(g.iter().zip(e).all(|(g, e)| (g - e).abs() <= 2e-2 * range + 1e-6), "{isa:?}");
                }
                let got = bits(&raw);
                if let Some(f) = &first {
                    assert_eq!(&got, f, "{isa:?}, {threads} threads");
                }
                first = Some(got.clone());
                // One image alone: the same bits as in the batch.
                let mut one = vec![0.0; classes];
                model.infer_raw_into(&input[2 * per..], &mut one).unwrap();
                assert_eq!(bits(&one), got[2 * classes..], "{isa:?} image 2 alone");
            }
        }
        // At f32 the parameters are not used.
        let at_f32 = Model::from_bytes(f32_fixed).unwrap();
        let plain = Model::from_bytes(format::to_bytes(&plan, &tensors).unwrap()).unwrap();
        assert_eq!(bits(&at_f32.infer(&input).unwrap()), bits(&plain.infer(&input).unwrap()));
    }
}

#[test]
fn hostile_fixed_input_parameters_are_refused() {
    let plan = small();
    let tensors = synthetic::weights(&plan, 8).unwrap();
    let with = |values: Vec<f32>, shape: Vec<u64>| {
        let mut t = tensors.clone();
        t.push(alexnet::weights::OwnedTensor { name: "fc7.input_quant".into(), shape, data: values });
        t
    };
    // Written: refused by the writer.
    for bad in [
        vec![0.0, 3.0],
        vec![-1.0, 3.0],
        vec![f32::NAN, 3.0],
        vec![1e-45, 3.0],
        vec![0.1, 256.0],
        vec![0.1, 2.5],
        vec![0.1, -1.0],
    ] {
        let err = format::to_bytes_as(&plan, &with(bad.clone(), vec![2]), Dtype::I8).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidTensorValue { tensor, .. } if tensor == "fc7.input_quant"),
            "{bad:?}: {err}"
        );
    }
    assert!(format::to_bytes_as(&plan, &with(vec![0.1, 3.0, 4.0], vec![3]), Dtype::I8).is_err());
    // Read: a file whose parameters were damaged after writing is refused at open.
    let bytes = format::to_bytes_as(&plan, &with(vec![0.1, 3.0], vec![2]), Dtype::I8).unwrap();
    let file = WeightFile::from_bytes(bytes.clone()).unwrap();
    let header = format::read_header(&bytes).unwrap();
    let entries: Vec<TensorEntry> = file.tensors().to_vec();
    let data = bytes[header.data_offset as usize..].to_vec();
    let e = entries.iter().find(|e| e.name == "fc7.input_quant").unwrap();
    for (at, bad) in [(0, f32::INFINITY), (0, -0.5), (4, 7.5), (4, 300.0)] {
        let mut d = data.clone();
        d[e.offset as usize + at..e.offset as usize + at + 4].copy_from_slice(&bad.to_le_bytes());
        let err = WeightFile::from_bytes(format::assemble(&plan, &entries, &d).unwrap()).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidTensorValue { tensor, .. } if tensor == "fc7.input_quant"),
            "{bad}: {err}"
        );
    }
    // An unknown optional-looking name is still refused.
    let mut t = tensors.clone();
    t.push(alexnet::weights::OwnedTensor { name: "fc9.input_quant".into(), shape: vec![2], data: vec![0.1, 3.0] });
    assert!(matches!(format::to_bytes(&plan, &t).unwrap_err(), Error::UnusedTensor(_)));
}
