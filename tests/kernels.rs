//! Every GEMM kernel this CPU runs against the scalar reference: edge shapes around each
//! kernel's MR, NR and KC, the AlexNet shapes, every epilogue, guard values around C,
//! and bitwise equality across thread counts. ISAs the CPU lacks are reported and skipped.

use alexnet::base::mat::MatMut;
use alexnet::cpu::Cpu;
use alexnet::gemm::{self, Bias, Epilogue, PackedA, RowMajor};
use alexnet::tuning::{Tuning, Uarch};
use alexnet::{reference, synthetic, Isa};

fn kernels() -> Vec<Cpu> {
    let mut v = Vec::new();
    for isa in Isa::ALL {
        match Cpu::new(isa) {
            Ok(k) => v.push(k),
            Err(_) => eprintln!("note: {isa} not supported on this CPU; its kernel is not tested here"),
        }
    }
    v
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}

const GUARD: f32 = -7777.0;

/// Run sgemm into a buffer with `pad` guard values on each side and a wider `ldc`; check
/// the guards and the gap columns are untouched, return C.
#[allow(clippy::too_many_arguments)]
fn run(kernel: Cpu, m: usize, n: usize, k: usize, a: &[f32], b: &[f32], ep: Epilogue, threads: usize) -> Vec<f32> {
    let (pad, ldc) = (37, n + 3);
    let mut buf = vec![GUARD; pad + m * ldc + pad];
    let packed = PackedA::pack(a, m, k, gemm::blocks(kernel).mr);
    pool(threads).install(|| {
        gemm::sgemm(kernel, &packed, &RowMajor { data: b, ld: n }, n, &mut buf[pad..pad + m * ldc], ldc, ep)
    });
    assert!(buf[..pad].iter().chain(&buf[pad + m * ldc..]).all(|&v| v == GUARD), "guard overwritten");
    let mut c = Vec::with_capacity(m * n);
    for i in 0..m {
        let row = &buf[pad + i * ldc..pad + (i + 1) * ldc];
        assert!(row[n..].iter().all(|&v| v == GUARD), "gap columns written");
        c.extend_from_slice(&row[..n]);
    }
    c
}

fn expect(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], ep: Epilogue) -> Vec<f32> {
    let mut c = reference::sgemm(m, n, k, a, b);
    for i in 0..m {
        for j in 0..n {
            let bias = match ep.bias {
                Bias::Row(r) => r[i],
                Bias::Col(cb) => cb[j],
                Bias::None => 0.0,
            };
            let v = c[i * n + j] + bias;
            c[i * n + j] = if ep.relu { reference::relu(v) } else { v };
        }
    }
    c
}

/// Values in [-1, 1): errors scale with sqrt(k) in practice, k in the worst case.
fn check(kernel: Cpu, m: usize, n: usize, k: usize, threads: usize) {
    let a = synthetic::fill(1 + m as u64, m * k, 1.0);
    let b = synthetic::fill(2 + n as u64, k * n, 1.0);
    let rb = synthetic::fill(3, m, 1.0);
    let cb = synthetic::fill(4, n, 1.0);
    for ep in [
        Epilogue::default(),
        Epilogue { bias: Bias::Row(&rb), relu: true },
        Epilogue { bias: Bias::Col(&cb), relu: false },
    ] {
        let got = run(kernel, m, n, k, &a, &b, ep, threads);
        let want = expect(m, n, k, &a, &b, ep);
        let tol = 1e-5 * (k as f32 + 1.0);
        for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= tol, "{:?} m{m} n{n} k{k} t{threads} at {idx}: {g} vs {w}", kernel.isa());
        }
    }
}

