//! Hostile weight files through the CLIs: truncations at every boundary of the header and
//! metadata (and across the data), every header byte flipped, crafted huge dimensions,
//! overlapping and misaligned tensors, and paths that are not regular files. Each run of
//! `alexnet-classify` and `alexnet-bench` must end by itself with either success (damage
//! the format tolerates, e.g. a checksum byte, which is verified only on request) or status
//! 1 and exactly one line on stderr: never a panic, a signal or a hang. The same holds
//! for hostile images (decompression bombs, lying headers, corrupt and empty files) and
//! for forcing an ISA the CPU lacks.
// `alexnet-classify` exists only with the image front end.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alexnet::plan::{Layer, Pads, Plan, Preprocess};
use alexnet::synthetic::layers;
use alexnet::weights::format;

fn plan() -> Plan {
    layers::plan(
        [3, 35, 35],
        Preprocess::torchvision(),
        vec![layers::conv("conv1", 4, 5, 2, Pads::uniform(1), 1, true), Layer::Flatten, layers::linear("fc", 7, false)],
    )
}

/// An edit of a valid plan and tensor table that makes the file hostile.
type Edit = dyn Fn(&mut Plan, &mut Vec<format::TensorEntry>);

/// Run a command with a deadline; returns (exit code, stderr). Panics if it hangs, dies
/// by a signal, or prints a panic message.
fn run(cmd: &mut Command, what: &str) -> (i32, String) {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            use std::io::Read;
            child.stderr.take().expect("stderr").read_to_string(&mut err).expect("read stderr");
            let code =
                status.code().unwrap_or_else(|| panic!("{what}: killed by a signal ({status:?}), stderr {err:?}"));
            assert!(!err.contains("panicked"), "{what}: panic: {err}");
            if code != 0 {
                assert_eq!(code, 1, "{what}: status {code}, stderr {err:?}");
                assert_eq!(err.trim_end().lines().count(), 1, "{what}: stderr is not one line: {err:?}");
            }
            return (code, err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what}: hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn both_clis(weights: &Path, input: &Path, what: &str) -> Vec<i32> {
    let classify = run(
        Command::new(env!("CARGO_BIN_EXE_alexnet-classify"))
            .arg("--weights")
            .arg(weights)
            .arg(input)
            .args(["--top", "1"]),
        &format!("classify {what}"),
    );
    let bench = run(
        Command::new(env!("CARGO_BIN_EXE_alexnet-bench")).arg("--weights").arg(weights).args([
            "--iters",
            "1",
            "--warmup",
            "0",
            "--no-profile",
            "--threads",
            "1",
        ]),
        &format!("bench {what}"),
    );
    assert!(classify.1.is_empty() || classify.1.starts_with("alexnet-classify:"), "{what}: {:?}", classify.1);
    assert!(bench.1.is_empty() || bench.1.starts_with("alexnet-bench:"), "{what}: {:?}", bench.1);
    vec![classify.0, bench.0]
}

#[test]
fn hostile_weight_files_fail_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let plan = plan();
    let good = alexnet::synthetic::weight_file(&plan, 1).unwrap();
    let input = d.path().join("x.npy");
    alexnet::npy::write(&input, &[1, 3, 35, 35], &alexnet::synthetic::input(&plan, 1, 1)).unwrap();
    let file = d.path().join("w.alexnet");
    let write_and_run = |bytes: &[u8], what: &str| {
        std::fs::write(&file, bytes).unwrap();
        both_clis(&file, &input, what)
    };
    assert_eq!(write_and_run(&good, "valid file"), vec![0, 0]);

    // Truncations: every boundary through the header and metadata, then across the data.
    let data_offset = u64::from_le_bytes(good[24..32].try_into().unwrap()) as usize;
    let cuts = (0..=data_offset.min(good.len())).chain((data_offset..good.len()).step_by(97));
    for cut in cuts {
        let codes = write_and_run(&good[..cut], &format!("truncated at {cut}"));
        assert_eq!(codes, vec![1, 1], "truncated at {cut} was accepted");
    }
    // Every header byte flipped.
    for i in 0..format::HEADER_LEN {
        let mut b = good.clone();
        b[i] ^= 0xff;
        let codes = write_and_run(&b, &format!("header byte {i} flipped"));
        // Only the checksum field (verified on request) may be damaged harmlessly.
        if !(40..48).contains(&i) {
            assert_eq!(codes, vec![1, 1], "header byte {i} flipped was accepted");
        }
    }
    // Crafted tables.
    let f = alexnet::WeightFile::from_bytes(good.clone()).unwrap();
    let data = good[data_offset..].to_vec();
    let crafted: Vec<(&str, Box<Edit>)> = vec![
        ("huge dimensions", Box::new(|_, t| t[0].shape = vec![u64::MAX / 2, 3, 5, 5])),
        ("huge input", Box::new(|p, _| p.input = [3, u32::MAX, u32::MAX])),
        (
            "huge layer width",
            Box::new(|p, _| {
                if let Layer::Linear(l) = &mut p.layers[2] {
                    l.out_features = u32::MAX
                }
            }),
        ),
        ("overlapping tensors", Box::new(|_, t| t[1].offset = t[0].offset)),
        ("misaligned tensor", Box::new(|_, t| t[2].offset += 4)),
        ("tensor past the end", Box::new(|_, t| t[3].offset += 1 << 20)),
        ("offset overflow", Box::new(|_, t| t[3].offset = u64::MAX - 8)),
    ];
    for (what, edit) in crafted {
        let (mut p, mut t) = (f.plan().clone(), f.tensors().to_vec());
        edit(&mut p, &mut t);
        let bytes = format::assemble(&p, &t, &data).unwrap();
        assert_eq!(write_and_run(&bytes, what), vec![1, 1], "{what} was accepted");
    }
    // Paths that are not regular files.
    let mut others = vec![
        (d.path().to_path_buf(), "a directory"),
        (PathBuf::from("/dev/null"), "a device"),
        (d.path().join("missing"), "a missing file"),
    ];
    #[cfg(unix)]
    {
        let fifo = d.path().join("fifo");
        if Command::new("mkfifo").arg(&fifo).status().map(|s| s.success()).unwrap_or(false) {
            others.push((fifo, "a FIFO"));
        }
    }
    for (path, what) in others {
        assert_eq!(both_clis(&path, &input, what), vec![1, 1], "{what} was accepted");
    }
}

