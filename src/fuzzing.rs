//! Fuzz harnesses: one function per cargo-fuzz target in `fuzz/`, shared with the tests
//! that replay the committed corpora and crash artifacts (`tests/fuzz_corpus.rs`), so a
//! target and its replay can never drift apart. Each takes arbitrary bytes and panics only
//! on a real bug (a failed invariant), never on bad input.

use crate::cpu::Cpu;
use crate::gemm::{self, Bias, Epilogue, PackedA, RowMajor};
use crate::plan::{Conv, Layer, Linear, Lrn, MaxPool, Pads, Plan, Preprocess};
use crate::{synthetic, Model, WeightFile};

/// Weight-file bytes through `open`'s validation; anything accepted must also run.
pub fn weights_file(data: &[u8]) {
    if let Ok(model) = Model::builder().threads(1).max_workspace_bytes(64 << 20).from_bytes(data.to_vec()) {
        if model.input_len() <= 1 << 20 {
            let _ = model.infer(&vec![0.0f32; model.input_len()]);
        }
    }
}

/// Image bytes through decoding and preprocessing, both conventions, a small input.
#[cfg(feature = "image")]
pub fn image_preprocess(data: &[u8]) {
    for pre in [Preprocess::torchvision(), Preprocess::caffe()] {
        if let Ok(x) = crate::image::preprocess_bytes(data, "<fuzz>", &pre, [3, 35, 35]) {
            assert_eq!(x.len(), 3 * 35 * 35);
        }
    }
}

/// JPEG bytes through the libjpeg-compatible decoder alone (the caller's marker walk is
/// not in front of it here, so every kind of damage reaches it): an image whose size is
/// the frame's and within the limits, or an error; never a panic, never a buffer past the
/// budget.
#[cfg(feature = "image")]
pub fn jpeg_decode(data: &[u8]) {
    const SIDE: u32 = 4096;
    const BUDGET: u64 = 64 << 20;
    if let Ok(img) = crate::image::jpeg::decode(data, SIDE, BUDGET) {
        assert!(img.width() <= SIDE && img.height() <= SIDE);
        assert!(3 * img.width() as u64 * img.height() as u64 <= BUDGET);
    }
}

fn byte(data: &[u8], i: usize) -> u32 {
    data.get(i).copied().unwrap_or(1) as u32
}

