//! `alexnet-classify`: classify images, folders of images, labelled sets or preprocessed
//! tensors with an alexnet weight file, streaming.
//!
//! ```text
//! alexnet-classify --weights FILE INPUT... [--top K] [--format text|csv|jsonl] [--json]
//!                  [--output probs.npy] [--batch N] [--threads T] [--decode-threads D]
//!                  [--labels FILE] [--precision f32|bf16] [--summary]
//! alexnet-classify --weights FILE --eval DIR [--ground-truth FILE] [...]
//! ```
//!
//! Each INPUT is a JPEG or PNG image, a directory (searched recursively, in name order,
//! for JPEG and PNG files by their content), `-` (a list of paths on stdin, one per
//! line), or a `.npy` float tensor `[N, 3, H, W]` or `[3, H, W]` taken as already
//! preprocessed. Images are decoded and preprocessed on `--decode-threads` threads while
//! the model runs the previous batch of `--batch` images, so memory stays bounded
//! whatever the number of images; results stream out in input order, as text, CSV or
//! JSON lines (`--json`: one JSON document at the end). `--output` writes every image's
//! probabilities as a float32 `[N, classes]` `.npy`, row by row (a row of NaN for an
//! image that failed), its header completed at the end.
//!
//! An input that cannot be read is reported on stderr (`alexnet-classify: PATH:
//! reason`) and skipped; the run goes on, and the exit status is 1 if any input failed.
//! `--eval DIR` classifies a labelled set (one sub-folder per class; a folder's class is
//! its name's line in the labels, else its place in name order; `--ground-truth FILE`
//! maps image file names to class indices instead) and reports top-1 and top-5 accuracy
//! overall and per class. On a terminal stderr shows progress and a closing summary
//! line (`--summary` prints the summary when piped too).
//!
//! Errors that stop the run are one line on stderr, with exit status 2 for usage errors
//! and 1 for everything else.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufWriter, IsTerminal, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use alexnet::{labels, npy, Error, Model, Precision};
use clap::{Parser, ValueEnum};

/// Per-image record formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// A heading per image, then one line per class.
    Text,
    /// One CSV row per image: path, index, then class, label, probability for each rank.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

#[derive(Parser, Debug)]
#[command(
    name = "alexnet-classify",
    version,
    about = "Classify JPEG/PNG images, folders of them, labelled sets (--eval), or .npy float tensors \
             [N,3,H,W] / [3,H,W] that are already preprocessed, with an alexnet weight file.",
    help_template = "{about}\n\nusage: {usage}\n\n{all-args}"
)]
struct Cli {
    /// Weight file.
    #[arg(long, value_name = "FILE")]
    weights: PathBuf,
    /// Images, directories (searched recursively), .npy tensors, or - for paths on stdin.
    #[arg(value_name = "INPUT", required_unless_present = "eval", conflicts_with = "eval")]
    inputs: Vec<PathBuf>,
    /// Classes to show per image.
    #[arg(long, value_name = "K", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    top: u32,
    /// Per-image records as text, CSV or JSON lines (with --eval: none unless given).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Print one JSON document with every result at the end instead.
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// Write the probabilities [N, classes] as float32 .npy.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Images per model call.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// The model's threads (default: all cores).
    #[arg(long, value_name = "T", value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
    /// Threads decoding and preprocessing images (default: all cores).
    #[arg(long, value_name = "D", value_parser = clap::value_parser!(u32).range(1..))]
    decode_threads: Option<u32>,
    /// Class names, one per line (default: the file's, else ImageNet's for 1000 classes,
    /// else class indices).
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// Arithmetic: f32, bf16 or int8 (default: what the weight file stores).
    #[arg(long, value_name = "P", value_parser = parse_precision)]
    precision: Option<Precision>,
    /// Classify the labelled set in DIR (one sub-folder per class) and report accuracy.
    #[arg(long, value_name = "DIR")]
    eval: Option<PathBuf>,
    /// With --eval: a file of `NAME INDEX` lines giving each image file's class.
    #[arg(long, value_name = "FILE", requires = "eval")]
    ground_truth: Option<PathBuf>,
    /// Print the closing summary line even when stderr is not a terminal.
    #[arg(long)]
    summary: bool,
}

fn parse_precision(s: &str) -> Result<Precision, String> {
    Precision::parse(s).map_err(|e| e.to_string())
}

/// A failure that stops the run (exit status 1; usage errors are clap's, status 2).
enum Failure {
    Run(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Run(e.to_string())
    }
}

