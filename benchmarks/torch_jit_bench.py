"""Latency of `compiler.jit` against torch eager and torch.compile (inductor), same thread count.

    .venv/bin/python benchmarks/torch_jit_bench.py [--threads N] [--runs 30] [--target llvm]

Models: the repo's BERT encoder (compiler/zoo/torch_models.py, batch 1, seq 128) and the
ResNet-style CNN of tests/test_torch_models.py at 224x224. Every system is set up (compiled,
warmed up) first; then rounds interleave the systems, a few runs each, so drift in machine
load hits all of them alike. Reports the median and p90 per system and the ratio to eager,
and checks each system's output against eager so a fast wrong answer shows.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from pathlib import Path

import torch

from compiler.torch_jit import jit
from compiler.zoo.torch_models import bert_inputs, make_bert

ROOT = Path(__file__).resolve().parent.parent


def _test_models():
    """The CNN lives with the tests that check it; load that module by path."""
    spec = importlib.util.spec_from_file_location("test_torch_models", ROOT / "tests" / "test_torch_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def models() -> dict:
    tm = _test_models()
    cnn = tm._randomize_batchnorm(tm.SmallResNet()).eval()
    return {
        "bert": (make_bert(), tuple(bert_inputs(batch=1).values())),
        "cnn": (cnn, (torch.randn(1, 3, 224, 224),)),
    }


def systems(model, args, threads: int, target: str) -> dict:
    """name -> zero-argument callable, each already compiled and warmed up once."""
    found = {"eager": lambda: model(*args)}
    t0 = time.perf_counter()
    fast = jit(model, args, target=target, num_threads=threads)
    found[f"jit ({target})"] = lambda: fast(*args)
    print(f"  jit compile: {time.perf_counter() - t0:.1f} s")
    try:
        t0 = time.perf_counter()
        inductor = torch.compile(model, backend="inductor")
        inductor(*args)
        found["torch.compile (inductor)"] = lambda: inductor(*args)
        print(f"  inductor compile: {time.perf_counter() - t0:.1f} s")
    except Exception as e:  # noqa: BLE001 - a machine without a working C++ toolchain
        print(f"  inductor unavailable: {type(e).__name__}: {str(e)[:200]}")
    return found


def measure(found: dict, runs: int, per_round: int = 3) -> dict[str, list[float]]:
    times = {name: [] for name in found}
    for fn in found.values():  # warm-up
        fn()
        fn()
    rounds = max(1, runs // per_round)
    names = list(found)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order
            for _ in range(per_round):
                t0 = time.perf_counter()
                found[name]()
                times[name].append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--target", default="llvm")
    parser.add_argument("--models", default="bert,cnn")
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    print(f"threads: {opts.threads}, torch {torch.__version__}")
    for name, (model, args) in models().items():
        if name not in opts.models.split(","):
            continue
        print(f"{name}:")
        with torch.no_grad():
            found = systems(model, args, opts.threads, opts.target)
            expected = model(*args)
            for sys_name, fn in found.items():
                err = (fn() - expected).abs().max().item()
                if err > 1e-3:
                    print(f"  WARNING {sys_name}: max abs error {err:.3g} against eager")
            times = measure(found, opts.runs)
        eager = statistics.median(times["eager"])
        for sys_name, ts in times.items():
            med = statistics.median(ts)
            p90 = sorted(ts)[int(0.9 * (len(ts) - 1))]
            print(f"  {sys_name:28s} median {med * 1e3:8.2f} ms   p90 {p90 * 1e3:8.2f} ms   "
                  f"speed-up vs eager {eager / med:5.2f}x")


if __name__ == "__main__":
    main()
