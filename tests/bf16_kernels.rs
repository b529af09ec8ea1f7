//! The bf16 GEMM (AVX512_BF16) against a scalar oracle that rounds the same way: both
//! operands rounded to bf16 by `reference::bf16_round` (independent of the kernel's
//! encoder), products and sums in f64. The kernel's products of bf16 values are exact in
//! f32 and only its K additions round, so each element is within `(k + 2) u sum |a b|`
//! (u = 2^-24) of the oracle: the bound the checks use (with a factor 2 of slack). Odd
//! shapes around the tile (12 x 32, narrow 16) and the K slice (512), every epilogue,
//! guard values around C, and bitwise equality across thread counts. Skipped, and said
//! so, on CPUs without AVX512_BF16.

use alexnet::cpu::Cpu;
use alexnet::gemm::{self, Bias, Epilogue, PackedA, RowMajor};
use alexnet::reference::bf16_round;
use alexnet::synthetic;
use alexnet::Isa;

/// The AVX-512 kernel family, if this CPU multiplies bf16 natively.
fn bf16_cpu() -> Option<Cpu> {
    let cpu = Cpu::new(Isa::Avx512).ok().filter(|&c| gemm::has_bf16(c));
    if cpu.is_none() {
        eprintln!("note: no AVX512_BF16 on this CPU; the bf16 GEMM is not tested here");
    }
    cpu
}

const GUARD: f32 = -7777.0;

/// C from the bf16 kernel on `threads` threads, C inside guard values and gap columns
/// that must survive.
#[allow(clippy::too_many_arguments)]
fn run(cpu: Cpu, m: usize, n: usize, k: usize, a: &[f32], b: &[f32], ep: Epilogue, threads: usize) -> Vec<f32> {
    let (pad, ldc) = (29, n + 5);
    let mut buf = vec![GUARD; pad + m * ldc + pad];
    let packed = PackedA::pack(a, m, k, gemm::blocks(cpu).mr).into_bf16();
    assert!(packed.is_bf16());
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| gemm::sgemm(cpu, &packed, &RowMajor { data: b, ld: n }, n, &mut buf[pad..pad + m * ldc], ldc, ep));
    assert!(buf[..pad].iter().chain(&buf[pad + m * ldc..]).all(|&v| v == GUARD), "guard overwritten");
    let mut c = Vec::with_capacity(m * n);
    for i in 0..m {
        let row = &buf[pad + i * ldc..pad + (i + 1) * ldc];
        assert!(row[n..].iter().all(|&v| v == GUARD), "gap column overwritten in row {i}");
        c.extend_from_slice(&row[..n]);
    }
    c
}

/// The oracle's value and error bound for every element.
fn oracle(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], ep: Epilogue) -> Vec<(f64, f64)> {
    let u = 2f64.powi(-24);
    let mut out = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let bias = match ep.bias {
                Bias::Row(r) => r[i] as f64,
                Bias::Col(c) => c[j] as f64,
                Bias::None => 0.0,
            };
            let (mut sum, mut mag) = (bias, bias.abs());
            for p in 0..k {
                let t = bf16_round(a[i * k + p]) as f64 * bf16_round(b[p * n + j]) as f64;
                sum += t;
                mag += t.abs();
            }
            if ep.relu {
                sum = sum.max(0.0);
            }
            out.push((sum, 2.0 * (k + 2) as f64 * u * mag + f64::MIN_POSITIVE));
        }
    }
    out
}

fn check(cpu: Cpu, m: usize, n: usize, k: usize, ep_kind: usize, threads: usize) {
    let seed = (m * 131 + n * 17 + k) as u64;
    let a = synthetic::fill(seed, m * k, 1.0);
    let b = synthetic::fill(seed + 1, k * n, 1.0);
    let (rb, cb) = (synthetic::fill(seed + 2, m, 1.0), synthetic::fill(seed + 3, n, 1.0));
    let ep = match ep_kind {
        0 => Epilogue::default(),
        1 => Epilogue { bias: Bias::Row(&rb), relu: true },
        _ => Epilogue { bias: Bias::Col(&cb), relu: false },
    };
    let got = run(cpu, m, n, k, &a, &b, ep, threads);
    for (idx, (&g, &(want, tol))) in got.iter().zip(&oracle(m, n, k, &a, &b, ep)).enumerate() {
        let err = (g as f64 - want).abs();
        assert!(
            err <= tol,
            "{m}x{n}x{k} ep{ep_kind} t{threads} [{}, {}]: {g} vs {want} (bound {tol:e})",
            idx / n,
            idx % n
        );
    }
}

