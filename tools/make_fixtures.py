#!/usr/bin/env python3
"""Generate the reference fixtures under ``tests/fixtures/``.

Regenerate everything with (from the repository root)::

    python3 tools/make_fixtures.py

Requirements: Python 3.11 with ``numpy``, ``onnx``, ``onnxruntime`` and ``safetensors``.
Every model is built with ``onnx.helper`` and run with ONNX Runtime
(``CPUExecutionProvider``, default session options); ORT's outputs are the expected
values the Rust runtime is tested against. The script is deterministic: random data comes
from fixed ``numpy.random.default_rng`` seeds or from the synthetic generator below, and
no file embeds a timestamp.

What is written (see ``tests/fixtures/README.md``):

``generator_check.txt``
    ``fill(7, 3, 1.0)`` of the synthetic generator, one ``%.9g`` float32 per line, so the
    Rust side can pin ``src/synthetic.rs`` against this implementation.

``full/<name>/{expected.npy,meta.json}`` for ``spec``, ``spec_b2``, ``zoo``, ``torchvision``
    Full-size (~61M parameter) networks whose weights and inputs come from the synthetic
    generator of ``src/synthetic.rs`` (reproduced bit for bit by :func:`fill`). Neither
    weights nor inputs are committed: Rust regenerates them from ``meta.json``'s seed.
    The input is fed to ORT as is (no mean/scale preprocessing).

``onnx/<name>/{model.onnx,input.npy,expected.npy,meta.json}``
    Small AlexNet-family ONNX models (committed whole) covering the op/attribute variants
    an importer meets in the wild: ``spec_small``, ``zoo_small``, ``torchvision_small``,
    ``odd_small``, ``no_bias_small``. ORT's LRN kernel rejects even sizes, so
    ``odd_small``'s expected output (which has a native size-4 LRN) is computed by ORT on
    a twin graph where that LRN is spelled out in primitive ops (validated against ORT's
    LRN for odd sizes and against a float64 numpy LRN for all sizes).

``state_dict/``
    A small torchvision-structured AlexNet as a safetensors file (F32), an ``.npz`` and a
    BF16 safetensors file (written by hand; truncated bf16), with an input batch and ORT's
    outputs for the F32 weights and for the bf16-truncated weights.
"""

from __future__ import annotations

import io
import json
import math
import struct
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper, shape_inference
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

# --------------------------------------------------------------------------------------
# Synthetic generator (bit-exact port of src/synthetic.rs)
# --------------------------------------------------------------------------------------

_U64 = np.uint64
_MUL1 = _U64(0xBF58476D1CE4E5B9)
_MUL2 = _U64(0x94D049BB133111EB)
_CHUNK = 1 << 22  # elements per vectorised step (bounds temporary memory)


def mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (multiplies wrap, as in Rust)."""
    z = z ^ (z >> _U64(30))
    z = z * _MUL1
    z ^= z >> _U64(27)
    z = z * _MUL2
    return z ^ (z >> _U64(31))


def fill(stream: int, length: int, scale: float) -> np.ndarray:
    """``length`` float32 values of ``stream``, uniform in ``[-scale, scale)``.

    Matches ``synthetic::fill`` exactly: every step after ``mix`` is exact in float32
    except the final multiply by ``scale``, which numpy rounds like Rust does.
    """
    base = mix(np.array([stream & 0xFFFFFFFFFFFFFFFF], dtype=_U64))[0]
    out = np.empty(length, dtype=np.float32)
    inv = np.float32(1.0 / 16_777_216.0)
    two, one, s = np.float32(2.0), np.float32(1.0), np.float32(scale)
    for start in range(0, length, _CHUNK):
        i = np.arange(start, min(start + _CHUNK, length), dtype=_U64)
        u = (mix(base ^ i) >> _U64(40)).astype(np.float32) * inv
        out[start : start + len(i)] = (u * two - one) * s
    return out


def synthetic_stream(seed: int, j: int) -> int:
    """Stream of tensor ``j`` (``j = 65535`` is the input)."""
    return (seed * 65536 + j) & 0xFFFFFFFFFFFFFFFF


def synthetic_input(seed: int, batch: int, chw: tuple[int, int, int]) -> np.ndarray:
    """The input batch ``synthetic::input`` produces (the stream continues across images)."""
    n = batch * math.prod(chw)
    return fill(synthetic_stream(seed, 65535), n, 1.0).reshape(batch, *chw)


class SyntheticParams:
    """Parameter source for full-size nets: tensor j of the plan gets stream seed*65536+j."""

    def __init__(self, seed: int):
        self.seed = seed
        self.j = 0

    def __call__(self, shape: tuple[int, ...], fan_in: int | None = None) -> np.ndarray:
        # The Rust plan always stores conv weights [out, in/g, kh, kw] and linear weights
        # [out, in], so fan_in is the product of shape[1:]; biases (1-D) use scale 0.1.
        assert fan_in is None or len(shape) == 1 or fan_in == math.prod(shape[1:])
        scale = np.float32(0.1) if len(shape) == 1 else np.float32(math.sqrt(6.0 / math.prod(shape[1:])))
        data = fill(synthetic_stream(self.seed, self.j), math.prod(shape), float(scale))
        self.j += 1
        return data.reshape(shape)


class GaussianParams:
    """Parameter source for small nets: He-normal weights, N(0, 0.1^2) biases, float32."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def __call__(self, shape: tuple[int, ...], fan_in: int | None = None) -> np.ndarray:
        if len(shape) == 1:
            return (self.rng.standard_normal(shape) * 0.1).astype(np.float32)
        fan_in = fan_in if fan_in is not None else math.prod(shape[1:])
        return (self.rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)


