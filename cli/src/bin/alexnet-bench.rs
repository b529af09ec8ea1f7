//! alexnet-bench: latency and throughput of a weight file, or of the embedded default.
//!
//! With no arguments it builds the spec network (227x227, LRN after pool, groups of 2,
//! 1000 classes) with deterministic synthetic weights in memory and times batch-1
//! inference on all cores. Like ncnn's benchncnn: warm-up runs, then timed loops, then
//! min / median / mean / p90 / p99.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use alexnet::cpu::Cpu;
use alexnet::tuning::CpuId;
use alexnet::{probe, synthetic, Isa, Model, Precision, Uarch};
use clap::Parser;
use serde::Serialize;

/// How the bench is run (see the module doc; `--help` prints this).
#[derive(Parser, Debug)]
#[command(
    name = "alexnet-bench",
    version,
    about = "Latency, throughput and a per-layer profile of an alexnet weight file, or of the embedded \
             default: the spec network (227x227, LRN after pooling, groups of 2) with deterministic \
             synthetic weights made in-process.",
    after_help = "After the timed loop it profiles each layer (median over --iters runs): conv layers in \
                  GFLOP/s and % of the FMA peak measured here for the model's ISA and threads, linear \
                  layers in GB/s of weights streamed, against the read bandwidth measured on the largest \
                  weight tensor. The roofline bound is conv FLOPs at that peak plus linear weight bytes at \
                  that bandwidth.",
    help_template = "{about}\n\nusage: {usage}\n\n{all-args}{after-help}"
)]
struct Args {
    /// Weight file (default: the embedded spec network).
    #[arg(long, value_name = "FILE")]
    weights: Option<String>,
    /// Images per inference.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = at_least_one)]
    batch: usize,
    /// The model's threads (default: this machine's cores).
    #[arg(long, value_name = "T", default_value_t = cores(), value_parser = at_least_one)]
    threads: usize,
    /// Timed runs.
    #[arg(long, value_name = "N", default_value_t = 30, value_parser = at_least_one)]
    iters: usize,
    /// Untimed runs first.
    #[arg(long, value_name = "N", default_value_t = 3)]
    warmup: usize,
    /// Kernel family: avx512, avx2, neon or portable (default: the best this CPU runs).
    #[arg(long, value_name = "ISA", value_parser = |s: &str| Isa::parse(s).map_err(|e| e.to_string()))]
    isa: Option<Isa>,
    /// Take the tuning table's choices for this core instead of the one this CPU reports
    /// (names: --list-uarch; default: ALEXNET_UARCH if set).
    #[arg(long, value_name = "NAME", value_parser = |s: &str| Uarch::parse(s).map_err(|e| e.to_string()))]
    uarch: Option<Uarch>,
    /// Print the tuning table (each core's caches, blocks and reason) and this CPU's entry,
    /// then exit.
    #[arg(long)]
    list_uarch: bool,
    /// Arithmetic: f32, bf16 or int8 (default: the file's own; f32 for the embedded default).
    #[arg(long, value_name = "P", value_parser = |s: &str| Precision::parse(s).map_err(|e| e.to_string()))]
    precision: Option<Precision>,
    /// Seed of the synthetic weights and inputs.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Skip the per-layer profile.
    #[arg(long = "no-profile", action = clap::ArgAction::SetFalse)]
    profile: bool,
    /// Instead of timing: run at --precision (default bf16) beside f32 on N inputs and
    /// report top-1 agreement, top-5 overlap and max/median |log p - log p_f32|.
    #[arg(long, value_name = "N")]
    accuracy: Option<usize>,
    /// Instead of timing: for each layer at T threads (a comma list, e.g. 4,8,16,32,64),
    /// the tasks it offers the pool and the largest one's share of its work against 1/T,
    /// at --batch images, and the speed-up that split allows (`Model::partition`: a model
    /// of the split, run on pools of T threads on any machine).
    #[arg(long, value_name = "T,..", value_delimiter = ',', value_parser = at_least_one)]
    partition: Option<Vec<usize>>,
    /// With --accuracy: take the first N images of X.npy ([N, C, H, W] float32, already
    /// preprocessed) instead of synthetic inputs.
    #[arg(long, value_name = "X.npy", requires = "accuracy")]
    inputs: Option<String>,
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

/// Percentile of sorted samples (nearest rank).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `--accuracy`: the model at the asked precision beside f32, on the same inputs.
fn accuracy(a: &Args, images: usize) -> Result<(), String> {
    let precision = a.precision.unwrap_or(Precision::Bf16);
    let open = |p: Precision| -> Result<Model, String> {
        let mut b = Model::builder().threads(a.threads).precision(p);
        if let Some(isa) = a.isa {
            b = b.isa(isa);
        }
        if let Some(u) = a.uarch {
            b = b.uarch(u);
        }
        match &a.weights {
            Some(path) => b.open(path),
            None => synthetic::weight_file(&synthetic::spec_plan(), a.seed).and_then(|w| b.from_bytes(w)),
        }
        .map_err(|e| e.to_string())
    };
    let (reference, model) = (open(Precision::F32)?, open(precision)?);
    let per = model.input_len();
    let input = match &a.inputs {
        Some(path) => {
            let x = alexnet::npy::read(path.as_ref()).map_err(|e| e.to_string())?.data;
            let n = (x.len() / per).min(images);
            if n == 0 || x.len() % per != 0 {
                return Err(format!("{path}: {} values are not whole images of {per}", x.len()));
            }
            x[..n * per].to_vec()
        }
        None => synthetic::input(model.plan(), a.seed, images),
    };
    let n = input.len() / per;
    let classes = model.num_classes();
    let (mut want, mut got) = (vec![0.0f32; n * classes], vec![0.0f32; n * classes]);
    // In batches of up to 16: fast, and the results are the batch-1 results anyway.
    for (i, x) in input.chunks(16 * per).enumerate() {
        let rows = i * 16 * classes..(i * 16 + x.len() / per) * classes;
        reference.infer_into(x, &mut want[rows.clone()]).map_err(|e| e.to_string())?;
        model.infer_into(x, &mut got[rows]).map_err(|e| e.to_string())?;
    }
    let r = alexnet_cli::accuracy::compare(&want, &got, classes);
    if a.json {
        #[derive(Serialize)]
        struct AccuracyReport<'a> {
            precision: &'static str,
            reference: &'static str,
            isa: &'static str,
            #[serde(flatten)]
            agreement: &'a alexnet_cli::accuracy::Agreement,
        }
        let report = AccuracyReport {
            precision: model.precision().name(),
            reference: "f32",
            isa: model.isa().name(),
            agreement: &r,
        };
        println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
    } else {
        println!("accuracy  {} vs f32 on {} images ({})", model.precision(), r.images, model.isa());
        println!("  top-1 agreement {:.2}%  top-5 overlap {:.2}%", 100.0 * r.top1_agreement, 100.0 * r.top5_overlap);
        println!(
            "  |log p - log p_f32| on the f32 top-5: max {:.3e}  median {:.3e}",
            r.max_abs_dlogp, r.median_abs_dlogp
        );
    }
    Ok(())
}