#[test]
fn bf16_gemm_matches_its_oracle_on_odd_shapes() {
    let Some(cpu) = bf16_cpu() else { return };
    for (i, &m) in [1, 5, 11, 12, 13, 24, 37, 128].iter().enumerate() {
        for (j, &n) in [1, 7, 15, 16, 17, 31, 32, 33, 49, 100].iter().enumerate() {
            for &k in &[1, 2, 3, 47, 48] {
                check(cpu, m, n, k, (i + j + k) % 3, 1 + (i + j) % 3);
            }
        }
    }
    // Several K slices (odd and even slice boundaries), and many columns (several NC blocks).
    for &(m, n, k) in &[(13, 33, 513), (25, 70, 1030), (12, 32, 1024), (37, 1100, 363), (96, 17, 1201)] {
        for ep in 0..3 {
            check(cpu, m, n, k, ep, 2);
        }
    }
}

#[test]
fn bf16_gemm_is_bitwise_identical_for_any_thread_count() {
    let Some(cpu) = bf16_cpu() else { return };
    for &(m, n, k) in &[(96, 729, 363), (128, 49, 256), (37, 531, 1030), (384, 169, 192)] {
        let a = synthetic::fill(3, m * k, 1.0);
        let b = synthetic::fill(4, k * n, 1.0);
        let bias = synthetic::fill(5, m, 1.0);
        let ep = Epilogue { bias: Bias::Row(&bias), relu: true };
        let one: Vec<u32> = run(cpu, m, n, k, &a, &b, ep, 1).iter().map(|v| v.to_bits()).collect();
        for t in [2, 3, 5] {
            let got: Vec<u32> = run(cpu, m, n, k, &a, &b, ep, t).iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, one, "{m}x{n}x{k} on {t} threads");
        }
    }
}

#[test]
fn bf16_gemm_keeps_nan_through_relu() {
    let Some(cpu) = bf16_cpu() else { return };
    let (m, n, k) = (13, 20, 5);
    let mut a = synthetic::fill(9, m * k, 1.0);
    a[2 * k + 1] = f32::NAN;
    let b = synthetic::fill(10, k * n, 1.0);
    let got = run(cpu, m, n, k, &a, &b, Epilogue { bias: Bias::None, relu: true }, 2);
    for (idx, v) in got.iter().enumerate() {
        assert_eq!(v.is_nan(), idx / n == 2, "[{}, {}] = {v}", idx / n, idx % n);
    }
}

/// The bf16 GEMV (linear layers): W bf16 as stored, x rounded by `to_pairs`; every
/// (row, vector) within `(k + 2) u sum |w x|` of the f64 oracle, and bitwise the same
/// whether a vector runs alone or in a batch (the rows and vectors are grouped
/// differently).
#[test]
#[cfg(target_arch = "x86_64")]
fn bf16_gemv_matches_its_oracle_and_is_batch_invariant() {
    use alexnet::base::mat::MatMut;
    use alexnet::gemm::kernel::bf16 as k16;
    use alexnet::weights::format::{bf16_from_f32, f32_from_bf16};
    let Some(tok) = k16::Avx512Bf16::new() else {
        eprintln!("note: no AVX512_BF16 on this CPU; the bf16 GEMV is not tested here");
        return;
    };
    let u = 2f64.powi(-24);
    for &(rows, k) in &[(1, 1), (3, 31), (4, 32), (5, 33), (8, 100), (9, 47), (13, 1000), (33, 257), (17, 9216)] {
        for &vecs in &[1, 2, 4, 5, 9] {
            let seed = (rows * 7 + k + vecs) as u64;
            let w: Vec<u16> = synthetic::fill(seed, rows * k, 1.0).iter().map(|&v| bf16_from_f32(v)).collect();
            let x = synthetic::fill(seed + 1, vecs * k, 1.0);
            let ldx = gemm::pairs_len(k);
            let mut pairs = vec![0xdead_beef_u32; vecs * ldx];
            for (n, row) in pairs.chunks_exact_mut(ldx).enumerate() {
                k16::to_pairs(tok, &x[n * k..(n + 1) * k], k, row);
            }
            let mut y = vec![0.0f32; vecs * rows];
            k16::gemv(tok, &w, k, &pairs, &mut MatMut::new(&mut y, vecs, rows, rows));
            for n in 0..vecs {
                for r in 0..rows {
                    let (mut sum, mut mag) = (0.0f64, 0.0f64);
                    for p in 0..k {
                        let t = f32_from_bf16(w[r * k + p]) as f64 * bf16_round(x[n * k + p]) as f64;
                        sum += t;
                        mag += t.abs();
                    }
                    let got = y[n * rows + r] as f64;
                    let tol = 2.0 * (k + 2) as f64 * u * mag + f64::MIN_POSITIVE;
                    assert!((got - sum).abs() <= tol, "{rows}x{k} x{vecs} [{n}, {r}]: {got} vs {sum}");
                }
                let mut alone = vec![0.0f32; rows];
                let one = &pairs[n * ldx..(n + 1) * ldx];
                k16::gemv(tok, &w, k, one, &mut MatMut::new(&mut alone, 1, rows, rows));
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&alone), bits(&y[n * rows..(n + 1) * rows]), "{rows}x{k} vector {n} alone");
            }
        }
    }
}
