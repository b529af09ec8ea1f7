//! `convert-weights`: ONNX / Caffe / safetensors / npz / .pth AlexNet weights to the alexnet weight file.
//!
//! A thin front end: argument parsing (clap), one call into the `alexnet_convert` library,
//! and printing. Every failure, including a usage
//! error, is one line `convert-weights: <error>` on stderr and exit status 1; a bug that
//! panics is reported the same way, without a backtrace.
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use alexnet::plan::ColorOrder;
use alexnet_convert::{convert_file, Convention, ConvertError, Options, Result};
use clap::Parser;

/// The command line, as clap parses it.
#[derive(Parser, Debug)]
#[command(
    name = "convert-weights",
    version,
    about = "convert-weights: convert AlexNet-family weights to the alexnet weight file.\n\n\
             INPUT is an ONNX model (.onnx), a Caffe model (.caffemodel, with --prototxt and \
             --mean mean.binaryproto where needed), or a torchvision alexnet state dict as .safetensors, \
             .npz or a torch.save file (.pth, .pt; zip or legacy). Without a known extension the \
             format is sniffed from the content.",
    help_template = "{about}\n\nusage: {usage}\n\n{all-args}"
)]
struct Args {
    /// The model or state dict to convert.
    #[arg(value_name = "INPUT")]
    input: Option<PathBuf>,
    /// Weight file to write (written to a temporary file, then renamed); may be omitted
    /// with --dump or --check-finite.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Input height and width (or one S for S x S): needed for ONNX models with a
    /// symbolic image size; state dicts default to 224.
    #[arg(long, value_name = "H W", num_args = 1..=2)]
    input_size: Option<Vec<String>>,
    /// Start from 'caffe' (BGR, 0..255, mean 104,117,123) or 'torchvision' (RGB, /255,
    /// ImageNet mean/std) preprocessing; default: caffe when the network has LRN, else
    /// torchvision.
    #[arg(long, value_name = "NAME", value_parser = ["caffe", "torchvision"])]
    preprocess: Option<String>,
    /// The network expects BGR.
    #[arg(long, conflicts_with = "rgb")]
    bgr: bool,
    /// The network expects RGB.
    #[arg(long)]
    rgb: bool,
    /// Multiplier for 0..255 pixel values.
    #[arg(long, value_name = "F", value_parser = finite)]
    scale: Option<f32>,
    /// Per-channel mean (after scaling), or a Caffe mean image (mean.binaryproto) whose
    /// per-channel means are subtracted.
    #[arg(long, value_name = "A,B,C|FILE", value_parser = mean_arg, conflicts_with = "mean_file")]
    mean: Option<MeanArg>,
    /// Caffe: subtract the per-channel means of this mean image (same as --mean FILE).
    #[arg(long, value_name = "FILE")]
    mean_file: Option<PathBuf>,
    /// Caffe: the deploy .prototxt that describes the network of a .caffemodel (without
    /// it, the caffemodel's own net is converted).
    #[arg(long, value_name = "FILE")]
    prototxt: Option<PathBuf>,
    /// Per-channel standard deviation.
    #[arg(long, value_name = "A,B,C", value_parser = triple)]
    std: Option<[f32; 3]>,
    /// Resize the shorter side to N before the centre crop (0: none).
    #[arg(long, value_name = "N")]
    resize: Option<u32>,
    /// Embed class labels, one per line (count must match classes).
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// Store the weights as 'f32' (default, exact), 'bf16' (rounded to nearest even;
    /// half the bytes; the file runs at bf16) or 'int8' (symmetric per output channel,
    /// with the scales; a quarter of the bytes; the file runs at int8).
    #[arg(long, value_name = "P", value_parser = |s: &str| alexnet::Precision::parse(s).map_err(|e| e.to_string()))]
    precision: Option<alexnet::Precision>,
    /// Calibrate int8 on these images (a float32 .npy of [N, C, H, W], preprocessed as
    /// the model expects): each conv and linear layer's input is then quantized with
    /// fixed parameters covering what it saw, instead of each image's own range. Implies
    /// --precision int8 unless another is given.
    #[arg(long, value_name = "INPUTS.npy")]
    calibrate: Option<PathBuf>,
    /// Bits of the int8 convolution weights: 8 (default) or 7 (codes in -64..=64: on
    /// CPUs with AVX2 but no VNNI the int8 convolutions then multiply bytes, faster, at
    /// half the weight resolution; measure it with alexnet-bench --accuracy). Linear
    /// layers keep 8 bits. 7 implies --precision int8 unless another is given.
    #[arg(long, value_name = "BITS", value_parser = clap::builder::PossibleValuesParser::new(["7", "8"]))]
    weight_bits: Option<String>,
    /// Report NaN/Inf weights per tensor; exit 1 (and write nothing) if there are any.
    #[arg(long)]
    check_finite: bool,
    /// Print the plan: layers and shapes, input, preprocessing, tensor count and bytes.
    #[arg(long)]
    dump: bool,
}

