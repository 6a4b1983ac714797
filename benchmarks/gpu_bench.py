"""The cuda target against torch on a GPU, side by side in one run (scripts/gpu_check.sh).

For each model (torchvision's, exported to ONNX here so both sides run the same weights):
our cuda build, torch eager and torch.compile (inductor, mode="max-autotune"), batch 1 and
8, CUDA-event medians; our outputs checked against torch's. Then an fp16 GEMM at 4096^3
(an ONNX MatMul built for cuda) against torch.matmul, and the per-call overhead of a
one-launch model. Prints a table and writes JSON to --out.

    python3 -m benchmarks.gpu_bench --models resnet50,squeezenet1_0 --batch 1,8 --out gpu.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def _median_ms(fn, runs: int, warmup: int = 3) -> float:
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return float(np.median(times))


def bench_model(name: str, batch: int, runs: int, budget_s: float, tmp: Path) -> dict:
    import torch
    import torchvision

    import compiler

    net = getattr(torchvision.models, name)(weights=None).eval().cuda()
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    path = tmp / f"{name}_b{batch}.onnx"
    torch.onnx.export(net.cpu(), (x.cpu(),), str(path), input_names=["x"], output_names=["y"], dynamo=False)
    net = net.cuda()
    row = {"model": name, "batch": batch}
    start = time.perf_counter()
    ours = compiler.compile(str(path), target="cuda", cache=False)
    row["ours_compile_s"] = time.perf_counter() - start
    with torch.no_grad():
        want = net(x)
        got = torch.as_tensor(ours.run({"x": x}, device_outputs=True)["y"], device="cuda")
        row["max_abs_err_vs_torch"] = float((got - want).abs().max())
        row["ours_ms"] = _median_ms(lambda: ours.run({"x": x}, device_outputs=True), runs)
        row["eager_ms"] = _median_ms(lambda: net(x), runs)
        start = time.perf_counter()
        compiled = torch.compile(net, mode="max-autotune")
        compiled(x)
        row["inductor_compile_s"] = time.perf_counter() - start
        if row["inductor_compile_s"] < budget_s:
            row["inductor_ms"] = _median_ms(lambda: compiled(x), runs)
    return row


def bench_gemm(n: int, runs: int, tmp: Path) -> dict:
    import onnx
    import torch
    from onnx import TensorProto, helper

    import compiler

    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT16, [n, n]),
                               helper.make_tensor_value_info("b", TensorProto.FLOAT16, [n, n])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT16, [n, n])])
    path = tmp / "gemm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    ours = compiler.compile(str(path), target="cuda", cache=False)
    a = torch.randn(n, n, device="cuda", dtype=torch.float16)
    b = torch.randn(n, n, device="cuda", dtype=torch.float16)
    flops = 2 * n ** 3
    ours_ms = _median_ms(lambda: ours.run({"a": a, "b": b}, device_outputs=True), runs)
    torch_ms = _median_ms(lambda: torch.matmul(a, b), runs)
    got = torch.as_tensor(ours.run({"a": a, "b": b}, device_outputs=True)["c"], device="cuda").float()
    err = float(((got - torch.matmul(a.float(), b.float())).abs().max()))
    return {"n": n, "ours_ms": ours_ms, "torch_ms": torch_ms, "ours_tflops": flops / ours_ms / 1e9,
            "torch_tflops": flops / torch_ms / 1e9, "fraction_of_torch": torch_ms / ours_ms, "max_abs_err": err}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet50,squeezenet1_0")
    p.add_argument("--batch", default="1,8")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--inductor-budget", type=float, default=120.0, help="seconds max-autotune may take per model")
    p.add_argument("--gemm", type=int, default=4096)
    p.add_argument("--out", default="gpu_bench.json")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name in args.models.split(","):
            for batch in [int(b) for b in args.batch.split(",")]:
                try:
                    rows.append(bench_model(name, batch, args.runs, args.inductor_budget, tmp))
                except Exception as e:  # noqa: BLE001 - one model's failure is a row, not the end of the run
                    rows.append({"model": name, "batch": batch, "error": f"{type(e).__name__}: {e}"})
                print(json.dumps(rows[-1]), flush=True)
        gemm = None
        if args.gemm:
            try:
                gemm = bench_gemm(args.gemm, args.runs, tmp)
            except Exception as e:  # noqa: BLE001
                gemm = {"error": f"{type(e).__name__}: {e}"}
            print(json.dumps({"gemm_fp16": gemm}), flush=True)
    Path(args.out).write_text(json.dumps({"models": rows, "gemm_fp16": gemm}, indent=1))
    print(f"\n{'model':<16}{'batch':>6}{'ours ms':>10}{'eager ms':>10}{'inductor ms':>13}{'ours/inductor':>15}")
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<16}{r['batch']:>6}  {r['error'][:80]}")
            continue
        ind = r.get("inductor_ms")
        ratio = f"{r['ours_ms'] / ind:.2f}" if ind else "-"
        print(f"{r['model']:<16}{r['batch']:>6}{r['ours_ms']:>10.3f}{r['eager_ms']:>10.3f}"
              f"{(ind or float('nan')):>13.3f}{ratio:>15}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
