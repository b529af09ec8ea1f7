#!/usr/bin/env python3
"""Caffe fixtures for convert-weights: seeded AlexNet-layout .caffemodel files.

Each fixture directory under tests/fixtures/caffe/ holds

  model.caffemodel   binary NetParameter with the weights (a train/test net, as Caffe
                     snapshots are, or a deploy net)
  deploy.prototxt    text-format deploy net (where the fixture converts with one)
  mean.binaryproto   a mean image (where the fixture uses one)
  input.npy          preprocessed input images, [N, C, H, W] float32
  expected.npy       ONNX Runtime's output for the same weights as an ONNX graph
  meta.json          what the fixture exercises

The protobuf classes come from the vendored tools/convert-weights/proto/caffe.proto,
compiled here with protoc (grpcio-tools), independently of the Rust side's protox +
prost code. ONNX Runtime runs the same weights as an ONNX graph; a plain numpy forward
pass written from Caffe's layer definitions (its pooling size and divisor rules, both
LRN regions) must agree with it, so the expectation is checked twice before it is
written.

    pip install onnx onnxruntime numpy grpcio-tools
    python3 tools/make_caffe_fixtures.py
"""

import importlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTO_DIR = os.path.join(ROOT, "tools", "convert-weights", "proto")
OUT = os.path.join(ROOT, "tests", "fixtures", "caffe")


def caffe_pb2():
    out = tempfile.mkdtemp()
    subprocess.check_call(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={out}", "caffe.proto"]
    )
    sys.path.insert(0, out)
    return importlib.import_module("caffe_pb2")


pb = caffe_pb2()
from google.protobuf import text_format  # noqa: E402


# ---- the networks, as layer lists -------------------------------------------------------
# ("conv", name, out, k, stride, pad, group) ("relu",) ("lrn", size, alpha, beta, k)
# ("lrn_within", size, alpha, beta) ("max"|"ave", k, stride, pad) ("global_ave",)
# ("fc", name, out) ("dropout",) ("softmax",)


def alexnet_layers(lrn_first):
    def block(i, out, k, s, p, g, pool, lrn):
        conv = [("conv", f"conv{i}", out, k, s, p, g), ("relu",)]
        tail = []
        if lrn:
            tail = [("lrn", 5, 1e-4, 0.75, 1.0), ("max", 3, 2, 0)] if lrn_first else [("max", 3, 2, 0), ("lrn", 5, 1e-4, 0.75, 1.0)]
        elif pool:
            tail = [("max", 3, 2, 0)]
        return conv + tail

    return (
        block(1, 8, 11, 4, 0, 1, True, True)
        + block(2, 16, 5, 1, 2, 2, True, True)
        + block(3, 24, 3, 1, 1, 1, False, False)
        + block(4, 24, 3, 1, 1, 2, False, False)
        + block(5, 16, 3, 1, 1, 2, True, False)
        + [("fc", "fc6", 32), ("relu",), ("dropout",), ("fc", "fc7", 32), ("relu",), ("dropout",), ("fc", "fc8", 10)]
    )


WITHIN_LAYERS = [
    ("conv", "conv1", 8, 5, 2, 2, 1),
    ("relu",),
    ("max", 3, 2, 0),
    ("lrn_within", 3, 5e-5, 0.75),
    ("conv", "conv2", 16, 5, 1, 2, 2),
    ("relu",),
    ("ave", 3, 2, 1),
    ("lrn_within", 5, 5e-4, 0.75),
    ("conv", "conv3", 16, 3, 1, 1, 1),
    ("relu",),
    ("global_ave",),
    ("fc", "fc4", 10),
]


