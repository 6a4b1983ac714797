"""Tune the zoo into the tuning database, then compare with `benchmarks.run --tuned`.

    .venv/bin/python -m benchmarks.tune_zoo [--models resnet50,bert] [--budget 120] [--threads 2]
                                            [--precision fp32] [--retune] [--out benchmarks/results_tuning.md]
    .venv/bin/python -m benchmarks.run --tuned --systems ours,onnxruntime --threads 2

Each model's kernels (microkernel problems and loop-IR kernels, `compile tune`'s work) are
tuned within --budget seconds at the thread count the benchmark runs with, and the
per-kernel table (default and tuned time, speedup, schedule) is written to --out as
markdown, one section per model. Kernels the database already has are reported as cached.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

from . import models

DEFAULT_OUT = Path(__file__).resolve().parent / "results_tuning.md"


def tune_model(name: str, budget_s: float, threads: int, precision: str, retune: bool) -> list:
    from compiler.api import import_model
    from compiler.backends import parse_target

    spec = models.prepare(name, batch=1)
    target = parse_target("llvm")
    graph = import_model(spec.onnx_path, spec.input_shapes)
    return target.backend.tune(graph, target, threads, budget_s, retune=retune, precision=precision)


def main(argv=None) -> int:
    from compiler.autotune.model import format_table

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(models.MODELS))
    ap.add_argument("--budget", type=float, default=120.0, help="seconds of tuning per model")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--retune", action="store_true")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    sections = [f"# Tuning the zoo ({started})", "",
                f"`python -m benchmarks.tune_zoo {' '.join(argv if argv is not None else sys.argv[1:])}`", "",
                f"{args.threads} thread(s), {args.budget:.0f} s per model, precision {args.precision}. Times are wall ms "
                "per kernel call (low quartile of interleaved samples); n = kernel calls per model run.", ""]
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        print(f"== {name}", flush=True)
        reports = tune_model(name, args.budget, args.threads, args.precision, args.retune)
        table = format_table(reports) if reports else "no tunable kernels"
        print(table, flush=True)
        sections += [f"## {name}", "", "```", table, "```", ""]
        Path(args.out).write_text("\n".join(sections))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
