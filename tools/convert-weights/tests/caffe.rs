//! Caffe models against ONNX Runtime: the committed fixtures (tools/make_caffe_fixtures.py)
//! are seeded AlexNet-layout caffemodels in both encodings; each converts, runs, and
//! matches ORT's output for the same weights within 1e-3 in log-probability.

mod common;

use std::path::PathBuf;

use alexnet::plan::{ColorOrder, Layer};
use alexnet_convert::{caffe, convert_file, ConvertError, InputFormat, Options};
use common::{check_against, fixture};

fn dir(name: &str) -> String {
    format!("caffe/{name}")
}

/// Convert `model.caffemodel` of a fixture (with `options`), write it and compare with
/// ORT's output.
fn convert_and_check(name: &str, options: &Options) -> alexnet_convert::Converted {
    let tmp = tempfile::tempdir().unwrap();
    let converted = convert_file(&fixture(&format!("{}/model.caffemodel", dir(name))), options).unwrap();
    assert_eq!(converted.format, InputFormat::Caffe);
    let out = tmp.path().join("model.alexnet");
    converted.write(&out).unwrap();
    let d = dir(name);
    check_against(&out, &fixture(&format!("{d}/input.npy")), &fixture(&format!("{d}/expected.npy")), true);
    converted
}

fn with_prototxt(name: &str) -> Options {
    Options { prototxt: Some(fixture(&format!("{}/deploy.prototxt", dir(name)))), ..Options::default() }
}

fn kinds(c: &alexnet_convert::Converted) -> Vec<&'static str> {
    c.plan.layers.iter().map(Layer::kind).collect()
}

#[test]
fn alexnet_layout_with_its_deploy_prototxt() {
    let c = convert_and_check("alexnet_v2", &with_prototxt("alexnet_v2"));
    // LRN before pooling, ReLUs fused, Dropout gone, the deploy net's Softmax kept.
    assert_eq!(kinds(&c)[..6], ["conv", "lrn", "maxpool", "conv", "lrn", "maxpool"], "{:?}", c.plan.layers);
    assert_eq!(c.plan.layers.iter().filter(|l| matches!(l, Layer::Conv(c) if c.groups == 2)).count(), 3);
    assert!(c.plan.ends_in_softmax());
    assert_eq!(c.plan.input, [3, 71, 71]);
    assert_eq!(c.plan.preprocess.color, ColorOrder::Bgr);
    assert_eq!(c.plan.preprocess.mean, [104.0, 117.0, 123.0]);
    // The dump names each tensor's source blob.
    let dump = c.dump();
    assert!(dump.contains("conv1.weight [8, 3, 11, 11] <- conv1.blobs[0]"), "{dump}");
    assert!(dump.contains("fc8.bias [10] <- fc8.blobs[1]"), "{dump}");
}

#[test]
fn a_snapshot_converts_alone_as_its_test_net() {
    // No prototxt: the snapshot's own train/test net, TEST phase (one Data layer, the
    // crop size as input), Accuracy skipped, SoftmaxWithLoss run as Softmax; the mean
    // values of its Data layer become the preprocessing.
    let alone = convert_and_check("alexnet_v2", &Options::default());
    let deploy = convert_file(&fixture("caffe/alexnet_v2/model.caffemodel"), &with_prototxt("alexnet_v2")).unwrap();
    assert_eq!(alone.plan, deploy.plan);
    assert_eq!(alone.tensors, deploy.tensors);
}

#[test]
fn caffenet_layout_in_the_v1_encoding_with_a_mean_file() {
    let mean =
        caffe::mean_from_binaryproto(&std::fs::read(fixture("caffe/caffenet_v1/mean.binaryproto")).unwrap()).unwrap();
    let meta = std::fs::read_to_string(fixture("caffe/caffenet_v1/mean.json")).unwrap();
    let want: Vec<f32> = meta.split(['[', ']']).nth(1).unwrap().split(',').map(|v| v.trim().parse().unwrap()).collect();
    for (m, w) in mean.iter().zip(&want) {
        assert!((m - w).abs() < 1e-3, "mean {mean:?} vs {want:?}");
    }
    let mut options = Options::default();
    options.preprocess.mean = Some(mean);
    let c = convert_and_check("caffenet_v1", &options);
    assert_eq!(kinds(&c)[..3], ["conv", "maxpool", "lrn"], "pooling before LRN");
    assert_eq!(c.plan.preprocess.mean, mean);
    assert_eq!(c.plan.input, [3, 71, 71], "input size from the Data layer's crop, channels from conv1");
}