/// Structured round trip: a small plan derived from the bytes, with deterministic weights,
/// written and opened again gives the same plan and the same tensors.
pub fn roundtrip(data: &[u8]) {
    let b = |i| byte(data, i);
    let mut layers = vec![Layer::Conv(Conv {
        name: "c1".into(),
        out_channels: 2 * (1 + b(5) % 4),
        kernel: [1 + b(6) % 3, 1 + b(7) % 3],
        stride: [1 + b(8) % 2, 1 + b(9) % 2],
        pads: Pads { top: b(1) % 2, left: b(2) % 2, bottom: b(3) % 2, right: b(4) % 2 },
        groups: 1 + b(10) % 2,
        relu: b(11) % 2 == 0,
    })];
    let pool = Layer::MaxPool(MaxPool {
        kernel: [2, 2],
        stride: [1 + b(12) % 2, 1],
        pads: Pads::default(),
        ceil_mode: b(13) % 2 == 1,
    });
    let lrn = Layer::Lrn(Lrn { size: 1 + b(14) % 5, alpha: 1e-4, beta: 0.5 + (b(15) % 4) as f32 * 0.25, bias: 1.0 });
    layers.extend(if b(16) % 2 == 0 { [pool, lrn] } else { [lrn, pool] });
    if b(29) % 3 == 0 {
        let size = 1 + 2 * (b(30) % 3);
        layers.push(Layer::LrnWithin(crate::plan::LrnWithin { size, alpha: 1e-3, beta: 0.75, bias: 1.0 }));
    }
    // Average pools in a third of the plans each.
    if b(20) % 3 == 0 {
        layers.push(Layer::AvgPool(crate::plan::AvgPool {
            kernel: [1 + b(21) % 2, 2],
            stride: [1, 1 + b(22) % 2],
            pads: Pads { top: 0, left: b(23) % 2, bottom: 0, right: 0 },
            ceil_mode: b(24) % 2 == 1,
            count_include_pad: b(25) % 2 == 1,
        }));
    }
    if b(26) % 3 == 0 {
        layers.push(Layer::AdaptiveAvgPool(crate::plan::AdaptiveAvgPool { out: [1 + b(27) % 3, 1 + b(28) % 4] }));
    }
    layers.push(Layer::Flatten);
    layers.push(Layer::Linear(Linear { name: "fc".into(), out_features: 1 + b(17) % 7, relu: false }));
    if b(18) % 2 == 0 {
        layers.push(Layer::Softmax);
    }
    let side = 4 + b(0) % 20;
    let plan =
        Plan { input: [2 * (1 + b(19) % 2), side, side], preprocess: Preprocess::caffe(), layers, labels: vec![] };
    if plan.validate().is_err() {
        return;
    }
    let tensors = synthetic::weights(&plan, data.len() as u64).expect("a valid plan has weights");
    let bytes = crate::weights::format::to_bytes(&plan, &tensors).expect("a valid plan writes");
    let file = WeightFile::from_bytes(bytes).expect("a written file opens");
    assert_eq!(file.plan(), &plan);
    for t in &tensors {
        assert_eq!(file.tensor(&t.name).expect("tensor present"), &t.data[..]);
    }
    // The same at bf16: weights rounded as the reference rounds, biases exact.
    let bytes = crate::weights::format::to_bytes_as(&plan, &tensors, crate::weights::Dtype::Bf16)
        .expect("a valid plan writes at bf16");
    let file = WeightFile::from_bytes(bytes).expect("a written bf16 file opens");
    for t in &tensors {
        let got = file.tensor_f32(&t.name).expect("tensor present");
        let round = t.name.ends_with(".weight");
        let want: Vec<f32> = t.data.iter().map(|&v| if round { crate::reference::bf16_round(v) } else { v }).collect();
        assert_eq!(got, want, "{}", t.name);
    }
    // And at int8 (the synthetic weights are finite): codes and scales by the reference's
    // rule, biases exact, and the file runs at int8 by default.
    let bytes = crate::weights::format::to_bytes_as(&plan, &tensors, crate::weights::Dtype::I8)
        .expect("a valid plan writes at int8");
    let file = WeightFile::from_bytes(bytes).expect("a written int8 file opens");
    for t in &tensors {
        if t.name.ends_with(".weight") {
            let rows = t.shape[0] as usize;
            let (codes, scales) = file.tensor_i8(&t.name).expect("int8 weight present");
            let (want_c, want_s) = crate::reference::int8::quantize_weights(&t.data, rows, t.data.len() / rows);
            assert_eq!(codes, &want_c[..], "{}", t.name);
            assert!(scales.iter().zip(&want_s).all(|(a, b)| a.to_bits() == b.to_bits()), "{}", t.name);
        } else {
            assert_eq!(file.tensor(&t.name).expect("bias present"), &t.data[..]);
        }
    }
}

/// Fixed int8 input parameters `(scale, zero)` for half the selectors, else `None` (per
/// image): steps small enough that the fuzzers' values in -2..2 saturate.
fn fixed_quant(sel: u8) -> Option<(f32, f32)> {
    (sel % 2 == 1).then(|| ([0.004, 0.01, 0.03125][(sel as usize / 2) % 3], (sel as u32 * 37 % 256) as f32))
}