# --------------------------------------------------------------------------------------
# Graph builder
# --------------------------------------------------------------------------------------


class Net:
    """Builds a linear chain of ONNX nodes, tracking the current tensor and channel count.

    ``pads`` everywhere are ONNX order ``[top, left, bottom, right]``.
    Learned parameters are kept in ``self.weights`` (name -> array, creation order) and
    emitted as initializers by :meth:`model`, optionally transformed (bf16 rounding).
    """

    def __init__(self, opset: int, params, input_name: str, batch: int | str, chw, names=None, decompose_even_lrn=False):
        self.opset = opset
        # ORT's LRN kernel rejects even sizes; such nets are built twice: natively (the
        # committed model) and with the LRN spelled out in primitive ops (run by ORT).
        self.decompose_even_lrn = decompose_even_lrn
        self.ort_runnable = True
        self.params = params
        self.names = names or {}
        self.input_name = input_name
        self.batch = batch
        self.chw = list(chw)
        self.nodes: list[onnx.NodeProto] = []
        self.weights: dict[str, np.ndarray] = {}
        self.consts: dict[str, np.ndarray] = {}
        self.cur = input_name
        self.channels = chw[0]
        self.features: int | None = None  # flattened width, set by flatten()
        self._count = 0

    # -- plumbing ----------------------------------------------------------------------

    def _fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, extra_outputs=(), **attrs) -> str:
        out = self._fresh(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out, *extra_outputs], name=out, **attrs))
        self.cur = out
        return out

    def param(self, layer: str, kind: str, shape, fan_in=None) -> str:
        prefix = self.names.get(layer, layer)
        name = f"{prefix}_{kind[0]}_0" if self.names.get("_style") == "zoo" else f"{prefix}.{kind}"
        self.weights[name] = self.params(tuple(shape), fan_in)
        return name

    # -- layers ------------------------------------------------------------------------

    def conv(self, layer, out, k, s=1, pads=0, groups=1, bias=True, relu=True):
        pads = [pads] * 4 if isinstance(pads, int) else list(pads)
        w = self.param(layer, "weight", (out, self.channels // groups, k, k))
        inputs = [self.cur, w] + ([self.param(layer, "bias", (out,))] if bias else [])
        attrs = dict(kernel_shape=[k, k], strides=[s, s], pads=pads)
        if groups != 1:
            attrs["group"] = groups
        self.op("Conv", inputs, hint=layer, **attrs)
        self.channels = out
        if relu:
            self.relu()

    def relu(self):
        self.op("Relu", [self.cur])

    def maxpool(self, k=3, s=2, pads=(0, 0, 0, 0), ceil=False):
        attrs = dict(kernel_shape=[k, k], strides=[s, s])
        if any(pads):
            attrs["pads"] = list(pads)
        if ceil:
            attrs["ceil_mode"] = 1
        self.op("MaxPool", [self.cur], **attrs)

    def avgpool1(self):
        self.op("AveragePool", [self.cur], kernel_shape=[1, 1], strides=[1, 1])

    def lrn(self, size=5, alpha=1e-4, beta=0.75, bias=1.0):
        if size % 2 == 0 and self.decompose_even_lrn:
            self.lrn_decomposed(size, alpha, beta, bias)
            return
        self.ort_runnable &= size % 2 == 1
        self.op("LRN", [self.cur], size=size, alpha=alpha, beta=beta, bias=bias)

    def lrn_decomposed(self, size, alpha, beta, bias):
        """ONNX LRN from primitive ops, following the operator's definition literally:
        y = x / (bias + alpha/size * sum_{i in window(c)} x_i^2)^beta with
        window(c) = [c - floor((size-1)/2), c + ceil((size-1)/2)] clipped to the channels.
        The window sum is a 1x1 Conv with a 0/1 band matrix."""
        x, c = self.cur, self.channels
        lo, hi = (size - 1) // 2, -(-(size - 1) // 2)
        band = np.zeros((c, c, 1, 1), dtype=np.float32)
        for o in range(c):
            band[o, max(0, o - lo) : min(c, o + hi + 1)] = 1.0

        def const(hint, value):
            name = self._fresh(hint)
            self.consts[name] = np.asarray(value, dtype=np.float32)
            return name

        sq = self.op("Mul", [x, x], hint="lrn_sq")
        ssum = self.op("Conv", [sq, const("lrn_band", band)], hint="lrn_sum", kernel_shape=[1, 1])
        t = self.op("Mul", [ssum, const("lrn_alpha", np.float32(alpha) / np.float32(size))], hint="lrn_scale")
        t = self.op("Add", [t, const("lrn_bias", bias)], hint="lrn_bias")
        t = self.op("Pow", [t, const("lrn_beta", beta)], hint="lrn_pow")
        self.op("Div", [x, t], hint="lrn_out")

    def identity(self):
        self.op("Identity", [self.cur])

    def dropout(self, mask=False):
        extra = [self._fresh("mask")] if mask else []
        attrs = {"ratio": 0.5} if self.opset < 12 else {}
        self.op("Dropout", [self.cur], extra_outputs=extra, **attrs)

    def flatten(self, x, how="Flatten", shape=None):
        """Flatten to [N, F] with Flatten(axis=1) or Reshape(shape initializer)."""
        self.features = math.prod(self.feature_shape(x)[1:])
        if how == "Flatten":
            self.op("Flatten", [self.cur], axis=1)
        else:
            shape = [-1, self.features] if shape is None else shape
            name = self._fresh("reshape_shape")
            self.consts[name] = np.array(shape, dtype=np.int64)
            self.op("Reshape", [self.cur, name])
        self.channels = self.features

    def gemm(self, layer, out, trans_b=1, bias=True, relu=True):
        n = self.channels
        shape = (out, n) if trans_b else (n, out)
        w = self.param(layer, "weight", shape, fan_in=n)
        inputs = [self.cur, w] + ([self.param(layer, "bias", (out,))] if bias else [])
        self.op("Gemm", inputs, hint=layer, **({"transB": 1} if trans_b else {}))
        self.channels = out
        if relu:
            self.relu()

    def matmul_add_constant(self, layer, out):
        """MatMul with B [in, out] plus a bias produced by a Constant node."""
        n = self.channels
        w = self.param(layer, "weight", (n, out), fan_in=n)
        self.op("MatMul", [self.cur, w], hint=layer)
        matmul_out = self.cur
        b = self.params((out,))
        bname = self._fresh(f"{layer}_bias_const")
        self.nodes.append(helper.make_node("Constant", [], [bname], name=bname, value=numpy_helper.from_array(b, bname)))
        self.op("Add", [matmul_out, bname], hint=f"{layer}_add")
        self.channels = out

    def softmax(self, axis: int | None = 1):
        attrs = {} if axis is None else {"axis": axis}
        self.op("Softmax", [self.cur], **attrs)

    # -- models ------------------------------------------------------------------------

    def _graph(self, output: str, out_shape, transform=None) -> onnx.ModelProto:
        transform = transform or (lambda a: a)
        inits = [numpy_helper.from_array(transform(a), n) for n, a in self.weights.items()]
        inits += [numpy_helper.from_array(a, n) for n, a in self.consts.items()]
        graph = helper.make_graph(
            list(self.nodes),
            "alexnet",
            [helper.make_tensor_value_info(self.input_name, TensorProto.FLOAT, [self.batch, *self.chw])],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)],
            initializer=inits,
        )
        opsets = [helper.make_opsetid("", self.opset)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="alexnet-make-fixtures")
        model.ir_version = helper.find_min_ir_version_for(opsets)
        return model

    def feature_shape(self, x: np.ndarray) -> list[int]:
        """Shape of the current tensor, from ONNX shape inference, cross-checked by ORT."""
        trunk = self._graph(self.cur, None)
        inferred = shape_inference.infer_shapes(trunk, strict_mode=True)
        dims = None
        for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
            if vi.name == self.cur and vi.type.tensor_type.HasField("shape"):
                dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim]
        assert dims is not None, f"shape inference gave no shape for {self.cur}"
        if not self.ort_runnable:  # checked against the decomposed twin instead
            return [x.shape[0], *dims[1:]]
        actual = list(run(trunk, x).shape)
        assert actual[1:] == dims[1:], f"ORT {actual} vs shape inference {dims}"
        return actual

    def model(self, out_shape, transform=None) -> onnx.ModelProto:
        model = self._graph(self.cur, out_shape, transform)
        onnx.checker.check_model(model, full_check=True)
        return model


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {sess.get_inputs()[0].name: x})
    return out


