//! End to end against ONNX Runtime: convert each committed fixture, open the result with
//! the runtime, and compare its output with ORT's (as log-probabilities, < 1e-3, same
//! argmax per image).

mod common;

use alexnet::plan::{ColorOrder, Layer};
use alexnet_convert::{convert_file, ConvertError, InputFormat, Options, Tensor};
use common::{check_against, fixture, meta_softmax};

fn onnx_fixture(name: &str) -> alexnet_convert::Converted {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture(&format!("onnx/{name}/model.onnx"));
    let converted = convert_file(&model, &Options::default()).unwrap();
    let out = dir.path().join("model.alexnet");
    converted.write(&out).unwrap();
    let softmax = meta_softmax(&fixture(&format!("onnx/{name}/meta.json")));
    check_against(
        &out,
        &fixture(&format!("onnx/{name}/input.npy")),
        &fixture(&format!("onnx/{name}/expected.npy")),
        softmax,
    );
    converted
}

fn layer_names(c: &alexnet_convert::Converted) -> Vec<String> {
    c.plan
        .layers
        .iter()
        .filter_map(|l| match l {
            Layer::Conv(c) => Some(c.name.clone()),
            Layer::Linear(l) => Some(l.name.clone()),
            _ => None,
        })
        .collect()
}

const CLASSIC: [&str; 8] = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"];

#[test]
fn onnx_spec_small() {
    let c = onnx_fixture("spec_small");
    assert_eq!(layer_names(&c), CLASSIC);
    assert_eq!(c.plan.preprocess.color, ColorOrder::Bgr, "LRN networks default to Caffe preprocessing");
    assert_eq!(c.plan.input, [3, 227, 227]);
}

#[test]
fn onnx_zoo_small() {
    let c = onnx_fixture("zoo_small");
    assert_eq!(layer_names(&c), CLASSIC);
    // Dropout with mask outputs is dropped; pool pads kept.
    assert!(c.plan.layers.iter().any(|l| matches!(l, Layer::MaxPool(p) if p.pads.bottom == 1)));
}

#[test]
fn onnx_torchvision_small() {
    let c = onnx_fixture("torchvision_small");
    assert_eq!(layer_names(&c), CLASSIC);
    assert_eq!(c.plan.preprocess.color, ColorOrder::Rgb, "no LRN: torchvision preprocessing");
    assert!(!c.plan.ends_in_softmax());
}

#[test]
fn onnx_odd_small() {
    let c = onnx_fixture("odd_small");
    assert_eq!(c.plan.input, [3, 99, 111]);
}

#[test]
fn onnx_no_bias_small() {
    let c = onnx_fixture("no_bias_small");
    assert!(c.tensors.iter().filter(|t| t.name.ends_with(".bias")).all(|t| t.data.iter().all(|&v| v == 0.0)));
}

fn state_dict(file: &str, expected: &str) -> alexnet_convert::Converted {
    let dir = tempfile::tempdir().unwrap();
    let converted = convert_file(&fixture(&format!("state_dict/{file}")), &Options::default()).unwrap();
    let out = dir.path().join("model.alexnet");
    converted.write(&out).unwrap();
    assert!(!meta_softmax(&fixture("state_dict/meta.json")));
    check_against(&out, &fixture("state_dict/input.npy"), &fixture(&format!("state_dict/{expected}")), false);
    assert_eq!(layer_names(&converted), CLASSIC);
    assert_eq!(converted.plan.preprocess, alexnet::Preprocess::torchvision());
    converted
}

#[test]
fn state_dict_safetensors() {
    let c = state_dict("tv_small.safetensors", "expected.npy");
    assert_eq!(c.format, InputFormat::Safetensors);
}

#[test]
fn state_dict_npz() {
    let c = state_dict("tv_small.npz", "expected.npy");
    assert_eq!(c.format, InputFormat::Npz);
    // Same weights as the safetensors file.
    let st = convert_file(&fixture("state_dict/tv_small.safetensors"), &Options::default()).unwrap();
    assert_eq!(c.tensors, st.tensors);
}

#[test]
fn state_dict_bf16() {
    state_dict("tv_small_bf16.safetensors", "expected_bf16.npy");
}