/// Every SGEMM kernel this CPU runs against the scalar reference, on small shapes and
/// values taken from the bytes; and the GEMV, f32 and bf16 weights, the same way.
pub fn gemm_diff(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let (m, n, k) = (1 + data[0] as usize % 40, 1 + data[1] as usize % 70, data[2] as usize % 50);
    let relu = data[3] % 2 == 1;
    let vals = &data[4..];
    let at = |i: usize| vals.get(i % vals.len().max(1)).map_or(0.5, |&v| (v as f32 - 128.0) / 64.0);
    let a: Vec<f32> = (0..m * k).map(at).collect();
    let b: Vec<f32> = (0..k * n).map(|i| at(i * 7 + 3)).collect();
    let bias: Vec<f32> = (0..m).map(|i| at(i * 13 + 1)).collect();
    let want = crate::reference::sgemm(m, n, k, &a, &b);
    for cpu in Cpu::all() {
        let isa = cpu.isa();
        let packed = PackedA::pack(&a, m, k, gemm::blocks(cpu).mr);
        let mut c = vec![f32::NAN; m * n];
        let ep = Epilogue { bias: Bias::Row(&bias), relu };
        gemm::sgemm(cpu, &packed, &RowMajor { data: &b, ld: n }, n, &mut c, n, ep);
        for i in 0..m {
            for j in 0..n {
                let e = want[i * n + j] + bias[i];
                let e = if relu && e < 0.0 { 0.0 } else { e };
                let g = c[i * n + j];
                assert!((g - e).abs() <= 4e-4 * (k as f32 + 1.0), "{isa} {m}x{n}x{k} ({i},{j}): {g} vs {e}");
            }
        }
    }
    // The bf16 GEMM where the CPU has one: against the reference on bf16-rounded operands.
    #[cfg(target_arch = "x86_64")]
    if let Some(cpu) = Cpu::all().into_iter().find(|&c| gemm::has_bf16(c)) {
        let r = crate::reference::bf16_round;
        let (ar, br): (Vec<f32>, Vec<f32>) = (a.iter().map(|&v| r(v)).collect(), b.iter().map(|&v| r(v)).collect());
        let want = crate::reference::sgemm(m, n, k, &ar, &br);
        let packed = PackedA::pack(&a, m, k, gemm::blocks(cpu).mr).into_bf16();
        let mut c = vec![f32::NAN; m * n];
        let ep = Epilogue { bias: Bias::Row(&bias), relu };
        gemm::sgemm(cpu, &packed, &RowMajor { data: &b, ld: n }, n, &mut c, n, ep);
        for (idx, &g) in c.iter().enumerate() {
            let e = want[idx] + bias[idx / n];
            let e = if relu && e < 0.0 { 0.0 } else { e };
            assert!((g - e).abs() <= 4e-4 * (k as f32 + 1.0), "bf16 gemm {m}x{n}x{k} [{idx}]: {g} vs {e}");
        }
    }
    // GEMV: `m` rows of `a` (as W, K = k) times `vecs` rows of b's values.
    let vecs = 1 + n % 9;
    let x: Vec<f32> = (0..vecs * k).map(|i| at(i * 5 + 2)).collect();
    let w16: Vec<u16> = a.iter().map(|&v| crate::weights::format::bf16_from_f32(v)).collect();
    let wide: Vec<f32> = a.iter().map(|&v| crate::reference::bf16_round(v)).collect();
    for (w, exact) in [(&a, true), (&wide, false)] {
        let want = crate::reference::linear(&x, vecs, w, &vec![0.0; m], m, k, false);
        for cpu in Cpu::all() {
            let mut y = vec![f32::NAN; vecs * m];
            if exact {
                gemm::gemv(cpu, &a, k, &x, &mut crate::base::mat::MatMut::new(&mut y, vecs, m, m));
            } else {
                gemm::gemv(cpu, &w16, k, &x, &mut crate::base::mat::MatMut::new(&mut y, vecs, m, m));
            }
            for (i, (&g, &e)) in y.iter().zip(&want).enumerate() {
                assert!(
                    (g - e).abs() <= 4e-4 * (k as f32 + 1.0),
                    "{} gemv {m}x{k}x{vecs} [{i}]: {g} vs {e}",
                    cpu.isa()
                );
            }
        }
    }
    // The int8 GEMM and linear layer on every int8 kernel: the reference's rules, bit for bit;
    // the GEMM also with the codes halved (7-bit weights, which AVX2 multiplies as bytes).
    let (codes, scales) = crate::reference::int8::quantize_weights(&a, m, k);
    let halved: Vec<i8> = codes.iter().map(|c| c / 2).collect();
    if let Some(p) = crate::reference::int8::act_params(&b) {
        let codes_b = crate::reference::int8::codes(&b, p);
        let act = crate::quant::ActParams { scale: p.0, inv: p.1, zero: p.2 };
        for codes in [&codes, &halved] {
            let packed = gemm::i8::PackedI8::pack(codes, &scales, m, k);
            let want: Vec<u32> = (0..n)
                .flat_map(|j| {
                    let col: Vec<f32> = (0..k).map(|t| b[t * n + j]).collect();
                    crate::reference::int8::linear_with(&col, Some(p), codes, &scales, &bias, m, k, relu)
                })
                .map(f32::to_bits)
                .collect();
            for kern in gemm::kernel::i8::Kernel::all() {
                let mut c = vec![f32::NAN; m * n];
                let ep = gemm::i8::Epilogue { act, bias: &bias, relu };
                gemm::i8::gemm(kern, &packed, &gemm::i8::RowMajorU8 { data: &codes_b, ld: n }, n, &mut c, n, ep, 2);
                // `want` is column by column.
                for (idx, &g) in c.iter().enumerate() {
                    let (i, j) = (idx / n, idx % n);
                    assert!(g.to_bits() == want[j * m + i], "int8 gemm {} {m}x{n}x{k} ({i},{j})", kern.name());
                }
            }
        }
    }
    let sums = crate::quant::row_sums(&codes, m, k);
    let fixed = fixed_quant(data[3] >> 1);
    let quant = fixed.map_or(crate::quant::InputQuant::PerImage, |(s, z)| {
        crate::quant::InputQuant::Fixed(crate::quant::ActParams::fixed(s, z).expect("valid fixed parameters"))
    });
    let want = crate::reference::int8::linear(&x, vecs, &codes, &scales, &bias, m, k, (fixed, relu));
    for kern in gemm::kernel::i8::Kernel::all() {
        let mut y = vec![f32::NAN; vecs * m];
        let mut scratch = vec![0.0; crate::ops::linear::i8_scratch_len(k, vecs)];
        let w = (&codes[..], &scales[..], &sums[..]);
        crate::ops::linear::linear_i8(kern, &x, vecs, w, &bias, (m, k), (quant, relu), &mut y, &mut scratch);
        let same = y.iter().zip(&want).all(|(g, e)| g.to_bits() == e.to_bits());
        assert!(same, "int8 linear {} {m}x{k}x{vecs}", kern.name());
    }
    // The bf16 GEMV where the CPU has one: bf16 W times x rounded to bf16.
    #[cfg(target_arch = "x86_64")]
    if let Some(tok) = gemm::kernel::bf16::Avx512Bf16::new() {
        let xr: Vec<f32> = x.iter().map(|&v| crate::reference::bf16_round(v)).collect();
        let want = crate::reference::linear(&xr, vecs, &wide, &vec![0.0; m], m, k, false);
        let ldx = gemm::pairs_len(k);
        let mut pairs = vec![0u32; vecs * ldx];
        for i in 0..vecs {
            gemm::kernel::bf16::to_pairs(tok, &x[i * k..(i + 1) * k], k, &mut pairs[i * ldx..(i + 1) * ldx]);
        }
        let mut y = vec![f32::NAN; vecs * m];
        gemm::kernel::bf16::gemv(tok, &w16, k, &pairs, &mut crate::base::mat::MatMut::new(&mut y, vecs, m, m));
        for (i, (&g, &e)) in y.iter().zip(&want).enumerate() {
            assert!((g - e).abs() <= 4e-4 * (k as f32 + 1.0), "bf16 gemv {m}x{k}x{vecs} [{i}]: {g} vs {e}");
        }
    }
}