fn run(a: Args) -> Result<(), String> {
    if let Some(n) = a.accuracy {
        return accuracy(&a, n);
    }
    if a.list_uarch {
        return list_uarch();
    }
    let mut builder = Model::builder().threads(a.threads);
    if let Some(isa) = a.isa {
        builder = builder.isa(isa);
    }
    if let Some(u) = a.uarch {
        builder = builder.uarch(u);
    }
    if let Some(p) = a.precision {
        builder = builder.precision(p);
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
    if let Some(threads) = &a.partition {
        return partition(&model, &source, threads, a.batch, a.json);
    }
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
    let prof = if a.profile { Some(profile(&model, &input, &mut out, a.iters)?) } else { None };
    let rss_mb = peak_rss_mb();
    if a.json {
        let report = Report {
            source: &source,
            batch: a.batch,
            threads: model.threads(),
            isa: model.isa().name(),
            precision: model.precision().name(),
            cpu: alexnet_cli::machine::cpu_description(),
            iters: a.iters,
            min_ms: round(sorted[0], 4),
            median_ms: round(median, 4),
            mean_ms: round(mean, 4),
            p90_ms: round(percentile(&sorted, 90.0), 4),
            p99_ms: round(percentile(&sorted, 99.0), 4),
            max_ms: round(sorted[sorted.len() - 1], 4),
            throughput_ips: round(ips, 3),
            cold_start_ms: round(ms(cold), 3),
            peak_rss_mb: round(rss_mb, 1),
            top1: top.0,
            gemm: GemmReport::of(&model),
            profile: prof.as_ref().map(Profile::json),
        };
        println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
    } else {
        let [c, h, w] = model.input_shape();
        println!("model     {source}");
        println!("input     [{}, {c}, {h}, {w}]  classes {}", a.batch, model.num_classes());
        println!("cpu       {}", alexnet_cli::machine::cpu_description());
        println!("isa       {}  threads {}  precision {}", model.isa(), model.threads(), model.precision());
        let t = model.tuning();
        let how = if t.forced { "forced" } else { "detected" };
        println!("uarch     {} ({how}; blocks for an L2 of {} KiB): {}", t.uarch, t.l2 >> 10, t.uarch.entry().why);
        let b = model.gemm_blocks();
        let forced = if alexnet::gemm::blocking::forced().is_some() { " (forced by ALEXNET_GEMM_BLOCKS)" } else { "" };
        println!("gemm      f32 tile {}x{}, blocks MC {} KC {} NC {}{forced}", b.mr, b.nr, b.mc, b.kc, b.nc);
        println!(
            "latency   min {:.2} ms  median {median:.2} ms  mean {mean:.2} ms  p90 {:.2} ms  p99 {:.2} ms  ({} iters)",
            sorted[0],
            percentile(&sorted, 90.0),
            percentile(&sorted, 99.0),
            a.iters
        );
        println!("throughput {ips:.1} images/s");
        println!("cold start {:.1} ms (open + first result)", ms(cold));
        println!("peak RSS  {rss_mb:.1} MB");
        if let Some(p) = &prof {
            p.print(a.batch);
        }
    }
    Ok(())
}

/// `--partition`: each layer's split at each thread count, as a table (or JSON: `partition`,
/// one object per thread count with `threads` and per layer `layer`, `tasks`,
/// `largest_share`, `speedup_bound`).
fn partition(model: &Model, source: &str, threads: &[usize], batch: usize, json: bool) -> Result<(), String> {
    let names = layer_names(model.plan());
    let splits: Vec<Vec<alexnet::Partition>> =
        threads.iter().map(|&t| model.partition(t, batch)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    // Layers that do work (a fused ReLU or a flatten has none).
    let rows: Vec<usize> = (0..names.len()).filter(|&i| splits.iter().any(|s| s[i].work > 0.0)).collect();
    // The whole network: each layer's time at T threads taken as its work over the
    // speed-up its split allows (each layer as fast per unit of work as on one thread).
    let whole = |s: &[alexnet::Partition], t: usize| {
        let one: f64 = s.iter().map(|p| p.work).sum();
        let at: f64 = s.iter().filter(|p| p.work > 0.0).map(|p| p.work / p.speedup_bound(t)).sum();
        if at > 0.0 {
            one / at
        } else {
            t as f64
        }
    };
    if json {
        let per_t: Vec<serde_json::Value> = threads
            .iter()
            .zip(&splits)
            .map(|(&t, s)| {
                let layers: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|&i| {
                        serde_json::json!({
                            "layer": names[i],
                            "tasks": s[i].tasks,
                            "largest_share": round(s[i].largest, 4),
                            "speedup_bound": round(s[i].speedup_bound(t), 2),
                        })
                    })
                    .collect();
                serde_json::json!({ "threads": t, "network_speedup_bound": round(whole(s, t), 2), "layers": layers })
            })
            .collect();
        let report = serde_json::json!({ "source": source, "batch": batch, "partition": per_t });
        println!("{report}");
        return Ok(());
    }
    println!("model     {source}");
    println!("partition batch {batch}: tasks offered / largest task's share of the layer's work (1/T: an even split) / speed-up it allows");
    let head: Vec<String> = threads.iter().map(|t| format!("T={t} (1/T = {:.3})", 1.0 / *t as f64)).collect();
    println!("| layer | {} |", head.join(" | "));
    println!("|---|{}", "---:|".repeat(threads.len()));
    for &i in &rows {
        let cells: Vec<String> = threads
            .iter()
            .zip(&splits)
            .map(|(&t, s)| {
                let p = s[i];
                let flag = if p.speedup_bound(t) < 0.75 * t as f64 { " *" } else { "" };
                format!("{} / {:.3} / {:.1}x{flag}", p.tasks, p.largest, p.speedup_bound(t))
            })
            .collect();
        println!("| {} | {} |", names[i], cells.join(" | "));
    }
    let cells: Vec<String> = threads.iter().zip(&splits).map(|(&t, s)| format!("{:.1}x", whole(s, t))).collect();
    println!("| network | {} |", cells.join(" | "));
    println!("* the split caps the layer's speed-up below 0.75 T");
    Ok(())
}

/// Per-layer medians and the machine's measured limits.
struct Profile {
    /// (name, median ms, FLOPs per batch, weight bytes)
    layers: Vec<(String, f64, u64, u64)>,
    peak_gflops: f64,
    bandwidth_gbps: f64,
}

impl Profile {
    fn conv_flops(&self) -> u64 {
        self.layers.iter().filter(|l| l.0.starts_with("conv")).map(|l| l.2).sum()
    }
    fn fc_bytes(&self) -> u64 {
        self.layers.iter().filter(|l| l.0.starts_with("linear")).map(|l| l.3).sum()
    }
    /// Lower bound on a batch's latency: conv FLOPs at the FMA peak + linear weights at
    /// the read bandwidth (the two phases run one after the other).
    fn roofline_ms(&self) -> f64 {
        self.conv_flops() as f64 / (self.peak_gflops * 1e6) + self.fc_bytes() as f64 / (self.bandwidth_gbps * 1e6)
    }
    fn rates(&self, l: &(String, f64, u64, u64)) -> (f64, f64) {
        let secs = l.1 / 1e3;
        (l.2 as f64 / secs / 1e9, l.3 as f64 / secs / 1e9)
    }
    fn print(&self, batch: usize) {
        println!(
            "profile   (median per layer, batch {batch}; FMA peak {:.1} GFLOP/s, read bandwidth {:.1} GB/s)",
            self.peak_gflops, self.bandwidth_gbps
        );
        let total: f64 = self.layers.iter().map(|l| l.1).sum();
        for l in &self.layers {
            let (gflops, gbps) = self.rates(l);
            let rate = if l.0.starts_with("conv") {
                format!("{gflops:7.1} GFLOP/s {:5.1}% of peak", 100.0 * gflops / self.peak_gflops)
            } else if l.0.starts_with("linear") {
                format!("{gbps:7.1} GB/s    {:5.1}% of bandwidth", 100.0 * gbps / self.bandwidth_gbps)
            } else {
                String::new()
            };
            println!("  {:<16} {:8.3} ms {:5.1}%  {rate}", l.0, l.1, 100.0 * l.1 / total);
        }
        println!(
            "  {:<16} {:8.3} ms   roofline bound {:.2} ms (sum of layer medians / bound = {:.2}x)",
            "total",
            total,
            self.roofline_ms(),
            total / self.roofline_ms()
        );
    }
    /// The profile's part of the `--json` object.
    fn json(&self) -> ProfileReport<'_> {
        let layers = self
            .layers
            .iter()
            .map(|l| {
                let (gflops, gbps) = self.rates(l);
                LayerReport { name: &l.0, median_ms: round(l.1, 4), gflops: round(gflops, 2), gbps: round(gbps, 2) }
            })
            .collect();
        ProfileReport {
            fma_peak_gflops: round(self.peak_gflops, 2),
            read_bandwidth_gbps: round(self.bandwidth_gbps, 2),
            roofline_ms: round(self.roofline_ms(), 3),
            layers,
        }
    }
}

