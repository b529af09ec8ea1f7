//! Reduced precision: the bf16 encoder against its oracle, the bf16 GEMV on every ISA,
//! bf16 weight files (round trip, hostile tables), and whole models at bf16 against the
//! reference network, across thread counts and batch sizes; and an f32 file written
//! before bf16 existed, which must still open and give ONNX Runtime's results.

use alexnet::base::mat::MatMut;
use alexnet::cpu::Cpu;
use alexnet::plan::Plan;
use alexnet::weights::format::{self, bf16_from_f32, f32_from_bf16, TensorEntry};
use alexnet::weights::{Dtype, WeightFile};
use alexnet::{gemm, reference, synthetic, Error, Isa, Model, Precision};

fn kernels() -> Vec<Cpu> {
    Isa::ALL.into_iter().filter_map(|isa| Cpu::new(isa).ok()).collect()
}

fn small() -> Plan {
    synthetic::small_plan()
}

#[test]
fn bf16_encoder_matches_its_oracle() {
    let specials = [
        0.0f32,
        -0.0,
        1.0,
        -1.0,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::from_bits(0x8000),
        f32::from_bits(0x7f7f_ffff),
        f32::from_bits(0x7f7f_8000),
        f32::from_bits(0x7f7f_7fff),
        f32::from_bits(0x3f80_8000),
        f32::from_bits(0x3f81_8000),
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    let mut state = 0x1234_5678_9abc_def0u64;
    let random = (0..1_000_000).map(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        f32::from_bits((state >> 32) as u32)
    });
    for x in specials.into_iter().chain(random) {
        let got = f32_from_bf16(bf16_from_f32(x));
        if x.is_nan() {
            assert!(got.is_nan() && got.is_sign_negative() == x.is_sign_negative(), "{x:?}");
            continue;
        }
        let want = reference::bf16_round(x);
        assert_eq!(got.to_bits(), want.to_bits(), "{x:e} ({:#010x})", x.to_bits());
    }
}

#[test]
fn bf16_gemv_equals_f32_gemv_on_widened_weights_on_every_isa() {
    // The bf16 kernel widens each weight exactly, then runs the f32 arithmetic: so it must
    // equal the f32 kernel on the widened weights bit for bit, and the reference within
    // f32 rounding. Odd rows, K tails, batches that are and are not multiples of 4.
    const GUARD: f32 = -7777.0;
    for kernel in kernels() {
        for (m, k, vecs) in [(1, 1, 1), (3, 5, 2), (4, 16, 4), (5, 17, 5), (7, 33, 1), (13, 100, 9), (9, 4099, 6)] {
            let w32 = synthetic::fill(21, m * k, 1.0);
            let w16: Vec<u16> = w32.iter().map(|&v| bf16_from_f32(v)).collect();
            let wide: Vec<f32> = w16.iter().map(|&h| f32_from_bf16(h)).collect();
            let x = synthetic::fill(22, vecs * k, 1.0);
            let ldy = m + 3;
            let (mut y16, mut y32) = (vec![GUARD; vecs * ldy], vec![GUARD; vecs * ldy]);
            gemm::gemv(kernel, &w16, k, &x, &mut MatMut::new(&mut y16, vecs, m, ldy));
            gemm::gemv(kernel, &wide, k, &x, &mut MatMut::new(&mut y32, vecs, m, ldy));
            let want = reference::linear(&x, vecs, &wide, &vec![0.0; m], m, k, false);
            for b in 0..vecs {
                assert!(
                    y16[b * ldy + m..(b + 1) * ldy].iter().all(|&v| v == GUARD),
                    "{:?}: wrote outside",
                    kernel.isa()
                );
                for r in 0..m {
                    let (g, e) = (y16[b * ldy + r], want[b * m + r]);
                    assert_eq!(g.to_bits(), y32[b * ldy + r].to_bits(), "{:?} m{m} k{k} b{b} r{r}", kernel.isa());
                    assert!((g - e).abs() <= 1e-5 * k as f32, "{:?} m{m} k{k} b{b} r{r}: {g} vs {e}", kernel.isa());
                }
            }
        }
    }
}

