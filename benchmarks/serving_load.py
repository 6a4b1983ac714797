"""Load generator for `compile serve`, in the manner of Triton's perf_analyzer.

    .venv/bin/python -m benchmarks.serving_load [--models squeezenet,bert] [--concurrency 1,2,4,8,16]
                                                [--rate-fractions 0.5,0.8] [--threads 2] [--out benchmarks/results_serving]

Per model: the zoo file is compiled at batch 1, 2, 4, 8 and 16 into a repository served
twice, with dynamic batching (`<model>`) and without (`<model>_nobatch`: every request runs
alone); the response cache is off. First the artifacts' own offline numbers: `run()`
latency and throughput at each batch size, in this process, before the server starts.
Then `compile serve` in a subprocess, and closed-loop clients at each concurrency (each
sends its next request when the last one is answered), over persistent HTTP connections
driven by one event loop with prebuilt binary requests (`load_client`), so the client costs
little CPU beside the server; the cores it used are reported per level. A level is
measured in windows of --window seconds until three in a row agree within 10% on
throughput (perf_analyzer's stability rule; at most --max-windows); the three windows are
reported: throughput, p50/p90/p99 latency, and the mean merged batch from the server's
statistics. --rate-fractions adds open-loop runs with Poisson arrivals at those fractions of
the model's best offline throughput (requests per second).

Writes `serving.csv`, `serving.md` (the bars: p50 at concurrency 1 against `run()`, and
throughput at concurrency 16 against the best offline throughput) and `serving.png`.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from compiler.bench import thread_env

from . import models
from .load_client import build_request, run_closed, run_poisson

DEFAULT_OUT = Path(__file__).resolve().parent / "results_serving"
BATCH_SIZES = (1, 2, 4, 8, 16)


# ---- the repository and the artifacts' own numbers ----
def build_repository(root: Path, names: list[str], threads: int) -> dict[str, dict[str, np.ndarray]]:
    """REPO/<name>/1/model_b<N>.cmod (batching) and REPO/<name>_nobatch (the same files,
    batching off); returns each model's batch-1 inputs."""
    import compiler

    inputs = {}
    for name in names:
        version = root / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        plain = root / f"{name}_nobatch"
        (plain / "1").mkdir(parents=True, exist_ok=True)
        (plain / "config.json").write_text(json.dumps({"dynamic_batching": False}))
        for b in BATCH_SIZES:
            spec = models.prepare(name, batch=b)
            path = version / f"model_b{b}.cmod"
            if not path.exists():
                print(f"  compiling {name} at batch {b}", flush=True)
                compiler.compile(spec.onnx_path, input_shapes=spec.input_shapes, num_threads=threads).save(path)
            link = plain / "1" / path.name
            if not link.exists():
                link.symlink_to(path.resolve())
            if b == 1:
                with np.load(spec.inputs_path) as z:
                    inputs[name] = {k: z[k] for k in z.files}
    return inputs


def offline(root: Path, name: str, threads: int, seconds: float = 2.0) -> dict[int, dict]:
    """Median `run()` latency per batch size, and the throughput it gives."""
    from compiler.model import load

    out = {}
    for b in BATCH_SIZES:
        model = load(root / name / "1" / f"model_b{b}.cmod", num_threads=threads)
        spec = models.prepare(name, batch=b)
        with np.load(spec.inputs_path) as z:
            feeds = {k: z[k] for k in z.files}
        for _ in range(3):
            model.run(feeds)
        times, end = [], time.perf_counter() + seconds
        while time.perf_counter() < end or len(times) < 10:
            t = time.perf_counter()
            model.run(feeds)
            times.append(time.perf_counter() - t)
        median = float(np.median(times))
        out[b] = {"latency_ms": median * 1e3, "throughput": b / median}
        del model
    return out


# ---- requests ----
_TYPES = {"float32": "FP32", "int64": "INT64", "int32": "INT32", "float16": "FP16", "uint8": "UINT8", "bool": "BOOL"}


def encode(inputs: dict[str, np.ndarray]) -> tuple[bytes, dict]:
    """A binary-extension request body and its headers."""
    head = {"inputs": [{"name": k, "shape": list(a.shape), "datatype": _TYPES[a.dtype.name],
                        "parameters": {"binary_data_size": a.nbytes}} for k, a in inputs.items()],
            "parameters": {"binary_data_output": True}}
    h = json.dumps(head).encode()
    body = h + b"".join(np.ascontiguousarray(a).tobytes() for a in inputs.values())
    return body, {"Inference-Header-Content-Length": str(len(h)), "Content-Type": "application/octet-stream"}


def _stats(host: str, model: str) -> tuple[int, int]:
    conn = http.client.HTTPConnection(host, timeout=30)
    conn.request("GET", f"/v2/models/{model}/stats")
    s = json.loads(conn.getresponse().read())["model_stats"][0]
    conn.close()
    return s["inference_count"], s["execution_count"]


def _summary(latencies: list[float], seconds: float, count: int) -> dict:
    lat = np.asarray(latencies) * 1e3
    return {"throughput": count / seconds, "p50_ms": float(np.percentile(lat, 50)),
            "p90_ms": float(np.percentile(lat, 90)), "p99_ms": float(np.percentile(lat, 99))}


