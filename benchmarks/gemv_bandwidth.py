"""How close the batch-1 dense layers (matrix-vector products) come to the machine's memory
bandwidth: each layer's weight bytes over its kernel time, against a copy measured in the
same run.

    python -m benchmarks.gemv_bandwidth [--models bvlc_alexnet zfnet512] [--threads 2] [--runs 20] [--out FILE]

At batch 1 a dense layer reads every weight once and does two FLOPs with it, so nothing but
memory bandwidth bounds it (AlexNet's fc6: 151 MB of float32 weights). The copy is numpy's
over a 256 MiB buffer split across the same number of threads, counted the STREAM way
(bytes read plus bytes written over the time). Layer times come from a profiling build
(timers compiled around every kernel call, `compiler.bench.profile_native`), median over
the runs; the weight bytes of a product with M = 1 are FLOPs / 2 x 4.
"""
from __future__ import annotations

import argparse
import threading
import time

import numpy as np

from compiler.bench import profile_native

from .models import prepare

COPY_BYTES = 256 << 20


def copy_bandwidth(threads: int, repeats: int = 9) -> float:
    """Median GB/s of a copy of COPY_BYTES split over `threads` threads (read + write bytes)."""
    src = np.ones(COPY_BYTES // 4, np.float32)
    dst = np.empty_like(src)
    parts = np.array_split(np.arange(src.size), threads)
    bounds = [(int(p[0]), int(p[-1]) + 1) for p in parts]

    def piece(lo, hi):
        np.copyto(dst[lo:hi], src[lo:hi])

    times = []
    for _ in range(repeats):
        workers = [threading.Thread(target=piece, args=b) for b in bounds]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        times.append(time.perf_counter() - start)
    return 2 * src.nbytes / float(np.median(times)) / 1e9


def dense_layers(name: str, threads: int, runs: int) -> list[dict]:
    """Each batch-1 product kernel of model `name`: its ops, weight MB, median ms and GB/s."""
    bench = prepare(name)
    feeds = dict(np.load(bench.inputs_path))
    events = profile_native(bench.onnx_path, bench.input_shapes, feeds, runs=runs, threads=threads)
    by_call: dict[tuple, list] = {}
    for e in events:
        if any(op.startswith(("Linear", "Gemm", "MatMul")) for op in e.ops) and e.flops > 0:
            by_call.setdefault((e.name, tuple(e.ops), e.flops), []).append(e.dur_ns)
    rows = []
    for (kernel, ops, flops), durations in by_call.items():
        seconds = float(np.median(durations)) / 1e9
        weight_bytes = flops / 2 * 4
        rows.append({"model": name, "kernel": kernel, "ops": " + ".join(ops), "weight_mb": weight_bytes / 1e6,
                     "ms": seconds * 1e3, "gb_per_s": weight_bytes / seconds / 1e9})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gemv_bandwidth", description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["bvlc_alexnet", "zfnet512"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", default="", help="also write the table (markdown) to this file")
    args = ap.parse_args(argv)
    before = copy_bandwidth(args.threads)
    rows = [r for name in args.models for r in dense_layers(name, args.threads, args.runs)]
    after = copy_bandwidth(args.threads)
    copy = max(before, after)  # the better of two, so a noisy moment does not flatter the layers
    lines = [f"Copy bandwidth ({args.threads} threads, 256 MiB, read + write): {before:.1f} GB/s before the "
             f"layers, {after:.1f} after; the table divides by {copy:.1f}.", "",
             "| model | kernel | ops | weights MB | median ms | weights GB/s | % of copy |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['kernel']} | {r['ops'][:60]} | {r['weight_mb']:.1f} | {r['ms']:.3f} | "
                     f"{r['gb_per_s']:.1f} | {100 * r['gb_per_s'] / copy:.0f}% |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(f"Command: `python -m benchmarks.gemv_bandwidth {' '.join(argv or [])}`\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