def caffe_pooled(n, k, s, p):
    out = -(-(n + 2 * p - k) // s) + 1
    if p > 0 and (out - 1) * s >= n + p:
        out -= 1
    return out


def make_weights(layers, shape, rng):
    """Seeded weights and the activation shape after each layer."""
    c, h, w = shape
    weights = {}
    flat = None
    for layer in layers:
        kind = layer[0]
        if kind == "conv":
            _, name, out, k, s, p, g = layer
            fan = c // g * k * k
            weights[name] = (
                (rng.standard_normal((out, c // g, k, k)) * np.sqrt(2.0 / fan)).astype(np.float32),
                (rng.standard_normal(out) * 0.1).astype(np.float32),
            )
            c, h, w = out, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        elif kind in ("max", "ave"):
            _, k, s, p = layer
            h, w = caffe_pooled(h, k, s, p), caffe_pooled(w, k, s, p)
        elif kind == "global_ave":
            h = w = 1
        elif kind == "fc":
            _, name, out = layer
            n = flat if flat is not None else c * h * w
            weights[name] = (
                (rng.standard_normal((out, n)) * np.sqrt(2.0 / n)).astype(np.float32),
                (rng.standard_normal(out) * 0.1).astype(np.float32),
            )
            flat = out
    return weights


# ---- Caffe protobufs -------------------------------------------------------------------


def set_blob(blob, array, legacy):
    if legacy:
        dims = [1] * (4 - array.ndim) + list(array.shape)
        blob.num, blob.channels, blob.height, blob.width = dims
    else:
        blob.shape.dim.extend(array.shape)
    blob.data.extend(array.ravel().tolist())


def fill_params(l, layer, weights, with_blobs, legacy):
    kind = layer[0]
    if kind == "conv":
        _, name, out, k, s, p, g = layer
        cp = l.convolution_param
        cp.num_output = out
        if legacy:
            cp.kernel_size.append(k)
            cp.stride.append(s)
            if p:
                cp.pad.append(p)
        else:
            cp.kernel_h, cp.kernel_w = k, k
            cp.stride_h, cp.stride_w = s, s
            cp.pad_h, cp.pad_w = p, p
        if g != 1:
            cp.group = g
    elif kind == "relu":
        pass
    elif kind == "lrn":
        _, size, alpha, beta, kk = layer
        l.lrn_param.local_size, l.lrn_param.alpha, l.lrn_param.beta = size, alpha, beta
        if kk != 1.0:
            l.lrn_param.k = kk
    elif kind == "lrn_within":
        _, size, alpha, beta = layer
        l.lrn_param.local_size, l.lrn_param.alpha, l.lrn_param.beta = size, alpha, beta
        l.lrn_param.norm_region = pb.LRNParameter.WITHIN_CHANNEL
    elif kind in ("max", "ave"):
        _, k, s, p = layer
        pp = l.pooling_param
        pp.pool = pb.PoolingParameter.MAX if kind == "max" else pb.PoolingParameter.AVE
        pp.kernel_size, pp.stride = k, s
        if p:
            pp.pad = p
    elif kind == "global_ave":
        l.pooling_param.pool = pb.PoolingParameter.AVE
        l.pooling_param.global_pooling = True
    elif kind == "fc":
        _, name, out = layer
        l.inner_product_param.num_output = out
    elif kind == "dropout":
        l.dropout_param.dropout_ratio = 0.5
    if with_blobs and kind in ("conv", "fc"):
        wt, b = weights[layer[1]]
        set_blob(l.blobs.add(), wt, legacy)
        set_blob(l.blobs.add(), b, legacy)


V2_TYPES = {
    "conv": "Convolution", "relu": "ReLU", "lrn": "LRN", "lrn_within": "LRN", "max": "Pooling",
    "ave": "Pooling", "global_ave": "Pooling", "fc": "InnerProduct", "dropout": "Dropout", "softmax": "Softmax",
}
V1_TYPES = {
    "conv": pb.V1LayerParameter.CONVOLUTION, "relu": pb.V1LayerParameter.RELU, "lrn": pb.V1LayerParameter.LRN,
    "lrn_within": pb.V1LayerParameter.LRN, "max": pb.V1LayerParameter.POOLING, "ave": pb.V1LayerParameter.POOLING,
    "global_ave": pb.V1LayerParameter.POOLING, "fc": pb.V1LayerParameter.INNER_PRODUCT,
    "dropout": pb.V1LayerParameter.DROPOUT, "softmax": pb.V1LayerParameter.SOFTMAX,
}


def net(name, layers, weights, *, v1=False, with_blobs=True, data=None, head="prob", deploy_input=None):
    """A NetParameter: `data` = ("train", crop, mean_values) gives Data layers per phase,
    an Accuracy and a SoftmaxWithLoss head; else a deploy net whose input is declared by
    `deploy_input` = ("layer" | "input_shape" | "input_dim", [n, c, h, w])."""
    n = pb.NetParameter()
    n.name = name
    add = (lambda: n.layers.add()) if v1 else (lambda: n.layer.add())

    def typed(l, kind_v2, kind_v1):
        if v1:
            l.type = kind_v1
        else:
            l.type = kind_v2

    if data is not None:
        _, crop, mean_values = data
        for phase in (pb.TRAIN, pb.TEST):
            l = add()
            l.name = "data"
            typed(l, "Data", pb.V1LayerParameter.DATA)
            l.top.extend(["data", "label"])
            l.include.add().phase = phase
            l.transform_param.crop_size = crop
            l.transform_param.mirror = phase == pb.TRAIN
            if mean_values:
                l.transform_param.mean_value.extend(mean_values)
            else:
                l.transform_param.mean_file = "data/ilsvrc12/imagenet_mean.binaryproto"
            l.data_param.source = "examples/imagenet/ilsvrc12_%s_lmdb" % ("train" if phase == pb.TRAIN else "val")
            l.data_param.batch_size = 256 if phase == pb.TRAIN else 50
            l.data_param.backend = pb.DataParameter.LMDB
    else:
        how, dims = deploy_input
        if how == "layer":
            l = n.layer.add()
            l.name, l.type = "data", "Input"
            l.top.append("data")
            l.input_param.shape.add().dim.extend(dims)
        elif how == "input_shape":
            n.input.append("data")
            n.input_shape.add().dim.extend(dims)
        else:
            n.input.append("data")
            n.input_dim.extend(dims)
    blob = "data"
    counts = {}
    for layer in layers:
        kind = layer[0]
        l = add()
        if kind in ("conv", "fc"):
            lname = layer[1]
        else:
            # BVLC's names: relu1, norm1, pool1, drop6...
            prefix = {"relu": "relu", "dropout": "drop", "lrn": "norm", "lrn_within": "norm"}.get(kind, "pool")
            counts[prefix] = counts.get(prefix, 0) + 1
            lname = f"{prefix}{counts[prefix]}"
        l.name = lname
        typed(l, V2_TYPES[kind], V1_TYPES[kind])
        l.bottom.append(blob)
        # ReLU and Dropout run in place, as in the BVLC files.
        top = blob if kind in ("relu", "dropout") else lname
        l.top.append(top)
        blob = top
        fill_params(l, layer, weights, with_blobs, legacy=v1)
    if data is not None:
        l = add()
        l.name = "accuracy"
        typed(l, "Accuracy", pb.V1LayerParameter.ACCURACY)
        l.bottom.extend([blob, "label"])
        l.top.append("accuracy")
        l.include.add().phase = pb.TEST
        l = add()
        l.name = "loss"
        typed(l, "SoftmaxWithLoss", pb.V1LayerParameter.SOFTMAX_LOSS)
        l.bottom.extend([blob, "label"])
        l.top.append("loss")
    elif head:
        l = add()
        l.name = head
        typed(l, "Softmax", pb.V1LayerParameter.SOFTMAX)
        l.bottom.append(blob)
        l.top.append(head)
    return n


# ---- the reference: the same network as ONNX, through ONNX Runtime ----------------------


def onnx_model(layers, weights, shape, batch):
    nodes, inits = [], []
    x = "data"
    c, h, w = shape
    counter = [0]

    def fresh(p):
        counter[0] += 1
        return f"{p}_{counter[0]}"

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    flat = False
    for layer in layers:
        kind = layer[0]
        y = fresh(kind)
        if kind == "conv":
            _, name, out, k, s, p, g = layer
            wt, b = weights[name]
            nodes.append(helper.make_node("Conv", [x, const(name + "_w", wt), const(name + "_b", b)], [y],
                                          kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, group=g))
            c, h, w = out, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        elif kind == "relu":
            nodes.append(helper.make_node("Relu", [x], [y]))
        elif kind == "lrn":
            _, size, alpha, beta, kk = layer
            nodes.append(helper.make_node("LRN", [x], [y], size=size, alpha=alpha, beta=beta, bias=kk))
        elif kind == "lrn_within":
            _, size, alpha, beta = layer
            r = (size - 1) // 2
            sq, avg, scaled, base, den = (fresh("sq"), fresh("avg"), fresh("scaled"), fresh("base"), fresh("den"))
            nodes += [
                helper.make_node("Mul", [x, x], [sq]),
                helper.make_node("AveragePool", [sq], [avg], kernel_shape=[size, size], pads=[r] * 4,
                                 count_include_pad=1),
                helper.make_node("Mul", [avg, const(fresh("alpha"), alpha)], [scaled]),
                helper.make_node("Add", [scaled, const(fresh("one"), 1.0)], [base]),
                helper.make_node("Pow", [base, const(fresh("beta"), beta)], [den]),
                helper.make_node("Div", [x, den], [y]),
            ]
        elif kind in ("max", "ave"):
            _, k, s, p = layer
            oh, ow = caffe_pooled(h, k, s, p), caffe_pooled(w, k, s, p)
            # Caffe pads symmetrically and rounds up; the trailing pad covers what ceil adds.
            pads = [p, p, max(p, (oh - 1) * s + k - h - p), max(p, (ow - 1) * s + k - w - p)]
            if kind == "max":
                nodes.append(helper.make_node("MaxPool", [x], [y], kernel_shape=[k, k], strides=[s, s],
                                              pads=[p, p, p, p], ceil_mode=1))
            else:
                # The divisor Caffe uses (window clipped to the symmetric padded image)
                # differs from ONNX's on windows hanging past it, so the reference is a
                # sum pool divided by Caffe's own counts.
                summed = fresh("sum")
                nodes.append(helper.make_node("AveragePool", [x], [summed], kernel_shape=[k, k], strides=[s, s],
                                              pads=pads, count_include_pad=1))
                counts = np.zeros((oh, ow), np.float32)
                for i in range(oh):
                    for j in range(ow):
                        hs, ws_ = i * s - p, j * s - p
                        counts[i, j] = (min(hs + k, h + p) - hs) * (min(ws_ + k, w + p) - ws_)
                nodes.append(helper.make_node("Mul", [summed, const(fresh("rescale"), (k * k) / counts)], [y]))
            h, w = oh, ow
        elif kind == "global_ave":
            nodes.append(helper.make_node("GlobalAveragePool", [x], [y]))
            h = w = 1
        elif kind == "fc":
            _, name, out = layer
            if not flat:
                f = fresh("flat")
                nodes.append(helper.make_node("Flatten", [x], [f], axis=1))
                x, flat = f, True
            wt, b = weights[name]
            nodes.append(helper.make_node("Gemm", [x, const(name + "_w", wt), const(name + "_b", b)], [y], transB=1))
        elif kind == "dropout":
            nodes.append(helper.make_node("Identity", [x], [y]))
        x = y
    nodes.append(helper.make_node("Softmax", [x], ["prob"], axis=1))
    graph = helper.make_graph(
        nodes, "caffe_reference",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [batch, *shape])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [batch, None])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


def ort_run(model, x):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"data": x})[0]


# ---- an independent numpy forward pass from Caffe's definitions ---------------------------


def np_forward(layers, weights, x, logits=False):
    a = x.astype(np.float64)
    for layer in layers:
        kind = layer[0]
        if kind == "conv":
            _, name, out, k, s, p, g = layer
            wt, b = (v.astype(np.float64) for v in weights[name])
            n, c, h, w = a.shape
            ap = np.pad(a, ((0, 0), (0, 0), (p, p), (p, p)))
            oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            y = np.zeros((n, out, oh, ow))
            cg, og = c // g, out // g
            for gi in range(g):
                for i in range(oh):
                    for j in range(ow):
                        patch = ap[:, gi * cg:(gi + 1) * cg, i * s:i * s + k, j * s:j * s + k]
                        y[:, gi * og:(gi + 1) * og, i, j] = np.einsum("ncyx,ocyx->no", patch, wt[gi * og:(gi + 1) * og])
            a = y + b[None, :, None, None]
        elif kind == "relu":
            a = np.maximum(a, 0)
        elif kind == "lrn":
            _, size, alpha, beta, kk = layer
            n, c, h, w = a.shape
            sq = np.pad(a * a, ((0, 0), ((size - 1) // 2, (size - 1) // 2), (0, 0), (0, 0)))
            scale = kk + alpha / size * sum(sq[:, i:i + c] for i in range(size))
            a = a / scale ** beta
        elif kind == "lrn_within":
            _, size, alpha, beta = layer
            r = (size - 1) // 2
            n, c, h, w = a.shape
            sq = np.pad(a * a, ((0, 0), (0, 0), (r, r), (r, r)))
            s = sum(sq[:, :, i:i + h, j:j + w] for i in range(size) for j in range(size))
            a = a / (1 + alpha * s / (size * size)) ** beta
        elif kind in ("max", "ave"):
            _, k, s, p = layer
            n, c, h, w = a.shape
            oh, ow = caffe_pooled(h, k, s, p), caffe_pooled(w, k, s, p)
            y = np.zeros((n, c, oh, ow))
            for i in range(oh):
                for j in range(ow):
                    hs, ws_ = i * s - p, j * s - p
                    he, we = min(hs + k, h + p), min(ws_ + k, w + p)
                    count = (he - hs) * (we - ws_)
                    win = a[:, :, max(hs, 0):min(he, h), max(ws_, 0):min(we, w)]
                    y[:, :, i, j] = win.max(axis=(2, 3)) if kind == "max" else win.sum(axis=(2, 3)) / count
            a = y
        elif kind == "global_ave":
            a = a.mean(axis=(2, 3), keepdims=True)
        elif kind == "fc":
            _, name, out = layer
            wt, b = (v.astype(np.float64) for v in weights[name])
            a = a.reshape(a.shape[0], -1) @ wt.T + b
    if logits:
        return a
    a = a - a.max(axis=1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=1, keepdims=True)


def write(name, layers, shape, seed, *, files, description, batch=2):
    rng = np.random.default_rng(seed)
    weights = make_weights(layers, shape, rng)
    # Inputs in Caffe's range: pixels 0..255 minus a mean.
    x = (rng.uniform(0, 255, (batch, *shape)) - 117.0).astype(np.float32)
    # Scale the last layer so the logits spread over a few units: probabilities that
    # neither saturate nor underflow, so every class's log-probability is compared.
    last = [l[1] for l in layers if l[0] == "fc"][-1]
    spread = np_forward(layers, weights, x, logits=True).std()
    weights[last] = tuple((v * (2.0 / spread)).astype(np.float32) for v in weights[last])
    want = ort_run(onnx_model(layers, weights, shape, batch), x)
    ref = np_forward(layers, weights, x)
    diff = np.abs(np.log(np.maximum(want, 1e-30)) - np.log(np.maximum(ref, 1e-30))).max()
    assert diff < 1e-3, f"{name}: ONNX Runtime and the numpy Caffe pass differ by {diff}"
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    for fname, content in files(weights).items():
        mode = "w" if isinstance(content, str) else "wb"
        with open(os.path.join(d, fname), mode) as f:
            f.write(content)
    np.save(os.path.join(d, "input.npy"), x)
    np.save(os.path.join(d, "expected.npy"), want.astype(np.float32))
    meta = {"batch": batch, "softmax": True, "input": list(shape), "description": description,
            "ort_vs_numpy_log_prob": float(diff)}
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(f"{name}: ORT vs numpy Caffe pass {diff:.2e}; {', '.join(sorted(files(weights)))}")


def main():
    shape = (3, 71, 71)
    # 1. BVLC AlexNet layout (LRN before pooling), current `layer` encoding: a train/test
    #    snapshot converted with its deploy prototxt (Input layer).
    layers = alexnet_layers(lrn_first=True)
    write(
        "alexnet_v2", layers, shape, 1,
        files=lambda w: {
            "model.caffemodel": net("AlexNet", layers, w, data=("train", 71, [104, 117, 123])).SerializeToString(),
            "deploy.prototxt": text_format.MessageToString(
                net("AlexNet", layers, w, with_blobs=False, deploy_input=("layer", [10, *shape]))),
        },
        description="BVLC AlexNet layout: LRN then max-pool, groups 2 on conv2/4/5, ceil pooling "
                    "(71x71 input: 16 -> 8 -> 4 -> 2), channels 8-16-24-24-16, FC 32-32-10 with "
                    "in-place ReLU and Dropout; V2 'layer' train/test snapshot + deploy prototxt",
    )
    # 2. CaffeNet layout (pooling before LRN), V1 `layers` encoding with legacy 4-D blob
    #    shapes, converted from the snapshot alone (crop size from its Data layer) with a
    #    mean image.
    layers = alexnet_layers(lrn_first=False)
    mean = pb.BlobProto()
    mean_img = np.stack([np.full((8, 8), v, np.float32) for v in (104.0, 117.0, 123.0)])
    mean_img += np.random.default_rng(7).uniform(-8, 8, mean_img.shape).astype(np.float32)
    mean.num, mean.channels, mean.height, mean.width = 1, 3, 8, 8
    mean.data.extend(mean_img.ravel().tolist())
    write(
        "caffenet_v1", layers, shape, 2,
        files=lambda w: {
            "model.caffemodel": net("CaffeNet", layers, w, v1=True, data=("train", 71, None)).SerializeToString(),
            "mean.binaryproto": mean.SerializeToString(),
            "mean.json": json.dumps({"mean_bgr": [float(v) for v in mean_img.reshape(3, -1).astype(np.float64).mean(1)]}) + "\n",
        },
        description="CaffeNet layout: max-pool then LRN, V1 'layers' encoding with legacy "
                    "num/channels/height/width blobs, train/test snapshot converted alone "
                    "(input size from the Data layer's crop_size), mean image in mean.binaryproto",
    )
    # 3. Within-channel LRN and average pooling (padded, ceil; global), deploy net with
    #    the old `input` + `input_dim` declaration, no softmax in the caffemodel.
    layers = WITHIN_LAYERS
    shape3 = (3, 45, 45)
    write(
        "within_ave", layers, shape3, 3,
        files=lambda w: {
            "model.caffemodel": net("within", layers, w, head=None,
                                    deploy_input=("input_shape", [1, *shape3])).SerializeToString(),
            "deploy.prototxt": text_format.MessageToString(
                net("within", layers, w, with_blobs=False, deploy_input=("input_dim", [1, *shape3]))),
        },
        description="within-channel LRN (3x3 and 5x5) after max and average pooling, AVE pool "
                    "k3 s2 pad 1 with Caffe's ceil and divisor rules, global average pooling, "
                    "one FC; deploy prototxt with input/input_dim, caffemodel with input_shape",
    )


if __name__ == "__main__":
    main()