fn positive(s: &str) -> std::result::Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) => Err("sizes must be positive".into()),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("{s:?} is not a size")),
    }
}

fn finite(s: &str) -> std::result::Result<f32, String> {
    s.parse::<f32>().ok().filter(|v| v.is_finite()).ok_or_else(|| format!("{s:?} is not a finite number"))
}

fn triple(s: &str) -> std::result::Result<[f32; 3], String> {
    let v: Vec<f32> = s.split(',').map(finite).collect::<std::result::Result<_, _>>()?;
    <[f32; 3]>::try_from(v).map_err(|_| format!("{s:?}: expected three comma-separated numbers"))
}

/// `--mean`: three numbers, or a mean image to take them from.
#[derive(Clone, Debug)]
enum MeanArg {
    Values([f32; 3]),
    File(PathBuf),
}

/// Numbers when the argument has commas or is one number, a file otherwise.
fn mean_arg(s: &str) -> std::result::Result<MeanArg, String> {
    if s.contains(',') || s.trim().parse::<f64>().is_ok() {
        triple(s).map(MeanArg::Values)
    } else {
        Ok(MeanArg::File(PathBuf::from(s)))
    }
}

/// What the command line asks for.
#[derive(Debug, Default, PartialEq)]
struct Cli {
    input: PathBuf,
    output: Option<PathBuf>,
    options: Options,
    check_finite: bool,
    dump: bool,
    /// Help or version text to print instead of converting.
    text: Option<String>,
    precision: Option<alexnet::Precision>,
    calibrate: Option<PathBuf>,
    /// `--weight-bits 7`.
    seven_bit: bool,
    mean_file: Option<PathBuf>,
}

fn usage(msg: String) -> ConvertError {
    ConvertError::InvalidOption(format!("{msg} (see --help)"))
}

fn parse_args(args: &[String]) -> Result<Cli> {
    let argv = std::iter::once("convert-weights".to_string()).chain(args.iter().cloned());
    let a = match Args::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                return Ok(Cli { text: Some(e.to_string()), ..Cli::default() });
            }
            let text = e.to_string();
            return Err(usage(text.lines().next().unwrap_or("bad command line").trim_start_matches("error: ").into()));
        }
    };
    let convention =
        a.preprocess.as_deref().map(|n| if n == "caffe" { Convention::Caffe } else { Convention::Torchvision });
    let color = if a.bgr {
        Some(ColorOrder::Bgr)
    } else if a.rgb {
        Some(ColorOrder::Rgb)
    } else {
        None
    };
    let preprocess = alexnet_convert::PreprocessOptions {
        convention,
        color,
        scale: a.scale,
        mean: match &a.mean {
            Some(MeanArg::Values(v)) => Some(*v),
            _ => None,
        },
        std: a.std,
        resize: a.resize,
    };
    // `--input-size S INPUT`: a second value that is not a number is the input.
    let mut input = a.input;
    let input_size = match a.input_size.as_deref() {
        None => None,
        Some(v) => {
            let h = positive(&v[0]).map_err(|e| usage(format!("--input-size: {e}")))?;
            let w = match v.get(1) {
                Some(second) if second.parse::<u32>().is_ok() || input.is_some() => {
                    positive(second).map_err(|e| usage(format!("--input-size: {e}")))?
                }
                Some(second) => {
                    input = Some(PathBuf::from(second));
                    h
                }
                None => h,
            };
            Some([h, w])
        }
    };
    let cli = Cli {
        input: input.ok_or_else(|| usage("no INPUT file given".into()))?,
        output: a.output,
        options: Options { input_size, preprocess, labels: a.labels, prototxt: a.prototxt },
        check_finite: a.check_finite,
        dump: a.dump,
        text: None,
        precision: a.precision,
        calibrate: a.calibrate,
        seven_bit: a.weight_bits.as_deref() == Some("7"),
        mean_file: match a.mean {
            Some(MeanArg::File(path)) => Some(path),
            _ => a.mean_file,
        },
    };
    if cli.output.is_none() && !cli.dump && !cli.check_finite {
        return Err(usage("no output given: -o OUTPUT (or --dump / --check-finite for a dry run)".into()));
    }
    Ok(cli)
}