/// A valid model file for `plan()`, in `d`.
fn model_in(d: &Path) -> PathBuf {
    let file = d.join("m.alexnet");
    std::fs::write(&file, alexnet::synthetic::weight_file(&plan(), 1).unwrap()).unwrap();
    file
}

#[test]
fn hostile_images_fail_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let weights = model_in(d.path());
    let side = alexnet::image::MAX_IMAGE_SIDE;
    let png = common::png_zeros(40, 40, 8, 2);
    let jpg = common::jpeg_claiming(16, 16);
    let images: Vec<(&str, Vec<u8>)> = vec![
        // Decompression bombs: a lying header, and ~210 KB of valid deflate data that
        // inflates to 16384^2 pixels; both refused from the header.
        ("claims-100000.png", common::png(100_000, 100_000, 8, 2, &common::zlib_zeros(4))),
        ("bomb-16384.png", common::png_zeros(side, side, 1, 0)),
        ("bomb-16384-rgba16.png", common::png(side, side, 16, 6, &common::zlib_zeros(1 << 20))),
        ("claims-65500.jpg", common::jpeg_claiming(65_500, 65_500)),
        // Corrupt, truncated and empty files.
        ("cut.png", png[..png.len() / 2].to_vec()),
        ("cut.jpg", jpg[..jpg.len() - 10].to_vec()),
        ("zero-size.png", common::png(0, 0, 8, 2, &common::zlib_zeros(0))),
        ("bad-crc.png", {
            let mut b = png.clone();
            b[20] ^= 1;
            b
        }),
        ("empty.png", Vec::new()),
        ("text.jpg", b"not a jpeg".to_vec()),
    ];
    for (name, bytes) in &images {
        let path = d.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let (code, err) = run(
            Command::new(env!("CARGO_BIN_EXE_alexnet-classify")).arg("--weights").arg(&weights).arg(&path),
            &format!("classify {name}"),
        );
        assert_eq!(code, 1, "{name} was accepted");
        assert!(err.starts_with("alexnet-classify: ") && err.contains(name), "{name}: {err:?}");
    }
    // The honest images decode (so the refusals above are about the damage).
    for name in ["ok.png", "ok.jpg"] {
        std::fs::write(d.path().join(name), if name.ends_with("png") { &png } else { &jpg }).unwrap();
        let out = run(
            Command::new(env!("CARGO_BIN_EXE_alexnet-classify"))
                .arg("--weights")
                .arg(&weights)
                .arg(d.path().join(name)),
            name,
        );
        assert_eq!(out.0, 0, "{name}: {}", out.1);
    }
}