#[test]
fn state_dict_prefixed_keys_and_sniffing() {
    // Re-serialise the npz weights with a `module.` prefix, as DataParallel saves them,
    // under a name without a known extension.
    let c = convert_file(&fixture("state_dict/tv_small.npz"), &Options::default()).unwrap();
    let st = convert_file(&fixture("state_dict/tv_small.safetensors"), &Options::default()).unwrap();
    let bytes = std::fs::read(fixture("state_dict/tv_small.safetensors")).unwrap();
    let parsed = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let renamed: Vec<(String, safetensors::tensor::TensorView)> =
        parsed.tensors().into_iter().map(|(k, v)| (format!("module.{k}"), v)).collect();
    let out = safetensors::serialize(renamed, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.bin");
    std::fs::write(&path, out).unwrap();
    let p = convert_file(&path, &Options::default()).unwrap();
    assert_eq!(p.format, InputFormat::Safetensors);
    assert_eq!(p.tensors, st.tensors);
    assert_eq!(c.tensors, st.tensors);
}

#[test]
fn state_dict_input_size_227_and_256() {
    let opts = Options { input_size: Some([227, 227]), ..Default::default() };
    let c = convert_file(&fixture("state_dict/tv_small.npz"), &opts).unwrap();
    assert_eq!(c.plan.input, [3, 227, 227]);
    // At 256 conv5's map is 7x7: AdaptiveAvgPool2d((6, 6)) is a real pool, and the
    // result matches PyTorch's forward pass (tools/make_adaptive_fixture.py).
    let opts = Options { input_size: Some([256, 256]), ..Default::default() };
    let c = convert_file(&fixture("state_dict/tv_small.npz"), &opts).unwrap();
    assert!(c.plan.layers.iter().any(|l| matches!(l, Layer::AdaptiveAvgPool(p) if p.out == [6, 6])));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m256.alexnet");
    c.write(&out).unwrap();
    check_against(&out, &fixture("state_dict/input_256.npy"), &fixture("state_dict/expected_256.npy"), false);
}

/// The same module exported at 256 by today's default `torch.onnx.export`: its adaptive
/// pool arrives as Transpose / GatherND / Transpose / ReduceMean, recognised as one
/// adaptive average pool; matches ONNX Runtime.
#[test]
fn onnx_torch_export_256_adaptive_pool_pattern() {
    let c = onnx_fixture("torch_export_256");
    assert!(c.plan.layers.iter().any(|l| matches!(l, Layer::AdaptiveAvgPool(p) if p.out == [6, 6])));
}

#[test]
fn labels_are_embedded_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.txt");
    let names: Vec<String> = (0..10).map(|i| format!("class {i}")).collect();
    std::fs::write(&labels, names.join("\n") + "\n").unwrap();
    let opts = Options { labels: Some(labels.clone()), ..Default::default() };
    let c = convert_file(&fixture("onnx/torchvision_small/model.onnx"), &opts).unwrap();
    assert_eq!(c.plan.labels, names);
    let out = dir.path().join("m.alexnet");
    c.write(&out).unwrap();
    assert_eq!(alexnet::Model::open(&out).unwrap().labels(), names.as_slice());

    std::fs::write(&labels, "a\nb\n").unwrap();
    let e = convert_file(&fixture("onnx/torchvision_small/model.onnx"), &opts).unwrap_err();
    assert!(e.to_string().contains("2 lines"), "{e}");
    // A directory is refused, never read.
    let opts = Options { labels: Some(dir.path().to_path_buf()), ..Default::default() };
    assert!(convert_file(&fixture("onnx/torchvision_small/model.onnx"), &opts).is_err());
}

#[test]
fn preprocessing_overrides() {
    let mut opts = Options::default();
    opts.preprocess.convention = Some(alexnet_convert::Convention::Torchvision);
    opts.preprocess.color = Some(ColorOrder::Bgr);
    opts.preprocess.mean = Some([1.0, 2.0, 3.0]);
    opts.preprocess.resize = Some(0);
    let c = convert_file(&fixture("onnx/spec_small/model.onnx"), &opts).unwrap();
    let p = &c.plan.preprocess;
    assert_eq!(p.color, ColorOrder::Bgr);
    assert_eq!(p.mean, [1.0, 2.0, 3.0]);
    assert_eq!(p.std, alexnet::Preprocess::torchvision().std);
    assert_eq!(p.resize_shorter, 0);
    // An invalid std is refused when the plan is checked.
    opts.preprocess.std = Some([0.0, 1.0, 1.0]);
    assert!(convert_file(&fixture("onnx/spec_small/model.onnx"), &opts).is_err());
}