#[test]
fn edge_shapes_match_reference() {
    for kernel in kernels() {
        let b = gemm::blocks(kernel);
        // MR + 8 and MR + 9: a last panel exactly as tall as AVX-512's short kernel, and
        // one row taller; MR + 4 and MR + 2: exactly as tall as AVX2's, and shorter.
        // NR + NR / 2: a last panel exactly as wide as the narrow kernel.
        // NR + 8, NR + NR / 2 + 3 and + 8: last panels of 8, 19 and 24 columns (AVX-512:
        // two calls of the edge kernel; a narrow tile then the edge kernel).
        let ms = [1, b.mr - 1, b.mr, b.mr + 1, b.mr + 2, b.mr + 4, b.mr + 8, b.mr + 9, 2 * b.mr + 3, b.mc + 1];
        let ns = [
            1,
            b.nr - 1,
            b.nr,
            b.nr + 1,
            b.nr + 8,
            b.nr + b.nr / 2,
            b.nr + b.nr / 2 + 3,
            b.nr + b.nr / 2 + 8,
            3 * b.nr + 5,
        ];
        let ks = [1, 2, 7, b.kc - 1, b.kc, b.kc + 1];
        for &m in &ms {
            for &n in &ns {
                for &k in &ks {
                    check(kernel, m.max(1), n.max(1), k, 1);
                }
            }
        }
        // Wider than NC, deeper than two KC slices, on two threads.
        check(kernel, b.mr * 2 + 1, b.nc + b.nr + 3, 2 * b.kc + 5, 2);
    }
}

#[test]
fn alexnet_shapes_match_reference() {
    // (M, K, N) of conv1..conv5 per group at 227x227, and an FC at batch 3 (M = batch).
    let mut shapes: Vec<_> = synthetic::conv_gemm_shapes(&synthetic::spec_plan()).unwrap();
    shapes.push(("fc at batch 3".into(), 3, 1024, 300));
    for kernel in kernels() {
        for (_, m, k, n) in &shapes {
            check(kernel, *m, *n, *k, 2);
        }
    }
}

#[test]
fn identity_products_are_exact() {
    for kernel in kernels() {
        for n in [1, 5, 33, 70] {
            let k = n;
            let mut eye = vec![0.0f32; n * n];
            for i in 0..n {
                eye[i * n + i] = 1.0;
            }
            let b = synthetic::fill(9, k * n, 3.0);
            let got = run(kernel, n, n, k, &eye, &b, Epilogue::default(), 2);
            assert_eq!(got, b, "{:?} n{n}", kernel.isa());
        }
    }
}

#[test]
fn k_zero_gives_bias() {
    for kernel in kernels() {
        let rb = [1.0f32, -2.0, 3.0];
        let got = run(kernel, 3, 4, 0, &[], &[], Epilogue { bias: Bias::Row(&rb), relu: true }, 1);
        assert_eq!(got, [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 3.0, 3.0, 3.0, 3.0]);
    }
}

/// MC, KC and NC.
type Blocks = [usize; 3];

/// Block sizes another CPU might be given, run here: tiny and odd MC, KC and NC forced
/// as `ALEXNET_GEMM_BLOCKS` forces them (MC and NC are rounded up to whole panels), and
/// every core's entry of the tuning table set on the packed weights as a model sets them;
/// against the reference, on one and three threads, and bitwise the same for any thread
/// count under each.
#[test]
fn other_cpus_block_sizes_match_reference() {
    for kernel in kernels() {
        let b = gemm::blocks(kernel);
        let (mr, nr) = (b.mr, b.nr);
        // (forced through the variable's path, set on A as a model's tuning)
        let mut cases: Vec<(Option<Blocks>, Option<Blocks>)> =
            [[1, 1, 1], [mr + 1, 7, 33], [37, 100, 70], [2 * mr, 1000, 4000]].map(|f| (Some(f), None)).into();
        cases.extend(Uarch::all().map(|u| (None, Some(Tuning::forced(u).blocks(mr, nr)))));
        for (m, n, k) in [(2 * mr + 3, 75, 211), (5, 300, 64), (96, 163, 363), (130, 300, 800)] {
            let a = synthetic::fill(8, m * k, 1.0);
            let bm = synthetic::fill(9, k * n, 1.0);
            let rb = synthetic::fill(10, m, 1.0);
            let ep = Epilogue { bias: Bias::Row(&rb), relu: true };
            let want = expect(m, n, k, &a, &bm, ep);
            for &(forced, tuned) in &cases {
                let mut packed = PackedA::pack(&a, m, k, mr);
                if let Some(blocks) = tuned {
                    packed.set_blocks(blocks);
                }
                let mut first: Option<Vec<f32>> = None;
                for t in [1, 3] {
                    let mut c = vec![f32::NAN; m * n];
                    pool(t).install(|| {
                        let view = MatMut::new(&mut c, m, n, n);
                        let src = RowMajor { data: &bm, ld: n };
                        gemm::sgemm_blocked(kernel, forced, &packed, &src, n, view, ep, t)
                    });
                    let tol = 1e-5 * (k as f32 + 1.0);
                    let case = format!("{:?} forced {forced:?} tuned {tuned:?} {m}x{n}x{k}", kernel.isa());
                    for (idx, (g, w)) in c.iter().zip(&want).enumerate() {
                        assert!((g - w).abs() <= tol, "{case} t{t} at {idx}: {g} vs {w}");
                    }
                    match &first {
                        None => first = Some(c),
                        Some(f) => {
                            assert!(f.iter().zip(&c).all(|(x, y)| x.to_bits() == y.to_bits()), "{case}: threads differ")
                        }
                    }
                }
                // Blocks set on A run exactly as the same blocks forced.
                if tuned.is_some() {
                    let mut c = vec![f32::NAN; m * n];
                    let plain = PackedA::pack(&a, m, k, mr);
                    let src = RowMajor { data: &bm, ld: n };
                    pool(2).install(|| {
                        gemm::sgemm_blocked(kernel, tuned, &plain, &src, n, MatMut::new(&mut c, m, n, n), ep, 2)
                    });
                    let f = first.as_ref().unwrap();
                    assert!(f.iter().zip(&c).all(|(x, y)| x.to_bits() == y.to_bits()), "{:?} {tuned:?}", kernel.isa());
                }
            }
        }
    }
}

