//! A load test of one shared model: N caller threads each run single-image inferences in
//! a loop for D seconds; every result is checked bit for bit against the answer computed
//! alone beforehand. Reports throughput, latency percentiles, mismatches and the
//! process's resident memory before and after.
//!
//! ```sh
//! cargo run --release --example serve_load -- [--weights FILE] [--callers 1,8,32]
//!     [--seconds 15] [--threads 2] [--concurrency C] [--batching MAX,WAIT_MS] [--json]
//! ```
//! Without `--weights` it runs the spec network with synthetic weights. One JSON object
//! per caller count with `--json`: `callers`, `inferences_per_s`, `p50_ms`, `p99_ms`,
//! `max_ms`, `mismatches`, `rss_start_mb`, `rss_end_mb`, `mean_batch` (images per shared
//! batch, with batching on).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alexnet::{synthetic, Model};
use serde_json::json;

/// Resident memory of this process in MB (0 where /proc is not there).
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let callers: Vec<usize> =
        get("--callers").unwrap_or("1,2,4,8,16,32".into()).split(',').map(str::parse).collect::<Result<_, _>>()?;
    let seconds: f64 = get("--seconds").unwrap_or("15".into()).parse()?;
    let threads: usize = get("--threads").unwrap_or("2".into()).parse()?;
    let json_out = args.iter().any(|a| a == "--json");
    let mut builder = Model::builder().threads(threads);
    if let Some(c) = get("--concurrency") {
        builder = builder.max_concurrency(c.parse()?);
    }
    if let Some(b) = get("--batching") {
        let (max, wait) = b.split_once(',').unwrap_or((&b, "0"));
        builder = builder.batching(max.parse()?, Duration::from_secs_f64(wait.parse::<f64>()? / 1e3));
    }
    let model = Arc::new(match get("--weights") {
        Some(path) => builder.open(path)?,
        None => builder.from_bytes(synthetic::weight_file(&synthetic::spec_plan(), 1)?)?,
    });
    // A few distinct inputs, each one's answer computed alone first.
    let inputs: Arc<Vec<Vec<f32>>> = Arc::new((0..8).map(|i| synthetic::input(model.plan(), 100 + i, 1)).collect());
    let expected: Arc<Vec<Vec<u32>>> = Arc::new(
        inputs
            .iter()
            .map(|x| model.infer(x).map(|p| p.iter().map(|v| v.to_bits()).collect()))
            .collect::<Result<_, _>>()?,
    );
    if !json_out {
        println!(
            "model: {} threads, max concurrency {}, batching {:?}; {seconds} s per row",
            model.threads(),
            model.max_concurrency(),
            model.max_batch()
        );
        println!(
            "| callers | inferences/s | p50 ms | p99 ms | max ms | mismatches | RSS MB (start -> end) | mean batch |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---|---:|");
    }
    for &n in &callers {
        let rss_start = rss_mb();
        let counts0 = model.batch_counts().unwrap_or((0, 0));
        let stop = Arc::new(AtomicBool::new(false));
        let began = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|c| {
                let (model, inputs, expected, stop) =
                    (Arc::clone(&model), Arc::clone(&inputs), Arc::clone(&expected), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut out = vec![0.0f32; model.num_classes()];
                    let (mut lat, mut bad, mut i) = (Vec::with_capacity(4096), 0usize, c);
                    while !stop.load(Ordering::Relaxed) {
                        let k = i % inputs.len();
                        let t = Instant::now();
                        let ok = model.infer_into(&inputs[k], &mut out).is_ok();
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                        if !ok || out.iter().map(|v| v.to_bits()).ne(expected[k].iter().copied()) {
                            bad += 1;
                        }
                        i += 1;
                    }
                    (lat, bad)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        let (mut all, mut mismatches) = (Vec::new(), 0);
        for h in handles {
            let (lat, bad) = h.join().map_err(|_| "a caller panicked")?;
            all.extend(lat);
            mismatches += bad;
        }
        let wall = began.elapsed().as_secs_f64();
        all.sort_by(f64::total_cmp);
        let rss_end = rss_mb();
        let (p50, p99, max) = (percentile(&all, 0.5), percentile(&all, 0.99), all.last().copied().unwrap_or(0.0));
        let rate = all.len() as f64 / wall;
        let counts1 = model.batch_counts().unwrap_or((0, 0));
        let mean_batch = (counts1.1 - counts0.1) as f64 / (counts1.0 - counts0.0).max(1) as f64;
        if json_out {
            let line = json!({
                "callers": n, "inferences_per_s": rate, "p50_ms": p50, "p99_ms": p99, "max_ms": max,
                "mismatches": mismatches, "rss_start_mb": rss_start, "rss_end_mb": rss_end, "mean_batch": mean_batch,
            });
            println!("{line}");
        } else {
            println!(
                "| {n} | {rate:.1} | {p50:.1} | {p99:.1} | {max:.1} | {mismatches} | {rss_start:.0} -> {rss_end:.0} | {} |",
                if model.max_batch().is_some() { format!("{mean_batch:.1}") } else { "-".into() }
            );
        }
    }
    Ok(())
}
