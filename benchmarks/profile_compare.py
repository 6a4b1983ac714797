"""Where the time goes: our per-kernel profile beside onnxruntime's own profiler, by op kind.

    .venv/bin/python -m benchmarks.profile_compare MODEL [--batch 1] [--threads 2] [--runs 10]
                                                   [--top 15] [--out benchmarks/results]

MODEL is a zoo name (`squeezenet`, `resnet50`, ...: the seeded files of benchmarks.models),
`slowest` (the model with the largest ours/onnxruntime ratio at `--batch` in OUT/results.json,
the last benchmarks.run), or an ONNX file (random seeded inputs, `--batch` as the leading dim). Both profiles run
on the same inputs, one after the other in this process, each with `--threads` threads:

- ours: `compiler.bench.profile_native`, the model built with a clock read compiled around
  every kernel call (the same build as `compile bench --profile`); per kernel the median
  over the runs.
- onnxruntime: `SessionOptions.enable_profiling` (CPU provider, ORT_ENABLE_ALL, the session
  the benchmark times); its JSON gives per node `<node>_kernel_time` events with the op
  type; per node the median over the runs after the warm-up.

Kernels and nodes are grouped by op kind (conv, gemm/matmul, pool/reduce, elementwise,
concat/transpose/copy, other) from what their listing says: our kernel names carry the op
(`k12_convnhwc`, `k3_maxpoolnhwc`), onnxruntime's events their op type (`FusedConv`,
`Reorder...`). The table and our top kernels are printed and written as markdown to
OUT/profile_<model>[_b<batch>].md.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from compiler import bench
from compiler.ir.errors import CompilerError

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
OTHER = "other"
# Op kinds and the name fragments that place a kernel or node in them, tried in this order:
# the first match wins, so `convtranspose` is a conv, `maxpool` a pool before the elementwise
# `max`, and `matmul` a gemm before the elementwise `mul`.
OP_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("conv", ("conv",)),
    ("gemm/matmul", ("gemm", "matmul", "fullyconnected", "dense", "linear")),
    # Reductions sit with pools: the graph passes turn GlobalAveragePool into ReduceMean.
    ("pool/reduce", ("pool", "reduce")),
    ("concat/transpose/copy", ("concat", "transpose", "copy", "memcpy", "reorder", "reshape", "flatten",
                               "squeeze", "split", "slice", "gather", "pad", "expand", "tile", "identity",
                               "shuffle", "layout", "nchwc", "pack")),
    ("elementwise", ("add", "sub", "mul", "div", "relu", "sigmoid", "tanh", "clip", "exp", "log", "sqrt",
                     "pow", "erf", "gelu", "neg", "abs", "sum", "where", "cast", "batchnorm", "scale",
                     "bias", "elementwise", "activation", "min", "max", "dropout")),
)
# Ops that would match a kind above by accident (`softmax` holds `max`) but are none of them:
# normalisations, arg-reductions and attention blocks stay "other".
NOT_A_KIND = ("softmax", "layernorm", "lrn", "argmax", "argmin", "topk", "attention", "nonmax")
KINDS = tuple(kind for kind, _ in OP_KINDS) + (OTHER,)
_KERNEL_PREFIX = re.compile(r"^k\d+_(\d+_)?")  # our kernel plans: k{group}_[{piece}_]{op...}


def op_kind(text: str) -> str:
    """The op kind a kernel name or op type names (case and punctuation ignored), or "other"."""
    key = re.sub(r"[^a-z0-9]", "", text.lower())
    if any(f in key for f in NOT_A_KIND):
        return OTHER
    for kind, fragments in OP_KINDS:
        if any(f in key for f in fragments):
            return kind
    return OTHER


def kernel_kind(name: str, ops: list[str]) -> str:
    """Our kernel's op kind: from its name without the `k{n}_` prefix, else from the op
    types of the nodes it computes (`Conv(conv1)` -> Conv), else "other"."""
    kind = op_kind(_KERNEL_PREFIX.sub("", name))
    if kind != OTHER:
        return kind
    for op in ops:
        kind = op_kind(op.split("(", 1)[0])
        if kind != OTHER:
            return kind
    return OTHER


# --- onnxruntime's profile ----------------------------------------------------------------


def parse_ort_profile(events: list[dict], warmup_runs: int = 1) -> dict:
    """onnxruntime's profiler JSON (a list of trace events) -> per node (in first-seen order)
    its op type, the median of its `_kernel_time` durations after the first `warmup_runs`
    calls, and the call count; plus the median `model_run` time after the warm-up."""
    per_node: dict[str, dict] = {}
    runs: list[float] = []
    for e in events:
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            runs.append(float(e["dur"]) * 1e3)
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue  # fences and other bookkeeping events
        name = e["name"][: -len("_kernel_time")]
        args = e.get("args") or {}
        node = per_node.setdefault(name, {"name": name, "op": args.get("op_name", ""), "durations_ns": []})
        node["durations_ns"].append(float(e["dur"]) * 1e3)  # the profiler writes microseconds
    nodes = []
    for node in per_node.values():
        timed = node["durations_ns"][warmup_runs:] or node["durations_ns"]
        nodes.append({"name": node["name"], "op": node["op"], "median_ns": float(np.median(timed)),
                      "calls": len(node["durations_ns"])})
    timed_runs = runs[warmup_runs:] or runs
    return {"nodes": nodes, "run_median_ns": float(np.median(timed_runs)) if timed_runs else None}


def profile_onnxruntime(model_path: str, feeds: dict, threads: int, runs: int, warmup: int = 1) -> dict:
    """Run `model_path` `warmup + runs` times with onnxruntime's profiler on and parse it."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(tempfile.mkdtemp(prefix="cm-ort-profile-")) / "ort")
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    for _ in range(warmup + runs):
        sess.run(None, feeds)
    path = Path(sess.end_profiling())
    result = parse_ort_profile(json.loads(path.read_text()), warmup_runs=warmup)
    result.update(trace=str(path), label=f"onnxruntime {ort.__version__}")
    return result