# --------------------------------------------------------------------------------------
# Network definitions
# --------------------------------------------------------------------------------------

# torchvision's module indices for AlexNet's parameterised layers.
TORCHVISION_NAMES = {
    "conv1": "features.0", "conv2": "features.3", "conv3": "features.6", "conv4": "features.8",
    "conv5": "features.10", "fc6": "classifier.1", "fc7": "classifier.4", "fc8": "classifier.6",
}  # fmt: skip
ZOO_NAMES = {"_style": "zoo"}


def spec_net(net: Net, x, ch, fc, classes, dropout=False, reshape=False):
    """CaffeNet order (pool before LRN), groups 2 on conv2/4/5, softmax."""
    net.conv("conv1", ch[0], 11, s=4)
    net.maxpool()
    net.lrn()
    net.conv("conv2", ch[1], 5, pads=2, groups=2)
    net.maxpool()
    net.lrn()
    net.conv("conv3", ch[2], 3, pads=1)
    net.conv("conv4", ch[3], 3, pads=1, groups=2)
    net.conv("conv5", ch[4], 3, pads=1, groups=2)
    net.maxpool()
    net.flatten(x, "Reshape" if reshape else "Flatten")
    net.gemm("fc6", fc[0])
    if dropout:
        net.dropout()
    net.gemm("fc7", fc[1])
    if dropout:
        net.dropout()
    net.gemm("fc8", classes, relu=False)
    net.softmax(1)