/// Fused max-pool + LRN (both orders, odd sizes and betas), the within-channel LRN and
/// average pooling (fixed and adaptive) on every ISA against the reference operators, on a shape and hyperparameters
/// taken from the bytes. Calls the ops directly on the global rayon pool: building a
/// model per input would start and drop a thread pool each time, whose exiting threads
/// LeakSanitizer reports as leaks.
pub fn pool_lrn_diff(data: &[u8]) {
    use crate::ops::pool_lrn::{pool_lrn, Order, PoolLrn};
    use crate::plan::Shape;
    use crate::reference;
    let b = |i| byte(data, i);
    let (kh, kw) = (1 + b(0) % 3, 1 + b(1) % 3);
    let pool = MaxPool {
        kernel: [kh, kw],
        stride: [1 + b(2) % 2, 1 + b(3) % 3],
        pads: Pads { top: 0, left: (b(4) % 2).min(kw - 1), bottom: (b(5) % 2).min(kh - 1), right: 0 },
        ceil_mode: b(6) % 2 == 1,
    };
    let lrn = Lrn {
        size: 1 + b(7) % 6,
        alpha: (b(8) % 10) as f32 * 1e-3,
        beta: [0.75, 0.5, 0.6, 1.0][b(9) as usize % 4],
        bias: 0.5 + (b(10) % 4) as f32,
    };
    let order = if b(11) % 2 == 0 { Order::PoolThenLrn } else { Order::LrnThenPool };
    let [c, h, w] = [1 + b(12) % 9, 3 + b(13) % 12, 3 + b(14) % 12];
    // The plan's shape inference validates the pooling and gives the output size.
    let layers = vec![Layer::MaxPool(pool.clone()), Layer::Flatten];
    let plan = Plan { input: [c, h, w], preprocess: Preprocess::caffe(), layers, labels: vec![] };
    let Ok(shapes) = plan.shapes() else { return };
    let Shape::Spatial { h: oh, w: ow, .. } = shapes[1] else { return };
    let (c, h, w) = (c as usize, h as usize, w as usize);
    let mut input = synthetic::fill(b(15) as u64, c * h * w, 4.0);
    // A third of the inputs carry a NaN, which must reach exactly the windows holding it.
    if b(16) % 3 == 0 {
        input[(b(17) as usize * 7 + b(18) as usize) % (c * h * w)] = f32::NAN;
    }
    let same = |g: f32, e: f32, tol: f32| if e.is_nan() { g.is_nan() } else { (g - e).abs() <= tol * (1.0 + e.abs()) };
    // The standalone pooling alone: selections, so exact.
    let pooled = reference::maxpool(&input, [c, h, w], &pool, [oh, ow]);
    for cpu in Cpu::all() {
        let mut got = vec![f32::NAN; c * oh * ow];
        crate::ops::maxpool::maxpool(cpu, &input, [c, h, w], &pool, [oh, ow], &mut got);
        for (g, e) in got.iter().zip(&pooled) {
            assert!(same(*g, *e, 0.0), "{} maxpool: {g} vs {e} for {pool:?} on {c}x{h}x{w}", cpu.isa());
        }
    }
    let want = match order {
        Order::PoolThenLrn => {
            reference::lrn(&reference::maxpool(&input, [c, h, w], &pool, [oh, ow]), [c, oh, ow], &lrn)
        }
        Order::LrnThenPool => reference::maxpool(&reference::lrn(&input, [c, h, w], &lrn), [c, h, w], &pool, [oh, ow]),
    };
    let p = PoolLrn { pool: pool.clone(), lrn, order, input: [c, h, w], out: [oh, ow] };
    for cpu in Cpu::all() {
        let isa = cpu.isa();
        let mut got = vec![f32::NAN; c * oh * ow];
        pool_lrn(cpu, &input, &p, &mut got);
        for (g, e) in got.iter().zip(&want) {
            assert!(same(*g, *e, 1e-5), "{isa}: {g} vs {e} for {p:?}");
        }
    }
    // Within-channel LRN (odd windows, up to wider than the image) on the same input.
    let within = crate::plan::LrnWithin {
        size: 1 + 2 * (b(19) % 4),
        alpha: (b(20) % 10) as f32 * 1e-3,
        beta: [0.75, 0.5, 1.0][b(21) as usize % 3],
        bias: 0.5 + (b(22) % 3) as f32,
    };
    let want = reference::lrn_within(&input, [c, h, w], &within);
    for cpu in Cpu::all() {
        let mut got = vec![f32::NAN; c * h * w];
        crate::ops::lrn::lrn_within(cpu, &input, [c, h, w], &within, &mut got);
        for (g, e) in got.iter().zip(&want) {
            assert!(same(*g, *e, 1e-5), "{} lrn_within: {g} vs {e} for {within:?} on {c}x{h}x{w}", cpu.isa());
        }
    }
    // Average pooling with the max-pool's geometry (padding counted or not), and adaptive
    // pooling to a size taken from the bytes (smaller or larger than the map).
    let avg = crate::plan::AvgPool {
        kernel: pool.kernel,
        stride: pool.stride,
        pads: pool.pads,
        ceil_mode: pool.ceil_mode,
        count_include_pad: b(23) % 2 == 0,
    };
    let plan = Plan {
        input: [c as u32, h as u32, w as u32],
        preprocess: Preprocess::caffe(),
        layers: vec![Layer::AvgPool(avg.clone()), Layer::Flatten],
        labels: vec![],
    };
    if let Ok(shapes) = plan.shapes() {
        if let Shape::Spatial { h: oh, w: ow, .. } = shapes[1] {
            let want = reference::avgpool(&input, [c, h, w], &avg, [oh, ow]);
            for cpu in Cpu::all() {
                let mut got = vec![f32::NAN; c * oh * ow];
                crate::ops::avgpool::avgpool(cpu, &input, [c, h, w], &avg, [oh, ow], &mut got);
                for (g, e) in got.iter().zip(&want) {
                    assert!(same(*g, *e, 1e-5), "{} avgpool: {g} vs {e} for {avg:?} on {c}x{h}x{w}", cpu.isa());
                }
            }
        }
    }
    let adaptive = crate::plan::AdaptiveAvgPool { out: [1 + b(24) % 16, 1 + b(25) % 16] };
    let want = reference::adaptive_avgpool(&input, [c, h, w], &adaptive);
    for cpu in Cpu::all() {
        let mut got = vec![f32::NAN; want.len()];
        crate::ops::avgpool::adaptive_avgpool(cpu, &input, [c, h, w], &adaptive, &mut got);
        for (g, e) in got.iter().zip(&want) {
            assert!(same(*g, *e, 1e-5), "{} adaptive: {g} vs {e} for {adaptive:?} on {c}x{h}x{w}", cpu.isa());
        }
    }
}

