//! The `convert-weights` binary: exit status, one-line errors, outputs.

mod common;

use std::process::{Command, Output};

use common::fixture;

fn run(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_convert-weights")).args(args).output().unwrap()
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// A failing run: status 1 and exactly one stderr line `convert-weights: ...`.
fn assert_one_line_error(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "status; stderr: {}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(err.starts_with("convert-weights: "), "stderr: {err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "stderr: {err}");
    err
}

#[test]
fn converts_and_writes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("zoo.alexnet");
    let model = fixture("onnx/zoo_small/model.onnx");
    let r = run(&[model.as_os_str(), os("-o"), out.as_os_str(), os("--dump"), os("--check-finite")]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(stdout.contains("layers:") && stdout.contains("all 16 tensors are finite"), "{stdout}");
    let m = alexnet::Model::open(&out).unwrap();
    assert_eq!(m.num_classes(), 10);
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.alexnet");
    // Usage errors.
    assert_one_line_error(&run(&[]));
    assert_one_line_error(&run(&[os("--frobnicate")]));
    // A truncated model.
    let bytes = std::fs::read(fixture("onnx/spec_small/model.onnx")).unwrap();
    let cut = dir.path().join("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = assert_one_line_error(&run(&[cut.as_os_str(), os("-o"), out.as_os_str()]));
    assert!(err.contains("decode"), "{err}");
    // A directory as input.
    assert_one_line_error(&run(&[dir.path().as_os_str(), os("-o"), out.as_os_str()]));
    // Nothing was written.
    assert!(!out.exists());
}

#[test]
fn check_finite_fails_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    // A state dict with a NaN bias, via safetensors.
    let bytes = std::fs::read(fixture("state_dict/tv_small.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let nan: Vec<u8> = [f32::NAN, 1.0, f32::INFINITY].iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut tensors = Vec::new();
    let mut owned = Vec::new();
    for (k, v) in st.tensors() {
        let mut data = v.data().to_vec();
        if k == "classifier.6.bias" {
            data[..12].copy_from_slice(&nan);
        }
        owned.push((k, v.dtype(), v.shape().to_vec(), data));
    }
    for (k, dt, shape, data) in &owned {
        tensors.push((k.clone(), safetensors::tensor::TensorView::new(*dt, shape.clone(), data).unwrap()));
    }
    let path = dir.path().join("nan.safetensors");
    std::fs::write(&path, safetensors::serialize(tensors, None).unwrap()).unwrap();
    let out = dir.path().join("nan.alexnet");
    let r = run(&[path.as_os_str(), os("-o"), out.as_os_str(), os("--check-finite")]);
    let err = assert_one_line_error(&r);
    assert!(err.contains("2 non-finite"), "{err}");
    assert!(String::from_utf8_lossy(&r.stdout).contains("fc8.bias: 1 NaN, 1 Inf"));
    assert!(!out.exists());
    // Without the flag NaN weights are accepted (the loader accepts them too).
    let r = run(&[path.as_os_str(), os("-o"), out.as_os_str()]);
    assert!(r.status.success());
    assert!(out.exists());
}

#[test]
fn help() {
    let r = run(&[os("--help")]);
    assert!(r.status.success());
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(text.contains("usage: convert-weights") && text.contains("--input-size"), "{text}");
    let r = run(&[os("--version")]);
    assert!(r.status.success() && String::from_utf8_lossy(&r.stdout).starts_with("convert-weights "));
}

/// Hostile model files through the binary: truncations at every byte of the first 256
/// and at every 97th byte after, and bits flipped across the file, for each importer.
/// Every run ends in success (a flip inside weight data can leave a valid model, which
/// must then open) or in status 1 with one stderr line and no output file; never a
/// panic or a signal (a hang would stall this test).
#[test]
fn hostile_model_files_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("h.alexnet");
    let files = [
        ("onnx/zoo_small/model.onnx", "onnx"),
        ("state_dict/tv_small.safetensors", "safetensors"),
        ("state_dict/tv_small.npz", "npz"),
        ("state_dict/tv_small_zip.pth", "pth"),
        ("state_dict/tv_small_legacy.pth", "pth"),
    ];
    let mut refused = 0;
    for (file, ext) in files {
        let original = std::fs::read(fixture(file)).unwrap();
        let path = dir.path().join(format!("h.{ext}"));
        let mut check = |bytes: &[u8], what: &str| {
            std::fs::write(&path, bytes).unwrap();
            let r = run(&[path.as_os_str(), os("-o"), out.as_os_str()]);
            if r.status.success() {
                alexnet::Model::open(&out)
                    .unwrap_or_else(|e| panic!("{file} {what}: wrote a file that does not open: {e}"));
                std::fs::remove_file(&out).unwrap();
            } else {
                assert_one_line_error(&r);
                assert!(!out.exists(), "{file} {what}: failed but left an output");
                refused += 1;
            }
        };
        let cuts = (0..original.len().min(256)).chain((256..original.len()).step_by(97));
        for cut in cuts {
            check(&original[..cut], &format!("cut at {cut}"));
        }
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..64 {
            let mut bytes = original.clone();
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let span = if round % 2 == 0 { bytes.len().min(1024) } else { bytes.len() };
            let pos = (rng % span as u64) as usize;
            bytes[pos] ^= 1 << (round % 8);
            check(&bytes, &format!("bit {} of byte {pos} flipped", round % 8));
        }
    }
    // Truncations alone guarantee many refusals; a test that refused nothing is broken.
    assert!(refused > 500, "only {refused} hostile files refused");
}

#[test]
fn calibrates_int8_on_a_set_of_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cal.alexnet");
    let model = fixture("onnx/spec_small/model.onnx");
    let inputs = fixture("onnx/spec_small/input.npy");
    let r = run(&[model.as_os_str(), os("-o"), out.as_os_str(), os("--calibrate"), inputs.as_os_str()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(stdout.contains("calibrated 8 layers on") && stdout.contains("at int8"), "{stdout}");
    // Every conv and linear layer has fixed parameters, and the file runs at int8.
    let m = alexnet::Model::open(&out).unwrap();
    assert_eq!(m.precision(), alexnet::Precision::Int8);
    let file = m.weight_file();
    for spec in file.plan().tensor_specs().unwrap().iter().filter(|s| s.weight) {
        let name = alexnet::weights::format::input_quant_name(&spec.name);
        let v = file.tensor(&name).unwrap();
        assert!(v[0] > 0.0 && (0.0..=255.0).contains(&v[1]), "{name}: {v:?}");
    }
    // Results stay close to f32 on the calibration inputs themselves.
    let x = alexnet::npy::read(&inputs).unwrap().data;
    let f32_out = dir.path().join("f32.alexnet");
    assert!(run(&[model.as_os_str(), os("-o"), f32_out.as_os_str()]).status.success());
    let (got, want) = (m.infer(&x).unwrap(), alexnet::Model::open(&f32_out).unwrap().infer(&x).unwrap());
    let worst = got.iter().zip(&want).map(|(g, e)| (g - e).abs()).fold(0.0f32, f32::max);
    assert!(worst < 0.05, "int8 probabilities {worst} away from f32");
    // Inputs of the wrong shape, or not finite, are refused with one line.
    let bad = dir.path().join("bad.npy");
    alexnet::npy::write(&bad, &[1, 3, 5, 5], &[0.0; 75]).unwrap();
    let err = assert_one_line_error(&run(&[
        model.as_os_str(),
        os("-o"),
        out.as_os_str(),
        os("--calibrate"),
        bad.as_os_str(),
    ]));
    assert!(err.contains("expected [N,"), "{err}");
    let shape = alexnet::npy::read(&inputs).unwrap().shape;
    let mut nan = x.clone();
    nan[7] = f32::NAN;
    alexnet::npy::write(&bad, &shape, &nan).unwrap();
    let err = assert_one_line_error(&run(&[
        model.as_os_str(),
        os("-o"),
        out.as_os_str(),
        os("--calibrate"),
        bad.as_os_str(),
    ]));
    assert!(err.contains("not finite"), "{err}");
}

#[test]
fn seven_bit_conv_weights_are_written_at_int8() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("onnx/spec_small/model.onnx");
    let (w7, w8) = (dir.path().join("w7.alexnet"), dir.path().join("w8.alexnet"));
    let r = run(&[model.as_os_str(), os("-o"), w7.as_os_str(), os("--weight-bits"), os("7")]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(stdout.contains("7-bit weights for 5 convolution layers") && stdout.contains("at int8"), "{stdout}");
    let r = run(&[model.as_os_str(), os("-o"), w8.as_os_str(), os("--precision"), os("int8")]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let (m7, m8) = (alexnet::Model::open(&w7).unwrap(), alexnet::Model::open(&w8).unwrap());
    assert_eq!(m7.precision(), alexnet::Precision::Int8);
    // Conv codes reach +-64 and no further; linear layers keep 8 bits (+-127).
    for spec in m7.weight_file().plan().tensor_specs().unwrap().iter().filter(|s| s.weight) {
        let (codes, _) = m7.weight_file().tensor_i8(&spec.name).unwrap();
        let max = codes.iter().map(|c| c.unsigned_abs()).max().unwrap();
        let conv = spec.shape.len() == 4;
        assert_eq!(max, if conv { 64 } else { 127 }, "{}", spec.name);
    }
    // Both stay close to each other (the 7-bit error is about twice the 8-bit one).
    let x = alexnet::npy::read(&fixture("onnx/spec_small/input.npy")).unwrap().data;
    let (got, want) = (m7.infer(&x).unwrap(), m8.infer(&x).unwrap());
    let worst = got.iter().zip(&want).map(|(g, e)| (g - e).abs()).fold(0.0f32, f32::max);
    assert!(worst < 0.05, "7-bit probabilities {worst} away from 8-bit");
    let err = assert_one_line_error(&run(&[model.as_os_str(), os("-o"), w7.as_os_str(), os("--weight-bits"), os("6")]));
    assert!(err.contains("--weight-bits"), "{err}");
}

#[test]
fn converts_a_caffemodel_with_its_prototxt_and_mean_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("caffenet.alexnet");
    let model = fixture("caffe/caffenet_v1/model.caffemodel");
    let mean = fixture("caffe/caffenet_v1/mean.binaryproto");
    let r = run(&[model.as_os_str(), os("--mean"), mean.as_os_str(), os("-o"), out.as_os_str(), os("--dump")]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(stdout.contains("source: caffe") && stdout.contains("BGR"), "{stdout}");
    let m = alexnet::Model::open(&out).unwrap();
    let want = caffe_mean(&mean);
    assert_eq!(m.plan().preprocess.mean, want);
    // With a deploy prototxt; --mean and --mean-file exclude each other; a bad mean file
    // or prototxt is one line naming it.
    let model = fixture("caffe/alexnet_v2/model.caffemodel");
    let deploy = fixture("caffe/alexnet_v2/deploy.prototxt");
    let r = run(&[model.as_os_str(), os("--prototxt"), deploy.as_os_str(), os("--dump")]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let both = run(&[model.as_os_str(), os("--mean"), os("1,2,3"), os("--mean-file"), mean.as_os_str(), os("--dump")]);
    assert_one_line_error(&both);
    let err = assert_one_line_error(&run(&[model.as_os_str(), os("--mean-file"), deploy.as_os_str(), os("--dump")]));
    assert!(err.contains("mean image") && err.contains("deploy.prototxt"), "{err}");
    let err = assert_one_line_error(&run(&[model.as_os_str(), os("--prototxt"), model.as_os_str(), os("--dump")]));
    assert!(err.contains("caffe:"), "{err}");
}

fn caffe_mean(path: &std::path::Path) -> [f32; 3] {
    alexnet_convert::caffe::mean_from_binaryproto(&std::fs::read(path).unwrap()).unwrap()
}