#[test]
fn bitwise_identical_for_any_thread_count() {
    for kernel in kernels() {
        for (m, n, k) in [(96, 3025, 363), (384, 169, 2304), (37, 1000, 300), (5, 9, 700)] {
            let a = synthetic::fill(5, m * k, 1.0);
            let b = synthetic::fill(6, k * n, 1.0);
            let rb = synthetic::fill(7, m, 1.0);
            let ep = Epilogue { bias: Bias::Row(&rb), relu: true };
            let one = run(kernel, m, n, k, &a, &b, ep, 1);
            for t in [2, 3, 5] {
                let many = run(kernel, m, n, k, &a, &b, ep, t);
                assert!(
                    one.iter().zip(&many).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{:?} {m}x{n}x{k} t{t}",
                    kernel.isa()
                );
            }
        }
    }
}

#[test]
fn edge_columns_equal_full_tiles_bitwise() {
    // The last few columns of a product run the edge kernel (AVX-512), the same columns
    // of a wider product a narrow or full tile: every element must be the same bits.
    for kernel in kernels() {
        let b = gemm::blocks(kernel);
        let (m, k, wide) = (2 * b.mr + 5, b.kc + 7, 3 * b.nr);
        let a = PackedA::pack(&synthetic::fill(11, m * k, 1.0), m, k, b.mr);
        let bm = synthetic::fill(12, k * wide, 1.0);
        let (rb, cb) = (synthetic::fill(13, m, 1.0), synthetic::fill(14, wide, 1.0));
        let product = |n: usize, ep: Epilogue| {
            let mut c = vec![f32::NAN; m * n];
            gemm::sgemm(kernel, &a, &RowMajor { data: &bm, ld: wide }, n, &mut c, n, ep);
            c
        };
        for ep in [Epilogue { bias: Bias::Row(&rb), relu: true }, Epilogue { bias: Bias::Col(&cb), relu: false }] {
            let full = product(wide, ep);
            for n in [1, 3, 4, 5, 8, b.nr + 2, b.nr + 8, b.nr + b.nr / 2 + 1, b.nr + b.nr / 2 + 8] {
                let got = product(n, ep);
                for i in 0..m {
                    let (x, y) = (&got[i * n..(i + 1) * n], &full[i * wide..i * wide + n]);
                    assert!(
                        x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()),
                        "{:?} n{n} row {i}",
                        kernel.isa()
                    );
                }
            }
        }
    }
}

