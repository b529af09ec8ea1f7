//! `alexnet-classify`: classify images (or preprocessed tensors) with an alexnet weight file.
//!
//! ```text
//! alexnet-classify --weights FILE INPUT... [--top K] [--json] [--output probs.npy]
//!                  [--threads T] [--labels FILE]
//! ```
//!
//! Each INPUT is a JPEG or PNG image, preprocessed as the weight file's metadata says
//! (`alexnet::image`), or a `.npy` float tensor `[N, 3, H, W]` or `[3, H, W]` taken as
//! already preprocessed. Every input goes into one batch, in argument order, and one
//! `Model::infer` call. Results are printed per image as text or, with `--json`, as one
//! JSON object. `--output` writes the `[N, classes]` probabilities as float32 `.npy`.
//!
//! Errors are one line on stderr, `alexnet-classify: <message>`, with exit status 2 for
//! usage errors and 1 for everything else.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use alexnet::{labels, npy, Error, Model};

const USAGE: &str = "\
usage: alexnet-classify --weights FILE INPUT... [options]

Classify JPEG/PNG images, or .npy float tensors [N,3,H,W] / [3,H,W] that are already
preprocessed, with an alexnet weight file. All inputs run as one batch.

options:
  --weights FILE   weight file (required)
  --top K          classes to show per image (default 5)
  --json           print one JSON object instead of text
  --output FILE    write the probabilities [N, classes] as float32 .npy
  --threads T      worker threads (default: all cores)
  --labels FILE    class names, one per line (default: the file's, else ImageNet's
                   for 1000 classes, else class indices)
  -h, --help       print this help";

/// Default number of classes shown per image.
const DEFAULT_TOP: usize = 5;

/// A failure and the exit status it maps to.
enum Failure {
    /// Bad command line: exit status 2.
    Usage(String),
    /// Anything else: exit status 1.
    Run(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Run(e.to_string())
    }
}

/// The parsed command line.
struct Args {
    weights: PathBuf,
    inputs: Vec<PathBuf>,
    top: usize,
    json: bool,
    output: Option<PathBuf>,
    threads: Option<usize>,
    labels: Option<PathBuf>,
}

/// What to do after parsing.
enum Command {
    Help,
    Run(Args),
}

fn parse_args(argv: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Command, Failure> {
    let mut weights = None;
    let mut inputs = Vec::new();
    let mut top = None;
    let mut json = false;
    let mut output = None;
    let mut threads = None;
    let mut label_file = None;
    let mut argv = argv.into_iter();
    let mut options_done = false;
    while let Some(arg) = argv.next() {
        let text = arg.to_string_lossy();
        if options_done || !text.starts_with('-') || text == "-" {
            inputs.push(PathBuf::from(arg));
            continue;
        }
        // `--name=value` or `--name value`.
        let (name, inline) = match text.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(std::ffi::OsString::from(v))),
            _ => (text.into_owned(), None),
        };
        let mut value = |what: &str| -> Result<std::ffi::OsString, Failure> {
            inline.clone().or_else(|| argv.next()).ok_or_else(|| Failure::Usage(format!("{name} needs {what}")))
        };
        let number = |v: std::ffi::OsString, name: &str| -> Result<usize, Failure> {
            let s = v.to_string_lossy();
            s.parse::<usize>().map_err(|_| Failure::Usage(format!("{name} needs a non-negative integer, got {s:?}")))
        };
        let once =
            |slot: bool, name: &str| if slot { Err(Failure::Usage(format!("{name} given twice"))) } else { Ok(()) };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--" => options_done = true,
            "--json" if inline.is_none() => json = true,
            "--weights" => {
                once(weights.is_some(), &name)?;
                weights = Some(PathBuf::from(value("a file")?));
            }
            "--output" => {
                once(output.is_some(), &name)?;
                output = Some(PathBuf::from(value("a file")?));
            }
            "--labels" => {
                once(label_file.is_some(), &name)?;
                label_file = Some(PathBuf::from(value("a file")?));
            }
            "--top" => {
                once(top.is_some(), &name)?;
                let k = number(value("a count")?, &name)?;
                if k == 0 {
                    return Err(Failure::Usage("--top must be at least 1".into()));
                }
                top = Some(k);
            }
            "--threads" => {
                once(threads.is_some(), &name)?;
                let t = number(value("a count")?, &name)?;
                if t == 0 {
                    return Err(Failure::Usage("--threads must be at least 1".into()));
                }
                threads = Some(t);
            }
            _ => return Err(Failure::Usage(format!("unknown option {name}"))),
        }
    }
    let weights = weights.ok_or_else(|| Failure::Usage("--weights FILE is required".into()))?;
    if inputs.is_empty() {
        return Err(Failure::Usage("no input images or .npy files given".into()));
    }
    Ok(Command::Run(Args {
        weights,
        inputs,
        top: top.unwrap_or(DEFAULT_TOP),
        json,
        output,
        threads,
        labels: label_file,
    }))
}