def closed_loop(host: str, model: str, body: bytes, headers: dict, concurrency: int, window_s: float,
                max_windows: int) -> dict:
    """`concurrency` clients back to back, measured in windows until three agree within 10%."""
    request = build_request(host, f"/v2/models/{model}/infer", body, headers)
    done: list[tuple[float, float]] = []  # (finish time, latency)
    lock = threading.Lock()
    stop = threading.Event()
    errors: list = []
    thread = run_closed(host, request, concurrency, done, lock, stop, errors)
    time.sleep(min(1.0, window_s / 2))  # warm-up: connections open, queues in steady state
    windows = []
    counts = _stats(host, model)
    cpu0 = time.process_time()
    for _ in range(max_windows):
        start = time.perf_counter()
        time.sleep(window_s)
        end = time.perf_counter()
        with lock:
            lat = [d for f, d in done if start <= f < end]
        windows.append((start, end, lat, _stats(host, model), time.process_time()))
        if errors:
            break
        if len(windows) >= 3:
            tp = [len(w[2]) / (w[1] - w[0]) for w in windows[-3:]]
            if max(tp) <= 1.1 * min(tp):
                break
    stop.set()
    thread.join(120)
    if errors:
        raise errors[0]
    last = windows[-3:]
    before = counts if len(windows) <= 3 else windows[-4][3]
    cpu_before = cpu0 if len(windows) <= 3 else windows[-4][4]
    after = last[-1][3]
    tp = [len(w[2]) / (w[1] - w[0]) for w in last]
    seconds = sum(w[1] - w[0] for w in last)
    row = _summary([x for w in last for x in w[2]], seconds, sum(len(w[2]) for w in last))
    row.update(windows=len(windows), stable=len(last) == 3 and max(tp) <= 1.1 * min(tp),
               mean_batch=(after[0] - before[0]) / max(1, after[1] - before[1]),
               client_cpu=(last[-1][4] - cpu_before) / (last[-1][1] - last[0][0]))  # cores the client used
    return row


def poisson(host: str, model: str, body: bytes, headers: dict, rate: float, seconds: float, seed: int = 0) -> dict:
    """Open loop: arrivals at `rate` per second (exponential gaps); latency counts from the
    scheduled arrival, so a client that falls behind shows as latency, not as a lower rate."""
    request = build_request(host, f"/v2/models/{model}/infer", body, headers)
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / rate, int(rate * seconds * 1.2) + 10))
    arrivals = arrivals[arrivals < seconds]
    latencies, errors = [], []
    counts = _stats(host, model)
    cpu0 = time.process_time()
    start = time.perf_counter() + 0.2
    run_poisson(host, request, arrivals, start, latencies, errors).join()
    if errors:
        raise errors[0]
    elapsed = time.perf_counter() - start
    after = _stats(host, model)
    row = _summary(latencies, elapsed, len(latencies))
    row.update(windows=1, stable=True, mean_batch=(after[0] - counts[0]) / max(1, after[1] - counts[1]),
               client_cpu=(time.process_time() - cpu0) / elapsed)
    return row


# ---- the server ----
def start_server(root: Path, threads: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "compiler.cli", "serve", str(root), "--port", "0",
                             "--no-metrics-port", "--threads", str(threads)],
                            stdout=subprocess.PIPE, text=True, env=thread_env(threads))
    for line in proc.stdout:
        if line.startswith("serving "):
            return proc, line.split(" at ")[-1].strip().removeprefix("http://")
    raise RuntimeError("compile serve did not start")