#[test]
fn bf16_file_round_trips_at_half_the_weight_bytes() {
    let plan = small();
    let tensors = synthetic::weights(&plan, 3).unwrap();
    let f32_bytes = format::to_bytes(&plan, &tensors).unwrap();
    let bf16_bytes = format::to_bytes_as(&plan, &tensors, Dtype::Bf16).unwrap();
    let file = WeightFile::from_bytes(bf16_bytes.clone()).unwrap();
    assert_eq!(file.weight_dtype(), Dtype::Bf16);
    assert_eq!(WeightFile::from_bytes(f32_bytes.clone()).unwrap().weight_dtype(), Dtype::F32);
    let (mut w32, mut w16) = (0, 0);
    for t in &tensors {
        let entry = file.entry(&t.name).unwrap();
        let values = file.tensor_f32(&t.name).unwrap();
        if t.name.ends_with(".weight") {
            assert_eq!(entry.dtype, Dtype::Bf16);
            assert!(matches!(file.tensor(&t.name), Err(Error::WrongDtype { .. })));
            let want: Vec<u32> = t.data.iter().map(|&v| reference::bf16_round(v).to_bits()).collect();
            assert_eq!(values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want, "{}", t.name);
            (w32, w16) = (w32 + 4 * t.data.len(), w16 + entry.len as usize);
        } else {
            // Biases stay f32, exact, and in place.
            assert_eq!(entry.dtype, Dtype::F32);
            assert_eq!(file.tensor(&t.name).unwrap(), &t.data[..]);
            assert_eq!(values, t.data);
        }
    }
    assert_eq!(2 * w16, w32);
    assert!(bf16_bytes.len() < f32_bytes.len());
    // A bf16 file runs at bf16 by default; an f32 file at f32.
    assert_eq!(Model::from_bytes(bf16_bytes).unwrap().precision(), Precision::Bf16);
    assert_eq!(Model::from_bytes(f32_bytes).unwrap().precision(), Precision::F32);
}

/// The table and data of a bf16 file, for rewriting.
fn bf16_parts(plan: &Plan) -> (Vec<TensorEntry>, Vec<u8>) {
    let tensors = synthetic::weights(plan, 4).unwrap();
    let bytes = format::to_bytes_as(plan, &tensors, Dtype::Bf16).unwrap();
    let file = WeightFile::from_bytes(bytes.clone()).unwrap();
    let header = format::read_header(&bytes).unwrap();
    (file.tensors().to_vec(), bytes[header.data_offset as usize..].to_vec())
}

/// Rewrite entry `name` as `dtype` with the length that dtype implies, repacking the data
/// section so the table still covers it exactly.
fn retype(plan: &Plan, name: &str, dtype: Dtype) -> Vec<u8> {
    let (mut entries, data) = bf16_parts(plan);
    let mut out = Vec::new();
    for e in &mut entries {
        let old = &data[e.offset as usize..(e.offset + e.len) as usize];
        out.resize(format::align_up(out.len() as u64).unwrap() as usize, 0);
        e.offset = out.len() as u64;
        if e.name == name {
            e.dtype = dtype;
            e.len = e.shape.iter().product::<u64>() * dtype.size();
        }
        let mut bytes = old.to_vec();
        bytes.resize(e.len as usize, 0);
        out.extend_from_slice(&bytes);
    }
    format::assemble(plan, &entries, &out).unwrap()
}

#[test]
fn hostile_dtype_tables_are_refused() {
    let plan = small();
    // A bf16 bias.
    let err = WeightFile::from_bytes(retype(&plan, "conv1.bias", Dtype::Bf16)).unwrap_err();
    assert!(
        matches!(&err, Error::WrongDtype { tensor, expected: "f32", found: "bf16" } if tensor == "conv1.bias"),
        "{err}"
    );
    // Weights of mixed dtypes.
    let err = WeightFile::from_bytes(retype(&plan, "fc7.weight", Dtype::F32)).unwrap_err();
    assert!(matches!(&err, Error::WrongDtype { tensor, .. } if tensor == "fc7.weight"), "{err}");
    // A bf16 entry whose length is an f32 tensor's.
    let (mut entries, data) = bf16_parts(&plan);
    entries[0].len *= 2;
    let err = WeightFile::from_bytes(format::assemble(&plan, &entries, &data).unwrap()).unwrap_err();
    assert!(matches!(err, Error::TensorLength { .. }), "{err}");
    // An unknown dtype code is still refused by number.
    let (entries, data) = bf16_parts(&plan);
    let mut bytes = format::assemble(&plan, &entries, &data).unwrap();
    let at = find_dtype_byte(&bytes, &entries[0].name);
    bytes[at] = 9;
    assert!(matches!(WeightFile::from_bytes(bytes), Err(Error::UnsupportedDtype { code: 9, .. })));
}

/// Offset of the dtype byte of the table entry `name`: right after its length-prefixed name.
fn find_dtype_byte(bytes: &[u8], name: &str) -> usize {
    let mut needle = (name.len() as u16).to_le_bytes().to_vec();
    needle.extend_from_slice(name.as_bytes());
    let pos = bytes.windows(needle.len()).rposition(|w| w == needle).expect("entry name in the table");
    pos + needle.len()
}

fn infer(model: &Model, input: &[f32]) -> Vec<f32> {
    model.infer(input).unwrap()
}