#[test]
fn within_channel_lrn_and_caffe_average_pooling() {
    let c = convert_and_check("within_ave", &with_prototxt("within_ave"));
    let within: Vec<u32> =
        c.plan.layers.iter().filter_map(|l| if let Layer::LrnWithin(l) = l { Some(l.size) } else { None }).collect();
    assert_eq!(within, [3, 5]);
    assert!(c.plan.layers.iter().any(|l| matches!(l, Layer::AvgPool(p) if p.ceil_mode && p.count_include_pad)));
    assert_eq!(c.plan.input, [3, 45, 45], "input_dim of the deploy prototxt");
    // Its caffemodel alone (input_shape, no softmax) gives the same network minus the head.
    let alone = convert_file(&fixture("caffe/within_ave/model.caffemodel"), &Options::default()).unwrap();
    assert!(!alone.plan.ends_in_softmax());
    assert_eq!(alone.plan.layers[..], c.plan.layers[..c.plan.layers.len() - 1]);
    assert_eq!(alone.tensors, c.tensors);
}

#[test]
fn the_within_channel_model_is_the_same_at_every_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let c = convert_file(&fixture("caffe/within_ave/model.caffemodel"), &with_prototxt("within_ave")).unwrap();
    let path = tmp.path().join("m.alexnet");
    c.write(&path).unwrap();
    let x = alexnet::npy::read(&fixture("caffe/within_ave/input.npy")).unwrap();
    let run = |threads| {
        let m = alexnet::Model::builder().threads(threads).open(&path).unwrap();
        let mut out = vec![0.0f32; 2 * m.num_classes()];
        m.infer_raw_into(&x.data, &mut out).unwrap();
        out
    };
    let one = run(1);
    for t in [2, 3, 5] {
        assert_eq!(run(t), one, "{t} threads");
    }
}

fn prototxt_of(name: &str) -> String {
    std::fs::read_to_string(fixture(&format!("caffe/{name}/deploy.prototxt"))).unwrap()
}

fn model_of(name: &str) -> Vec<u8> {
    std::fs::read(fixture(&format!("caffe/{name}/model.caffemodel"))).unwrap()
}

fn caffe_error(model: &[u8], prototxt: Option<&str>) -> String {
    match caffe::import(model, prototxt, &Options::default()) {
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "one line: {msg}");
            msg
        }
        Ok(_) => panic!("converted"),
    }
}