# --- ours ---------------------------------------------------------------------------------


def profile_ours(model_path: str, shapes: dict, feeds: dict, threads: int, runs: int) -> dict:
    """Our per-kernel profile: one row per kernel call site (median over `runs`)."""
    events = bench.profile_native(model_path, shapes, feeds, runs=runs, threads=threads)
    kernels = bench.top_kernels(events, n=len(events) or 1)
    for k in kernels:
        k["kind"] = kernel_kind(k["name"], k["ops"])
    return {"kernels": kernels, "events": events, "run_median_ns": run_span_median(events)}


def run_span_median(events: list[bench.KernelEvent]) -> float | None:
    """Median over runs of first kernel start to last kernel end: the whole run as the
    entry point saw it, gaps between kernels (thread hand-offs) included."""
    spans: dict[int, list[int]] = {}
    for e in events:
        first, last = spans.get(e.run, (e.start_ns, e.start_ns + e.dur_ns))
        spans[e.run] = (min(first, e.start_ns), max(last, e.start_ns + e.dur_ns))
    return float(np.median([last - first for first, last in spans.values()])) if spans else None


# --- the comparison -----------------------------------------------------------------------


def group_by_kind(items: list[tuple[str, float]]) -> dict[str, float]:
    """(kind, ns) pairs -> total ns per kind, every kind present (zero when none)."""
    totals = dict.fromkeys(KINDS, 0.0)
    for kind, ns in items:
        totals[kind if kind in totals else OTHER] += ns
    return totals


def kind_table(ours_kernels: list[dict], ort_nodes: list[dict]) -> list[dict]:
    """One row per op kind with our and onnxruntime's ms and share of their own totals, their
    ratio, and a last row of totals."""
    ours = group_by_kind([(k["kind"], k["median_ns"]) for k in ours_kernels])
    ort = group_by_kind([(op_kind(n["op"] or n["name"]), n["median_ns"]) for n in ort_nodes])
    ours_total, ort_total = sum(ours.values()), sum(ort.values())
    rows = []
    for kind in KINDS:
        rows.append({"kind": kind, "ours_ms": ours[kind] / 1e6, "ort_ms": ort[kind] / 1e6,
                     "ours_share": ours[kind] / ours_total if ours_total else 0.0,
                     "ort_share": ort[kind] / ort_total if ort_total else 0.0,
                     "ratio": ours[kind] / ort[kind] if ort[kind] else None})
    rows.append({"kind": "total", "ours_ms": ours_total / 1e6, "ort_ms": ort_total / 1e6, "ours_share": 1.0,
                 "ort_share": 1.0, "ratio": ours_total / ort_total if ort_total else None})
    return rows


def _fmt_ns(ns: float | None) -> str:
    return "not recorded" if ns is None else f"{ns / 1e6:.2f} ms"


def _ratio_text(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}"


