"""The `compile` command.

    compile MODEL.onnx --target T -o OUT.cmod [--input-shape name=1,3,224,224] [-O 0|1|2|3]
    compile inspect MODEL.onnx [--target T] [--input-shape ...] [-O N] [--dump-ir DIR] [--json]
    compile run OUT.cmod [--inputs x.npz] [-o y.npz]
    compile tune MODEL.onnx [--target T] [--threads N] [--budget S] [--ray local|auto|ADDR]   # kernel schedules, kept per device
    compile tune [MODEL.onnx] [--import FILE] [--export FILE]         # move tuning records between machines
    compile MODEL.onnx --batch-sizes 1,4,16 -o REPO/NAME/1            # a served version's batch buckets
    compile serve REPO [--port 8000] [--metrics-port 8002]            # Open Inference Protocol (KServe v2)

`-O` means the same everywhere (`passes.pipeline`): 0 as imported, 1 simplified, 2 all
graph passes with the target's layout, 3 fused kernels (the default of compiled targets).

Errors a user can act on print as one `error: ...` line and exit 1; no tracebacks.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import numpy as np

from .arg_types import at_least, positive_float
from .ir.errors import CompilerError
from .ir.int8 import CALIBRATION_METHODS as METHODS
from .ir.registry import PRECISIONS
from .shape_args import shape_override

SUBCOMMANDS = ("inspect", "run", "bench", "tune", "serve")


def _shapes(args) -> dict:
    return dict(shape_override(s) for s in (args.input_shape or []))


def _add_shape_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-shape", action="append", metavar="NAME=DIMS",
                   help="override an input's shape, e.g. input=1,3,224,224 (repeatable)")


LEVEL_HELP = "0 = as imported, 1 = simplified, 2 = all graph passes, 3 = fused kernels (default: the target's, llvm 3)"


def _add_target_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", default="llvm", help="llvm [-mcpu=NAME] (default) | reference | cuda [-arch=sm_XX]")


def _add_precision_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="what convolutions and matrix products compute in (bf16: llvm on AVX512-BF16 CPUs; "
                        "fp16: float16 weights, float32 activations and arithmetic, llvm on F16C CPUs; "
                        "int8: llvm on AVX512-VNNI CPUs, needs --calibrate)")
    p.add_argument("--exclude", action="append", default=[], metavar="NAME|OPTYPE",
                   help="keep this node (by name) or op type in fp32; repeatable")
    p.add_argument("--calibrate", metavar="SAMPLES.npz|SCALES.json",
                   help="sample inputs (one array per input, leading sample axis): int8 takes its activation "
                        "ranges from them, and the artifact's report holds each lowered layer's error against "
                        "fp32 on them; or, for int8, a scales file written by --save-scales")
    p.add_argument("--calibration-method", default="minmax", choices=METHODS,
                   help="int8: how a range is chosen from the samples (default minmax)")


def cmd_build(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="compile", description="Compile an ONNX model into an artifact.",
                                epilog="subcommands: compile inspect MODEL | compile run ARTIFACT")
    p.add_argument("model", help="ONNX model file")
    _add_target_arg(p)
    p.add_argument("-o", "--output", help="artifact path (default: MODEL with .cmod)")
    p.add_argument("-O", dest="level", type=int, choices=(0, 1, 2, 3), default=None, help=LEVEL_HELP)
    p.add_argument("--tune", action="store_true",
                   help="llvm: time microkernel schedules for problems this device has not tuned yet (cached)")
    p.add_argument("--tune-budget", type=positive_float, default=10.0, metavar="SECONDS",
                   help="per problem (default 10)")
    p.add_argument("--untuned", action="store_true",
                   help="llvm: the heuristic schedules only, whatever the tuning database holds")
    p.add_argument("--threads", type=at_least(1), default=None, help="llvm: threads the model runs (and is tuned) with")
    _add_precision_args(p)
    p.add_argument("--save-scales", metavar="FILE.json",
                   help="int8: write the activation ranges the build chose, for a later --calibrate FILE.json")
    p.add_argument("--batch-sizes", type=_batch_sizes, metavar="N,N,...",
                   help="one artifact per batch size (the leading dim of every input), written as "
                        "OUTDIR/model_b<N>.cmod: a served version's batch buckets (`compile serve`)")
    _add_shape_arg(p)
    args = p.parse_args(argv)
    from .api import compile as compile_model
    from .calibration import save_scales

    options = dict(target=args.target, opt_level=args.level, tune=args.tune, tune_budget_s=args.tune_budget,
                   tuned=not args.untuned, num_threads=args.threads, precision=args.precision, exclude=args.exclude,
                   calibration=args.calibrate, calibration_method=args.calibration_method)
    if args.batch_sizes:
        return _build_batch_sizes(args, options)
    cm = compile_model(args.model, input_shapes=_shapes(args), **options)
    out = args.output or str(Path(args.model).with_suffix(".cmod"))
    cm.save(out)
    print(f"compiled {args.model} for {cm.target} -> {out}")
    if args.save_scales:
        save_scales(cm, args.save_scales)
        print(f"activation scales -> {args.save_scales}")
    return 0


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of batch sizes") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: batch sizes are positive integers")
    return sizes


def _build_batch_sizes(args, options: dict) -> int:
    from .batch_variants import compile_batch_sizes

    if args.save_scales:
        raise CompilerError("--save-scales with --batch-sizes: save the scales from a single build")
    out = args.output or str(Path(args.model).with_suffix(""))
    written = compile_batch_sizes(args.model, args.batch_sizes, out, input_shapes=_shapes(args),
                                  progress=lambda b: print(f"compiling {args.model} at batch {b} ...", flush=True),
                                  **options)
    for path in written:
        print(f"  -> {path}")
    return 0


def cmd_serve(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="compile serve", description="Serve a model repository (REPO/<model>/<version>/"
                                "*.cmod, optional REPO/<model>/config.json) over the Open Inference Protocol "
                                "(KServe v2 REST) with dynamic batching, a response cache and Prometheus metrics.")
    p.add_argument("repository", help="model repository directory")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=at_least(0), default=8000, help="HTTP port (default 8000)")
    p.add_argument("--metrics-port", type=at_least(0), default=8002,
                   help="Prometheus /metrics port (default 8002; /metrics is on the HTTP port too)")
    p.add_argument("--no-metrics-port", action="store_true", help="no separate metrics listener")
    p.add_argument("--poll-interval", type=positive_float, default=2.0, metavar="SECONDS",
                   help="how often the repository is rescanned for new versions (default 2)")
    p.add_argument("--cache-size", type=at_least(0), default=256, metavar="MIB",
                   help="response cache capacity in MiB, for models whose config enables it (default 256)")
    p.add_argument("--max-request-size", type=at_least(1), default=256, metavar="MIB",
                   help="largest request body accepted (default 256 MiB); larger ones get 413")
    p.add_argument("--threads", type=at_least(1), default=None,
                   help="threads each model's native code runs with (default: all cores; config.json's num_threads wins)")
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))
    args = p.parse_args(argv)
    from .serving import Server

    server = Server(args.repository, host=args.host, port=args.port,
                    metrics_port=None if args.no_metrics_port else args.metrics_port, poll_interval_s=args.poll_interval,
                    cache_bytes=args.cache_size << 20, max_request_bytes=args.max_request_size << 20,
                    num_threads=args.threads)
    for row in server.repository.index():
        state = row["state"] + (f" ({row['reason']})" if "reason" in row else "")
        print(f"  {row['name']} version {row['version'] or '-'}: {state}")
    # uvicorn drains and then re-raises the signal it caught; after a graceful stop that is a clean exit
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.run(log_level=args.log_level, announce=lambda url: print(f"serving {args.repository} at {url}", flush=True))
    return 0


def cmd_inspect(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="compile inspect", description="Show a model's signature, op counts and IR; "
                                "with -O, --json or --dump-ir also what the build compiles for --target.")
    p.add_argument("model")
    _add_target_arg(p)
    p.add_argument("--no-ir", action="store_true", help="omit the IR listing")
    p.add_argument("-O", dest="level", type=int, choices=(0, 1, 2, 3), default=None,
                   help="plan the build at this level and show it; " + LEVEL_HELP)
    p.add_argument("--dump-ir", metavar="DIR", help="write the graph after each pass as numbered text files in DIR")
    p.add_argument("--json", action="store_true",
                   help="print node counts, kernels and the memory plan as JSON (nothing else)")
    _add_precision_args(p)
    p.add_argument("--inputs", help="with --precision: .npz of inputs the per-layer errors are measured on "
                   "(default: random inputs, seed 0)")
    _add_shape_arg(p)
    args = p.parse_args(argv)
    from .api import import_model
    from .backends import parse_target
    from .ir.printer import type_text

    if args.inputs and args.precision == "fp32":  # said, not silently ignored
        raise CompilerError(f"--inputs {args.inputs}: the inputs per-layer errors are measured on; they go with "
                            f"--precision bf16|fp16|int8")

    graph = import_model(args.model, _shapes(args), parse_target(args.target).backend.inlined_ops())
    if args.precision != "fp32":
        return _print_precision(graph, args)
    optimized = summary = None
    if args.level is not None or args.dump_ir or args.json:
        from .inspection import inspect_build

        plan, summary = inspect_build(graph, args.target, args.level, dump_dir=args.dump_ir, verify=bool(args.dump_ir))
        optimized = plan.graph
    if args.json:
        import json

        print(json.dumps(dict(model=args.model, **summary), indent=2))
        return 0
    print(f"model: {args.model}")
    print("inputs:")
    for v in graph.inputs:
        print(f"  {v.name}: {type_text(v.type)}")
    print("outputs:")
    for v in graph.outputs:
        print(f"  {v.name}: {type_text(v.type)}")
    counts = graph.op_counts()
    print(f"nodes: {len(graph.nodes)}  constants: {len(graph.constants)} "
          f"({sum(c.const.nbytes for c in graph.constants) / 1e6:.2f} MB)")
    print("op counts:")
    for op, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {op:<28} {n}")
    if summary is not None:
        _print_optimization(summary, args)
    if not args.no_ir:
        print("IR:" if optimized is None else f"IR after -O{summary['level']}:")
        print(str(graph if optimized is None else optimized), end="")
    return 0


def _print_optimization(summary: dict, args) -> None:
    print(f"build for {summary['target']} (-O{summary['level']}): nodes {summary['nodes_before']} -> "
          f"{summary['nodes_after']}, {summary['num_calls']} kernel calls of {summary['num_kernels']} kernels")
    if summary["arena_bytes"] is not None:
        print(f"memory: arena {summary['arena_bytes']} bytes, naive sum {summary['naive_bytes']} bytes")
    for k in summary["kernels"]:
        print(f"  {k['kernel']:<40} {' + '.join(k['ops'])}")
    if args.dump_ir:
        print(f"IR after each pass written to {args.dump_ir}/")


def _print_precision(graph, args) -> int:
    """`compile inspect --precision P`: the per-node report with errors against fp32."""
    from .api import _check_exclusions
    from .calibration import is_scales_file, load_samples
    from .passes.int8_ranges import Calibration, read_scales
    from .precision_report import format_report, precision_report
    from .runtime.signature import TensorSpec

    _check_exclusions(graph, args.exclude)
    calibration = None
    if is_scales_file(args.calibrate):  # int8 ranges from the file; errors measured on --inputs or random
        if args.precision != "int8":
            raise CompilerError(f"--calibrate {args.calibrate}: a scales file is for --precision int8")
        calibration = Calibration(ranges=read_scales(args.calibrate), where=f"calibration {args.calibrate}")
    if args.calibrate and calibration is None:
        samples = load_samples(args.calibrate, graph)
        if args.precision == "int8":
            calibration = Calibration(tuple(samples), args.calibration_method)
    elif args.inputs:
        samples = [_load_npz(args.inputs)]
    else:
        rng = np.random.default_rng(0)
        samples = [{v.name: _random_input(TensorSpec.of(v), rng) for v in graph.inputs}]
    if args.precision == "int8" and calibration is None:
        raise CompilerError("inspect --precision int8 needs --calibrate SAMPLES.npz or SCALES.json (the "
                            "activation ranges)")
    report = precision_report(graph, args.target, args.precision, args.exclude, samples, calibration)
    if args.json:
        import json

        print(json.dumps(dict(model=args.model, **report), indent=2))
    else:
        print(format_report(report))
    return 0


def _load_npz(path: str) -> dict[str, np.ndarray]:
    import zipfile

    try:
        data = np.load(path, allow_pickle=False)
        if not hasattr(data, "files"):
            raise CompilerError(f"{path}: a single .npy array; inputs are an .npz archive with one array per input")
        with data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CompilerError(f"{path}: cannot read inputs as .npz: {e or type(e).__name__}") from None


def _random_input(spec, rng) -> np.ndarray:
    from .ir import dtypes

    shape = [d if isinstance(d, int) else 1 for d in spec.shape]
    dt = dtypes.parse(spec.dtype)
    if dt.is_float:
        return rng.standard_normal(shape).astype(dt.numpy)
    if dt.kind == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    if dt.is_int:
        return rng.integers(0, 10, shape).astype(dt.numpy)
    raise CompilerError(f"cannot make a random input of type {spec.dtype} for '{spec.name}'; pass --inputs")


def cmd_run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="compile run", description="Run a compiled artifact.")
    p.add_argument("artifact")
    p.add_argument("--inputs", help=".npz with one array per input name (random inputs when omitted)")
    p.add_argument("-o", "--output", help="write outputs to this .npz")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from .model import load

    model = load(args.artifact)
    if args.inputs:
        feeds = _load_npz(args.inputs)
    else:
        rng = np.random.default_rng(args.seed)
        feeds = {s.name: _random_input(s, rng) for s in model.inputs}
        desc = ", ".join(f"{k}{list(v.shape)}" for k, v in feeds.items())
        print(f"no --inputs given: using random inputs (seed {args.seed}): {desc}", file=sys.stderr)
    outputs = model.run(feeds)
    for name, arr in outputs.items():
        arr = np.asarray(arr)
        summary = f"mean {arr.mean():.6g}, min {arr.min():.6g}, max {arr.max():.6g}" if arr.size and arr.dtype.kind in "fiub" else ""
        print(f"{name}: {arr.dtype}{list(arr.shape)} {summary}")
    if args.output:
        np.savez(args.output, **{k: np.asarray(v) for k, v in outputs.items()})
        print(f"outputs written to {args.output}")
    return 0


def cmd_tune(argv: list[str]) -> int:
    """`compile tune`: tune every kernel problem of a model for this device and thread count,
    keep every timing in the tuning database ($COMPILER_CACHE_DIR/autotune/tuning.sqlite3),
    and print default vs tuned ms per problem. Later compiles of any model with those
    problems use the tuned schedules. --import adds another machine's export (same device
    fingerprint) first; --export writes this device's records after any tuning."""
    import os

    p = argparse.ArgumentParser(prog="compile tune", description="Tune a model's kernel schedules for this device.")
    p.add_argument("model", nargs="?", help="ONNX model file (optional with --import / --export)")
    _add_shape_arg(p)
    p.add_argument("--import", dest="import_file", metavar="FILE",
                   help="add the tuning records of FILE (a --export of a machine with this device fingerprint)")
    p.add_argument("--export", dest="export_file", metavar="FILE",
                   help="write this device's tuning records (every timing) to FILE as JSON lines")
    p.add_argument("--threads", type=at_least(1), default=os.cpu_count() or 1,
                   help="threads the kernels are timed with (default: all cores, what a model runs with)")
    p.add_argument("--budget", type=positive_float, default=300.0, help="total seconds of tuning (default 300)")
    _add_target_arg(p)
    p.add_argument("--retune", action="store_true", help="tune problems the cache already has too")
    p.add_argument("--ray", metavar="local|auto|HOST:PORT",
                   help="build candidates as Ray tasks and time them on the device's Ray actor (the 'ray' extra): "
                        "'local' starts a cluster of this machine, 'auto' joins the one `ray start` set up")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="tune the kernels a build at this precision runs (bf16, fp16 and int8 products are problems "
                        "of their own; int8 needs no calibration to tune)")
    args = p.parse_args(argv)
    from .api import import_model
    from .autotune.model import format_table
    from .backends import parse_target

    if args.threads < 1:
        raise CompilerError(f"--threads {args.threads}: expected 1 or more")
    if args.model is None and not (args.import_file or args.export_file):
        p.error("give a model to tune, or --import / --export")
    target = parse_target(args.target)
    database = target.backend.tuning_database(target, args.threads)
    if args.import_file:
        print(f"{args.import_file}: imported {database.import_records(args.import_file)} records")
    if args.model is not None:
        try:
            reports = target.backend.tune(import_model(args.model, _shapes(args), target.backend.inlined_ops()),
                                          target, args.threads,
                                          args.budget, retune=args.retune, precision=args.precision, ray=args.ray)
        except OSError as exc:  # an unreadable model file
            raise CompilerError(f"{args.model}: {exc.strerror or exc}") from None
        print(f"{args.model}: {target}, {args.threads} thread(s)")
        print(format_table(reports) if reports else "no tunable kernel problems in this model")
    if args.export_file:
        try:
            count = database.export(args.export_file)
        except OSError as exc:
            raise CompilerError(f"--export {args.export_file}: {exc.strerror or exc}") from None
        print(f"{args.export_file}: exported {count} records ({args.threads} thread(s) on this device)")
    return 0


def cmd_bench(argv: list[str]) -> int:
    """`compile bench`: imported on use, so the other commands do not load the harness."""
    from .bench import cmd_bench as run_bench

    return run_bench(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"inspect": cmd_inspect, "run": cmd_run, "bench": cmd_bench, "tune": cmd_tune, "serve": cmd_serve}
    try:
        if argv and argv[0] in commands:
            return commands[argv[0]](argv[1:])
        return cmd_build(argv)
    except CompilerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `compile inspect m.onnx | head` is fine
        return 0


if __name__ == "__main__":
    sys.exit(main())