/// One unit of work, numbered in input order.
enum Work {
    /// An image file to decode; its class when evaluating.
    Image { seq: u64, path: PathBuf, class: Option<usize> },
    /// An already preprocessed image from a tensor input: image `index` of `input`
    /// (`batched`: the tensor holds a batch, so the index is worth showing).
    Tensor { seq: u64, input: String, index: usize, batched: bool, data: Vec<f32> },
    /// An input that failed before decoding.
    Bad { seq: u64, name: String, message: String },
}

/// A unit of work done: the preprocessed image or why there is none.
struct Ready {
    seq: u64,
    source: Source,
    class: Option<usize>,
    image: Result<Vec<f32>, String>,
}

/// Where an image came from: the input, and its place in it (0 for an image file).
#[derive(Clone, Debug)]
struct Source {
    input: String,
    index: usize,
    batched: bool,
}

impl Source {
    fn file(input: String) -> Source {
        Source { input, index: 0, batched: false }
    }

    /// How the text and CSV records name it.
    fn shown(&self) -> String {
        if self.batched {
            format!("{}[{}]", self.input, self.index)
        } else {
            self.input.clone()
        }
    }
}

/// JPEG or PNG by the first bytes of the file.
fn looks_like_image(path: &Path) -> bool {
    let mut head = [0u8; 8];
    let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
    head[..n].starts_with(&[0xff, 0xd8, 0xff]) || head[..n].starts_with(b"\x89PNG\r\n\x1a\n")
}

fn is_npy(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"))
}

/// Produces the work in input order into `jobs`; returns early if the receiver is gone.
struct Producer {
    jobs: SyncSender<Work>,
    seq: u64,
    shape: [usize; 3],
}

impl Producer {
    fn send(&mut self, make: impl FnOnce(u64) -> Work) -> bool {
        let w = make(self.seq);
        self.seq += 1;
        self.jobs.send(w).is_ok()
    }

    fn bad(&mut self, name: String, message: String) -> bool {
        self.send(|seq| Work::Bad { seq, name, message })
    }