def markdown(title: str, kinds: list[dict], ours_kernels: list[dict], ort_nodes: list[dict], top: int,
             notes: list[str]) -> str:
    lines = [f"### Profile: {title}", ""] + [f"{n}  " for n in notes] + [
        "",
        "| op kind | ours ms | ours share | onnxruntime ms | onnxruntime share | ours / onnxruntime |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in kinds:
        name = f"**{r['kind']}**" if r["kind"] == "total" else r["kind"]
        lines.append(f"| {name} | {r['ours_ms']:.3f} | {100 * r['ours_share']:.1f}% | {r['ort_ms']:.3f} | "
                     f"{100 * r['ort_share']:.1f}% | {_ratio_text(r['ratio'])} |")
    lines += ["", f"Our top {top} kernels (median ms over the runs):", "",
              "| kernel | kind | ms | share | MFLOP | GFLOP/s | ops |", "|---|---|---:|---:|---:|---:|---|"]
    total = sum(k["median_ns"] for k in ours_kernels) or 1.0
    for k in ours_kernels[:top]:
        ops = " + ".join(k["ops"]).replace("|", "/")
        lines.append(f"| {k['name']} | {k['kind']} | {k['median_ns'] / 1e6:.3f} | {100 * k['median_ns'] / total:.1f}% "
                     f"| {k['flops'] / 1e6:.1f} | {k['gflops_per_s']:.2f} | {ops[:120]} |")
    ort_sorted = sorted(ort_nodes, key=lambda n: -n["median_ns"])[:top]
    ort_total = sum(n["median_ns"] for n in ort_nodes) or 1.0
    lines += ["", f"onnxruntime's top {top} nodes (median ms over the runs):", "",
              "| node | op type | kind | ms | share |", "|---|---|---|---:|---:|"]
    for n in ort_sorted:
        lines.append(f"| {n['name']} | {n['op']} | {op_kind(n['op'] or n['name'])} | {n['median_ns'] / 1e6:.3f} | "
                     f"{100 * n['median_ns'] / ort_total:.1f}% |")
    return "\n".join(lines) + "\n"


def slowest_model(results: dict, batch: int) -> str:
    """The model with the largest ours/onnxruntime median ratio at `batch` in a results file."""
    from . import report

    entry = report.comparison(results).get(batch)
    if entry is None:
        raise CompilerError(f"the results file has no model at batch {batch} that both ours and onnxruntime ran")
    return entry["max_ratio_model"]


def resolve_model(model: str, batch: int, work: Path) -> tuple[str, str, dict, dict]:
    """(name for titles and files, ONNX path, input shapes, feeds) for a zoo name or a file."""
    if Path(model).is_file():
        feeds, shapes = bench.random_feeds(model, batch)
        path = bench.with_static_shapes(str(Path(model).resolve()), shapes, work)
        return Path(model).stem, path, shapes, feeds
    from . import models

    if model not in models.MODELS:
        raise CompilerError(f"{model!r} is neither an ONNX file nor a zoo model ({', '.join(models.MODELS)})")
    m = models.prepare(model, batch=batch)
    with np.load(m.inputs_path, allow_pickle=False) as data:
        feeds = {k: data[k] for k in data.files}
    return model, m.onnx_path, m.input_shapes, feeds


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except CompilerError as e:  # bad input: say what, without a traceback
        print(f"error: {e}", file=sys.stderr)
        return 1


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile_compare", description=__doc__.splitlines()[0])
    ap.add_argument("model", help="zoo model name or ONNX file")
    ap.add_argument("--batch", type=int, default=1, help="batch size (default 1; the MLP is always 64)")
    ap.add_argument("--threads", type=int, default=2, help="threads for both systems (default 2)")
    ap.add_argument("--runs", type=int, default=10, help="profiled runs per system after one warm-up (default 10)")
    ap.add_argument("--top", type=int, default=15, help="kernels listed (default 15)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="folder for profile_<model>.md")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.runs < 1 or args.threads < 1:
        ap.error("--batch, --runs and --threads must be positive")
    work = Path(tempfile.mkdtemp(prefix="cm-profile-compare-"))
    if args.model == "slowest":
        results_path = Path(args.out) / "results.json"
        if not results_path.is_file():
            raise CompilerError(f"MODEL slowest reads {results_path}, which does not exist: run benchmarks.run first")
        args.model = slowest_model(json.loads(results_path.read_text()), args.batch)
        print(f"slowest model against onnxruntime at batch {args.batch}: {args.model}", flush=True)
    name, path, shapes, feeds = resolve_model(args.model, args.batch, work)
    batch = next(iter(shapes.values()), [1])[0]
    # Ours first, then onnxruntime: ORT's pool threads spin a while after each run, and they
    # should not be spinning while our kernels are timed.
    ours = profile_ours(path, shapes, feeds, args.threads, args.runs)
    ort = profile_onnxruntime(path, feeds, args.threads, args.runs)
    kinds = kind_table(ours["kernels"], ort["nodes"])
    notes = [f"Model {name}, inputs {shapes}, {args.threads} threads per system, median of {args.runs} runs "
             f"after one warm-up (`python -m benchmarks.profile_compare {args.model} --batch {batch} "
             f"--threads {args.threads} --runs {args.runs}`).",
             f"Ours: {len(ours['kernels'])} kernel calls per run, timers compiled around each call; "
             f"sum of kernel medians {kinds[-1]['ours_ms']:.2f} ms, whole run (first kernel start to last "
             f"kernel end) {_fmt_ns(ours['run_median_ns'])}.",
             f"{ort['label']} (CPU, ORT_ENABLE_ALL): {len(ort['nodes'])} nodes after its graph optimizations; "
             f"sum of node medians {kinds[-1]['ort_ms']:.2f} ms, whole run (model_run) "
             + _fmt_ns(ort["run_median_ns"])
             + f"; trace {ort['trace']}.",
             "Shares are of each system's own kernel total; ours / onnxruntime compares the two totals per kind. "
             "onnxruntime fuses bias, activations and batch norms into its Conv/Gemm nodes, so their time sits "
             "in those rows there; our fused kernels are grouped by the op their name starts with."]
    text = markdown(f"{name}, batch {batch}", kinds, ours["kernels"], ort["nodes"], args.top, notes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md_path = out / (f"profile_{name}.md" if batch == 1 else f"profile_{name}_b{batch}.md")
    md_path.write_text(text)
    print(text)
    print(f"written: {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