/// Where one image of the batch came from.
struct Source {
    /// The INPUT argument, as given.
    input: String,
    /// Position of the image within that input (always 0 for an image file).
    index: usize,
    /// True when the input holds a batch (`[N, 3, H, W]`), so the index is worth showing.
    batched: bool,
}

fn is_npy(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"))
}

/// Append one `.npy` input to the batch, checking its shape against the model's input.
fn push_npy(path: &Path, shape: [usize; 3], batch: &mut Vec<f32>, sources: &mut Vec<Source>) -> Result<(), Failure> {
    let array = npy::read(path)?;
    let [c, h, w] = shape;
    let (n, batched) = match array.shape.as_slice() {
        &[n, ac, ah, aw] if [ac, ah, aw] == shape => (n, true),
        &[ac, ah, aw] if [ac, ah, aw] == shape => (1, false),
        other => {
            return Err(Failure::Run(format!(
                "{}: tensor shape {other:?} does not match the model's input [N, {c}, {h}, {w}] or [{c}, {h}, {w}]",
                path.display()
            )))
        }
    };
    if n == 0 {
        return Err(Failure::Run(format!("{}: tensor holds no images (N = 0)", path.display())));
    }
    batch.extend_from_slice(&array.data);
    let input = path.display().to_string();
    sources.extend((0..n).map(|index| Source { input: input.clone(), index, batched }));
    Ok(())
}

/// The `--json` document: one result per image.
#[derive(serde::Serialize)]
struct Report<'a> {
    results: Vec<ImageResult<'a>>,
}

/// One image's classes, best first.
#[derive(serde::Serialize)]
struct ImageResult<'a> {
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

fn render_json(sources: &[Source], tops: &[Vec<(usize, f32)>], names: &[String]) -> String {
    let results = sources
        .iter()
        .zip(tops)
        .map(|(src, top)| ImageResult {
            input: &src.input,
            index_in_input: src.index,
            top: top
                .iter()
                .map(|&(class, p)| ClassScore {
                    class,
                    label: names.get(class).map(String::as_str).unwrap_or(""),
                    probability: p.is_finite().then_some(p),
                })
                .collect(),
        })
        .collect();
    // Serialising plain structs of strings and numbers cannot fail.
    serde_json::to_string(&Report { results }).unwrap_or_default() + "\n"
}

/// The text report: a heading per image, then one line per class.
fn render_text(sources: &[Source], tops: &[Vec<(usize, f32)>], names: &[String]) -> String {
    let mut out = String::new();
    for (src, top) in sources.iter().zip(tops) {
        if src.batched {
            out.push_str(&format!("{}[{}]:\n", src.input, src.index));
        } else {
            out.push_str(&format!("{}:\n", src.input));
        }
        for &(class, p) in top {
            let label = names.get(class).map(String::as_str).unwrap_or("");
            out.push_str(&format!("  {p:>8.4}  {class:>5}  {label}\n"));
        }
    }
    out
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

fn run(args: Args) -> Result<(), Failure> {
    let mut builder = Model::builder();
    if let Some(t) = args.threads {
        builder = builder.threads(t);
    }
    let model = builder.open(&args.weights).map_err(|e| naming(&args.weights, e))?;
    let classes = model.num_classes();
    if args.top > classes {
        return Err(Failure::Run(format!("--top {} is above the model's {classes} classes", args.top)));
    }
    let names = match &args.labels {
        Some(path) => labels::read_label_file(path, classes)?,
        None => labels::for_model(model.labels(), classes),
    };
    let shape = model.input_shape();
    let mut batch = Vec::new();
    let mut sources = Vec::new();
    for path in &args.inputs {
        if is_npy(path) {
            push_npy(path, shape, &mut batch, &mut sources)?;
        } else {
            batch.extend(alexnet::image::load_image(path, model.preprocess(), shape)?);
            sources.push(Source { input: path.display().to_string(), index: 0, batched: false });
        }
    }
    let probs = model.infer(&batch)?;
    if let Some(path) = &args.output {
        npy::write(path, &[sources.len(), classes], &probs).map_err(|e| match e {
            Error::Io { path, source } => Failure::Run(format!("cannot write {}: {source}", path.display())),
            other => other.into(),
        })?;
    }
    let tops =
        probs.chunks_exact(classes).map(|row| labels::top_k(row, args.top)).collect::<Result<Vec<_>, Error>>()?;
    let report = if args.json { render_json(&sources, &tops, &names) } else { render_text(&sources, &tops, &names) };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(report.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::Run(format!("cannot write to stdout: {e}")))
}

/// Print `message` as one line on stderr, whatever newlines it carries.
fn report_error(message: &str) {
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    // Nothing useful can be done if stderr itself is gone.
    let _ = writeln!(std::io::stderr(), "alexnet-classify: {line}");
}

fn main() -> ExitCode {
    let result = parse_args(std::env::args_os().skip(1)).and_then(|command| match command {
        Command::Help => {
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            Ok(())
        }
        Command::Run(args) => run(args),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            report_error(&format!("{message} (see --help)"));
            ExitCode::from(2)
        }
        Err(Failure::Run(message)) => {
            report_error(&message);
            ExitCode::FAILURE
        }
    }
}
