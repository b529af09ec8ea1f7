#!/usr/bin/env python3
"""tests/fixtures/state_dict/{input,expected}_256.npy and onnx/torch_export_256/:
torchvision's AlexNet module (widths of tv_small: 16-24-32-24-16, FC 40-40-10) with the
weights of tv_small.safetensors, run by PyTorch at a 256x256 input, where
AdaptiveAvgPool2d((6, 6)) averages a 7x7 map (a real pool, not an identity); and the
same module exported by today's default torch.onnx.export at 256 with ONNX Runtime's
output. Needs torch, torchvision, safetensors, onnx, onnxscript, onnxruntime.

    python3 tools/make_adaptive_fixture.py
"""
import json
import os
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from safetensors.torch import load_file

from make_torch_export_fixture import small_alexnet

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


def main():
    warnings.filterwarnings("ignore")
    m = small_alexnet((16, 24, 32, 24, 16), (40, 40, 10))
    m.load_state_dict(load_file(os.path.join(ROOT, "state_dict", "tv_small.safetensors")))
    m.eval()
    x = np.random.default_rng(11).standard_normal((2, 3, 256, 256)).astype(np.float32)
    with torch.no_grad():
        y = m(torch.from_numpy(x)).numpy()
    np.save(os.path.join(ROOT, "state_dict", "input_256.npy"), x)
    np.save(os.path.join(ROOT, "state_dict", "expected_256.npy"), y.astype(np.float32))
    out = os.path.join(ROOT, "onnx", "torch_export_256")
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(out, "export.onnx")
    torch.onnx.export(m, (torch.zeros(1, 3, 256, 256),), tmp)
    model = onnx.load(tmp)
    for f in (tmp, tmp + ".data"):
        if os.path.exists(f):
            os.remove(f)
    path = os.path.join(out, "model.onnx")
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="model.onnx.data")
    os.chmod(path + ".data", 0o644)
    xi = x[:1]
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    np.save(os.path.join(out, "input.npy"), xi)
    np.save(os.path.join(out, "expected.npy"), sess.run(None, {sess.get_inputs()[0].name: xi})[0].astype(np.float32))
    meta = {"batch": 1, "softmax": False, "input": [3, 256, 256],
            "description": f"tv_small's module at 256 (AdaptiveAvgPool2d over a 7x7 map) exported by torch "
                           f"{torch.__version__}'s default torch.onnx.export, external data"}
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print("ops:", [(n.op_type, [(a.name, onnx.helper.get_attribute_value(a)) for a in n.attribute])
                   for n in model.graph.node if "Pool" in n.op_type])


if __name__ == "__main__":
    main()