/// One convolution (im2col + SGEMM, or Winograd for a 3x3 or 5x5 stride-1 kernel, which
/// half the inputs take) on every ISA against the reference convolution, on a geometry,
/// groups, batch and values taken from the bytes. Runs on the global rayon pool.
pub fn conv_diff(data: &[u8]) {
    use crate::ops::{conv, conv_i8, im2col::ConvGeom};
    use crate::reference;
    let b = |i| byte(data, i) as usize;
    let (kh, kw, sh, sw) = if b(0) % 2 == 0 {
        let k = 3 + 2 * (b(1) % 2);
        (k, k, 1, 1)
    } else {
        // Horizontal strides up to 4: at 4 the int8 convolution takes its row layout.
        (1 + b(1) % 5, 1 + b(2) % 5, 1 + b(3) % 3, 1 + b(4) % 4)
    };
    let side = |i| (b(i) % 3) as u32;
    let pads = Pads { top: side(5), left: side(6), bottom: side(7), right: side(8) };
    let (groups, cg, og) = (1 + b(9) % 2, 1 + b(10) % 4, 1 + b(11) % 6);
    let (h, w, batch, relu) = (1 + b(12) % 12, 1 + b(13) % 12, 1 + b(14) % 3, b(15) % 2 == 1);
    let (hp, wp) = (h + (pads.top + pads.bottom) as usize, w + (pads.left + pads.right) as usize);
    if hp < kh || wp < kw {
        return;
    }
    let (oh, ow) = ((hp - kh) / sh + 1, (wp - kw) / sw + 1);
    let vals = data.get(16..).unwrap_or(&[]);
    let at = |i: usize| vals.get(i % vals.len().max(1)).map_or(0.5, |&v| (v as f32 - 128.0) / 64.0);
    let (c, o) = (cg * groups, og * groups);
    let x: Vec<f32> = (0..batch * c * h * w).map(at).collect();
    let wt: Vec<f32> = (0..o * cg * kh * kw).map(|i| at(i * 7 + 3)).collect();
    let bias: Vec<f32> = (0..o).map(|i| at(i * 13 + 1)).collect();
    let g = ConvGeom { cg, h, w, kh, kw, sh, sw, pads, oh, ow };
    let want: Vec<f32> = (0..batch)
        .flat_map(|n| {
            let img = &x[n * c * h * w..(n + 1) * c * h * w];
            reference::conv2d(img, [c, h, w], &wt, &bias, o, [kh, kw], [sh, sw], pads, groups, [oh, ow], relu)
        })
        .collect();
    let tol = 4e-4 * (cg * kh * kw + 1) as f32;
    for cpu in Cpu::all() {
        let isa = cpu.isa();
        let weights = conv::pack_weights(&wt, &g, groups, og, gemm::blocks(cpu).mr);
        let mut scratch = vec![0.0f32; conv::scratch_len(&g, o, batch) + conv::fixed_scratch_len(&g, c, o)];
        let mut phased = vec![0.0f32; batch * conv::phased_len(&g, c)];
        let mut out = vec![f32::NAN; batch * o * oh * ow];
        conv::conv2d(cpu, &x, batch, &g, &weights, &bias, relu, &mut out, &mut scratch, &mut phased);
        for (i, (got, e)) in out.iter().zip(&want).enumerate() {
            assert!((got - e).abs() <= tol, "{isa} {g:?} groups {groups} batch {batch} at {i}: {got} vs {e}");
        }
    }
    // The int8 convolution on every int8 kernel: the reference's int8 rules, bit for bit.
    let (codes, scales) = reference::int8::quantize_weights(&wt, o, g.k());
    let fixed = fixed_quant(b(15) as u8 >> 1);
    let quant = fixed.map_or(crate::quant::InputQuant::PerImage, |(s, z)| {
        crate::quant::InputQuant::Fixed(crate::quant::ActParams::fixed(s, z).expect("valid fixed parameters"))
    });
    let want: Vec<u32> = (0..batch)
        .flat_map(|n| {
            let img = &x[n * c * h * w..(n + 1) * c * h * w];
            let (k, s) = ([kh, kw], [sh, sw]);
            let ep = (fixed, relu);
            reference::int8::conv2d(img, [c, h, w], &codes, &scales, &bias, o, k, s, pads, groups, [oh, ow], ep)
        })
        .map(f32::to_bits)
        .collect();
    let packed = conv_i8::pack_weights_i8(&codes, &scales, &g, groups, og);
    for kern in gemm::kernel::i8::Kernel::all() {
        let mut phased = vec![0.0f32; batch * conv_i8::phased_len_i8(&g, c)];
        let mut out = vec![f32::NAN; batch * o * oh * ow];
        conv_i8::conv2d_i8(kern, &x, batch, &g, &packed, &bias, (quant, relu), &mut out, &mut phased);
        let got: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
        assert!(got == want, "int8 {} {g:?} groups {groups} batch {batch}", kern.name());
    }
}