#[test]
fn dump_and_non_finite() {
    let mut c = convert_file(&fixture("onnx/zoo_small/model.onnx"), &Options::default()).unwrap();
    let dump = c.dump();
    for needle in ["input: [3, 224, 224]", "BGR", "conv1", "fc8", "softmax", "tensors: 16"] {
        assert!(dump.contains(needle), "dump lacks {needle:?}:\n{dump}");
    }
    assert!(c.non_finite().is_empty());
    c.tensors[3].data[0] = f32::NAN;
    c.tensors[3].data[1] = f32::INFINITY;
    let bad = c.non_finite();
    assert_eq!(bad.len(), 1);
    assert_eq!((bad[0].nan, bad[0].inf), (1, 1));
    assert_eq!(bad[0].name, c.tensors[3].name);
}

#[test]
fn state_dict_from_tensors_reports_all_missing_and_unexpected_keys() {
    let t = |name: &str| Tensor { name: name.into(), shape: vec![1], data: vec![0.0] };
    let e =
        alexnet_convert::state_dict::from_tensors(vec![t("features.0.weight")], InputFormat::Npz, &Options::default())
            .unwrap_err();
    match e {
        ConvertError::MissingKeys(keys) => {
            assert_eq!(keys.len(), 15);
            assert!(keys.contains(&"classifier.6.bias".to_string()));
        }
        other => panic!("{other}"),
    }
}

/// `torch.save` files, zip and legacy, with a transposed view and an offset view among
/// their tensors: the same network, bit for bit, as the same state dict in safetensors.
#[test]
fn state_dict_pth_zip_and_legacy_equal_safetensors() {
    let st = convert_file(&fixture("state_dict/tv_small.safetensors"), &Options::default()).unwrap();
    for file in ["tv_small_zip.pth", "tv_small_legacy.pth"] {
        let c = state_dict(file, "expected.npy");
        assert_eq!(c.format, alexnet_convert::InputFormat::Pth, "{file}");
        // The dump names each tensor's source key.
        let dump = c.dump();
        assert!(dump.contains("conv1.weight [16, 3, 11, 11] <- features.0.weight"), "{dump}");
        assert!(dump.contains("fc8.bias [10] <- classifier.6.bias"), "{dump}");
        assert_eq!(c.plan, st.plan, "{file}");
        assert_eq!(c.tensors.len(), st.tensors.len());
        for (a, b) in c.tensors.iter().zip(&st.tensors) {
            assert_eq!(a.name, b.name);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a.data), bits(&b.data), "{file}: {}", a.name);
        }
        // Sniffed without the extension too.
        let bytes = std::fs::read(fixture(&format!("state_dict/{file}"))).unwrap();
        assert_eq!(
            alexnet_convert::InputFormat::detect(std::path::Path::new("weights"), &bytes),
            alexnet_convert::InputFormat::Pth
        );
    }
}

/// A pickle that names anything but the few globals a state dict needs is refused by
/// name, before anything could run.
#[test]
fn pth_pickles_naming_other_globals_are_refused() {
    let evil =
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/pth_import/evil.pkl"))
            .unwrap();
    // As a legacy file's first pickle: the magic number check fails first.
    let e = alexnet_convert::pth::read(&evil).unwrap_err().to_string();
    assert!(e.contains("torch.save"), "{e}");
    // Inside a zip as data.pkl: the global itself is refused.
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        z.start_file("x/data.pkl", zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut z, &evil).unwrap();
        z.finish().unwrap();
    }
    let e = alexnet_convert::pth::read(buf.get_ref()).unwrap_err().to_string();
    assert!(e.contains("system") && e.contains("refused"), "{e}");
}

