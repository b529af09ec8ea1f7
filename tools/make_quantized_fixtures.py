#!/usr/bin/env python3
"""Generate the quantized ONNX fixtures under ``tests/fixtures/onnx/qdq_small/``.

Run from the repository root (after ``tools/make_fixtures.py``, whose ``spec_small``
model and input this starts from)::

    python3 tools/make_quantized_fixtures.py

Requirements: ``numpy``, ``onnx``, ``onnxruntime`` (its ``quantization`` package).

``spec_small/model.onnx`` is quantized as users do it, with
``onnxruntime.quantization.quantize_static`` in the QDQ format, per-channel symmetric
int8 weights, and activations as uint8 (``model_u8.onnx``) and as int8
(``model_s8.onnx``), and in the QOperator format (``model_qop.onnx``: QLinearConv,
and ONNX Runtime's own QGemm and QLinearSoftmax), calibrated (MinMax) on four batches: ``spec_small/input.npy`` and
three copies of it scaled by fixed factors. ``expected_u8.npy`` / ``expected_s8.npy``
are ONNX Runtime's outputs (default session options, one thread) for
``spec_small/input.npy`` (and ``expected_qop.npy``): probabilities, themselves quantized by the graph's last
QuantizeLinear to steps of 1/255. ``meta.json`` records the versions.

``tests/fixtures/onnx/fp16_small/`` holds ``spec_small`` converted to float16 as
``onnxconverter_common.float16.convert_float_to_float16`` writes it: with float32 inputs
and outputs and Cast nodes around the float16 graph (``model_cast.onnx``), and float16
throughout (``model_fp16.onnx``), with ONNX Runtime's outputs for ``spec_small``'s input
(``expected_cast.npy``, ``expected_fp16.npy``, as float32). Needs ``onnxconverter-common``.

``tests/fixtures/onnx/dynamic_small/`` holds ``spec_small`` at batch 1 quantized with
``onnxruntime.quantization.quantize_dynamic`` (int8 weights, per tensor in
``model.onnx``, per channel in ``model_per_channel.onnx``), and ONNX Runtime's outputs
for each image of ``spec_small``'s input run alone (``expected.npy``,
``expected_per_channel.npy``, ``[2, 10]``): dynamic quantization takes its activation
range per call, so one image per call is the runtime's per-image rule.
"""
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

ROOT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "onnx"
SRC = ROOT / "spec_small" / "model.onnx"
OUT = ROOT / "qdq_small"


def main():
    OUT.mkdir(exist_ok=True)
    x = np.load(ROOT / "spec_small" / "input.npy")
    name = onnx.load(str(SRC)).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{name: (x * f).astype(np.float32)} for f in (1.0, 0.6, 1.3, 0.9)])

        def get_next(self):
            return next(self.batches, None)

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    for tag, act, form in (("u8", QuantType.QUInt8, QuantFormat.QDQ), ("s8", QuantType.QInt8, QuantFormat.QDQ),
                           ("qop", QuantType.QUInt8, QuantFormat.QOperator)):
        model = OUT / f"model_{tag}.onnx"
        quantize_static(str(SRC), str(model), Reader(), quant_format=form, per_channel=True,
                        activation_type=act, weight_type=QuantType.QInt8)
        y = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"]).run(None, {name: x})[0]
        np.save(OUT / f"expected_{tag}.npy", y.astype(np.float32))
    meta = {
        "source": "onnx/spec_small/model.onnx",
        "input": "onnx/spec_small/input.npy",
        "softmax": True,
        "onnxruntime": ort.__version__,
        "description": "quantize_static QDQ and QOperator, per-channel symmetric int8 weights, uint8 / int8 activations, "
                       "MinMax calibration on 4 batches",
    }
    (OUT / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    from onnxconverter_common import float16
    half = ROOT / "fp16_small"
    half.mkdir(exist_ok=True)
    for tag, keep_io in (("cast", True), ("fp16", False)):
        model = half / f"model_{tag}.onnx"
        onnx.save(float16.convert_float_to_float16(onnx.load(str(SRC)), keep_io_types=keep_io), str(model))
        feed = x if keep_io else x.astype(np.float16)
        y = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"]).run(None, {name: feed})[0]
        np.save(half / f"expected_{tag}.npy", y.astype(np.float32))
    import onnxconverter_common
    meta = {
        "source": "onnx/spec_small/model.onnx",
        "input": "onnx/spec_small/input.npy",
        "softmax": True,
        "onnxruntime": ort.__version__,
        "onnxconverter_common": onnxconverter_common.__version__,
        "description": "float16 models: Cast nodes around an fp16 graph (keep_io_types), and fp16 throughout",
    }
    (half / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    from onnxruntime.quantization import quantize_dynamic
    dyn = ROOT / "dynamic_small"
    dyn.mkdir(exist_ok=True)
    one = onnx.load(str(SRC))
    for value in (one.graph.input[0], one.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_value = 1
    single = dyn / "batch1.onnx"
    onnx.save(one, str(single))
    for tag, per_channel in (("", False), ("_per_channel", True)):
        model = dyn / f"model{tag}.onnx"
        quantize_dynamic(str(single), str(model), weight_type=QuantType.QInt8, per_channel=per_channel)
        sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        y = np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(x.shape[0])])
        np.save(dyn / f"expected{tag}.npy", y.astype(np.float32))
    single.unlink()
    meta = {
        "source": "onnx/spec_small/model.onnx at batch 1",
        "input": "onnx/spec_small/input.npy, one image per call",
        "softmax": True,
        "onnxruntime": ort.__version__,
        "description": "quantize_dynamic, int8 weights per tensor (model.onnx) and per channel",
    }
    (dyn / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
