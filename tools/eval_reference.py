#!/usr/bin/env python3
"""Top-1 / top-5 accuracy of an ONNX AlexNet on a labelled folder, the Python way: PIL
decodes and resizes (bilinear, shorter side to --resize, then a centre crop as
torchvision's), NumPy normalises, ONNX Runtime runs the model. The reference that
`alexnet-classify --eval DIR` is checked against.

Usage:
    python3 tools/eval_reference.py MODEL.onnx DIR [--resize 256] [--crop 227]
        [--bgr] [--scale 1] [--mean 104,117,123] [--std 1,1,1] [--labels FILE]

DIR holds one sub-folder per class; a folder's class is its name's line in --labels if
there, else its place in name order (as `alexnet-classify --eval`). Images are every
JPEG/PNG file (by content) under each class folder, recursively, in name order.
Defaults are the Caffe convention (BGR, 0-255, mean 104/117/123); torchvision models
take --scale 0.00392156862745098 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225
without --bgr. Prints per-class lines and `top-1 X%  top-5 Y%  (N images)`.
"""
import argparse
import os
import sys

import numpy as np


def images_under(folder):
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                head = f.read(8)
            if head.startswith(b"\xff\xd8\xff") or head.startswith(b"\x89PNG\r\n\x1a\n"):
                yield path


def preprocess(path, a):
    from PIL import Image

    img = Image.open(path).convert("RGB")
    w, h = img.size
    short = max(a.resize, a.crop)
    rw, rh = (short, short * h // w) if w <= h else (short * w // h, short)
    img = img.resize((rw, rh), Image.BILINEAR)
    left, top = round((rw - a.crop) / 2.0), round((rh - a.crop) / 2.0)
    img = img.crop((left, top, left + a.crop, top + a.crop))
    x = np.asarray(img, dtype=np.float32)
    if a.bgr:
        x = x[:, :, ::-1]
    x = (x * a.scale - np.array(a.mean, np.float32)) / np.array(a.std, np.float32)
    return x.transpose(2, 0, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("dir")
    ap.add_argument("--resize", type=int, default=256)
    ap.add_argument("--crop", type=int, default=227)
    ap.add_argument("--bgr", action="store_true", default=None)
    ap.add_argument("--rgb", dest="bgr", action="store_false")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--mean", default="104,117,123")
    ap.add_argument("--std", default="1,1,1")
    ap.add_argument("--labels")
    ap.add_argument("--batch", type=int, default=16)
    a = ap.parse_args()
    if a.bgr is None:
        a.bgr = True
    a.mean = [float(v) for v in a.mean.split(",")]
    a.std = [float(v) for v in a.std.split(",")]
    import onnxruntime as ort

    sess = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    labels = open(a.labels).read().splitlines() if a.labels else []
    folders = sorted(d for d in os.listdir(a.dir) if os.path.isdir(os.path.join(a.dir, d)))
    tally = {}
    for order, folder in enumerate(folders):
        cls = labels.index(folder) if folder in labels else order
        paths = list(images_under(os.path.join(a.dir, folder)))
        for i in range(0, len(paths), a.batch):
            x = np.stack([preprocess(p, a) for p in paths[i:i + a.batch]])
            out = sess.run(None, {name: x})[0].reshape(len(x), -1)
            top5 = np.argsort(-out, axis=1, kind="stable")[:, :5]
            t = tally.setdefault(cls, [0, 0, 0])
            t[0] += len(x)
            t[1] += int((top5[:, 0] == cls).sum())
            t[2] += int((top5 == cls).any(axis=1).sum())
    n = sum(t[0] for t in tally.values())
    for cls in sorted(tally):
        t = tally[cls]
        print(f"{cls:>5} {t[0]:>7} {100 * t[1] / t[0]:>6.2f}% {100 * t[2] / t[0]:>6.2f}%")
    t1 = sum(t[1] for t in tally.values())
    t5 = sum(t[2] for t in tally.values())
    print(f"top-1 {100 * t1 / max(n, 1):.2f}%  top-5 {100 * t5 / max(n, 1):.2f}%  ({n} images)")


if __name__ == "__main__":
    sys.exit(main())