    /// One INPUT argument (or one path from stdin).
    fn input(&mut self, path: &Path, from_list: bool) -> bool {
        let name = path.display().to_string();
        if path.as_os_str() == "-" && !from_list {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                match line {
                    Ok(l) if l.trim().is_empty() => {}
                    Ok(l) => {
                        if !self.input(Path::new(l.trim_end_matches(['\r', '\n'])), true) {
                            return false;
                        }
                    }
                    Err(e) => return self.bad("<stdin>".into(), format!("cannot read the list of paths: {e}")),
                }
            }
            return true;
        }
        match std::fs::metadata(path) {
            Err(e) => self.bad(name, format!("cannot read: {e}")),
            Ok(m) if m.is_dir() => self.directory(path, None),
            Ok(_) if is_npy(path) => self.tensor(path),
            Ok(_) => self.send(|seq| Work::Image { seq, path: path.to_path_buf(), class: None }),
        }
    }

    /// Every JPEG/PNG under `dir`, recursively, in name order.
    fn directory(&mut self, dir: &Path, class: Option<usize>) -> bool {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => return self.bad(dir.display().to_string(), format!("cannot list directory: {e}")),
        };
        entries.sort();
        for p in entries {
            let ok = match std::fs::metadata(&p) {
                Ok(m) if m.is_dir() => self.directory(&p, class),
                Ok(m) if m.is_file() && looks_like_image(&p) => self.send(|seq| Work::Image { seq, path: p, class }),
                _ => true,
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// A `.npy` input: one unit of work per image it holds.
    fn tensor(&mut self, path: &Path) -> bool {
        let name = path.display().to_string();
        let array = match npy::read(path) {
            Ok(a) => a,
            Err(e) => return self.bad(name, e.to_string()),
        };
        let shape = self.shape;
        let [c, h, w] = shape;
        let (n, batched) = match array.shape.as_slice() {
            &[n, ac, ah, aw] if [ac, ah, aw] == shape => (n, true),
            &[ac, ah, aw] if [ac, ah, aw] == shape => (1, false),
            other => {
                let msg = format!(
                    "tensor shape {other:?} does not match the model's input [N, {c}, {h}, {w}] or [{c}, {h}, {w}]"
                );
                return self.bad(name, msg);
            }
        };
        if n == 0 {
            return self.bad(name, "tensor holds no images (N = 0)".into());
        }
        for (index, image) in array.data.chunks_exact(c * h * w).enumerate() {
            let input = name.clone();
            if !self.send(|seq| Work::Tensor { seq, input, index, batched, data: image.to_vec() }) {
                return false;
            }
        }
        true
    }

    /// The labelled set under `root`: one sub-folder per class.
    fn eval(&mut self, root: &Path, names: &[String], truth: Option<&HashMap<String, usize>>) -> bool {
        let mut folders: Vec<PathBuf> = match std::fs::read_dir(root) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect(),
            Err(e) => return self.bad(root.display().to_string(), format!("cannot list directory: {e}")),
        };
        folders.sort();
        for (order, folder) in folders.iter().enumerate() {
            let fname = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let class = names.iter().position(|n| *n == fname).unwrap_or(order);
            let ok = match truth {
                // Classes from the ground-truth file, by image file name.
                Some(_) => self.directory(folder, None),
                None => self.directory(folder, Some(class)),
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// Decode workers: take work from `jobs`, send the preprocessed image to `done`.
fn decode(
    jobs: Arc<Mutex<Receiver<Work>>>,
    done: SyncSender<Ready>,
    model: Arc<Model>,
    truth: Option<Arc<HashMap<String, usize>>>,
) {
    loop {
        let next = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(work) = next else { return };
        let ready = match work {
            Work::Image { seq, path, class } => {
                let name = path.display().to_string();
                let class = class.or_else(|| {
                    let file = path.file_name()?.to_string_lossy().into_owned();
                    truth.as_ref()?.get(&file).copied()
                });
                let image = alexnet::image::load_image(&path, model.preprocess(), model.input_shape()).map_err(|e| {
                    let m = e.to_string();
                    if m.contains(&name) {
                        m
                    } else {
                        format!("{name}: {m}")
                    }
                });
                Ready { seq, source: Source::file(name), class, image }
            }
            Work::Tensor { seq, input, index, batched, data } => {
                Ready { seq, source: Source { input, index, batched }, class: None, image: Ok(data) }
            }
            Work::Bad { seq, name, message } => {
                Ready { seq, image: Err(format!("{name}: {message}")), source: Source::file(name), class: None }
            }
        };
        if done.send(ready).is_err() {
            return;
        }
    }
}

/// `.npy` written row by row: a header sized for any row count, rewritten at the end.
struct NpyRows {
    file: BufWriter<std::fs::File>,
    path: PathBuf,
    rows: u64,
    classes: usize,
}

/// Bytes of the header (magic, version, length and the padded dictionary).
const NPY_HEADER: usize = 128;

impl NpyRows {
    fn header(rows: u64, classes: usize) -> Vec<u8> {
        let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {classes}), }}");
        let mut text = dict;
        text.push_str(&" ".repeat(NPY_HEADER - 10 - text.len() - 1));
        text.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
        out
    }

    fn create(path: &Path, classes: usize) -> Result<NpyRows, Failure> {
        let cannot = |e: std::io::Error| Failure::Run(format!("cannot write {}: {e}", path.display()));
        let mut file = BufWriter::new(std::fs::File::create(path).map_err(cannot)?);
        file.write_all(&Self::header(0, classes)).map_err(cannot)?;
        Ok(NpyRows { file, path: path.to_path_buf(), rows: 0, classes })
    }

    fn push(&mut self, row: &[f32]) -> Result<(), Failure> {
        let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.file.write_all(&bytes).map_err(|e| Failure::Run(format!("cannot write {}: {e}", self.path.display())))?;
        self.rows += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<(), Failure> {
        let path = self.path.clone();
        let cannot = |e: std::io::Error| Failure::Run(format!("cannot write {}: {e}", path.display()));
        self.file.flush().map_err(cannot)?;
        let file = self.file.get_mut();
        file.rewind().map_err(cannot)?;
        file.write_all(&Self::header(self.rows, self.classes)).map_err(cannot)?;
        file.flush().map_err(cannot)
    }
}

/// One JSON/JSONL record.
#[derive(serde::Serialize)]
struct Record<'a> {
    input: &'a str,
    index_in_input: usize,
    top: Vec<ClassScore<'a>>,
}

/// A class and its probability (`null` when NaN or infinite, which JSON cannot hold).
#[derive(serde::Serialize)]
struct ClassScore<'a> {
    class: usize,
    label: &'a str,
    probability: Option<f32>,
}

