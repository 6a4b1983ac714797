"""Benchmark results -> the machine line, a markdown table and a bar chart of latency ratios.

The results JSON (written by benchmarks.run) holds everything; this module only formats it,
so a table can be regenerated from an old run: `python -m benchmarks.report results.json`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

BASELINE = "onnxruntime"
# ISA features worth naming in the machine line (what the generated code may use).
FEATURES = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
            "avx512_bf16", "amx_tile")


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


def rows(report: dict) -> list[dict]:
    """One row per (model, system) with latency, ratio to onnxruntime, GFLOP/s and % of peak."""
    peak = (report.get("peak") or {}).get("fma_peak_gflops")
    out = []
    for model in report["models"]:
        base = _baseline(model)
        for s in model["systems"]:
            row = {"model": model["name"], "system": s["system"], "label": s.get("label", s["system"]),
                   "error": s.get("error")}
            if not s.get("error") and "median_ms" in s:
                gflops = model["flops"] / (s["median_ms"] / 1e3) / 1e9
                row.update(median_ms=s["median_ms"], p90_ms=s["p90_ms"], min_ms=s.get("min_ms"), runs=s["runs"],
                           reduced=s.get("reduced_runs", False), gflops=gflops,
                           peak_fraction=gflops / peak if peak else None,
                           ratio=s["median_ms"] / base["median_ms"] if base else None,
                           max_abs_diff=s.get("max_abs_diff"))
            out.append(row)
    return out


def _fmt(x, spec: str, empty: str = "-") -> str:
    return empty if x is None else format(x, spec)


def _diff_text(diff: float | None) -> str:
    # NaN: the output holds NaNs or has another shape than onnxruntime's; either way, wrong.
    if diff is not None and diff != diff:
        return "**wrong (NaN or shape)**"
    return _fmt(diff, ".2g")


def markdown(report: dict) -> str:
    peak = report.get("peak") or {}
    lines = [
        f"Command: `{report.get('command', 'python -m benchmarks.run')}` (started {report.get('started', '?')})  ",
        f"Machine: {machine_line(report['machine'])}  ",
        f"Threads: {report['threads']} for every system.  "
        f"fp32 FMA peak at {report['threads']} threads: {_fmt(peak.get('fma_peak_gflops'), '.1f')} GFLOP/s "
        f"(numpy sgemm floor: {_fmt(peak.get('sgemm_gflops'), '.1f')} GFLOP/s).  ",
        f"Runs: median and p90 of {report['plan']['runs']} timed runs after {report['plan']['warmup']} warm-up, "
        f"in {report['plan']['rounds']} interleaved rounds; a `*` marks fewer runs (slow systems: "
        f"time budget {report['plan']['budget_s']:.0f} s per system and model"
        + (f", TVM capped at {report['plan']['caps'].get('tvm')}" if report['plan'].get('caps', {}).get('tvm') else "")
        + ").",
        "",
        "| model | GFLOP | system | median ms | p90 ms | min ms | runs | × onnxruntime | GFLOP/s | % of peak "
        "| max abs diff vs ORT |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    flops = {m["name"]: m["flops"] for m in report["models"]}
    for r in rows(report):
        head = f"| {r['model']} | {flops[r['model']] / 1e9:.2f} | {r['label']} |"
        if r["error"]:
            lines.append(f"{head} failed: {r['error'][:120].replace('|', '/')} | | | | | | | |")
            continue
        runs = f"{r['runs']}{'*' if r['reduced'] else ''}"
        pct = None if r["peak_fraction"] is None else 100 * r["peak_fraction"]
        lines.append(f"{head} {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {_fmt(r['min_ms'], '.2f')} | {runs} | "
                     f"{_fmt(r['ratio'], '.2f')} | "
                     f"{r['gflops']:.2f} | {_fmt(pct, '.1f')} | {_diff_text(r['max_abs_diff'])} |")
    return "\n".join(lines) + "\n"


def bar_chart(report: dict, path) -> None:
    """Latency / onnxruntime latency per model and system (log scale; 1 = as fast as ORT)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = [r for r in rows(report) if r.get("ratio") is not None and r["system"] != BASELINE]
    models = [m["name"] for m in report["models"]]
    systems = list(dict.fromkeys(r["system"] for r in data))
    labels = {r["system"]: r["label"] for r in data}
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(models)), 4.5))
    width = 0.8 / max(1, len(systems))
    for k, system in enumerate(systems):
        ratio = {r["model"]: r["ratio"] for r in data if r["system"] == system}
        xs = [i + (k - (len(systems) - 1) / 2) * width for i, m in enumerate(models) if m in ratio]
        ax.bar(xs, [ratio[m] for m in models if m in ratio], width, label=labels[system])
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(models)), models, rotation=30, ha="right")
    ax.set_ylabel("latency / onnxruntime latency (lower is better)")
    ax.set_title(f"Median latency relative to onnxruntime, {report['threads']} threads")
    ax.legend(fontsize=8)
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