/// Print to stdout; a closed pipe (`| head`) is not an error worth dying on.
fn print(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn run(args: &[String]) -> Result<()> {
    let cli = parse_args(args)?;
    if let Some(text) = &cli.text {
        print(text);
        return Ok(());
    }
    // A large file takes seconds to read and write: on a terminal, say which stage runs.
    let large = std::fs::metadata(&cli.input).is_ok_and(|m| m.len() > 32 << 20);
    let progress = (large && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar.set_message(format!("reading {}", cli.input.display()));
        bar
    });
    let mut options = cli.options.clone();
    if let Some(path) = &cli.mean_file {
        let mean = alexnet_convert::read_regular_file(path)
            .and_then(|bytes| alexnet_convert::caffe::mean_from_binaryproto(&bytes))
            .map_err(|e| ConvertError::InvalidOption(format!("mean image {}: {e}", path.display())))
            .inspect_err(|_| {
                if let Some(bar) = &progress {
                    bar.finish_and_clear();
                }
            })?;
        options.preprocess.mean = Some(mean);
    }
    let converted = convert_file(&cli.input, &options);
    let stage = |msg: String| {
        if let Some(bar) = &progress {
            bar.set_message(msg);
        }
    };
    let done = || {
        if let Some(bar) = &progress {
            bar.finish_and_clear();
        }
    };
    let mut converted = converted.inspect_err(|_| done())?;
    if let Some(path) = &cli.calibrate {
        stage(format!("calibrating on {}", path.display()));
        let images = alexnet::npy::read(path)
            .map_err(|e| ConvertError::InvalidOption(format!("--calibrate {}: {e}", path.display())))
            .inspect_err(|_| done())?;
        let [c, h, w] = converted.plan.input.map(|d| d as usize);
        if images.shape.len() != 4 || images.shape[1..] != [c, h, w] {
            done();
            return Err(ConvertError::InvalidOption(format!(
                "--calibrate {}: shape {:?}, expected [N, {c}, {h}, {w}]",
                path.display(),
                images.shape
            )));
        }
        let layers = converted.calibrate(&images.data).inspect_err(|_| done())?;
        let n = images.shape.first().copied().unwrap_or(0);
        print(&format!("calibrated {layers} layers on {n} images from {}\n", path.display()));
    }
    if cli.seven_bit {
        let layers = converted.seven_bit_conv_weights();
        print(&format!("7-bit weights for {layers} convolution layers\n"));
    }
    if cli.dump {
        done();
        print(&converted.dump());
    }
    if cli.check_finite {
        done();
        let bad = converted.non_finite();
        for t in &bad {
            print(&format!("non-finite: {}: {} NaN, {} Inf\n", t.name, t.nan, t.inf));
        }
        if !bad.is_empty() {
            let values = bad.iter().map(|t| t.nan + t.inf).sum();
            return Err(ConvertError::NonFinite { tensors: bad.len(), values });
        }
        print(&format!("all {} tensors are finite\n", converted.tensors.len()));
    }
    if let Some(out) = &cli.output {
        // Calibration is for int8, and a quantized model is one: int8 is the default then.
        let int8 = cli.calibrate.is_some() || cli.seven_bit || converted.is_quantized();
        let default = if int8 { alexnet::Precision::Int8 } else { alexnet::Precision::F32 };
        let precision = cli.precision.unwrap_or(default);
        stage(format!("writing {} at {precision}", out.display()));
        let written = converted.write_as(out, precision);
        done();
        written?;
        print(&format!(
            "wrote {}: {} layers, {} tensors, {} bytes of weights at {precision} (from {})\n",
            out.display(),
            converted.plan.layers.len(),
            converted.tensors.len(),
            converted.tensor_bytes_as(precision),
            converted.format.name()
        ));
    }
    Ok(())
}

