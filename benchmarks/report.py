"""Benchmark results -> the machine line, markdown tables and a bar chart of latency ratios.

The results JSON (written by benchmarks.run) holds everything; this module only formats it,
so a table can be regenerated from an old run: `python -m benchmarks.report results.json`.
Every model entry carries its batch size (older files without one are batch 1). Besides the
full table (every system), each batch size gets the issue's comparison of ours against
onnxruntime: latencies, their ratio, our GFLOP/s and fraction of the measured peak, items
per second, and the geometric mean and maximum of the ratio over the models.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
from pathlib import Path

BASELINE = "onnxruntime"
# ISA features worth naming in the machine line (what the generated code may use).
FEATURES = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
            "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def machine_info() -> dict:
    """CPU model, core count and SIMD features (from /proc/cpuinfo on Linux)."""
    info = {"cpu": platform.processor() or platform.machine(), "logical_cpus": os.cpu_count(),
            "features": [], "platform": platform.platform()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    cores = set()
    physical = core = None
    for line in text.splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        if key == "model name":
            info["cpu"] = value
        elif key == "flags":
            flags = set(value.split())
            info["features"] = [f for f in FEATURES if f in flags]
        elif key == "physical id":
            physical = value
        elif key == "core id":
            core = value
            cores.add((physical, core))
    info["physical_cores"] = len(cores) or None
    return info


def machine_line(info: dict) -> str:
    cores = info.get("physical_cores")
    core_text = f"{cores} cores / {info['logical_cpus']} threads" if cores else f"{info['logical_cpus']} CPUs"
    return f"{info['cpu']}, {core_text}, {' '.join(info['features']) or 'no SIMD features listed'}"


def _baseline(model: dict) -> dict | None:
    return next((s for s in model["systems"] if s["system"] == BASELINE and not s.get("error")), None)


def batch_of(model: dict) -> int:
    """A model entry's batch; files written before batches were recorded have the leading
    dim of the first input (the MLP's 64, the CNNs' and BERT's 1)."""
    if "batch" in model:
        return int(model["batch"])
    first = next(iter((model.get("input_shapes") or {}).values()), None)
    return int(first[0]) if first else 1


def _rate(x: float) -> str:
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def rows(report: dict) -> list[dict]:
    """One row per (model, batch, system) with latency, ratio to onnxruntime, GFLOP/s, fraction
    of peak and items (images, sequences) per second."""
    peak = (report.get("peak") or {}).get("fma_peak_gflops")
    out = []
    for model in report["models"]:
        base = _baseline(model)
        for s in model["systems"]:
            row = {"model": model["name"], "batch": batch_of(model), "system": s["system"],
                   "label": s.get("label", s["system"]), "error": s.get("error")}
            if not s.get("error") and "median_ms" in s:
                gflops = model["flops"] / (s["median_ms"] / 1e3) / 1e9
                row.update(median_ms=s["median_ms"], p90_ms=s["p90_ms"], min_ms=s.get("min_ms"), runs=s["runs"],
                           reduced=s.get("reduced_runs", False), gflops=gflops,
                           peak_fraction=gflops / peak if peak else None,
                           ratio=s["median_ms"] / base["median_ms"] if base else None,
                           items_per_s=batch_of(model) / (s["median_ms"] / 1e3),
                           max_abs_diff=s.get("max_abs_diff"))
            out.append(row)
    return out


def _fmt(x, spec: str, empty: str = "-") -> str:
    return empty if x is None else format(x, spec)


def _diff_text(diff: float | None) -> str:
    # NaN: the output holds NaNs or has another shape than onnxruntime's; either way, wrong.
    if _is_nan(diff):
        return "**wrong (NaN or shape)**"
    return _fmt(diff, ".2g")


def _is_nan(x) -> bool:
    return x is not None and x != x


def geomean(values) -> float | None:
    """Geometric mean of positive numbers (the mean that treats 2x slower and 2x faster alike);
    None for none."""
    values = list(values)
    if not values:
        return None
    if any(v <= 0 for v in values):
        raise ValueError(f"geometric mean of non-positive values {values}")
    return math.exp(sum(math.log(v) for v in values) / len(values))


def comparison(report: dict, system: str = "ours", baseline: str = BASELINE) -> dict[int, dict]:
    """Per batch size, `system` against `baseline` on every model both ran: the rows
    (model, both medians, ratio, GFLOP/s, fraction of peak, items/s), the geometric mean
    of the ratio and the largest ratio with its model. Batches in ascending order."""
    by_key: dict[tuple, dict[str, dict]] = {}
    for r in rows(report):
        if not r["error"] and "median_ms" in r:
            by_key.setdefault((r["batch"], r["model"]), {})[r["system"]] = r
    out: dict[int, dict] = {}
    for (batch, model), systems in by_key.items():  # rows() keeps the run's model order
        ours, base = systems.get(system), systems.get(baseline)
        if ours is None or base is None:
            continue
        entry = out.setdefault(batch, {"rows": []})
        entry["rows"].append({"model": model, "label": ours["label"], "ours_ms": ours["median_ms"],
                              "ort_ms": base["median_ms"], "ratio": ours["median_ms"] / base["median_ms"],
                              "gflops": ours["gflops"],
                              "peak_fraction": ours["peak_fraction"], "ort_gflops": base["gflops"],
                              "ort_peak_fraction": base["peak_fraction"], "items_per_s": ours["items_per_s"],
                              "ort_items_per_s": base["items_per_s"], "runs": ours["runs"],
                              "ort_runs": base["runs"], "reduced": ours["reduced"] or base["reduced"],
                              "wrong": _is_nan(ours.get("max_abs_diff"))})
    for batch, entry in out.items():
        worst = max(entry["rows"], key=lambda row: row["ratio"])
        entry.update(geomean_ratio=geomean(row["ratio"] for row in entry["rows"]), max_ratio=worst["ratio"],
                     max_ratio_model=worst["model"])
    return dict(sorted(out.items()))


def _pct(fraction: float | None) -> str:
    return _fmt(None if fraction is None else 100 * fraction, ".2f")


def comparison_markdown(report: dict, system: str = "ours", baseline: str = BASELINE) -> str:
    """The issue's tables: per batch size, `system` against `baseline` (onnxruntime) with
    ratio, GFLOP/s, % of peak and items/s; the geometric mean and max ratio under each;
    then, when more than one batch ran, throughput per batch size side by side."""
    peak = (report.get("peak") or {}).get("fma_peak_gflops")
    per_batch = comparison(report, system, baseline)
    if not per_batch:
        return ""
    base = baseline
    lines = [f"Ratio = {system} median / {base} median (lower is better); % of peak = GFLOP/s / the "
             f"measured {report['threads']}-thread FMA peak ({_fmt(peak, '.1f')} GFLOP/s); items/s = batch / "
             f"median (images/s for the CNNs, sequences/s for BERT).", ""]
    for batch, entry in per_batch.items():
        lines += [f"#### Batch {batch}", "",
                  f"| model | {system} ms | {base} ms | ratio | {system} GFLOP/s | {system} % of peak "
                  f"| {base} GFLOP/s | {base} % of peak | {system} items/s | {base} items/s | runs |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in entry["rows"]:
            runs = f"{row['runs']}/{row['ort_runs']}{'*' if row['reduced'] else ''}"
            model = row["model"] + (" (**wrong output**)" if row["wrong"] else "")
            lines.append(f"| {model} | {row['ours_ms']:.2f} | {row['ort_ms']:.2f} | {row['ratio']:.2f} | "
                         f"{row['gflops']:.2f} | {_pct(row['peak_fraction'])} | {row['ort_gflops']:.2f} | "
                         f"{_pct(row['ort_peak_fraction'])} | {_rate(row['items_per_s'])} | "
                         f"{_rate(row['ort_items_per_s'])} | {runs} |")
        lines += ["", f"Batch {batch}: geometric mean ratio {entry['geomean_ratio']:.2f} over "
                  f"{len(entry['rows'])} model(s); max ratio {entry['max_ratio']:.2f} ({entry['max_ratio_model']}).",
                  ""]
    if len(per_batch) > 1:
        lines += throughput_markdown(per_batch, system, base)
    return "\n".join(lines) + "\n"


def throughput_markdown(per_batch: dict[int, dict], system: str = "ours", baseline: str = BASELINE) -> list[str]:
    """Items/s of both systems at every batch size, one row per model (a model with a fixed
    batch, the MLP, fills only its own column)."""
    batches = list(per_batch)
    models = list(dict.fromkeys(row["model"] for e in per_batch.values() for row in e["rows"]))
    cells = {(b, row["model"]): row for b, e in per_batch.items() for row in e["rows"]}
    lines = ["#### Throughput by batch size (items/s)", "",
             "| model | " + " | ".join(f"{system} b{b}" for b in batches) + " | "
             + " | ".join(f"{baseline} b{b}" for b in batches) + " |",
             "|---|" + "---:|" * (2 * len(batches))]
    for model in models:
        ours = [_rate(cells[(b, model)]["items_per_s"]) if (b, model) in cells else "" for b in batches]
        ort = [_rate(cells[(b, model)]["ort_items_per_s"]) if (b, model) in cells else "" for b in batches]
        lines.append(f"| {model} | " + " | ".join(ours + ort) + " |")
    return lines + [""]


def markdown(report: dict) -> str:
    peak = report.get("peak") or {}
    plan = report["plan"]
    lines = [
        f"Command: `{report.get('command', 'python -m benchmarks.run')}` (started {report.get('started', '?')})  ",
        f"Machine: {machine_line(report['machine'])}  ",
        f"Threads: {report['threads']} for every system.  "
        f"fp32 FMA peak at {report['threads']} threads: {_fmt(peak.get('fma_peak_gflops'), '.1f')} GFLOP/s "
        f"(numpy sgemm floor: {_fmt(peak.get('sgemm_gflops'), '.1f')} GFLOP/s).  ",
        f"Runs: median and p90 of {plan['runs']} timed runs after {plan['warmup']} warm-up, "
        f"in {plan['rounds']} interleaved rounds; a `*` marks fewer runs (slow systems: "
        f"time budget {plan['budget_s']:.0f} s per system and model"
        + (f", TVM capped at {plan['caps'].get('tvm')}" if plan.get('caps', {}).get('tvm') else "")
        + ").",
        "",
    ]
    summary = comparison_markdown(report)
    if summary:
        lines += ["### Ours against onnxruntime", "", summary.rstrip("\n"), ""]
    # Reduced precision against the peer that computes in it by default (OpenVINO: bf16
    # on CPUs with AVX512-BF16) or that a user quantizes with (onnxruntime's int8 tool),
    # and against our own fp32.
    for system, baseline, title in (("ours-bf16", "openvino", "Ours in bf16 against OpenVINO's default (bf16)"),
                                    ("ours-bf16", "ours", "Ours in bf16 against ours in fp32"),
                                    ("ours-int8", "onnxruntime-int8", "Ours in int8 against onnxruntime int8 "
                                     "(quantize_static QDQ)"),
                                    ("ours-int8", "openvino", "Ours in int8 against OpenVINO's default (bf16)"),
                                    ("ours-int8", "ours", "Ours in int8 against ours in fp32"),
                                    ("ours-dynamic", "onnxruntime-dynamic", "Ours against onnxruntime on "
                                     "quantize_dynamic's int8 file"),
                                    ("ours-dynamic", "ours", "Ours on quantize_dynamic's int8 file against ours "
                                     "in fp32")):
        extra = comparison_markdown(report, system, baseline)
        if extra:
            lines += [f"### {title}", "", extra.rstrip("\n"), ""]
    lines += ["### Every system", ""]
    lines += [
        "| model | batch | GFLOP | system | median ms | p90 ms | min ms | runs | × onnxruntime | GFLOP/s "
        "| % of peak | items/s | max abs diff vs ORT |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    flops = {(m["name"], batch_of(m)): m["flops"] for m in report["models"]}
    for r in rows(report):
        head = f"| {r['model']} | {r['batch']} | {flops[(r['model'], r['batch'])] / 1e9:.2f} | {r['label']} |"
        if r["error"]:
            lines.append(f"{head} failed: {r['error'][:120].replace('|', '/')} | | | | | | | | |")
            continue
        runs = f"{r['runs']}{'*' if r['reduced'] else ''}"
        pct = None if r["peak_fraction"] is None else 100 * r["peak_fraction"]
        lines.append(f"{head} {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {_fmt(r['min_ms'], '.2f')} | {runs} | "
                     f"{_fmt(r['ratio'], '.2f')} | "
                     f"{r['gflops']:.2f} | {_fmt(pct, '.1f')} | {_rate(r['items_per_s'])} | "
                     f"{_diff_text(r['max_abs_diff'])} |")
    return "\n".join(lines) + "\n"


def bar_chart(report: dict, path) -> None:
    """Latency / onnxruntime latency per model and system (log scale; 1 = as fast as ORT),
    one panel per batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = [r for r in rows(report) if r.get("ratio") is not None and r["system"] != BASELINE]
    batches = sorted({r["batch"] for r in data}) or [1]
    systems = list(dict.fromkeys(r["system"] for r in data))
    labels = {r["system"]: r["label"] for r in data}
    colors = {s: f"C{k}" for k, s in enumerate(systems)}  # one colour per system in every panel
    counts = [len({r["model"] for r in data if r["batch"] == b}) for b in batches]
    fig, axes = plt.subplots(1, len(batches), figsize=(max(6, 1.1 * sum(counts) + 1.5 * len(batches)), 4.5),
                             squeeze=False, sharey=True, gridspec_kw={"width_ratios": [max(1, c) for c in counts]})
    width = 0.8 / max(1, len(systems))
    for ax, batch in zip(axes[0], batches):
        panel = [r for r in data if r["batch"] == batch]
        models = list(dict.fromkeys(r["model"] for r in panel))
        for k, system in enumerate(systems):
            ratio = {r["model"]: r["ratio"] for r in panel if r["system"] == system}
            xs = [i + (k - (len(systems) - 1) / 2) * width for i, m in enumerate(models) if m in ratio]
            ax.bar(xs, [ratio[m] for m in models if m in ratio], width, color=colors[system], label=labels[system])
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(models)), models, rotation=30, ha="right")
        ax.set_title(f"batch {batch}")
    axes[0][0].set_ylabel("latency / onnxruntime latency (lower is better)")
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
    axes[0][-1].legend(list(handles.values()), list(handles), fontsize=8)
    fig.suptitle(f"Median latency relative to onnxruntime, {report['threads']} threads")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_all(report: dict, out_dir) -> dict[str, Path]:
    """results.json, results.md and ratios.png in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md", "chart": out / "ratios.png"}
    paths["json"].write_text(json.dumps(report, indent=2))
    paths["markdown"].write_text(markdown(report))
    try:
        bar_chart(report, paths["chart"])
    except ImportError:  # matplotlib is in the `bench` extra; the table still stands without it
        paths.pop("chart")
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0])
    ap.add_argument("results", help="results.json of a benchmark run")
    ap.add_argument("--out", help="folder for the table and chart (default: beside the JSON)")
    args = ap.parse_args(argv)
    report = json.loads(Path(args.results).read_text())
    for kind, path in write_all(report, args.out or Path(args.results).parent).items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