/// A CSV field, quoted when it must be.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Per-class tallies of an evaluation.
#[derive(Default)]
struct Tally {
    images: u64,
    top1: u64,
    top5: u64,
}

/// The run's state as results come in.
struct Sink<'a> {
    names: &'a [String],
    top: usize,
    format: Option<Format>,
    out: BufWriter<std::io::StdoutLock<'static>>,
    json: Option<Vec<serde_json::Value>>,
    npy: Option<NpyRows>,
    eval: Option<BTreeMap<usize, Tally>>,
    unlabelled: u64,
    done: u64,
    failed: u64,
    csv_header: bool,
}

impl Sink<'_> {
    fn write(&mut self, s: &str) -> Result<(), Failure> {
        self.out.write_all(s.as_bytes()).map_err(|e| Failure::Run(format!("cannot write to stdout: {e}")))
    }

    fn failure(&mut self, message: &str, classes: usize) -> Result<(), Failure> {
        report_error(message);
        self.failed += 1;
        if let Some(n) = &mut self.npy {
            n.push(&vec![f32::NAN; classes])?;
        }
        Ok(())
    }

    fn result(&mut self, src: &Source, class: Option<usize>, probs: &[f32]) -> Result<(), Failure> {
        self.done += 1;
        if let Some(n) = &mut self.npy {
            n.push(probs)?;
        }
        let top = labels::top_k(probs, self.top)?;
        if let Some(tally) = &mut self.eval {
            match class {
                Some(c) => {
                    let ranked = labels::top_k(probs, probs.len().min(5))?;
                    let t = tally.entry(c).or_default();
                    t.images += 1;
                    t.top1 += (ranked.first().map(|r| r.0) == Some(c)) as u64;
                    t.top5 += ranked.iter().any(|r| r.0 == c) as u64;
                }
                None => self.unlabelled += 1,
            }
        }
        let label = |c: usize| self.names.get(c).map(String::as_str).unwrap_or("");
        let record = || Record { input: &src.input, index_in_input: src.index, top: scores(&top, self.names) };
        if let Some(doc) = &mut self.json {
            let rec = record();
            doc.push(serde_json::to_value(rec).unwrap_or_default());
            return Ok(());
        }
        let text = match self.format {
            None => return Ok(()),
            Some(Format::Text) => {
                let mut s = format!("{}:\n", src.shown());
                for &(c, p) in &top {
                    s.push_str(&format!("  {p:>8.4}  {c:>5}  {}\n", label(c)));
                }
                s
            }
            Some(Format::Csv) => {
                let mut s = String::new();
                if !self.csv_header {
                    self.csv_header = true;
                    s.push_str("path");
                    for r in 1..=self.top {
                        s.push_str(&format!(",class_{r},label_{r},probability_{r}"));
                    }
                    s.push('\n');
                }
                s.push_str(&csv_field(&src.shown()));
                for &(c, p) in &top {
                    s.push_str(&format!(",{c},{},{p}", csv_field(label(c))));
                }
                s.push('\n');
                s
            }
            Some(Format::Jsonl) => serde_json::to_string(&record()).unwrap_or_default() + "\n",
        };
        self.write(&text)
    }
}

fn scores<'a>(top: &[(usize, f32)], names: &'a [String]) -> Vec<ClassScore<'a>> {
    top.iter()
        .map(|&(class, p)| ClassScore {
            class,
            label: names.get(class).map(String::as_str).unwrap_or(""),
            probability: p.is_finite().then_some(p),
        })
        .collect()
}

/// `e` as a failure whose message names `path` (weight-file errors such as a bad magic do
/// not say which file they are about).
fn naming(path: &Path, e: Error) -> Failure {
    let message = e.to_string();
    let shown = path.display().to_string();
    if message.contains(&shown) {
        Failure::Run(message)
    } else {
        Failure::Run(format!("{shown}: {message}"))
    }
}

/// `NAME INDEX` lines.
fn read_ground_truth(path: &Path, classes: usize) -> Result<HashMap<String, usize>, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| Failure::Run(format!("{}: {e}", path.display())))?;
    let mut map = HashMap::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = || Failure::Run(format!("{}: line {}: expected `NAME INDEX`", path.display(), i + 1));
        let (name, idx) = line.trim().rsplit_once(char::is_whitespace).ok_or_else(bad)?;
        let idx: usize = idx.trim().parse().map_err(|_| bad())?;
        if idx >= classes {
            return Err(Failure::Run(format!(
                "{}: line {}: class {idx} is not below the model's {classes} classes",
                path.display(),
                i + 1
            )));
        }
        // A path is matched by its file name.
        let file = Path::new(name.trim()).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        map.insert(file, idx);
    }
    Ok(map)
}