/// One line for the user, whatever the error's own formatting.
fn one_line(msg: &str) -> String {
    msg.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn main() -> ExitCode {
    // A panic is a bug, but the user still gets one line and no backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("convert-weights: internal error{at}: {}", one_line(&msg));
    }));
    let args: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    match std::panic::catch_unwind(|| run(&args)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("convert-weights: {}", one_line(&e.to_string()));
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_a_full_command_line() {
        let cli = parse_args(&args(
            "m.onnx -o out.alexnet --input-size 227 --preprocess caffe --rgb --scale 0.5 --mean 1,2,3 \
             --std=4,5,6 --resize 0 --labels l.txt --dump --check-finite --precision bf16",
        ))
        .unwrap();
        assert_eq!(cli.input, PathBuf::from("m.onnx"));
        assert_eq!(cli.output, Some(PathBuf::from("out.alexnet")));
        assert_eq!(cli.options.input_size, Some([227, 227]));
        let p = &cli.options.preprocess;
        assert_eq!(p.convention, Some(Convention::Caffe));
        assert_eq!(p.color, Some(ColorOrder::Rgb));
        assert_eq!(p.scale, Some(0.5));
        assert_eq!(p.mean, Some([1.0, 2.0, 3.0]));
        assert_eq!(cli.mean_file, None);
        assert_eq!(p.std, Some([4.0, 5.0, 6.0]));
        assert_eq!(p.resize, Some(0));
        assert!(cli.dump && cli.check_finite);
        assert_eq!(cli.precision, Some(alexnet::Precision::Bf16));
    }

    #[test]
    fn input_size_takes_one_or_two_numbers() {
        let cli = parse_args(&args("--input-size 200 300 m.onnx --dump")).unwrap();
        assert_eq!(cli.options.input_size, Some([200, 300]));
        let cli = parse_args(&args("--input-size 200 m.onnx --dump")).unwrap();
        assert_eq!(cli.options.input_size, Some([200, 200]));
    }

    #[test]
    fn mean_takes_numbers_or_a_mean_image() {
        let cli = parse_args(&args("m.caffemodel -o x --mean imagenet_mean.binaryproto")).unwrap();
        assert_eq!(cli.mean_file, Some(PathBuf::from("imagenet_mean.binaryproto")));
        assert_eq!(cli.options.preprocess.mean, None);
        let cli = parse_args(&args("m.caffemodel -o x --mean-file m.binaryproto")).unwrap();
        assert_eq!(cli.mean_file, Some(PathBuf::from("m.binaryproto")));
        let cli = parse_args(&args("m.caffemodel -o x --mean=104,117,123")).unwrap();
        assert_eq!(cli.options.preprocess.mean, Some([104.0, 117.0, 123.0]));
    }

    #[test]
    fn refuses_bad_command_lines() {
        for bad in [
            "",
            "m.onnx",
            "m.onnx -o",
            "m.onnx -o x --bogus",
            "m.onnx n.onnx -o x",
            "m.onnx -o x --mean 1,2",
            "m.onnx -o x --mean 104",
            "m.onnx -o x --mean m.binaryproto --mean-file m.binaryproto",
            "m.onnx -o x --scale nan",
            "m.onnx -o x --preprocess keras",
            "m.onnx -o x --input-size 0",
            "m.onnx -o x --dump=yes",
            "m.onnx -o x --precision fp8",
        ] {
            let e = parse_args(&args(bad)).unwrap_err();
            assert!(matches!(e, ConvertError::InvalidOption(_)), "{bad}: {e}");
        }
        assert!(parse_args(&args("--help")).unwrap().text.unwrap().contains("usage: convert-weights"));
        assert!(parse_args(&args("--version")).unwrap().text.unwrap().starts_with("convert-weights "));
    }
}