def zoo_net(net: Net, x, ch, fc, classes, reshape_shape=None, dropout_mask=False):
    """bvlcalexnet order: LRN before pool, pool1/pool5 padded (0, 0, 1, 1)."""
    tail = (0, 0, 1, 1)
    net.conv("conv1", ch[0], 11, s=4)
    net.lrn()
    net.maxpool(pads=tail)
    net.conv("conv2", ch[1], 5, pads=2, groups=2)
    net.lrn()
    net.maxpool()
    net.conv("conv3", ch[2], 3, pads=1)
    net.conv("conv4", ch[3], 3, pads=1, groups=2)
    net.conv("conv5", ch[4], 3, pads=1, groups=2)
    net.maxpool(pads=tail)
    net.flatten(x, "Reshape", reshape_shape)
    net.gemm("fc6", fc[0])
    net.dropout(mask=dropout_mask)
    net.gemm("fc7", fc[1])
    net.dropout(mask=dropout_mask)
    net.gemm("fc8", classes, relu=False)
    net.softmax(1)


def torchvision_net(net: Net, x, ch, fc, classes):
    """torchvision.models.alexnet as exported: no LRN, no groups, 1x1 avgpool, logits."""
    net.conv("conv1", ch[0], 11, s=4, pads=2)
    net.maxpool()
    net.conv("conv2", ch[1], 5, pads=2)
    net.maxpool()
    net.conv("conv3", ch[2], 3, pads=1)
    net.conv("conv4", ch[3], 3, pads=1)
    net.conv("conv5", ch[4], 3, pads=1)
    net.maxpool()
    net.avgpool1()  # AdaptiveAvgPool2d((6, 6)) on a 6x6 map
    net.flatten(x, "Flatten")
    net.dropout()
    net.gemm("fc6", fc[0])
    net.dropout()
    net.gemm("fc7", fc[1])
    net.gemm("fc8", classes, relu=False)