#[cfg(unix)]
#[test]
fn fifos_and_devices_as_inputs_fail_cleanly() {
    // A FIFO given as a .npy tensor, an image or a label file must be refused, not read
    // (reading blocks until a writer appears, which here is never).
    let d = tempfile::tempdir().unwrap();
    let weights = model_in(d.path());
    let classify = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_alexnet-classify"));
        c.arg("--weights").arg(&weights).args(["--top", "1"]);
        c
    };
    let ok_npy = d.path().join("ok.npy");
    alexnet::npy::write(&ok_npy, &[3, 35, 35], &alexnet::synthetic::input(&plan(), 1, 1)).unwrap();
    for name in ["t.npy", "i.png", "labels.txt"] {
        let fifo = d.path().join(name);
        assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success(), "mkfifo");
        let mut cmd = classify();
        if name == "labels.txt" {
            cmd.arg("--labels").arg(&fifo).arg(&ok_npy);
        } else {
            cmd.arg(&fifo);
        }
        let (code, err) = run(&mut cmd, &format!("FIFO {name}"));
        assert_eq!(code, 1, "FIFO {name}: {err}");
        assert!(err.contains(name) && err.contains("not a regular file"), "FIFO {name}: {err}");
    }
    // A device, as an image and (through a symlink named .npy) as a tensor.
    let zero_npy = d.path().join("zero.npy");
    std::os::unix::fs::symlink("/dev/zero", &zero_npy).unwrap();
    for dev in [Path::new("/dev/zero"), &zero_npy] {
        let (code, err) = run(classify().arg(dev), "device input");
        assert_eq!(code, 1, "{}: {err}", dev.display());
        assert!(err.contains("not a regular file"), "{}: {err}", dev.display());
    }
    assert_eq!(run(classify().arg(&ok_npy), "ok.npy").0, 0);
}

#[test]
fn forcing_an_unsupported_isa_fails_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let weights = model_in(d.path());
    let input = d.path().join("x.npy");
    alexnet::npy::write(&input, &[1, 3, 35, 35], &alexnet::synthetic::input(&plan(), 1, 1)).unwrap();
    let bench = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_alexnet-bench"));
        c.arg("--weights").arg(&weights).args(["--iters", "1", "--warmup", "0", "--no-profile", "--threads", "1"]);
        c
    };
    let classify = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_alexnet-classify"));
        c.arg("--weights").arg(&weights).arg(&input);
        c
    };
    let mut names = vec!["sse9"];
    // An ISA this CPU lacks (neon on x86-64, the x86 ones on aarch64): an error, not SIGILL.
    if let Some(isa) = alexnet::Isa::ALL.into_iter().find(|i| !i.is_supported()) {
        names.push(isa.name());
        let (code, err) = run(bench().args(["--isa", isa.name()]), &format!("bench --isa {isa}"));
        assert_eq!(code, 1, "bench --isa {isa}: {err}");
    }
    for name in names {
        let (code, err) = run(bench().env("ALEXNET_ISA", name), &format!("bench ALEXNET_ISA={name}"));
        assert_eq!(code, 1, "bench ALEXNET_ISA={name}: {err}");
        assert!(err.contains(name), "{err}");
        let (code, err) = run(classify().env("ALEXNET_ISA", name), &format!("classify ALEXNET_ISA={name}"));
        assert_eq!(code, 1, "classify ALEXNET_ISA={name}: {err}");
        assert!(err.contains(name), "{err}");
    }
    // Every supported ISA runs.
    for isa in alexnet::Isa::ALL.into_iter().filter(|i| i.is_supported()) {
        assert_eq!(run(classify().env("ALEXNET_ISA", isa.name()), isa.name()).0, 0, "{isa}");
    }
}