#[test]
fn bad_files_are_refused_with_the_layer_that_breaks_them() {
    let model = model_of("alexnet_v2");
    // Truncated and corrupt caffemodels.
    for cut in [1, 100, model.len() / 2, model.len() - 1] {
        let msg = caffe_error(&model[..cut], None);
        assert!(msg.starts_with("caffe:") || msg.contains("shape") || msg.contains("tensor"), "{cut}: {msg}");
    }
    let text = prototxt_of("alexnet_v2");
    // An unsupported layer, by name and type.
    let bn = text.replacen("type: \"ReLU\"", "type: \"BatchNorm\"", 1);
    assert_eq!(caffe_error(&model, Some(&bn)), "caffe: unsupported layer type BatchNorm at layer 'relu1'");
    // A branch: conv2 reads the input again.
    let branch = text.replacen("bottom: \"pool1\"", "bottom: \"data\"", 1);
    let msg = caffe_error(&model, Some(&branch));
    assert!(msg.contains("layer 'conv2' (Convolution) reads blob 'data'"), "{msg}");
    // Leaky ReLU, dilation, stochastic pooling, even LRN windows.
    let leaky = text.replacen(
        "type: \"ReLU\"\n  bottom: \"conv1\"\n  top: \"conv1\"",
        "type: \"ReLU\"\n  bottom: \"conv1\"\n  top: \"conv1\"\n  relu_param { negative_slope: 0.1 }",
        1,
    );
    assert!(caffe_error(&model, Some(&leaky)).contains("leaky ReLU"));
    let dilated = text.replacen("num_output: 8", "num_output: 8\n    dilation: 2", 1);
    assert!(caffe_error(&model, Some(&dilated)).contains("dilated"));
    let stochastic = text.replacen("pool: MAX", "pool: STOCHASTIC", 1);
    assert!(caffe_error(&model, Some(&stochastic)).contains("stochastic"));
    let even = text.replacen("local_size: 5", "local_size: 4", 1);
    assert!(caffe_error(&model, Some(&even)).contains("even"));
    // Weights that do not fit the prototxt's hyperparameters.
    let wrong = text.replacen("num_output: 8", "num_output: 9", 1);
    assert!(caffe_error(&model, Some(&wrong)).contains("num_output 9"));
    // A prototxt naming a layer the caffemodel has no blobs for.
    let renamed = text.replace("\"conv3\"", "\"conv3x\"");
    assert!(caffe_error(&model, Some(&renamed)).contains("conv3x.blobs[0]"));
    // Text-format syntax errors.
    assert!(caffe_error(&model, Some("layer { name: ")).starts_with("caffe: prototxt:"));
    assert!(caffe_error(&model, Some("layer { no_such_field: 1 }")).starts_with("caffe: prototxt:"));
    // No input size anywhere.
    let no_input = text.replacen("type: \"Input\"", "type: \"Input\"\n  include { phase: TRAIN }", 1);
    let msg = caffe_error(&model, Some(&no_input));
    assert!(msg.contains("comes before any input"), "{msg}");
}

#[test]
fn hostile_blobs_are_refused() {
    use alexnet_convert::caffe_proto::{BlobProto, BlobShape};
    use prost::Message as _;
    let mut net = caffe::decode_net(&model_of("within_ave")).unwrap();
    let at = net.layer.iter().position(|l| l.name.as_deref() == Some("conv1")).unwrap();
    // A shape whose product overflows, and one that disagrees with the data.
    for dims in [vec![1i64 << 40, 1 << 40, 1, 1], vec![8, 3, 5, 6], vec![-8, 3, 5, 5]] {
        net.layer[at].blobs[0].shape = Some(BlobShape { dim: dims.clone() });
        let msg = caffe_error(&net.encode_to_vec(), None);
        assert!(msg.starts_with("tensor 'conv1.blobs[0]'"), "{dims:?}: {msg}");
    }
    net.layer[at].blobs[0] = BlobProto::default();
    let msg = caffe_error(&net.encode_to_vec(), None);
    assert!(msg.contains("conv1"), "{msg}");
}

#[test]
fn a_mean_file_must_be_one_image() {
    let err = |bytes: &[u8]| caffe::mean_from_binaryproto(bytes).unwrap_err().to_string();
    assert!(err(b"\x0a\x02").starts_with("caffe: mean file"));
    use prost::Message as _;
    let two = alexnet_convert::caffe_proto::BlobProto {
        num: Some(1),
        channels: Some(2),
        height: Some(1),
        width: Some(1),
        data: vec![1.0, 2.0],
        ..Default::default()
    };
    assert!(err(&two.encode_to_vec()).contains("2 channels"));
}

#[test]
fn the_format_is_recognised_without_an_extension() {
    let tmp = tempfile::tempdir().unwrap();
    let p: PathBuf = tmp.path().join("snapshot_iter_1000");
    std::fs::write(&p, model_of("alexnet_v2")).unwrap();
    assert_eq!(InputFormat::detect(&p, &model_of("alexnet_v2")), InputFormat::Caffe);
    let c = convert_file(&p, &Options::default()).unwrap();
    assert_eq!(c.format, InputFormat::Caffe);
    // The prototxt option is read from disk; a missing one is an I/O error naming it.
    let missing = Options { prototxt: Some(tmp.path().join("nope.prototxt")), ..Options::default() };
    match convert_file(&p, &missing) {
        Err(ConvertError::Io { path, .. }) => assert!(path.ends_with("nope.prototxt")),
        other => panic!("{other:?}"),
    }
}