/// The `--json` object. Names and paths are escaped by the serialiser; figures that are
/// not finite (no linear layer to measure bandwidth on, no `/proc`) become `null`.
#[derive(Serialize)]
struct Report<'a> {
    source: &'a str,
    batch: usize,
    threads: usize,
    isa: &'static str,
    precision: &'static str,
    /// The CPU: name, family and model, L2 and L3 sizes.
    cpu: String,
    iters: usize,
    min_ms: f64,
    median_ms: f64,
    mean_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    throughput_ips: f64,
    cold_start_ms: f64,
    peak_rss_mb: f64,
    top1: usize,
    /// The f32 GEMM's register tile and cache blocks for this CPU and ISA.
    gemm: GemmReport,
    #[serde(flatten)]
    profile: Option<ProfileReport<'a>>,
}

/// `gemm` of [`Report`]: `mr`, `nr`, `mc`, `kc`, `nc`, `forced` (whether
/// `ALEXNET_GEMM_BLOCKS` set MC, KC and NC), `uarch` (the tuning table's entry),
/// `uarch_forced` (set by `--uarch` or `ALEXNET_UARCH` rather than detected) and `l2_kib`
/// (the L2 the blocks were sized for).
#[derive(Serialize)]
struct GemmReport {
    mr: usize,
    nr: usize,
    mc: usize,
    kc: usize,
    nc: usize,
    forced: bool,
    uarch: &'static str,
    uarch_forced: bool,
    l2_kib: usize,
}