def write_report(out: Path, rows: list[dict], offline_rows: dict, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fields = ["model", "batching", "mode", "load", "throughput", "p50_ms", "p90_ms", "p99_ms", "mean_batch",
              "client_cpu", "windows", "stable"]
    with open(out / "serving.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()})
    lines = [f"# Serving under load ({meta['date']})", "",
             f"`{meta['command']}`", "",
             f"Host: {meta['host']}; server and client share it; native code on {meta['threads']} thread(s).", "",
             "| model | run() b1 ms | p50 c=1 ms | overhead ms | best offline /s (batch) | c=16 batching /s | "
             "of best | c=16 no batching /s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, off in offline_rows.items():
        best_b = max(off, key=lambda b: off[b]["throughput"])
        c1 = next((r for r in rows if r["model"] == name and r["batching"] and r["mode"] == "concurrency" and r["load"] == 1), None)
        c16 = next((r for r in rows if r["model"] == name and r["batching"] and r["mode"] == "concurrency" and r["load"] == 16), None)
        n16 = next((r for r in rows if r["model"] == name and not r["batching"] and r["mode"] == "concurrency" and r["load"] == 16), None)
        b1 = off[1]["latency_ms"]
        lines.append(
            f"| {name} | {b1:.2f} | {c1['p50_ms']:.2f} | {c1['p50_ms'] - b1:+.2f} | "
            f"{off[best_b]['throughput']:.1f} ({best_b}) | {c16['throughput']:.1f} | "
            f"{c16['throughput'] / off[best_b]['throughput']:.0%} | {n16['throughput'] if n16 else float('nan'):.1f} |"
            if c1 and c16 else f"| {name} | {b1:.2f} | - | - | {off[best_b]['throughput']:.1f} ({best_b}) | - | - | - |")
    lines += ["", "Offline (`run()` in one process, median):", "", "| model | " + " | ".join(f"b{b}" for b in BATCH_SIZES) + " |",
              "|---|" + "---:|" * len(BATCH_SIZES)]
    for name, off in offline_rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{off[b]['latency_ms']:.2f} ms, {off[b]['throughput']:.0f}/s"
                                                 for b in BATCH_SIZES) + " |")
    lines += ["", "Every level (closed loop: concurrency; open loop: Poisson rate per second):", "",
              "| model | batching | mode | load | req/s | p50 ms | p90 ms | p99 ms | mean batch | client cores | windows |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {'on' if r['batching'] else 'off'} | {r['mode']} | {r['load']} | "
                     f"{r['throughput']:.1f} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{r['mean_batch']:.2f} | {r.get('client_cpu', float('nan')):.2f} | "
                     f"{r['windows']}{'' if r['stable'] else ' (unstable)'} |")
    (out / "serving.md").write_text("\n".join(lines) + "\n")
    plot(out / "serving.png", rows)


def plot(path: Path, rows: list[dict]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the bench extra; the tables stand without it
        return
    names = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        for batching, style in ((True, "-o"), (False, "--s")):
            pts = [r for r in rows if r["model"] == name and r["batching"] == batching and r["mode"] == "concurrency"]
            if not pts:
                continue
            label = "batching" if batching else "no batching"
            ax.plot([r["throughput"] for r in pts], [r["p50_ms"] for r in pts], style, label=f"{label} p50")
            ax.plot([r["throughput"] for r in pts], [r["p99_ms"] for r in pts], style, alpha=0.4, label=f"{label} p99")
            for r in pts:
                ax.annotate(f"c{r['load']}", (r["throughput"], r["p50_ms"]), fontsize=7)
        ax.set_xlabel("throughput (inferences/s)")
        ax.set_ylabel("latency (ms)")
        ax.set_yscale("log")
        ax.set_title(name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)  # redrawn after every level


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="squeezenet,bert")
    p.add_argument("--concurrency", default="1,2,4,8,16")
    p.add_argument("--rate-fractions", default="0.5,0.8",
                   help="open-loop Poisson rates, as fractions of the best offline throughput ('' for none)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--window", type=float, default=3.0, help="seconds per measurement window")
    p.add_argument("--max-windows", type=int, default=8)
    p.add_argument("--no-batching-run", action="store_true", help="skip the batching-off comparison")
    p.add_argument("--repo", type=Path, default=models.cache_dir() / "serving-repo")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    names = [m for m in args.models.split(",") if m]
    levels = [int(c) for c in args.concurrency.split(",") if c]
    fractions = [float(r) for r in args.rate_fractions.split(",") if r]
    os.environ.update(thread_env(args.threads))
    print("building the repository", flush=True)
    inputs = build_repository(args.repo, names, args.threads)
    offline_rows = {}
    for name in names:
        offline_rows[name] = offline(args.repo, name, args.threads)
        print(f"{name} offline: " + ", ".join(f"b{b} {v['latency_ms']:.2f} ms {v['throughput']:.0f}/s"
                                              for b, v in offline_rows[name].items()), flush=True)
    proc, host = start_server(args.repo, args.threads)
    rows = []
    meta = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "threads": args.threads,
            "command": "python -m benchmarks.serving_load " + " ".join(argv if argv is not None else sys.argv[1:]),
            "host": f"{os.cpu_count()} CPUs"}
    try:
        for name in names:
            body, headers = encode(inputs[name])
            for batching in (True, False) if not args.no_batching_run else (True,):
                served = name if batching else f"{name}_nobatch"
                for c in levels:
                    row = closed_loop(host, served, body, headers, c, args.window, args.max_windows)
                    rows.append(dict(row, model=name, batching=batching, mode="concurrency", load=c))
                    print(f"{served} c={c}: {row['throughput']:.1f}/s p50 {row['p50_ms']:.2f} ms p99 "
                          f"{row['p99_ms']:.2f} ms batch {row['mean_batch']:.2f}", flush=True)
                    write_report(args.out, rows, offline_rows, meta)
                best = max(v["throughput"] for v in offline_rows[name].values())
                for r in (round(f * best, 1) for f in fractions):
                    row = poisson(host, served, body, headers, r, args.window * 3)
                    rows.append(dict(row, model=name, batching=batching, mode="poisson", load=r))
                    print(f"{served} rate={r}: {row['throughput']:.1f}/s p50 {row['p50_ms']:.2f} ms p99 "
                          f"{row['p99_ms']:.2f} ms batch {row['mean_batch']:.2f}", flush=True)
                    write_report(args.out, rows, offline_rows, meta)
    finally:
        proc.terminate()
        proc.wait(60)
    print(f"wrote {args.out}/serving.md, serving.csv, serving.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
