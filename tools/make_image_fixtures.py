#!/usr/bin/env python3
"""Images and PIL's preprocessing of them, for tests/image_input.rs.

Writes tests/fixtures/images/: a few small images (upscaled and downscaled PNGs, a 4:2:0
JPEG, a grey PNG) and, for each, the [3, 35, 35] float32 tensor that PIL + NumPy make of
it with torchvision's pipeline (shorter side to 40 with PIL bilinear, centre crop 35,
BGR, mean 104/117/123): `NAME.npy` beside `NAME.png|jpg`; and `down_grey.npy`, the
[1, 35, 35] tensor of down.png for a grey network (PIL convert("L") first, mean 104). Needs numpy and Pillow.
Deterministic: the images come from a seeded generator.

    python3 tools/make_image_fixtures.py
"""
import os
import sys

import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "images")
RESIZE, CROP, MEAN = 40, 35, np.array([104.0, 117.0, 123.0], np.float32)


def scene(w, h, seed):
    """Smooth colour fields plus a little noise: edges and gradients, like a photo."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 5, 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), np.float32)
    noise = rng.normal(0, 12, (h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def resize_crop(img):
    """torchvision's Resize(RESIZE) + CenterCrop(CROP) with PIL bilinear, as float32."""
    w, h = img.size
    rw, rh = (RESIZE, RESIZE * h // w) if w <= h else (RESIZE * w // h, RESIZE)
    img = img.resize((rw, rh), Image.BILINEAR)
    left, top = round((rw - CROP) / 2.0), round((rh - CROP) / 2.0)
    return np.asarray(img.crop((left, top, left + CROP, top + CROP)), np.float32)


def preprocess(img):
    x = resize_crop(img.convert("RGB"))[:, :, ::-1]
    return (x - MEAN).transpose(2, 0, 1).astype(np.float32)


def preprocess_grey(img):
    """The same for a 1-channel network: PIL's convert("L") first, mean[0]."""
    return (resize_crop(img.convert("L")) - MEAN[0])[None].astype(np.float32)


def main():
    os.makedirs(ROOT, exist_ok=True)
    cases = [
        ("up", scene(30, 26, 1), "PNG"),
        ("down", scene(131, 97, 2), "PNG"),
        ("photo", scene(90, 71, 3), "JPEG"),
        ("grey", scene(60, 45, 4).convert("L"), "PNG"),
    ]
    for name, img, fmt in cases:
        path = os.path.join(ROOT, f"{name}.{'jpg' if fmt == 'JPEG' else 'png'}")
        if fmt == "JPEG":
            img.save(path, quality=85, subsampling=2)
        else:
            img.save(path)
        # Preprocess what was written (the JPEG as decoded, not as generated).
        np.save(os.path.join(ROOT, f"{name}.npy"), preprocess(Image.open(path)))
        if name == "down":
            np.save(os.path.join(ROOT, "down_grey.npy"), preprocess_grey(Image.open(path)))
    print(f"wrote {len(cases)} images and tensors to {os.path.normpath(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