impl GemmReport {
    fn of(model: &Model) -> GemmReport {
        let (b, t) = (model.gemm_blocks(), model.tuning());
        let forced = alexnet::gemm::blocking::forced().is_some();
        GemmReport {
            mr: b.mr,
            nr: b.nr,
            mc: b.mc,
            kc: b.kc,
            nc: b.nc,
            forced,
            uarch: t.uarch.name(),
            uarch_forced: t.forced,
            l2_kib: t.l2 >> 10,
        }
    }
}

/// `--list-uarch`: the tuning table, and what this CPU reports.
fn list_uarch() -> Result<(), String> {
    let id = CpuId::detect();
    let kib = |b: Option<usize>| b.map_or("?".to_string(), |b| format!("{} KiB", b >> 10));
    println!("this cpu  {}", alexnet_cli::machine::cpu_description());
    println!(
        "reports   {:?} family {:#x} model {:#x}; L1d {}, L2 {}, L3 {}: entry {}",
        id.vendor,
        id.family,
        id.model,
        kib(id.l1d),
        kib(id.l2),
        kib(id.l3),
        id.uarch()
    );
    println!();
    println!(
        "{:<20} {:>5} {:>8} {:>8} {:>4} {:>6} {:>6}  why",
        "uarch", "fma", "L1d KiB", "L2 KiB", "KC", "A KiB", "B KiB"
    );
    for e in &alexnet::tuning::TABLE {
        println!(
            "{:<20} {:>5} {:>8} {:>8} {:>4} {:>6} {:>6}  {}",
            e.name,
            e.fma_lanes,
            e.l1d >> 10,
            e.l2 >> 10,
            e.kc,
            e.a_block >> 10,
            e.b_block >> 10,
            e.why
        );
    }
    Ok(())
}

