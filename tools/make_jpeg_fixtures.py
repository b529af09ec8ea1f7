#!/usr/bin/env python3
"""JPEG files and the pixels PIL decodes them to, for the JPEG decoder's tests.

Writes tests/fixtures/jpeg/NAME.jpg and NAME.rgb (PIL's Image.open(f).convert("RGB"),
raw 8-bit RGB, row-major; PIL decodes with libjpeg-turbo's defaults: accurate integer
IDCT, fancy upsampling). The files cover what the decoder must get bit for bit: chroma
subsampling 4:4:4 / 4:2:2 / 4:2:0 and, written by libjpeg-turbo's cjpeg, 4:4:0, 4:1:1,
3x2 and mixed factors; baseline, optimised and progressive scans; restart intervals;
grey, Adobe RGB; widths of 1 and 2 (where libjpeg stops filtering); quality 1 (large
coefficients, the IDCT's range limit). `arith.jpg` is arithmetic-coded (left to the
general decoder; no .rgb). Needs numpy, Pillow and cjpeg (libjpeg-turbo-progs).
Deterministic: the images come from a seeded generator.

    python3 tools/make_jpeg_fixtures.py
"""
import io
import os
import subprocess
import tempfile

import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "jpeg")


def scene(w, h, seed):
    """Gradients, stripes and noise: every frequency band gets coefficients."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    chans = [np.sin(x / (2 + 9 * rng.random()) + c) * 90 + np.cos(y / (2 + 9 * rng.random())) * 70 + 128 for c in range(3)]
    a = np.stack(chans, -1) + rng.normal(0, 25, (h, w, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


PIL_CASES = [
    ("s420", 33, 17, "RGB", dict(quality=75, subsampling=2)),
    ("s422", 31, 20, "RGB", dict(quality=90, subsampling=1)),
    ("s444_q100", 17, 9, "RGB", dict(quality=100, subsampling=0)),
    ("s420_progressive", 40, 29, "RGB", dict(quality=50, subsampling=2, progressive=True, optimize=True)),
    ("s420_restart", 35, 23, "RGB", dict(quality=75, subsampling=2, restart_marker_blocks=3)),
    ("s422_progressive_restart", 29, 26, "RGB", dict(quality=80, subsampling=1, progressive=True, restart_marker_rows=1)),
    ("grey", 19, 13, "L", dict(quality=75)),
    ("grey_progressive", 21, 11, "L", dict(quality=60, progressive=True)),
    ("adobe_rgb", 15, 14, "RGB", dict(quality=85, subsampling=0, keep_rgb=True)),
    ("width1", 1, 37, "RGB", dict(quality=75, subsampling=2)),
    ("tiny2x2", 2, 2, "RGB", dict(quality=75, subsampling=2)),
    ("q1", 30, 30, "RGB", dict(quality=1, subsampling=2)),
]

CJPEG_CASES = [
    ("s440", 27, 19, ["-quality", "80", "-sample", "1x2"]),
    ("s411_progressive", 37, 9, ["-quality", "70", "-sample", "4x1", "-progressive"]),
    ("mixed_restart", 23, 21, ["-quality", "60", "-sample", "2x1,1x2,1x1", "-restart", "2"]),
    ("s3x2_q5", 26, 18, ["-quality", "5", "-sample", "3x2"]),
]


def save(name, data):
    with open(os.path.join(ROOT, name + ".jpg"), "wb") as f:
        f.write(data)
    rgb = Image.open(io.BytesIO(data)).convert("RGB")
    with open(os.path.join(ROOT, name + ".rgb"), "wb") as f:
        f.write(rgb.tobytes())


def main():
    os.makedirs(ROOT, exist_ok=True)
    for i, (name, w, h, mode, kw) in enumerate(PIL_CASES):
        img = scene(w, h, i).convert(mode)
        buf = io.BytesIO()
        img.save(buf, "JPEG", **kw)
        save(name, buf.getvalue())
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, w, h, args) in enumerate(CJPEG_CASES):
            ppm = os.path.join(tmp, "in.ppm")
            scene(w, h, 100 + i).save(ppm)
            out = subprocess.run(["cjpeg", *args, ppm], check=True, capture_output=True).stdout
            save(name, out)
        ppm = os.path.join(tmp, "in.ppm")
        scene(16, 16, 200).save(ppm)
        out = subprocess.run(["cjpeg", "-arithmetic", ppm], check=True, capture_output=True).stdout
        with open(os.path.join(ROOT, "arith.jpg"), "wb") as f:
            f.write(out)


if __name__ == "__main__":
    main()
