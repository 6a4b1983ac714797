"""Run the model zoo on our compiler and its peers, side by side, and write the results.

    .venv/bin/python -m benchmarks.run [--models mlp,resnet50] [--systems ours,onnxruntime,tvm]
                                       [--batch 1,8] [--threads N] [--runs 30] [--out benchmarks/results]

Per model, every system gets its own worker subprocess (compiler.bench), thread pools
sized to --threads; set-up (import, compile, first run) happens before any timing. Then a
warm-up, then interleaved rounds: each round gives every system a few runs in turn (after
a pause, and untimed runs for at least 5 ms: `Plan.turn_warmup`), the order rotating, only one system
computing at any moment. Outputs are compared with
onnxruntime's so a fast wrong answer shows. The machine's FMA peak is measured first, in
its own subprocess with the same thread count. Results are rewritten after every model
(results.json, results.md, ratios.png), so an interrupted run keeps what it measured.
With several batch sizes each model runs at all of them before the next model starts, so
an interrupted run has complete batch pairs; the MLP runs once, at its fixed batch 64.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from compiler.bench import SYSTEMS, TORCH_SYSTEMS, ModelSpec, Plan, Progress, SystemProcess, measure_interleaved, \
    thread_env

from . import models, report

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
# Untuned TVM on CPU takes seconds per CNN: ten runs are enough for a median and a p90
# that mean something, and keep a zoo run within the hour.
TVM_RUNS = 10


def measure_peak(threads: int) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.peak", "--threads", str(threads)],
                          capture_output=True, text=True, env=thread_env(threads),
                          cwd=Path(__file__).resolve().parent.parent)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout)


def systems_for(model: models.BenchModel, systems: list[str]) -> list[str]:
    """Torch eager and torch.compile run only the models defined in torch."""
    return [s for s in systems if s not in TORCH_SYSTEMS or model.torch_model]


def compare_outputs(procs: list[SystemProcess], work: Path) -> dict[str, float]:
    """Max abs difference of each system's first output from onnxruntime's."""
    saved = {}
    for p in procs:
        if p.error is None:
            try:
                saved[p.system] = p.save_outputs(str(work / f"out_{p.system.replace('.', '_')}.npz"))
            except Exception as e:  # a crash here is reported, the timings still stand
                p.note = (p.note + "; " if p.note else "") + f"outputs unavailable: {e}"
    ref_path = saved.get(report.BASELINE)
    if ref_path is None:
        return {}
    with np.load(ref_path) as f:
        ref = f["arr_0"].astype(np.float64)
    diffs = {}
    for system, path in saved.items():
        with np.load(path) as f:
            out = f["arr_0"].astype(np.float64)
        diffs[system] = float(np.max(np.abs(out - ref))) if out.shape == ref.shape else float("nan")
    return diffs


def bench_model(model: models.BenchModel, systems: list[str], threads: int, plan: Plan, log_dir: Path) -> dict:
    spec = ModelSpec(model.onnx_path, model.inputs_path, model.input_shapes, model.torch_model, models.SEED, "llvm")
    work = Path(tempfile.mkdtemp(prefix=f"bench-{model.name}-b{model.batch}-", dir=log_dir))
    # Set-up in parallel (compiles dominate; nothing is timed yet), measurement one at a time.
    procs = [SystemProcess(s, spec, threads, str(work)) for s in systems_for(model, systems)]
    try:
        for p in procs:
            p.wait_ready(timeout=3600)
            print(f"  {p.system}: " + (f"failed: {p.error}" if p.error else f"ready in {p.setup_s:.1f} s ({p.label})"),
                  flush=True)
        progress = Progress(1, f"{model.name} batch {model.batch}")
        results = measure_interleaved(procs, plan, progress)
        progress.close()
        diffs = compare_outputs(procs, work)
    finally:
        for p in procs:
            p.close()
    entries = []
    for p in procs:
        entry = {"system": p.system, "label": p.label, "note": p.note, "error": p.error, "setup_s": p.setup_s}
        entry.update(results.get(p.system, {}))
        if p.system in diffs:
            entry["max_abs_diff"] = diffs[p.system]
        entries.append(entry)
    return {"name": model.name, "batch": model.batch, "flops": model.flops, "flops_exact": model.flops_exact,
            "input_shapes": model.input_shapes, "systems": entries}


def parse_batches(text: str) -> list[int]:
    """"1,8" -> [1, 8]: distinct positive batch sizes in the order given."""
    try:
        batches = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch wants comma-separated integers, got {text!r}") from None
    if not batches or any(b < 1 for b in batches):
        raise argparse.ArgumentTypeError(f"--batch wants positive batch sizes, got {text!r}")
    return list(dict.fromkeys(batches))


def expand_precisions(systems: list[str], precisions: str) -> list[str]:
    """`ours` once per precision asked for: fp32 is `ours`, bf16 `ours-bf16`, fp16 `ours-fp16`,
    int8 `ours-int8`."""
    ours = ["ours" if p.strip() == "fp32" else f"ours-{p.strip()}" for p in precisions.split(",") if p.strip()]
    out: list[str] = []
    for s in systems:
        out += ours if s == "ours" else [s]
    return list(dict.fromkeys(out))


def add_tuned(systems: list[str]) -> list[str]:
    """`ours-tuned` (the tuning database's schedules) right after `ours` (the heuristic ones)."""
    out: list[str] = []
    for s in systems:
        out += [s, "ours-tuned"] if s == "ours" else [s]
    return list(dict.fromkeys(out))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(models.MODELS),
                    help="comma-separated (default: the whole zoo; 'unseen': the unseen-architecture set)")
    ap.add_argument("--systems", default="ours,onnxruntime,tvm,torch,torch.compile")
    ap.add_argument("--batch", default="1", type=parse_batches,
                    help="comma-separated batch sizes for the CNNs and BERT (default 1; the MLP runs at 64)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--budget", type=float, default=120.0, help="seconds of timed runs per system and model")
    ap.add_argument("--tvm-runs", type=int, default=TVM_RUNS)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--precision", default="fp32",
                    help="comma-separated precisions `ours` runs at, each as its own system "
                         "(fp32: ours, bf16: ours-bf16, fp16: ours-fp16, int8: ours-int8, calibrated on the benchmark's "
                         "inputs and seeded variations, like onnxruntime-int8); default fp32")
    ap.add_argument("--tuned", action="store_true",
                    help="also run ours-tuned: fp32 with the tuning database's schedules (`compile tune` fills it) "
                         "beside ours, the untuned build")
    args = ap.parse_args(argv)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    names = [n for m in names for n in (models.UNSEEN if m == "unseen" else (m,))]  # the unseen set by its name
    systems = expand_precisions([s.strip() for s in args.systems.split(",") if s.strip()], args.precision)
    if args.tuned:
        systems = add_tuned(systems)
    known = models.MODELS + models.UNSEEN
    bad = [n for n in names if n not in known] + [s for s in systems if s not in SYSTEMS]
    if bad:
        ap.error(f"unknown model(s)/system(s) {bad}; models: {', '.join(known)} (or 'unseen' for the unseen set); "
                 f"systems: {', '.join(SYSTEMS)}")

    plan = Plan(runs=args.runs, warmup=args.warmup, rounds=min(10, args.runs), budget_s=args.budget,
                caps={"tvm": args.tvm_runs})
    out = Path(args.out)
    log_dir = Path(tempfile.mkdtemp(prefix="cm-benchmarks-"))
    print(f"machine: {report.machine_line(report.machine_info())}; threads {args.threads}; logs in {log_dir}", flush=True)
    peak = measure_peak(args.threads)
    print(f"fp32 FMA peak: {peak.get('fma_peak_gflops', float('nan')):.1f} GFLOP/s, "
          f"sgemm {peak.get('sgemm_gflops', float('nan')):.1f} GFLOP/s", flush=True)
    result = {"command": "python -m benchmarks.run " + shlex.join(argv if argv is not None else sys.argv[1:]),
              "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": report.machine_info(), "threads": args.threads, "batches": args.batch, "peak": peak,
              "plan": {"runs": plan.runs, "warmup": plan.warmup, "rounds": plan.rounds, "turn_warmup": plan.turn_warmup,
                       "turn_warmup_s": plan.turn_warmup_s,
                       "budget_s": plan.budget_s,
                       "min_runs": plan.min_runs, "caps": plan.caps},
              "models": []}
    paths = {}
    for name in names:
        for batch in models.batches_for(name, args.batch):
            print(f"{name} batch {batch}: preparing", flush=True)
            model = models.prepare(name, batch=batch)
            result["models"].append(bench_model(model, systems, args.threads, plan, log_dir))
            paths = report.write_all(result, out)
    print(report.markdown(result))
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