def odd_net(net: Net, x):
    """Non-square input, asymmetric pads, ceil mode, even LRN, Gemm/MatMul variants."""
    net.conv("conv1", 6, 7, s=3, pads=(1, 2, 0, 1))
    net.maxpool(3, 2, ceil=True)
    net.lrn(size=3, alpha=2e-4, beta=0.6, bias=2.0)
    net.conv("conv2", 10, 5, pads=2, groups=2)
    net.lrn(size=4, alpha=1e-4, beta=0.75, bias=1.0)
    net.maxpool(2, 2, pads=(0, 0, 1, 1))
    net.conv("conv3", 14, 3, pads=1)
    net.conv("conv4", 12, 3, pads=1, groups=2)
    net.conv("conv5", 10, 3, pads=1, groups=2)
    net.maxpool(3, 2)
    net.flatten(x, "Flatten")
    net.gemm("fc6", 37, trans_b=1)
    net.gemm("fc7", 29, trans_b=0)
    net.matmul_add_constant("fc8", 7)
    net.softmax(None)  # opset 13 default axis -1 == 1 on [N, 7]


def no_bias_net(net: Net, x):
    """Spec order without Conv biases or Gemm C inputs, with Identity nodes in the chain."""
    net.conv("conv1", 8, 11, s=4, bias=False)
    net.identity()
    net.maxpool()
    net.lrn()
    net.conv("conv2", 8, 5, pads=2, bias=False)
    net.maxpool()
    net.identity()
    net.lrn()
    net.conv("conv3", 8, 3, pads=1, bias=False)
    net.conv("conv4", 8, 3, pads=1, bias=False)
    net.identity()
    net.conv("conv5", 8, 3, pads=1, bias=False)
    net.maxpool()
    net.flatten(x, "Flatten")
    net.identity()
    net.gemm("fc6", 16, bias=False)
    net.gemm("fc7", 16, bias=False)
    net.identity()
    net.gemm("fc8", 5, bias=False, relu=False)


# --------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def write_npy(path: Path, arr: np.ndarray) -> None:
    np.save(path, np.ascontiguousarray(arr, dtype=np.float32))


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Same layout as ``np.savez`` (stored zip of ``<key>.npy`` members) but with a fixed
    member timestamp so the file is byte-for-byte reproducible."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for key, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(info, buf.getvalue())