/// What the tuning table reads from the OS (`/proc/cpuinfo`, sysfs cache sizes) and how it
/// classifies a core: any text parses to a value or to `None`, never a panic, and a size
/// that parses is the number the text says; any vendor, family, model and L2 give blocks
/// of whole panels for any tile.
pub fn cpu_info(data: &[u8]) {
    use crate::tuning::{arm_midr, cache_size, CpuId, Tuning, Vendor};
    let text = String::from_utf8_lossy(data);
    let _ = arm_midr(&text);
    for line in text.lines().chain([&*text]) {
        if let Some(bytes) = cache_size(line) {
            let digits: String = line.trim().chars().filter(char::is_ascii_digit).collect();
            let n: usize = digits.parse().expect("a size that parses has digits");
            assert!(bytes > 0 && bytes.is_multiple_of(n), "{line:?} -> {bytes}");
        }
    }
    if data.len() >= 12 {
        let word = |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
        let vendor = match data[0] % 4 {
            0 => Vendor::Amd,
            1 => Vendor::Intel,
            2 => Vendor::Arm(word(0) >> 24),
            _ => Vendor::Unknown,
        };
        let uarch = CpuId { vendor, family: word(4) % 64, model: word(8), ..CpuId::default() }.uarch();
        let (mr, nr) = (1 + data[1] as usize % 16, 1 + data[2] as usize % 64);
        let l2 = word(4) as usize;
        let t = Tuning { l2, ..Tuning::forced(uarch) };
        let [mc, kc, nc] = t.blocks(mr, nr);
        assert!(mc >= mr && mc.is_multiple_of(mr) && nc >= nr && nc.is_multiple_of(nr) && kc > 0);
    }
}
