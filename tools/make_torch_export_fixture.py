#!/usr/bin/env python3
"""tests/fixtures/onnx/torch_export_224/: torchvision's AlexNet (its own module, with
the layer widths cut down so the fixture stays small: 8-12-16-16-8, FC 32-32-10)
exported by today's default `torch.onnx.export` (the dynamo exporter, opset 20,
weights as external data in `model.onnx.data`), with a seeded input batch and ONNX
Runtime's output. Needs torch, torchvision, onnx, onnxscript, onnxruntime.

    python3 tools/make_torch_export_fixture.py
"""
import json
import os
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torchvision

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "onnx", "torch_export_224")


def small_alexnet(convs, fcs):
    """torchvision's AlexNet module with its widths cut down: conv channels `convs` (five),
    linear widths `fcs` (the last is the class count)."""
    c1, c2, c3, c4, c5 = convs
    m = torchvision.models.AlexNet(num_classes=fcs[-1])
    m.features = nn.Sequential(
        nn.Conv2d(3, c1, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(c4, c5, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
    m.classifier = nn.Sequential(
        nn.Dropout(), nn.Linear(c5 * 36, fcs[0]), nn.ReLU(inplace=True),
        nn.Dropout(), nn.Linear(fcs[0], fcs[1]), nn.ReLU(inplace=True), nn.Linear(fcs[1], fcs[2]))
    return m


def main():
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    m = small_alexnet((8, 12, 16, 16, 8), (32, 32, 10))
    m.eval()
    os.makedirs(OUT, exist_ok=True)
    tmp = os.path.join(OUT, "export.onnx")
    torch.onnx.export(m, (torch.zeros(1, 3, 224, 224),), tmp)
    model = onnx.load(tmp)
    os.remove(tmp)
    if os.path.exists(tmp + ".data"):
        os.remove(tmp + ".data")
    path = os.path.join(OUT, "model.onnx")
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.onnx.data")
    os.chmod(path + ".data", 0o644)
    x = np.random.default_rng(5).standard_normal((1, 3, 224, 224)).astype(np.float32)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.save(os.path.join(OUT, "input.npy"), x)
    np.save(os.path.join(OUT, "expected.npy"), y.astype(np.float32))
    meta = {"batch": 1, "softmax": False, "input": [3, 224, 224],
            "description": f"torchvision AlexNet module (widths cut down) exported by torch {torch.__version__}'s "
                           f"default torch.onnx.export, opset {model.opset_import[0].version}, external data"}
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print("ops:", [n.op_type for n in model.graph.node])


if __name__ == "__main__":
    main()