/// The per-layer profile's fields of [`Report`].
#[derive(Serialize)]
struct ProfileReport<'a> {
    fma_peak_gflops: f64,
    read_bandwidth_gbps: f64,
    roofline_ms: f64,
    layers: Vec<LayerReport<'a>>,
}

/// One layer's row of the profile.
#[derive(Serialize)]
struct LayerReport<'a> {
    name: &'a str,
    median_ms: f64,
    gflops: f64,
    gbps: f64,
}

/// `x` rounded to `digits` decimals.
fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

fn layer_names(plan: &alexnet::Plan) -> Vec<String> {
    use alexnet::plan::Layer;
    plan.layers
        .iter()
        .enumerate()
        .map(|(i, l)| match l {
            Layer::Conv(c) => format!("conv:{}", c.name),
            Layer::Linear(f) => format!("linear:{}", f.name),
            other => format!("{}#{i}", other.kind()),
        })
        .collect()
}

fn profile(model: &Model, input: &[f32], out: &mut [f32], iters: usize) -> Result<Profile, String> {
    // Bandwidth on the largest linear weight tensor, read in place (page cache / DRAM):
    // one pass after each profiled inference, the best of them, so the probe sees the
    // same stretch of the host's drifting bandwidth as the layers it is compared with.
    let plan = model.plan();
    let largest = plan
        .layers
        .iter()
        .filter_map(|l| if let alexnet::plan::Layer::Linear(f) = l { Some(format!("{}.weight", f.name)) } else { None })
        .filter_map(|name| model.weight_file().tensor_bytes(&name).ok())
        .max_by_key(|t| t.len())
        .unwrap_or(&[]);
    let mut bandwidth_gbps = if largest.is_empty() { f64::NAN } else { 0.0 };
    let n = plan.layers.len();
    let mut samples = vec![Vec::with_capacity(iters); n];
    let mut times = vec![Duration::ZERO; n];
    for _ in 0..iters {
        model.infer_timed(input, out, &mut times).map_err(|e| e.to_string())?;
        for (s, t) in samples.iter_mut().zip(&times) {
            s.push(ms(*t));
        }
        if !largest.is_empty() {
            bandwidth_gbps = bandwidth_gbps.max(probe::read_bandwidth_gbps(largest, model.threads()));
        }
    }
    let batch = (input.len() / model.input_len()) as u64;
    let costs = model.layer_costs();
    let layers = layer_names(model.plan())
        .into_iter()
        .zip(samples)
        .zip(costs)
        .filter(|((name, s), _)| {
            // Fused ReLUs (zero time) and the free Flatten are not layers worth a row.
            let fused_relu = name.starts_with("relu") && s.iter().all(|&v| v < 1e-3);
            !(fused_relu || name.starts_with("flatten"))
        })
        .map(|((name, mut s), (flops, bytes))| {
            s.sort_by(f64::total_cmp);
            (name, percentile(&s, 50.0), flops * batch, bytes)
        })
        .collect();
    let cpu = Cpu::new(model.isa()).map_err(|e| e.to_string())?;
    let peak_gflops = probe::fma_peak_gflops(cpu, model.threads(), 200);
    Ok(Profile { layers, peak_gflops, bandwidth_gbps })
}

/// Peak resident set size of this process (Linux `VmHWM`), in MB; NaN elsewhere.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                print!("{e}");
                return ExitCode::SUCCESS;
            }
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad command line").trim_start_matches("error: ");
            eprintln!("alexnet-bench: {first} (see --help)");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alexnet-bench: {}", e.lines().next().unwrap_or(""));
            ExitCode::FAILURE
        }
    }
}