def bf16_bits(a: np.ndarray) -> np.ndarray:
    """bf16 bit patterns of ``a`` by truncation (upper 16 bits of the float32)."""
    return (np.ascontiguousarray(a, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)


def bf16_truncate(a: np.ndarray) -> np.ndarray:
    """The float32 values a truncated bf16 file represents."""
    return (bf16_bits(a).astype(np.uint32) << 16).view(np.float32).reshape(a.shape)


def write_safetensors_bf16(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """safetensors by hand: u64 LE header length, JSON header (space-padded to 8 bytes),
    then the concatenated little-endian tensor data in header order."""
    header: dict = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name in sorted(tensors):
        raw = bf16_bits(tensors[name]).astype("<u2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_safetensors_bf16(path: Path) -> dict[str, np.ndarray]:
    """Independent reader used to verify :func:`write_safetensors_bf16`."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "BF16"
        start, end = info["data_offsets"]
        bits = np.frombuffer(body[start:end], dtype="<u2").astype(np.uint32) << 16
        out[name] = bits.view(np.float32).reshape(info["shape"])
    return out


def check_output(name: str, y: np.ndarray, batch: int, classes: int, softmax: bool) -> None:
    assert y.dtype == np.float32 and y.shape == (batch, classes), (name, y.shape)
    assert np.isfinite(y).all(), name
    if softmax:
        assert np.allclose(y.sum(axis=1), 1.0, atol=1e-4), name
        assert (y >= 0).all(), name
    # A useful fixture must discriminate: rows differ and are not constant.
    assert (y.std(axis=1) > 0).all(), name
    if batch > 1:
        assert not np.allclose(y[0], y[1]), name
    summary = f"max p {y.max():.4f}" if softmax else f"|logit| max {np.abs(y).max():.3f}"
    print(f"  {name}: output {list(y.shape)}, {summary}, argmax {y.argmax(axis=1).tolist()}")


# --------------------------------------------------------------------------------------
# Fixture groups
# --------------------------------------------------------------------------------------


def make_generator_check() -> None:
    values = fill(7, 3, 1.0)
    # Rust's `fill` with scale 1: each value is k/2^23 - 1 for a 24-bit k, so exact.
    text = "".join("%.9g\n" % np.float32(v).item() for v in values)
    (FIXTURES / "generator_check.txt").write_text(text)
    print("generator_check fill(7, 3, 1.0):", text.split())


FULL_SEED = 1


def make_full() -> None:
    """Full-size synthetic nets: only ORT's output and the regeneration recipe are stored."""
    defs = [
        ("spec", spec_net, (3, 227, 227), True, [1, 2]),
        ("zoo", zoo_net, (3, 224, 224), True, [1]),
        ("torchvision", torchvision_net, (3, 224, 224), False, [1]),
    ]
    for name, build, chw, softmax, batches in defs:
        x_all = synthetic_input(FULL_SEED, max(batches), chw)
        net = Net(17, SyntheticParams(FULL_SEED), "data", "N", chw)
        if build is torchvision_net:
            build(net, x_all[:1], (64, 192, 384, 256, 256), (4096, 4096), 1000)
        else:
            build(net, x_all[:1], (96, 256, 384, 384, 256), (4096, 4096), 1000)
        assert net.features == 9216, (name, net.features)
        n_params = sum(a.size for a in net.weights.values())
        model = net.model(["N", 1000])
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        del model
        for batch in batches:
            x = synthetic_input(FULL_SEED, batch, chw)
            assert np.array_equal(x[:1], x_all[:1])  # the stream continues across images
            (y,) = sess.run(None, {"data": x})
            out_name = name if batch == 1 else f"{name}_b{batch}"
            d = FIXTURES / "full" / out_name
            d.mkdir(parents=True, exist_ok=True)
            write_npy(d / "expected.npy", y)
            write_json(d / "meta.json", {"seed": FULL_SEED, "batch": batch, "input": list(chw), "softmax": softmax})
            check_output(f"full/{out_name} ({n_params} params)", y, batch, 1000, softmax)


SMALL_MODELS = {
    # opset; input tensor name; batch dim in the model (int or symbolic name); batch of the
    # fixture; input CHW; softmax output?; rng seed (weights: seed, input: seed + 1000);
    # optional parameter naming; builder; meta.json description.
    "spec_small": dict(
        opset=13, input="data", batch_dim=2, batch=2, chw=(3, 227, 227), softmax=True, seed=101,
        build=lambda net, x: spec_net(net, x, (8, 16, 24, 24, 16), (32, 32), 10, dropout=True, reshape=True),
        description="CaffeNet/spec order (pool then LRN), channels 8-16-24-24-16, groups 2 on "
        "conv2/4/5, Reshape [-1, F] flatten, FC 32-32-10 with Dropout, Softmax(axis=1); opset 13, "
        "fixed batch 2.",
    ),
    "zoo_small": dict(
        opset=11, input="data_0", batch_dim="N", batch=3, chw=(3, 224, 224), softmax=True, seed=102,
        names=ZOO_NAMES,
        build=lambda net, x: zoo_net(net, x, (12, 16, 20, 20, 16), (24, 24), 10, reshape_shape=[0, -1], dropout_mask=True),
        description="ONNX-zoo bvlcalexnet order (LRN then pool, pool1/pool5 pads [0,0,1,1]), "
        "channels 12-16-20-20-16, groups 2 on conv2/4/5, Reshape [0, -1], FC 24-24-10, Dropout "
        "with mask outputs, Softmax(axis=1); opset 11, zoo-style initializer names, symbolic batch 'N'.",
    ),
    "torchvision_small": dict(
        opset=17, input="input", batch_dim="batch_size", batch=2, chw=(3, 224, 224), softmax=False, seed=103,
        names=TORCHVISION_NAMES,
        build=lambda net, x: torchvision_net(net, x, (16, 24, 32, 24, 16), (40, 40), 10),
        description="torchvision structure (conv1 k11 s4 p2, no LRN, no groups, AveragePool 1x1, "
        "Flatten, Dropout, Gemm transB=1), channels 16-24-32-24-16, FC 40-40-10, logits; opset 17, "
        "torchvision parameter names, symbolic batch 'batch_size'.",
    ),
    "odd_small": dict(
        opset=13, input="data", batch_dim=2, batch=2, chw=(3, 99, 111), softmax=True, seed=104,
        build=odd_net,
        description="Non-square 3x99x111 input; conv1 k7 s3 asymmetric pads [1,2,0,1]; MaxPool "
        "ceil_mode=1; LRN size 3 (alpha 2e-4, beta 0.6, bias 2); grouped conv2; LRN size 4 (even) "
        "before MaxPool k2 s2 pads [0,0,1,1]; fc6 Gemm transB=1, fc7 Gemm transB=0 (B [in,out]), "
        "fc8 MatMul + Add of a Constant-node bias; Softmax (default axis); opset 13, fixed batch 2. "
        "ORT rejects even LRN sizes, so expected.npy comes from ORT on an equivalent graph with "
        "the size-4 LRN spelled out in primitive ops per the ONNX definition "
        "(window [c-1, c+2]).",
    ),
    "no_bias_small": dict(
        opset=13, input="data", batch_dim=1, batch=1, chw=(3, 67, 67), softmax=False, seed=105,
        build=no_bias_net,
        description="Spec order with channels 8-8-8-8-8 (no groups), FC 16-16-5; Conv nodes have no "
        "bias input and Gemm nodes no C input; Identity nodes in the chain; logits; opset 13, batch 1.",
    ),
}


def lrn_numpy(x: np.ndarray, size: int, alpha: float, beta: float, bias: float) -> np.ndarray:
    """ONNX LRN by its definition, in float64 (validation only)."""
    x64, c = x.astype(np.float64), x.shape[1]
    lo, hi = (size - 1) // 2, -(-(size - 1) // 2)
    ssum = np.stack([np.sum(x64[:, max(0, o - lo) : min(c, o + hi + 1)] ** 2, axis=1) for o in range(c)], axis=1)
    return (x64 / (bias + alpha / size * ssum) ** beta).astype(np.float32)


def check_lrn_decomposition() -> None:
    """The primitive-op LRN must agree with ORT's LRN (odd sizes) and with the definition
    (all sizes), so the even-size fixture is as trustworthy as the native ones."""
    x = np.random.default_rng(7).standard_normal((2, 7, 5, 6), dtype=np.float32) * 8
    for size, alpha, beta, bias in [(3, 2e-4, 0.6, 2.0), (4, 1e-4, 0.75, 1.0), (5, 1e-2, 0.75, 1.0), (4, 1e-1, 0.6, 0.5)]:
        ys = []
        for decompose in (False, True):
            net = Net(13, None, "x", 2, x.shape[1:])
            net.decompose_even_lrn = decompose
            (net.lrn_decomposed if decompose else net.lrn)(size, alpha, beta, bias)
            ys.append(run(net.model(list(x.shape)), x) if net.ort_runnable else None)
        ref = lrn_numpy(x, size, alpha, beta, bias)
        assert np.allclose(ys[1], ref, rtol=1e-5, atol=1e-6), size
        if ys[0] is not None:
            assert np.allclose(ys[0], ys[1], rtol=1e-5, atol=1e-6), size
    print("LRN decomposition matches ORT (odd sizes) and the ONNX definition (all sizes)")


def make_small() -> dict[str, int]:
    flatten = {}
    for name, cfg in SMALL_MODELS.items():
        seed = cfg["seed"]
        x = np.random.default_rng(seed + 1000).standard_normal((cfg["batch"], *cfg["chw"]), dtype=np.float32)
        net = Net(cfg["opset"], GaussianParams(seed), cfg["input"], cfg["batch_dim"], cfg["chw"], cfg.get("names"))
        cfg["build"](net, x)
        model = net.model([cfg["batch_dim"], net.channels])
        if net.ort_runnable:
            y = run(model, x)
        else:  # same weights (same rng draws), even-size LRN spelled out for ORT
            twin = Net(cfg["opset"], GaussianParams(seed), cfg["input"], cfg["batch_dim"], cfg["chw"],
                       cfg.get("names"), decompose_even_lrn=True)  # fmt: skip
            cfg["build"](twin, x)
            assert twin.ort_runnable and twin.features == net.features
            assert all(np.array_equal(a, twin.weights[k]) for k, a in net.weights.items())
            y = run(twin.model([cfg["batch_dim"], twin.channels]), x)
        check_output(f"onnx/{name} (flatten {net.features})", y, cfg["batch"], net.channels, cfg["softmax"])
        d = FIXTURES / "onnx" / name
        d.mkdir(parents=True, exist_ok=True)
        onnx.save(model, d / "model.onnx")
        write_npy(d / "input.npy", x)
        write_npy(d / "expected.npy", y)
        meta = {"batch": cfg["batch"], "softmax": cfg["softmax"], "input": list(cfg["chw"]), "description": cfg["description"]}
        write_json(d / "meta.json", meta)
        flatten[name] = net.features
    return flatten


def make_state_dict() -> int:
    """Small torchvision AlexNet as safetensors (F32 and BF16) and npz, with ORT outputs."""
    chw, batch = (3, 224, 224), 2
    x = np.random.default_rng(1201).standard_normal((batch, *chw), dtype=np.float32)
    net = Net(17, GaussianParams(201), "input", "batch_size", chw, TORCHVISION_NAMES)
    torchvision_net(net, x, (16, 24, 32, 24, 16), (40, 40), 10)
    weights = net.weights
    expected = run(net.model(["batch_size", 10]), x)
    expected_bf16 = run(net.model(["batch_size", 10], transform=bf16_truncate), x)
    check_output("state_dict/tv_small", expected, batch, 10, False)
    check_output("state_dict/tv_small bf16", expected_bf16, batch, 10, False)
    assert not np.array_equal(expected, expected_bf16)

    d = FIXTURES / "state_dict"
    d.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(d / "tv_small.safetensors"), metadata={"format": "pt"})
    write_npz(d / "tv_small.npz", weights)
    write_safetensors_bf16(d / "tv_small_bf16.safetensors", weights, {"format": "pt"})
    write_npy(d / "input.npy", x)
    write_npy(d / "expected.npy", expected)
    write_npy(d / "expected_bf16.npy", expected_bf16)
    write_json(d / "meta.json", {
        "batch": batch, "softmax": False, "input": list(chw),
        "description": "torchvision-structured AlexNet, channels 16-24-32-24-16, FC 40-40-10, "
        "logits. expected.npy: F32 weights (tv_small.safetensors / tv_small.npz); "
        "expected_bf16.npy: the same weights truncated to bf16 (tv_small_bf16.safetensors).",
    })  # fmt: skip

    # Read everything back through independent paths.
    from safetensors.numpy import load_file

    st = load_file(str(d / "tv_small.safetensors"))
    npz = np.load(d / "tv_small.npz")
    bf = read_safetensors_bf16(d / "tv_small_bf16.safetensors")
    assert list(weights) == [f"{TORCHVISION_NAMES[l]}.{k}" for l in TORCHVISION_NAMES for k in ("weight", "bias")]
    for key, a in weights.items():
        assert st[key].dtype == np.float32 and np.array_equal(st[key], a), key
        assert npz[key].dtype == np.float32 and np.array_equal(npz[key], a), key
        assert np.array_equal(bf[key], bf16_truncate(a)), key
    assert sorted(npz.files) == sorted(weights) and sorted(bf) == sorted(weights)
    return net.features


def main() -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    make_generator_check()
    print("full-size synthetic networks:")
    make_full()
    check_lrn_decomposition()
    print("small ONNX models:")
    flatten = make_small()
    print("state dicts:")
    flatten["state_dict/tv_small"] = make_state_dict()
    print("flatten sizes:", flatten)
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    print(f"total fixture size: {total} bytes ({total / 2**20:.2f} MiB)")


if __name__ == "__main__":
    main()