/// Nodes in any order (exporters and graph tools do not all keep ONNX's topological
/// order): the converter takes them in dependency order, so a graph with its nodes
/// reversed in the file converts to the same network; an input nothing provides is an
/// error naming the node.
#[test]
fn onnx_nodes_out_of_file_order_convert_the_same() {
    use prost::Message;
    for name in ["zoo_small", "odd_small", "spec_small"] {
        let bytes = std::fs::read(fixture(&format!("onnx/{name}/model.onnx"))).unwrap();
        let want = alexnet_convert::convert_bytes(&bytes, InputFormat::Onnx, None, &Options::default()).unwrap();
        let mut model = alexnet_convert::onnx_proto::ModelProto::decode(&bytes[..]).unwrap();
        model.graph.as_mut().unwrap().node.reverse();
        let reversed = model.encode_to_vec();
        let got = alexnet_convert::convert_bytes(&reversed, InputFormat::Onnx, None, &Options::default()).unwrap();
        assert_eq!(got.plan, want.plan, "{name}");
        assert_eq!(got.tensors, want.tensors, "{name}");
        // A dangling input.
        let graph = model.graph.as_mut().unwrap();
        graph.node[0].input.push("nowhere".into());
        let e = alexnet_convert::convert_bytes(&model.encode_to_vec(), InputFormat::Onnx, None, &Options::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("nowhere"), "{name}: {e}");
    }
}

/// torchvision's AlexNet module exported by today's default `torch.onnx.export` (opset
/// 20, weights in an external data file): converts and matches ONNX Runtime.
#[test]
fn onnx_torch_export_224_with_external_data() {
    let c = onnx_fixture("torch_export_224");
    assert_eq!(layer_names(&c).len(), 8);
}

/// A pickle that doubles a list through its memo (`[x] -> [x, x] -> ...`, 40 times) is
/// refused long before it could exhaust memory.
#[test]
fn pth_memo_doubling_is_bounded() {
    // PROTO 2, EMPTY_LIST, BINPUT 0, then 40 x (MARK, BINGET 0, BINGET 0, LIST, BINPUT 0), STOP.
    let mut p = vec![0x80, 2, b']', b'q', 0];
    for _ in 0..40 {
        p.extend_from_slice(&[b'(', b'h', 0, b'h', 0, b'l', b'q', 0]);
    }
    p.push(b'.');
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        z.start_file("x/data.pkl", zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut z, &p).unwrap();
        z.finish().unwrap();
    }
    let e = alexnet_convert::pth::read(buf.get_ref()).unwrap_err().to_string();
    assert!(e.contains("too many"), "{e}");
}

/// A QDQ or QOperator model from `onnxruntime.quantization.quantize_static` (per-channel
/// int8 weights, uint8 or int8 activations) converts to an int8 file holding the model's own codes,
/// weight scales and activation parameters, and runs close to ONNX Runtime on it.
#[test]
fn onnx_qdq_models_keep_their_quantization_and_match_onnx_runtime() {
    use alexnet_convert::onnx_proto::ModelProto;
    use prost::Message;
    let input = alexnet::npy::read(&fixture("onnx/spec_small/input.npy")).unwrap().data;
    let mut results = Vec::new();
    for tag in ["u8", "s8", "qop"] {
        let path = fixture(&format!("onnx/qdq_small/model_{tag}.onnx"));
        let c = convert_file(&path, &Options::default()).unwrap();
        assert!(c.is_quantized(), "{tag}");
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("q.alexnet");
        c.write_as(&out, alexnet::Precision::Int8).unwrap();
        let model = alexnet::Model::open(&out).unwrap();
        let file = model.weight_file();
        // The codes are the model's own int8 initializers, byte for byte.
        let onnx = ModelProto::decode(&std::fs::read(&path).unwrap()[..]).unwrap();
        let graph = onnx.graph.unwrap();
        for layer in ["conv1", "conv4", "fc6", "fc8"] {
            let init = graph.initializer.iter().find(|t| t.name == format!("{layer}.weight_quantized")).unwrap();
            let (codes, scales) = file.tensor_i8(&format!("{layer}.weight")).unwrap();
            let bytes: Vec<u8> = codes.iter().map(|&q| q as u8).collect();
            assert_eq!(bytes, init.raw_data[..], "{tag} {layer} codes");
            let s = graph.initializer.iter().find(|t| t.name == format!("{layer}.weight_scale")).unwrap();
            let mut want: Vec<f32> =
                s.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            want.extend(&s.float_data);
            assert_eq!(scales, &want[..], "{tag} {layer} scales");
            assert!(file.tensor(&format!("{layer}.input_quant")).is_ok(), "{tag} {layer} input parameters");
        }
        let got = model.infer(&input).unwrap();
        let want = alexnet::npy::read(&fixture(&format!("onnx/qdq_small/expected_{tag}.npy"))).unwrap().data;
        // ONNX Runtime rounds every activation the graph quantizes (ReLU, pool and LRN
        // outputs, and the probabilities themselves, to steps of 1/255); the runtime
        // rounds only each conv and linear layer's input. Measured: 1.3 steps (QDQ),
        // 0.5 (QOperator).
        let worst = got.iter().zip(&want).map(|(g, e)| (g - e).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 3.0 / 255.0, "{tag}: {worst} from ONNX Runtime");
        let argmax = |r: &[f32]| r.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        for (g, e) in got.chunks(10).zip(want.chunks(10)) {
            assert_eq!(argmax(g), argmax(e), "{tag}");
        }
        results.push(got);
    }
    // int8 activation codes are uint8 codes shifted by 128: the same network. The
    // QOperator model (QLinearConv, QGemm, QLinearSoftmax) computes the same thing.
    assert_eq!(results[0], results[1]);
    let worst = results[0].iter().zip(&results[2]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1.0 / 255.0, "QDQ and QOperator differ by {worst}");
}