#[test]
fn b_read_in_place_equals_b_packed_bitwise() {
    // A row-major B is read in place unless its rows are a multiple of 256 bytes apart:
    // the same matrix at a leading dimension of 1024 is packed. Same bits either way,
    // on shapes whose last panel is whole, narrow, edge columns or a stack tile.
    for kernel in kernels() {
        let bs = gemm::blocks(kernel);
        let (m, k) = (2 * bs.mr + 3, bs.kc + 9);
        for n in [bs.nr, 3 * bs.nr + bs.nr / 2, 2 * bs.nr + 1, 2 * bs.nr + bs.nr - 3, 169, 700] {
            let a = PackedA::pack(&synthetic::fill(21, m * k, 1.0), m, k, bs.mr);
            let b = synthetic::fill(22, k * n, 1.0);
            let mut wide = vec![f32::NAN; k * 1024];
            for (row, src) in wide.chunks_exact_mut(1024).zip(b.chunks_exact(n)) {
                row[..n].copy_from_slice(src);
            }
            let rb = synthetic::fill(23, m, 1.0);
            let ep = Epilogue { bias: Bias::Row(&rb), relu: true };
            let product = |data: &[f32], ld: usize| {
                let mut c = vec![f32::NAN; m * n];
                pool(2).install(|| gemm::sgemm(kernel, &a, &RowMajor { data, ld }, n, &mut c, n, ep));
                c
            };
            let (in_place, packed) = (product(&b, n), product(&wide, 1024));
            assert!(in_place.iter().all(|v| v.is_finite()), "{:?} n{n}: unwritten values", kernel.isa());
            assert!(in_place.iter().zip(&packed).all(|(x, y)| x.to_bits() == y.to_bits()), "{:?} n{n}", kernel.isa());
        }
    }
}

#[test]
fn nan_propagates_through_relu() {
    for kernel in kernels() {
        let mut a = vec![1.0f32; 4 * 3];
        a[0] = f32::NAN;
        let b = vec![1.0f32; 3 * 5];
        let got = run(kernel, 4, 5, 3, &a, &b, Epilogue { bias: Bias::None, relu: true }, 1);
        assert!(got[..5].iter().all(|v| v.is_nan()), "{:?}: {:?}", kernel.isa(), &got[..5]);
        assert!(got[5..].iter().all(|&v| v == 3.0));
    }
}

#[test]
fn gemv_matches_reference_on_every_isa() {
    // One vector (batch 1) and several (the batched linear layer), odd rows and K tails.
    for kernel in kernels() {
        for (m, k, vecs) in [(1, 1, 1), (3, 5, 2), (4, 16, 4), (5, 17, 5), (7, 33, 1), (13, 100, 9), (64, 9216, 3)] {
            let w = synthetic::fill(11, m * k, 1.0);
            let x = synthetic::fill(12, vecs * k, 1.0);
            let ldy = m + 2;
            let mut y = vec![GUARD; vecs * ldy];
            gemm::gemv(kernel, &w, k, &x, &mut MatMut::new(&mut y, vecs, m, ldy));
            let want = reference::linear(&x, vecs, &w, &vec![0.0; m], m, k, false);
            for b in 0..vecs {
                assert!(y[b * ldy + m..(b + 1) * ldy].iter().all(|&v| v == GUARD), "{:?}: wrote outside", kernel.isa());
                for r in 0..m {
                    let (g, e) = (y[b * ldy + r], want[b * m + r]);
                    assert!((g - e).abs() <= 1e-5 * k as f32, "{:?} m{m} k{k} b{b} r{r}: {g} vs {e}", kernel.isa());
                }
            }
            // Grouping (4 rows x 4 vectors, or 1) never changes a (row, vector) result.
            for b in 0..vecs {
                for r in 0..m {
                    let mut one = [0.0f32];
                    gemm::gemv(
                        kernel,
                        &w[r * k..(r + 1) * k],
                        k,
                        &x[b * k..(b + 1) * k],
                        &mut MatMut::new(&mut one, 1, 1, 1),
                    );
                    assert_eq!(one[0].to_bits(), y[b * ldy + r].to_bits(), "{:?} m{m} k{k} b{b} r{r}", kernel.isa());
                }
            }
        }
    }
}
