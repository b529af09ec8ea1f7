#!/usr/bin/env python3
"""torch.save fixtures: tests/fixtures/state_dict/tv_small.safetensors saved again by
torch.save, in the zip format (tv_small_zip.pth) and the legacy format
(tv_small_legacy.pth), as an nn.Module's state_dict() would be (an OrderedDict with
_metadata), with two tensors stored as strided views (a transpose, and an offset into a
larger storage). Every value is the safetensors one, so the converted files must be
identical. Needs torch and safetensors.

    python3 tools/make_pth_fixtures.py
"""
import collections
import os

import torch
from safetensors.torch import load_file

DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "state_dict")


def main():
    sd = load_file(os.path.join(DIR, "tv_small.safetensors"))
    out = collections.OrderedDict()
    for k, v in sd.items():
        if k == "classifier.1.weight":
            v = v.t().contiguous().t()  # a transposed view: strides (1, rows)
        elif k == "features.3.bias":
            big = torch.zeros(v.numel() + 7, dtype=v.dtype)
            big[5:5 + v.numel()] = v
            v = big[5:5 + v.numel()]  # an offset into a larger storage
        out[k] = v
    out._metadata = collections.OrderedDict({"": {"version": 1}})
    torch.save(out, os.path.join(DIR, "tv_small_zip.pth"))
    torch.save(out, os.path.join(DIR, "tv_small_legacy.pth"), _use_new_zipfile_serialization=False)
    print("wrote tv_small_zip.pth and tv_small_legacy.pth")


if __name__ == "__main__":
    main()
