//! `convert-weights`: ONNX / safetensors / npz AlexNet weights to the alexnet weight file.
//!
//! A thin front end: hand-written argument parsing (no CLI framework dependency), one call
//! into the `alexnet_convert` library, and printing. Every failure, including a usage
//! error, is one line `convert-weights: <error>` on stderr and exit status 1; a bug that
//! panics is reported the same way, without a backtrace.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use alexnet::plan::ColorOrder;
use alexnet_convert::{convert_file, Convention, ConvertError, Options, Result};

const HELP: &str = "\
convert-weights: convert AlexNet-family weights to the alexnet weight file

USAGE:
    convert-weights INPUT -o OUTPUT [OPTIONS]

INPUT is an ONNX model (.onnx), or a torchvision alexnet state dict as .safetensors or
.npz. Without a known extension the format is sniffed from the content.

OPTIONS:
    -o, --output FILE        weight file to write (written to a temporary file, then
                             renamed); may be omitted with --dump or --check-finite
        --input-size H W     input height and width (or one S for S x S): needed for ONNX
                             models with a symbolic image size; state dicts default to 224
        --preprocess NAME    start from 'caffe' (BGR, 0..255, mean 104,117,123) or
                             'torchvision' (RGB, /255, ImageNet mean/std) preprocessing;
                             default: caffe when the network has LRN, else torchvision
        --bgr, --rgb         channel order the network expects
        --scale F            multiplier for 0..255 pixel values
        --mean A,B,C         per-channel mean (after scaling)
        --std A,B,C          per-channel standard deviation
        --resize N           resize the shorter side to N before the centre crop (0: none)
        --labels FILE        embed class labels, one per line (count must match classes)
        --precision P        store the weights as 'f32' (default, exact) or 'bf16' (rounded
                             to nearest even; half the bytes; the file runs at bf16)
        --check-finite       report NaN/Inf weights per tensor; exit 1 (and write nothing)
                             if there are any
        --dump               print the plan: layers and shapes, input, preprocessing,
                             tensor count and bytes
    -h, --help               print this help
";

/// What the command line asks for.
#[derive(Debug, Default, PartialEq)]
struct Cli {
    input: PathBuf,
    output: Option<PathBuf>,
    options: Options,
    check_finite: bool,
    dump: bool,
    help: bool,
    precision: Option<alexnet::Precision>,
}

fn usage(msg: String) -> ConvertError {
    ConvertError::InvalidOption(format!("{msg} (see --help)"))
}

fn parse_f32(flag: &str, v: &str) -> Result<f32> {
    v.trim().parse::<f32>().ok().filter(|x| x.is_finite()).ok_or_else(|| usage(format!("{flag}: bad number {v:?}")))
}

fn parse_u32(flag: &str, v: &str) -> Result<u32> {
    v.trim().parse::<u32>().map_err(|_| usage(format!("{flag}: bad integer {v:?}")))
}

fn parse_triple(flag: &str, v: &str) -> Result<[f32; 3]> {
    let parts: Vec<&str> = v.split(',').collect();
    match parts[..] {
        [a, b, c] => Ok([parse_f32(flag, a)?, parse_f32(flag, b)?, parse_f32(flag, c)?]),
        _ => Err(usage(format!("{flag}: expected three comma-separated numbers, got {v:?}"))),
    }
}

/// Parse the arguments after the program name.
fn parse_args(args: &[String]) -> Result<Cli> {
    let mut cli = Cli::default();
    let mut input = None;
    let mut i = 0;
    while i < args.len() {
        // `--flag=value` is the same as `--flag value`.
        let (flag, inline) = match args[i].split_once('=') {
            Some((f, v)) if args[i].starts_with("--") => (f, Some(v.to_string())),
            _ => (args[i].as_str(), None),
        };
        i += 1;
        let mut value = |what: &str| -> Result<String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            let v = args.get(i).cloned().ok_or_else(|| usage(format!("{flag} needs {what}")))?;
            i += 1;
            Ok(v)
        };
        let pre = &mut cli.options.preprocess;
        match flag {
            "-h" | "--help" => cli.help = true,
            "-o" | "--output" => cli.output = Some(PathBuf::from(value("a file")?)),
            "--input-size" => {
                let h = parse_u32(flag, &value("a size")?)?;
                // A second number, if present, is the width.
                let w = match args.get(i).map(|a| a.parse::<u32>()) {
                    Some(Ok(w)) if inline.is_none() => {
                        i += 1;
                        w
                    }
                    _ => h,
                };
                if h == 0 || w == 0 {
                    return Err(usage("--input-size: sizes must be positive".into()));
                }
                cli.options.input_size = Some([h, w]);
            }
            "--preprocess" => {
                pre.convention = Some(match value("caffe or torchvision")?.as_str() {
                    "caffe" => Convention::Caffe,
                    "torchvision" => Convention::Torchvision,
                    other => return Err(usage(format!("--preprocess: unknown convention {other:?}"))),
                })
            }
            "--bgr" => pre.color = Some(ColorOrder::Bgr),
            "--rgb" => pre.color = Some(ColorOrder::Rgb),
            "--scale" => pre.scale = Some(parse_f32(flag, &value("a number")?)?),
            "--mean" => pre.mean = Some(parse_triple(flag, &value("A,B,C")?)?),
            "--std" => pre.std = Some(parse_triple(flag, &value("A,B,C")?)?),
            "--resize" => pre.resize = Some(parse_u32(flag, &value("a size")?)?),
            "--labels" => cli.options.labels = Some(PathBuf::from(value("a file")?)),
            "--precision" => {
                let v = value("f32 or bf16")?;
                cli.precision =
                    Some(alexnet::Precision::parse(&v).map_err(|_| usage(format!("--precision: unknown {v:?}")))?);
            }
            "--check-finite" => cli.check_finite = true,
            "--dump" => cli.dump = true,
            f if f.starts_with('-') && f.len() > 1 => return Err(usage(format!("unknown option {f:?}"))),
            _ => {
                if input.is_some() {
                    return Err(usage(format!("unexpected argument {:?}", args[i - 1])));
                }
                input = Some(PathBuf::from(&args[i - 1]));
            }
        }
        if inline.is_some() && matches!(flag, "-h" | "--help" | "--bgr" | "--rgb" | "--check-finite" | "--dump") {
            return Err(usage(format!("{flag} takes no value")));
        }
    }
    if cli.help {
        return Ok(cli);
    }
    cli.input = input.ok_or_else(|| usage("no INPUT file given".into()))?;
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
    if cli.help {
        print(HELP);
        return Ok(());
    }
    let converted = convert_file(&cli.input, &cli.options)?;
    if cli.dump {
        print(&converted.dump());
    }
    if cli.check_finite {
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
        let precision = cli.precision.unwrap_or(alexnet::Precision::F32);
        converted.write_as(out, precision)?;
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
    fn refuses_bad_command_lines() {
        for bad in [
            "",
            "m.onnx",
            "m.onnx -o",
            "m.onnx -o x --bogus",
            "m.onnx n.onnx -o x",
            "m.onnx -o x --mean 1,2",
            "m.onnx -o x --scale nan",
            "m.onnx -o x --preprocess keras",
            "m.onnx -o x --input-size 0",
            "m.onnx -o x --dump=yes",
            "m.onnx -o x --precision fp8",
        ] {
            let e = parse_args(&args(bad)).unwrap_err();
            assert!(matches!(e, ConvertError::InvalidOption(_)), "{bad}: {e}");
        }
        assert!(parse_args(&args("--help")).unwrap().help);
    }
}
