//! SGEMM timings on AlexNet's shapes as JSON lines, for side-by-side comparisons
//! (`tools/gemm_vs_openblas.py` interleaves this with numpy's OpenBLAS in one run).
//!
//! ```sh
//! cargo run --release --example gemm_shapes -- [--isa avx512,avx2] [--threads 1,2] [--reps 15] [--min-ms 0] [--peak]
//! ```
//! Each shape runs at least `--reps` times and at least `--min-ms` milliseconds (after two
//! unmeasured calls); the median is reported.
//! Each line: `{"isa", "shape", "m", "k", "n", "threads", "median_ms", "gflops"}`; with
//! `--peak`, also `{"isa", "threads", "peak_gflops"}` lines from the FMA probe.

use std::time::Instant;

use alexnet::gemm::{self, peak, Bias, Epilogue, Kernel, PackedA, RowMajor};
use alexnet::{synthetic, Isa};

const SHAPES: [(&str, usize, usize, usize); 6] = [
    ("conv1", 96, 363, 3025),
    ("conv2", 128, 1200, 729),
    ("conv3", 384, 2304, 169),
    ("conv4", 192, 1728, 169),
    ("conv5", 128, 1728, 169),
    ("sq1024", 1024, 1024, 1024),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
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
            let kernel = Kernel::new(isa)?;
            for (name, m, k, n) in SHAPES {
                if only.as_deref().is_some_and(|s| s != name) {
                    continue;
                }
                let a = PackedA::pack(&synthetic::fill(1, m * k, 1.0), m, k, kernel.blocks().mr);
                let b = synthetic::fill(2, k * n, 1.0);
                let bias = synthetic::fill(3, m, 1.0);
                let mut c = vec![0.0f32; m * n];
                let mut run = || {
                    pool.install(|| {
                        let ep = Epilogue { bias: Bias::Row(&bias), relu: true };
                        gemm::sgemm(kernel, &a, &RowMajor { data: &b, ld: n }, n, &mut c, n, ep)
                    })
                };
                run();
                run();
                let mut times = Vec::with_capacity(reps);
                let began = Instant::now();
                while times.len() < reps.max(1) || began.elapsed() < min_time {
                    let start = Instant::now();
                    run();
                    times.push(start.elapsed().as_secs_f64());
                }
                times.sort_by(f64::total_cmp);
                let med = times[times.len() / 2];
                let gflops = 2.0 * (m * n * k) as f64 / med / 1e9;
                println!(
                    "{{\"isa\":\"{isa}\",\"shape\":\"{name}\",\"m\":{m},\"k\":{k},\"n\":{n},\"threads\":{t},\"median_ms\":{:.4},\"gflops\":{gflops:.2}}}",
                    med * 1e3
                );
            }
        }
        // The FMA probe runs last: its fresh threads would otherwise leave the pool's
        // workers sharing one CPU for the first measurements after it.
        if args.iter().any(|a| a == "--peak") {
            for &isa in &isas {
                let kernel = Kernel::new(isa)?;
                println!(
                    "{{\"isa\":\"{isa}\",\"threads\":{t},\"peak_gflops\":{:.2}}}",
                    peak::fma_peak_gflops(kernel, t, 200)
                );
            }
        }
        drop(pool);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Ok(())
}
