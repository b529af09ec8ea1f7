#!/usr/bin/env python3
"""SGEMM side by side: this project's kernels against numpy's OpenBLAS, in one run.

Usage (from the repository root):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 tools/gemm_vs_openblas.py [--rounds 3]

Unsetting OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (set on some machines of this workplace
to work around old OpenBLAS builds) lets a current OpenBLAS pick its best kernel; do it
for this command only. The script builds `examples/gemm_shapes`, then, every round, runs
each shape at 1 and 2 threads as a pair: OpenBLAS (threadpoolctl pinned to the thread
count) and our kernels back to back, in alternating order from round to round, so machine
drift hits both alike; each side times a cell for at least --reps calls and --min-time
seconds (a median over a few milliseconds of a 0.5 ms product would mostly measure the
host's noise). It prints the median over rounds of each figure and of each pair's
ratio, plus the measured FMA peak of each ISA, as a Markdown table.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits


def shapes():
    """The shapes the example measures (the spec network's convolutions per group, then a
    1024 square), as it lists them: the table lives in one place, `alexnet::synthetic`."""
    out = subprocess.run(["target/release/examples/gemm_shapes", "--list"], check=True, capture_output=True,
                         text=True).stdout
    return [(r["shape"], r["m"], r["k"], r["n"]) for r in map(json.loads, out.splitlines()) if r]


def openblas(m, k, n, threads, reps, min_time):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    c = np.empty((m, n), dtype=np.float32)
    time.sleep(0.2)  # our previous run's threads are gone; start from a quiet machine
    with threadpool_limits(limits=threads, user_api="blas"):
        for _ in range(2):
            np.matmul(a, b, out=c)
        times = []
        began = time.perf_counter()
        while len(times) < reps or time.perf_counter() - began < min_time:
            t = time.perf_counter()
            np.matmul(a, b, out=c)
            times.append(time.perf_counter() - t)
    return 2.0 * m * n * k / statistics.median(times) / 1e9


def ours(isas, reps, min_time, peak, shape=None, threads=None):
    # OpenBLAS's worker threads spin-wait for a while after each call; let them go idle
    # so they do not steal the second core from our run.
    time.sleep(1.0)
    cmd = ["target/release/examples/gemm_shapes", "--isa", ",".join(isas), "--reps", str(reps),
           "--min-ms", str(1e3 * min_time)]
    if shape:
        cmd += ["--shape", shape]
    if threads:
        cmd += ["--threads", str(threads)]
    if peak:
        cmd.append("--peak")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--min-time", type=float, default=0.25,
                    help="seconds each side measures a cell for at least (after --reps calls)")
    ap.add_argument("--isa", default=None,
                    help="ISAs to run, comma-separated (default: every SIMD ISA this CPU runs)")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "gemm_shapes"], check=True)
    info = threadpool_info()
    blas = [i for i in info if i.get("user_api") == "blas"]
    print(f"# numpy {np.__version__}; BLAS: " + ", ".join(f"{i['internal_api']} {i['version']} ({i.get('architecture')})" for i in blas), file=sys.stderr)
    if args.isa:
        isas = args.isa.split(",")
    else:
        # The example's own default is every ISA the CPU runs; its peak lines name them.
        out = subprocess.run(["target/release/examples/gemm_shapes", "--threads", "1", "--reps", "1",
                              "--shape", "none", "--peak"], check=True, capture_output=True, text=True).stdout
        found = [json.loads(line)["isa"] for line in out.splitlines() if line.strip()]
        isas = [i for i in dict.fromkeys(found) if i != "portable"]
    SHAPES = shapes()
    # Each (shape, threads) cell is measured as a pair, OpenBLAS and ours back to back
    # (in alternating order from round to round), and its ratio taken within the pair:
    # the machine's drift over a round then cancels out of the ratios.
    theirs, mine, ratios, peaks = {}, {}, {}, {}
    for r in range(args.rounds):
        for row in ours(isas, args.reps, 0.0, peak=True, shape="none"):
            peaks.setdefault((row["isa"], row["threads"]), []).append(row["peak_gflops"])
        for name, m, k, n in SHAPES:
            for t in (1, 2):
                def run_ours():
                    return {row["isa"]: row["gflops"] for row in ours(isas, args.reps, args.min_time, False, name, t)}
                if r % 2 == 0:
                    ob, got = openblas(m, k, n, t, args.reps, args.min_time), run_ours()
                else:
                    got, ob = run_ours(), openblas(m, k, n, t, args.reps, args.min_time)
                theirs.setdefault((name, t), []).append(ob)
                for i, g in got.items():
                    mine.setdefault((i, name, t), []).append(g)
                    ratios.setdefault((i, name, t), []).append(g / ob)
        print(f"# round {r + 1}/{args.rounds} done", file=sys.stderr)
    med = statistics.median
    print("| shape | threads | OpenBLAS GFLOP/s | " + " | ".join(f"{i} GFLOP/s | {i}/OpenBLAS | {i} % peak" for i in isas) + " |")
    print("|---|---:|---:|" + "---:|---:|---:|" * len(isas))
    for name, m, k, n in SHAPES:
        for t in (1, 2):
            ob = med(theirs[(name, t)])
            cells = []
            for i in isas:
                g = med(mine[(i, name, t)])
                p = med(peaks[(i, t)])
                cells.append(f"{g:.1f} | {med(ratios[(i, name, t)]):.2f} | {100 * g / p:.0f}%")
            print(f"| {name} ({m}x{k}x{n}) | {t} | {ob:.1f} | " + " | ".join(cells) + " |")
    print()
    print("GFLOP/s: medians over rounds; ratios: medians of the per-round ratios of each pair.")
    print()
    print("| ISA | threads | FMA peak GFLOP/s (median of rounds) |")
    print("|---|---:|---:|")
    for (i, t), v in sorted(peaks.items()):
        print(f"| {i} | {t} | {med(v):.1f} |")
    print()
    print(f"CPU: {cpu_model()}")
    print()
    print("| ISA | register tile (MR x NR) | MC | KC | NC | microarchitecture (tuning table entry) |")
    print("|---|---|---:|---:|---:|---|")
    for b in blocks():
        if b["isa"] in isas:
            how = "forced" if b["uarch_forced"] else "detected"
            print(f"| {b['isa']} | {b['mr']} x {b['nr']} | {b['mc']} | {b['kc']} | {b['nc']} | "
                  f"{b['uarch']} ({how}, L2 {b['l2_kib']} KiB) |")


def cpu_model():
    """The CPU's name, family and model from /proc/cpuinfo (Linux), else the platform's."""
    import platform
    try:
        info = {}
        for line in open("/proc/cpuinfo"):
            k, _, v = line.partition(":")
            info.setdefault(k.strip(), v.strip())
        return f"{info.get('model name', platform.processor())} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"
    except OSError:
        return platform.processor() or platform.machine()


def blocks():
    """The register tile and cache blocks of each ISA's kernels on this CPU, as the runtime chose them."""
    out = subprocess.run(["target/release/examples/gemm_shapes", "--blocks"], check=True, capture_output=True,
                         text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


if __name__ == "__main__":
    main()