fn run(cli: Cli) -> Result<Outcome, Failure> {
    let mut builder = Model::builder();
    if let Some(t) = cli.threads {
        builder = builder.threads(t as usize);
    }
    if let Some(p) = cli.precision {
        builder = builder.precision(p);
    }
    let model = Arc::new(builder.open(&cli.weights).map_err(|e| naming(&cli.weights, e))?);
    let classes = model.num_classes();
    let top = cli.top as usize;
    if top > classes {
        return Err(Failure::Run(format!("--top {top} is above the model's {classes} classes")));
    }
    let names = match &cli.labels {
        Some(path) => labels::read_label_file(path, classes)?,
        None => labels::for_model(model.labels(), classes),
    };
    let truth = cli.ground_truth.as_deref().map(|p| read_ground_truth(p, classes)).transpose()?.map(Arc::new);
    let npy = cli.output.as_deref().map(|p| NpyRows::create(p, classes)).transpose()?;
    let evaluating = cli.eval.is_some();
    let format = match cli.format {
        Some(f) => Some(f),
        None if evaluating || cli.json => None,
        None => Some(Format::Text),
    };
    let batch = cli.batch as usize;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let decoders = cli.decode_threads.map_or(cores, |d| d as usize);
    // Bounded queues: a batch in the model, two batches waiting on each side of the
    // decoders. Memory is a few batches of images whatever the number of inputs.
    let (jobs_tx, jobs_rx) = sync_channel::<Work>(2 * batch);
    let (done_tx, done_rx) = sync_channel::<Ready>(2 * batch);
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    let workers: Vec<_> = (0..decoders)
        .map(|_| {
            let (jobs, done, model, truth) = (Arc::clone(&jobs_rx), done_tx.clone(), Arc::clone(&model), truth.clone());
            std::thread::spawn(move || decode(jobs, done, model, truth))
        })
        .collect();
    // The workers hold the only handles now: once they all exit, the producer's sends
    // fail and it stops too.
    drop((done_tx, jobs_rx));
    let (inputs, eval_dir, shape) = (cli.inputs.clone(), cli.eval.clone(), model.input_shape());
    let eval_names = names.clone();
    let eval_truth = truth.clone();
    let producer = std::thread::spawn(move || {
        let mut p = Producer { jobs: jobs_tx, seq: 0, shape };
        match &eval_dir {
            Some(dir) => {
                p.eval(dir, &eval_names, eval_truth.as_deref());
            }
            None => {
                for input in &inputs {
                    if !p.input(input, false) {
                        break;
                    }
                }
            }
        }
    });

    let terminal = std::io::stderr().is_terminal();
    let progress = terminal.then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        let style = indicatif::ProgressStyle::with_template("{spinner} {pos} images  {per_sec}  {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        bar.set_style(style);
        bar
    });
    let mut sink = Sink {
        names: &names,
        top,
        format,
        out: BufWriter::new(std::io::stdout().lock()),
        json: cli.json.then(Vec::new),
        npy,
        eval: evaluating.then(BTreeMap::new),
        unlabelled: 0,
        done: 0,
        failed: 0,
        csv_header: false,
    };
    // Ctrl-C ends the run after the batch in hand: what was classified is written out
    // and the .npy header completed, then the exit status is 130.
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let flag = Arc::clone(&interrupted);
        // Without a handler (another one is installed) Ctrl-C simply ends the process.
        let _ = ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
    }
    let stop = || interrupted.load(std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    let per = model.input_len();
    let mut images = vec![0.0f32; batch * per];
    let mut probs = vec![0.0f32; batch * classes];
    let mut meta: Vec<(Source, Option<usize>)> = Vec::with_capacity(batch);
    let mut waiting: BTreeMap<u64, Ready> = BTreeMap::new();
    let mut next = 0u64;
    let mut flush = |sink: &mut Sink<'_>, meta: &mut Vec<(Source, Option<usize>)>, images: &[f32]| {
        let n = meta.len();
        if n == 0 {
            return Ok::<(), Failure>(());
        }
        model.infer_into(&images[..n * per], &mut probs[..n * classes])?;
        for (i, (src, class)) in meta.drain(..).enumerate() {
            sink.result(&src, class, &probs[i * classes..(i + 1) * classes])?;
        }
        sink.out.flush().map_err(|e| Failure::Run(format!("cannot write to stdout: {e}")))?;
        if let Some(bar) = &progress {
            bar.inc(n as u64);
        }
        Ok(())
    };
    loop {
        // Polled, so that Ctrl-C ends a run that waits on its input (a list on stdin).
        let ready = match done_rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !stop() => continue,
            Err(_) => break,
        };
        if stop() {
            break;
        }
        waiting.insert(ready.seq, ready);
        while let Some(r) = waiting.remove(&next) {
            next += 1;
            match r.image {
                Err(message) => {
                    // Earlier images go first, so results stay in input order.
                    flush(&mut sink, &mut meta, &images)?;
                    if let Some(bar) = &progress {
                        bar.suspend(|| sink.failure(&message, classes))?;
                    } else {
                        sink.failure(&message, classes)?;
                    }
                }
                Ok(data) => {
                    let i = meta.len();
                    images[i * per..(i + 1) * per].copy_from_slice(&data);
                    meta.push((r.source, r.class));
                    if meta.len() == batch {
                        flush(&mut sink, &mut meta, &images)?;
                    }
                }
            }
        }
    }
    flush(&mut sink, &mut meta, &images)?;
    // Interrupted, the producer may be blocked reading stdin: the threads are left to
    // end with the process. Otherwise they have finished their work.
    drop(done_rx);
    if !stop() {
        let _ = producer.join();
        for w in workers {
            let _ = w.join();
        }
    }
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    if let Some(doc) = sink.json.take() {
        let text = serde_json::to_string(&serde_json::json!({ "results": doc })).unwrap_or_default() + "\n";
        sink.write(&text)?;
    }
    if let Some(tally) = sink.eval.take() {
        let mut text = String::from("class  images   top-1   top-5  label\n");
        let (mut n, mut t1, mut t5) = (0u64, 0u64, 0u64);
        for (c, t) in &tally {
            let pct = |x: u64| 100.0 * x as f64 / t.images.max(1) as f64;
            let label = names.get(*c).map(String::as_str).unwrap_or("");
            text.push_str(&format!("{c:>5} {:>7} {:>6.2}% {:>6.2}%  {label}\n", t.images, pct(t.top1), pct(t.top5)));
            (n, t1, t5) = (n + t.images, t1 + t.top1, t5 + t.top5);
        }
        let pct = |x: u64| 100.0 * x as f64 / n.max(1) as f64;
        if sink.unlabelled > 0 {
            text.push_str(&format!(
                "{} images had no class in the ground truth and are not counted\n",
                sink.unlabelled
            ));
        }
        text.push_str(&format!("top-1 {:.2}%  top-5 {:.2}%  ({n} images)\n", pct(t1), pct(t5)));
        sink.write(&text)?;
    }
    sink.out.flush().map_err(|e| Failure::Run(format!("cannot write to stdout: {e}")))?;
    if let Some(n) = sink.npy.take() {
        n.finish()?;
    }
    if terminal || cli.summary {
        let secs = started.elapsed().as_secs_f64();
        let _ = writeln!(
            std::io::stderr(),
            "alexnet-classify: {} images classified, {} failed, {:.1} images/s",
            sink.done,
            sink.failed,
            sink.done as f64 / secs.max(1e-9)
        );
    }
    if stop() {
        report_error(&format!("interrupted after {} images", sink.done + sink.failed));
        return Ok(Outcome::Interrupted);
    }
    Ok(if sink.failed == 0 { Outcome::AllOk } else { Outcome::SomeFailed })
}

/// How a run that was not stopped by an error ended.
enum Outcome {
    AllOk,
    SomeFailed,
    Interrupted,
}

/// Print `message` as one line on stderr, whatever newlines it carries.
fn report_error(message: &str) {
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    // Nothing useful can be done if stderr itself is gone.
    let _ = writeln!(std::io::stderr(), "alexnet-classify: {line}");
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = write!(std::io::stdout(), "{e}");
                return ExitCode::SUCCESS;
            }
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad command line").trim_start_matches("error: ");
            report_error(&format!("{first} (see --help)"));
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(Outcome::AllOk) => ExitCode::SUCCESS,
        Ok(Outcome::SomeFailed) => ExitCode::FAILURE,
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Err(Failure::Run(message)) => {
            report_error(&message);
            ExitCode::FAILURE
        }
    }
}
