//! SGEMM timings on AlexNet's shapes as JSON lines, for side-by-side comparisons
//! (`tools/gemm_vs_openblas.py` interleaves this with numpy's OpenBLAS in one run).
//!
//! ```sh
//! cargo run --release --example gemm_shapes -- [--isa avx512,avx2] [--threads 1,2] [--reps 15] [--min-ms 0] [--peak] [--bf16]
//! cargo run --release --example gemm_shapes -- --list | --blocks
//! cargo run --release --example gemm_shapes -- --list
//! ```
//! Each shape runs at least `--reps` times and at least `--min-ms` milliseconds (after two
//! unmeasured calls); the median is reported. With `--bf16` the AVX-512 shapes also run
//! on the bf16 kernel (where the CPU has AVX512_BF16), as isa `avx512-bf16`.
//! Each line: `{"isa", "shape", "m", "k", "n", "threads", "median_ms", "gflops"}`; with
//! `--peak`, also `{"isa", "threads", "peak_gflops"}` lines from the FMA probe; with
//! `--list`, only `{"shape", "m", "k", "n"}` lines.

use std::time::Instant;

use alexnet::cpu::Cpu;
use alexnet::gemm::{self, Bias, Epilogue, PackedA, RowMajor};
use alexnet::{probe, synthetic, Isa};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let shapes = synthetic::benchmark_gemm_shapes();
    if args.iter().any(|a| a == "--list") {
        for (name, m, k, n) in &shapes {
            println!("{}", json!({ "shape": name, "m": m, "k": k, "n": n }));
        }
        return Ok(());
    }
    if args.iter().any(|a| a == "--blocks") {
        // The register tile and cache blocks each ISA's kernels run here, and the tuning
        // table's entry they come from.
        let t = alexnet::tuning::Tuning::default_for_process();
        for cpu in Isa::ALL.into_iter().filter_map(|i| Cpu::new(i).ok()) {
            let b = gemm::blocks(cpu);
            println!(
                "{}",
                json!({ "isa": cpu.isa().name(), "mr": b.mr, "nr": b.nr, "mc": b.mc, "kc": b.kc, "nc": b.nc,
                        "uarch": t.uarch.name(), "uarch_forced": t.forced, "l2_kib": t.l2 >> 10 })
            );
        }
        return Ok(());
    }
    let isas: Vec<Isa> = match get("--isa") {
        Some(list) => list.split(',').map(Isa::parse).collect::<Result<_, _>>()?,
        None => Isa::ALL.into_iter().filter(|i| i.is_supported()).collect(),
    };
    let threads: Vec<usize> =
        get("--threads").unwrap_or("1,2".into()).split(',').map(str::parse).collect::<Result<_, _>>()?;
    let reps: usize = get("--reps").unwrap_or("15".into()).parse()?;
    let min_time = std::time::Duration::from_secs_f64(get("--min-ms").unwrap_or("0".into()).parse::<f64>()? / 1e3);
    let only: Option<String> = get("--shape");
    // One pool alive at a time, as a model owns one: an idle pool's workers spin for a
    // while after each job and would steal a core from another pool's measurement.
    for &t in &threads {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build()?;
        for &isa in &isas {
            let cpu = Cpu::new(isa)?;
            let bf16 = args.iter().any(|a| a == "--bf16") && gemm::has_bf16(cpu);
            for ((name, m, k, n), half) in shapes.iter().cloned().flat_map(|s| [(s.clone(), false), (s, true)]) {
                if half && !bf16 {
                    continue;
                }
                if only.as_deref().is_some_and(|s| s != name) {
                    continue;
                }
                let a = PackedA::pack(&synthetic::fill(1, m * k, 1.0), m, k, gemm::blocks(cpu).mr);
                let a = if half { a.into_bf16() } else { a };
                let b = synthetic::fill(2, k * n, 1.0);
                let bias = synthetic::fill(3, m, 1.0);
                let mut c = vec![0.0f32; m * n];
                let mut run = || {
                    let ep = Epilogue { bias: Bias::Row(&bias), relu: true };
                    gemm::sgemm(cpu, &a, &RowMajor { data: &b, ld: n }, n, &mut c, n, ep)
                };
                // The calls are made from inside the pool, as a model's forward pass makes
                // its products: a `pool.install` per call would time a hand-off to a
                // sleeping worker and back with each product.
                let mut times = Vec::with_capacity(reps);
                pool.install(|| {
                    run();
                    run();
                    let began = Instant::now();
                    while times.len() < reps.max(1) || began.elapsed() < min_time {
                        let start = Instant::now();
                        run();
                        times.push(start.elapsed().as_secs_f64());
                    }
                });
                times.sort_by(f64::total_cmp);
                let med = times[times.len() / 2];
                let gflops = 2.0 * (m * n * k) as f64 / med / 1e9;
                let line = json!({
                    "isa": if half { "avx512-bf16" } else { isa.name() }, "shape": name, "m": m, "k": k, "n": n, "threads": t,
                    "median_ms": med * 1e3, "gflops": gflops,
                });
                println!("{line}");
            }
        }
        // The FMA probe runs last: its fresh threads would otherwise leave the pool's
        // workers sharing one CPU for the first measurements after it.
        if args.iter().any(|a| a == "--peak") {
            for &isa in &isas {
                let peak = probe::fma_peak_gflops(Cpu::new(isa)?, t, 200);
                println!("{}", json!({ "isa": isa.name(), "threads": t, "peak_gflops": peak }));
            }
        }
        drop(pool);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Ok(())
}
