//! Hostile weight files through the CLIs: truncations at every boundary of the header and
//! metadata (and across the data), every header byte flipped, crafted huge dimensions,
//! overlapping and misaligned tensors, and paths that are not regular files. Each run of
//! `alexnet-classify` and `alexnet-bench` must end by itself with either success (damage
//! the format tolerates, e.g. a checksum byte, which is verified only on request) or status
//! 1 and exactly one line on stderr: never a panic, a signal or a hang.
// `alexnet-classify` exists only with the image front end.
#![cfg(feature = "image")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alexnet::plan::{Conv, Layer, Linear, Pads, Plan, Preprocess};
use alexnet::weights::format;

fn plan() -> Plan {
    Plan {
        input: [3, 35, 35],
        preprocess: Preprocess::torchvision(),
        layers: vec![
            Layer::Conv(Conv {
                name: "conv1".into(),
                out_channels: 4,
                kernel: [5, 5],
                stride: [2, 2],
                pads: Pads::uniform(1),
                groups: 1,
                relu: true,
            }),
            Layer::Flatten,
            Layer::Linear(Linear { name: "fc".into(), out_features: 7, relu: false }),
        ],
        labels: vec![],
    }
}

/// An edit of a valid plan and tensor table that makes the file hostile.
type Edit = dyn Fn(&mut Plan, &mut Vec<format::TensorEntry>);

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("alexnet-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

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
    let d = dir();
    let plan = plan();
    let good = alexnet::synthetic::weight_file(&plan, 1).unwrap();
    let input = d.join("x.npy");
    alexnet::npy::write(&input, &[1, 3, 35, 35], &alexnet::synthetic::input(&plan, 1, 1)).unwrap();
    let file = d.join("w.alexnet");
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
        (d.clone(), "a directory"),
        (PathBuf::from("/dev/null"), "a device"),
        (d.join("missing"), "a missing file"),
    ];
    #[cfg(unix)]
    {
        let fifo = d.join("fifo");
        if Command::new("mkfifo").arg(&fifo).status().map(|s| s.success()).unwrap_or(false) {
            others.push((fifo, "a FIFO"));
        }
    }
    for (path, what) in others {
        assert_eq!(both_clis(&path, &input, what), vec![1, 1], "{what} was accepted");
    }
    std::fs::remove_dir_all(&d).ok();
}
