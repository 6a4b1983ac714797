"""python -m compiler.autotune MODEL.onnx [--input-shape NAME=D1,D2,...] [--threads N]
                                  [--budget SECONDS] [--target "llvm -mcpu=..."] [--retune]

Tunes every GEMM/conv microkernel problem of the model for this device and thread count,
caches the results ($COMPILER_CACHE_DIR/autotune/), and prints default vs tuned ms per
problem. Later compiles of any model with those problems use the tuned schedules.
"""
from __future__ import annotations

import argparse
import os
import sys

from ..ir.errors import CompilerError


def main(argv=None, prog: str = "python -m compiler.autotune") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[2].strip())
    p.add_argument("model", help="ONNX model file")
    p.add_argument("--input-shape", action="append", metavar="NAME=DIMS",
                   help="override an input's shape, e.g. input=1,3,224,224 (repeatable)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads the kernels are timed with (default: all cores, what a model runs with)")
    p.add_argument("--budget", type=float, default=300.0, help="total seconds of tuning (default 300)")
    p.add_argument("--target", default="llvm", help='llvm target, e.g. "llvm -mcpu=x86-64-v3"')
    p.add_argument("--retune", action="store_true", help="tune problems the cache already has too")
    args = p.parse_args(argv)
    try:
        from ..api import import_model
        from ..cli import shape_override
        from ..codegen.llvm_target import cpu_target
        from ..native_build import optimize_for_llvm
        from ..targets import parse_target
        from .model import format_table, tune_graph

        if args.threads < 1:
            raise CompilerError(f"--threads {args.threads}: expected 1 or more")
        target = parse_target(args.target)
        if target.kind != "llvm":
            raise CompilerError(f"--target {args.target!r}: the microkernels exist for the llvm target only")
        shapes = dict(shape_override(s) for s in args.input_shape or [])
        graph = optimize_for_llvm(import_model(args.model, shapes))
        cpu = cpu_target(target.options)
        reports = tune_graph(graph, cpu, args.threads, args.budget, retune=args.retune)
    except (CompilerError, OSError) as exc:  # a bad model, shape or target; an unreadable model file
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.model}: {cpu.cpu}, {args.threads} thread(s)")
    print(format_table(reports) if reports else "no microkernel problems in this model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