/// fp16 models as `onnxconverter_common.float16` writes them (Cast nodes around an fp16
/// graph, or fp16 inputs and outputs) convert, and run in f32 on their fp16 weights
/// (widened exactly) close to ONNX Runtime's fp16 arithmetic.
#[test]
fn onnx_fp16_models_convert_and_match_onnx_runtime() {
    let input = alexnet::npy::read(&fixture("onnx/spec_small/input.npy")).unwrap().data;
    let f32_model = convert_file(&fixture("onnx/spec_small/model.onnx"), &Options::default()).unwrap();
    for tag in ["cast", "fp16"] {
        let c = convert_file(&fixture(&format!("onnx/fp16_small/model_{tag}.onnx")), &Options::default()).unwrap();
        assert_eq!(c.plan.layers, f32_model.plan.layers, "{tag}");
        // The weights are the f32 model's rounded to fp16.
        for (t, f) in c.tensors.iter().zip(&f32_model.tensors) {
            assert!(t.data.iter().zip(&f.data).all(|(h, w)| (h - w).abs() <= w.abs() / 1024.0 + 6e-8), "{}", t.name);
        }
        let model = alexnet::Model::from_bytes(c.to_bytes_as(alexnet::Precision::F32).unwrap()).unwrap();
        let got = model.infer(&input).unwrap();
        let want = alexnet::npy::read(&fixture(&format!("onnx/fp16_small/expected_{tag}.npy"))).unwrap().data;
        // ONNX Runtime's fp16 kernels round activations to fp16 (11 significant bits)
        // where the runtime keeps f32. Measured: 1.2e-7 with Cast nodes (ORT runs those
        // layers in f32 on CPU), 2.3e-4 with fp16 inputs.
        let worst = got.iter().zip(&want).map(|(g, e)| (g - e).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 2e-3, "{tag}: {worst} from ONNX Runtime");
    }
}

/// Dynamically quantized models (`quantize_dynamic`: DynamicQuantizeLinear, ConvInteger,
/// MatMulInteger) convert to int8 files on the model's own codes, quantizing each
/// input per inference: ONNX Runtime's arithmetic for one image per call.
#[test]
fn onnx_dynamic_models_convert_and_match_onnx_runtime_per_image() {
    let input = alexnet::npy::read(&fixture("onnx/spec_small/input.npy")).unwrap().data;
    for tag in ["", "_per_channel"] {
        let c = convert_file(&fixture(&format!("onnx/dynamic_small/model{tag}.onnx")), &Options::default()).unwrap();
        assert!(c.is_quantized(), "{tag}");
        assert!(!c.tensors.iter().any(|t| t.name.ends_with(".input_quant")), "dynamic: no fixed parameters");
        let model = alexnet::Model::from_bytes(c.to_bytes_as(alexnet::Precision::Int8).unwrap()).unwrap();
        assert_eq!(model.precision(), alexnet::Precision::Int8);
        let got = model.infer(&input).unwrap();
        let want = alexnet::npy::read(&fixture(&format!("onnx/dynamic_small/expected{tag}.npy"))).unwrap().data;
        let worst = got.iter().zip(&want).map(|(g, e)| (g - e).abs()).fold(0.0f32, f32::max);
        // The same integer sums and scale products: what is left is f32 rounding in
        // pools, LRN and softmax, and ties of x / s against x * (1 / s). Measured:
        // 1.1e-13 per tensor, 1.4e-8 per channel.
        assert!(worst <= 1e-6, "{tag}: {worst} from ONNX Runtime");
    }
}
