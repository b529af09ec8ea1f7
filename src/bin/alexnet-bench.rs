//! alexnet-bench: latency and throughput of a weight file, or of the embedded default.
//!
//! With no arguments it builds the spec network (227x227, LRN after pool, groups of 2,
//! 1000 classes) with deterministic synthetic weights in memory and times batch-1
//! inference on all cores. Like ncnn's benchncnn: warm-up runs, then timed loops, then
//! min / median / mean / p90 / p99.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use alexnet::{synthetic, Isa, Model};

const USAGE: &str = "usage: alexnet-bench [--weights FILE] [--batch N] [--threads T] [--iters N] [--warmup N]
                     [--isa avx512|avx2|neon|portable] [--seed S] [--json]

With no --weights, runs the embedded default: the spec network (227x227, LRN after
pooling, groups of 2) with deterministic synthetic weights made in-process.";

struct Args {
    weights: Option<String>,
    batch: usize,
    threads: usize,
    iters: usize,
    warmup: usize,
    isa: Option<Isa>,
    seed: u64,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        weights: None,
        batch: 1,
        threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        iters: 30,
        warmup: 3,
        isa: None,
        seed: 1,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let num = |name: &str, v: String| v.parse::<usize>().map_err(|_| format!("{name}: {v:?} is not a number"));
        match arg.as_str() {
            "--weights" => a.weights = Some(value("--weights")?),
            "--batch" => a.batch = num("--batch", value("--batch")?)?,
            "--threads" => a.threads = num("--threads", value("--threads")?)?,
            "--iters" => a.iters = num("--iters", value("--iters")?)?,
            "--warmup" => a.warmup = num("--warmup", value("--warmup")?)?,
            "--seed" => a.seed = num("--seed", value("--seed")?)? as u64,
            "--isa" => a.isa = Some(Isa::parse(&value("--isa")?).map_err(|e| e.to_string())?),
            "--json" => a.json = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if a.batch == 0 || a.threads == 0 || a.iters == 0 {
        return Err("--batch, --threads and --iters must be at least 1".into());
    }
    Ok(a)
}

/// Percentile of sorted samples (nearest rank).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn run(a: Args) -> Result<(), String> {
    let mut builder = Model::builder().threads(a.threads);
    if let Some(isa) = a.isa {
        builder = builder.isa(isa);
    }
    // Cold start = open (map + validate + build) + the first inference; making the
    // synthetic weights of the embedded default is not part of it.
    let (model, source, open_time) = match &a.weights {
        Some(path) => {
            let t = Instant::now();
            let m = builder.open(path).map_err(|e| e.to_string())?;
            (m, path.clone(), t.elapsed())
        }
        None => {
            let bytes = synthetic::weight_file(&synthetic::spec_plan(), a.seed).map_err(|e| e.to_string())?;
            let t = Instant::now();
            let m = builder.from_bytes(bytes).map_err(|e| e.to_string())?;
            (m, format!("embedded spec network (synthetic weights, seed {})", a.seed), t.elapsed())
        }
    };
    let plan = model.plan().clone();
    let input = synthetic::input(&plan, a.seed, a.batch);
    let mut out = vec![0.0f32; a.batch * model.num_classes()];
    let t1 = Instant::now();
    model.infer_into(&input, &mut out).map_err(|e| e.to_string())?;
    let cold = open_time + t1.elapsed();
    for _ in 0..a.warmup {
        model.infer_into(&input, &mut out).map_err(|e| e.to_string())?;
    }
    let mut samples = Vec::with_capacity(a.iters);
    for _ in 0..a.iters {
        let t = Instant::now();
        model.infer_into(&input, &mut out).map_err(|e| e.to_string())?;
        samples.push(ms(t.elapsed()));
    }
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    let median = percentile(&sorted, 50.0);
    let ips = a.batch as f64 / (median / 1e3);
    let top = alexnet::top_k(&out[..model.num_classes()], 1).map_err(|e| e.to_string())?[0];
    if a.json {
        println!(
            "{{\"source\":\"{}\",\"batch\":{},\"threads\":{},\"isa\":\"{}\",\"iters\":{},\"min_ms\":{:.4},\"median_ms\":{:.4},\"mean_ms\":{:.4},\"p90_ms\":{:.4},\"p99_ms\":{:.4},\"max_ms\":{:.4},\"throughput_ips\":{:.3},\"cold_start_ms\":{:.3},\"top1\":{}}}",
            source.replace('\\', "\\\\").replace('"', "\\\""),
            a.batch,
            model.threads(),
            model.isa(),
            a.iters,
            sorted[0],
            median,
            mean,
            percentile(&sorted, 90.0),
            percentile(&sorted, 99.0),
            sorted[sorted.len() - 1],
            ips,
            ms(cold),
            top.0
        );
    } else {
        let [c, h, w] = model.input_shape();
        println!("model     {source}");
        println!("input     [{}, {c}, {h}, {w}]  classes {}", a.batch, model.num_classes());
        println!("isa       {}  threads {}", model.isa(), model.threads());
        println!(
            "latency   min {:.2} ms  median {median:.2} ms  mean {mean:.2} ms  p90 {:.2} ms  p99 {:.2} ms  ({} iters)",
            sorted[0],
            percentile(&sorted, 90.0),
            percentile(&sorted, 99.0),
            a.iters
        );
        println!("throughput {ips:.1} images/s");
        println!("cold start {:.1} ms (open + first result)", ms(cold));
    }
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alexnet-bench: {}", e.lines().next().unwrap_or(""));
            ExitCode::FAILURE
        }
    }
}