#[test]
fn bf16_models_match_the_reference_on_bf16_weights_bitwise_across_threads_and_batches() {
    for plan in [small(), synthetic::torchvision_plan()] {
        let tensors = synthetic::weights(&plan, 5).unwrap();
        let bf16 = format::to_bytes_as(&plan, &tensors, Dtype::Bf16).unwrap();
        let f32 = format::to_bytes(&plan, &tensors).unwrap();
        let batch = 3;
        let input = synthetic::input(&plan, 5, batch);
        let per = input.len() / batch;
        let want = reference::network(&WeightFile::from_bytes(bf16.clone()).unwrap(), &input).unwrap();
        let classes = want.len() / batch;
        for cpu in kernels() {
            let open = |bytes: &Vec<u8>, threads, p: Option<Precision>| {
                let b = Model::builder().threads(threads).isa(cpu.isa());
                let b = if let Some(p) = p { b.precision(p) } else { b };
                b.from_bytes(bytes.clone()).unwrap()
            };
            let one = open(&bf16, 1, None);
            let got = infer(&one, &input);
            let raw = {
                let mut out = vec![0.0; got.len()];
                one.infer_raw_into(&input, &mut out).unwrap();
                out
            };
            // Against the reference on the same (bf16) weights: only f32 rounding apart
            // where the convolutions run f32 kernels on bf16-rounded weights; where they
            // run the bf16 kernel (inputs rounded to bf16 too: a relative 2^-9 per value,
            // a few times that after the Winograd transforms) within a bound of that size.
            let softmax = plan.ends_in_softmax();
            let native = gemm::has_bf16(cpu);
            // Logits carry errors of the size of the whole image's logits (they are sums of
            // many terms that cancel): the bound scales with their largest magnitude.
            let scale: Vec<f32> = want.chunks(classes).map(|r| r.iter().fold(0.0f32, |m, v| m.max(v.abs()))).collect();
            for (i, (&g, &e)) in raw.iter().zip(&want).enumerate() {
                let tol = match (softmax, native) {
                    (true, false) => 1e-5,
                    (false, false) => 1e-3 * (1.0 + e.abs()),
                    (true, true) => 2e-2 * e.abs() + 1e-4,
                    (false, true) => 3e-2 * scale[i / classes],
                };
                assert!((g - e).abs() <= tol, "{:?} [{i}]: {g} vs {e}", cpu.isa());
            }
            // The same bits on two threads, one image at a time, and for an f32 file
            // opened at bf16.
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&infer(&open(&bf16, 2, None), &input)), bits(&got), "{:?} threads", cpu.isa());
            assert_eq!(
                bits(&infer(&open(&f32, 2, Some(Precision::Bf16)), &input)),
                bits(&got),
                "{:?}: f32 file at bf16",
                cpu.isa()
            );
            for n in 0..batch {
                let single = infer(&one, &input[n * per..(n + 1) * per]);
                assert_eq!(bits(&single), bits(&got[n * classes..(n + 1) * classes]), "{:?} image {n}", cpu.isa());
            }
        }
    }
}

#[test]
fn precision_names_parse_and_print() {
    for p in Precision::ALL {
        assert_eq!(Precision::parse(p.name()).unwrap(), p);
        assert_eq!(p.to_string(), p.name());
        assert_eq!(Precision::of_weights(p.weight_dtype()), p);
    }
    assert_eq!("BF16".parse::<Precision>().unwrap(), Precision::Bf16);
    assert!(matches!(Precision::parse("fp8"), Err(Error::InvalidArgument(_))));
}

#[test]
fn a_file_written_before_bf16_still_opens_and_matches_onnx_runtime() {
    // tests/fixtures/v1_f32/odd_small.alexnet: `convert-weights` of the onnx/odd_small
    // model, built from the commit before reduced-precision files existed.
    let root = env!("CARGO_MANIFEST_DIR");
    let model = Model::builder().threads(2).open(format!("{root}/tests/fixtures/v1_f32/odd_small.alexnet")).unwrap();
    assert_eq!(model.precision(), Precision::F32);
    let dir = format!("{root}/tests/fixtures/onnx/odd_small");
    let input = alexnet::npy::read(format!("{dir}/input.npy").as_ref()).unwrap().data;
    let expected = alexnet::npy::read(format!("{dir}/expected.npy").as_ref()).unwrap().data;
    let got = infer(&model, &input);
    assert_eq!(got.len(), expected.len());
    for (i, (&g, &e)) in got.iter().zip(&expected).enumerate() {
        assert!((g - e).abs() <= 1e-5 + 1e-4 * e.abs(), "[{i}]: {g} vs ORT {e}");
    }
}
