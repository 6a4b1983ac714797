"""The benchmark harness's pieces: statistics, run plans, the worker protocol, the `compile
bench` command, the per-kernel profile (trace + table), and the benchmarks/ report.
Correctness only: nothing here asserts how fast anything is."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from compiler import bench
from compiler.bench import KernelEvent, ModelSpec, Plan, Progress, SystemProcess

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))
from benchmarks import peak, report  # noqa: E402
from make_example import build_tiny_cnn  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "tiny_cnn.onnx"
    onnx.save(build_tiny_cnn(), path)
    return path


# --- statistics and plans -----------------------------------------------------------------


def test_summarize_reports_median_and_p90_in_ms():
    s = bench.summarize([i * 1_000_000 for i in range(1, 11)])  # 1..10 ms
    assert s["runs"] == 10 and s["median_ms"] == pytest.approx(5.5) and s["p90_ms"] == pytest.approx(9.1)
    assert s["min_ms"] == 1 and s["max_ms"] == 10
    with pytest.raises(ValueError):
        bench.summarize([])


def test_chunks_split_runs_over_rounds():
    assert bench.chunks(30, 10) == [3] * 10
    assert bench.chunks(7, 3) == [3, 2, 2]
    assert bench.chunks(2, 5) == [1, 1]  # fewer runs than rounds: empty rounds dropped


def test_plan_cuts_slow_systems_but_keeps_a_floor_and_caps():
    plan = Plan(runs=30, budget_s=60, min_runs=5, caps={"tvm": 10})
    assert plan.runs_for("ours", 0.01) == 30
    assert plan.runs_for("ours", 4.0) == 15  # 60 s / 4 s
    assert plan.runs_for("ours", 100.0) == 5
    assert plan.runs_for("tvm", 0.01) == 10


def test_progress_bar_renders_and_stays_silent_off_a_terminal():
    out = io.StringIO()
    p = Progress(4, "x", width=8, stream=out, enabled=True)
    p.advance(2, label="ort")
    assert out.getvalue().endswith("[####....] 2/4 ort")
    quiet = io.StringIO()
    Progress(4, stream=quiet).advance()  # StringIO is not a tty
    assert quiet.getvalue() == ""


# --- workers ------------------------------------------------------------------------------


def _spec(tiny: Path, tmp_path: Path, target="reference") -> ModelSpec:
    feeds, used = bench.random_feeds(str(tiny), batch=2)
    np.savez(tmp_path / "inputs.npz", **feeds)
    return ModelSpec(str(tiny), str(tmp_path / "inputs.npz"), used, target=target)


def test_random_feeds_fill_symbolic_batch(tiny):
    feeds, used = bench.random_feeds(str(tiny), batch=3)
    assert used == {"image": [3, 3, 32, 32]} and feeds["image"].dtype == np.float32
    _, default = bench.random_feeds(str(tiny))
    assert default["image"][0] == 1


def test_batch_override_rewrites_only_static_mismatches(tiny, tmp_path):
    from compiler.zoo.light import light_model_path

    assert bench.with_static_shapes(str(tiny), {"image": [4, 3, 32, 32]}, tmp_path) == str(tiny)  # symbolic batch
    static = str(light_model_path("squeezenet"))
    assert bench.with_static_shapes(static, {"data_0": [1, 3, 224, 224]}, tmp_path) == static
    copy = onnx.load(bench.with_static_shapes(static, {"data_0": [2, 3, 224, 224]}, tmp_path))
    (data,) = [i for i in copy.graph.input if i.name == "data_0"]  # weights are listed as inputs too
    assert data.type.tensor_type.shape.dim[0].dim_value == 2
    assert copy.graph.output[0].type.tensor_type.shape.dim[0].dim_value == 2


def test_worker_protocol_times_runs_and_saves_outputs(tiny, tmp_path):
    spec = _spec(tiny, tmp_path)
    procs = [SystemProcess(s, spec, 1, str(tmp_path)) for s in ("ours", "onnxruntime")]
    try:
        assert all(p.wait_ready(timeout=300) for p in procs), [p.error for p in procs]
        assert procs[0].label == "ours (reference interpreter, not compiled)"
        results = bench.measure_interleaved(procs, Plan(runs=4, warmup=1, rounds=2))
        saved = [np.load(p.save_outputs(str(tmp_path / f"{p.system}.npz")))["arr_0"] for p in procs]
    finally:
        for p in procs:
            p.close()
    assert {k: v["runs"] for k, v in results.items()} == {"ours": 4, "onnxruntime": 4}
    assert all(v["median_ms"] > 0 and not v["reduced_runs"] for v in results.values())
    np.testing.assert_allclose(saved[0], saved[1], rtol=1e-4, atol=1e-5)


def test_dynamic_quantization_systems_run_onnxruntimes_file(tiny, tmp_path):
    """ours-dynamic and onnxruntime-dynamic, set up at once in their own processes, both run
    the file onnxruntime's quantize_dynamic writes (made once, beside the model, whole), and
    agree on the answer."""
    import shutil

    model = tmp_path / "tiny_cnn.onnx"
    shutil.copyfile(tiny, model)
    spec = _spec(model, tmp_path, target="llvm")
    procs = [SystemProcess(s, spec, 1, str(tmp_path)) for s in ("ours-dynamic", "onnxruntime-dynamic")]
    try:
        assert all(p.wait_ready(timeout=300) for p in procs), [p.error for p in procs]
        assert all(p.label.endswith("on quantize_dynamic's int8 file") for p in procs)
        bench.measure_interleaved(procs, Plan(runs=2, warmup=1, rounds=1))
        saved = [np.load(p.save_outputs(str(tmp_path / f"{p.system}.npz")))["arr_0"] for p in procs]
    finally:
        for p in procs:
            p.close()
    quantized = list(tmp_path.glob("tiny_cnn.ort-dynamic-*.onnx"))
    assert len(quantized) == 1 and "ConvInteger" in {n.op_type for n in onnx.load(quantized[0]).graph.node}
    assert not [p for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith("tmp")]  # no leftovers
    np.testing.assert_allclose(saved[0], saved[1], rtol=0, atol=float(np.abs(saved[1]).max()) / 32)


class _FakeWorker:
    """A worker that records the run counts it is asked for and times every run at `ms`."""

    def __init__(self, system, ms=1.0):
        self.system, self.error, self.calls, self.ns = system, None, [], int(ms * 1e6)

    def run(self, n, timeout):
        self.calls.append(n)
        return [self.ns] * n


def test_every_turn_starts_with_untimed_runs(monkeypatch):
    """After the pause before a system's turn, one run (or as many as take turn_warmup_s)
    warms it up and is not counted."""
    monkeypatch.setattr(bench, "SETTLE_S", 0.0)
    workers = [_FakeWorker("ours"), _FakeWorker("onnxruntime")]
    results = bench.measure_interleaved(workers, Plan(runs=6, warmup=2, rounds=3, turn_warmup_s=0.0))
    assert all(w.calls == [2, 1, 2, 1, 2, 1, 2] for w in workers), [w.calls for w in workers]
    fast, slow = _FakeWorker("ours", ms=0.1), _FakeWorker("onnxruntime", ms=20.0)
    bench.measure_interleaved([fast, slow], Plan(runs=6, warmup=2, rounds=3, turn_warmup_s=0.005))
    assert fast.calls == [2, 50, 2, 50, 2, 50, 2] and slow.calls == [2, 1, 2, 1, 2, 1, 2]
    assert {k: v["runs"] for k, v in results.items()} == {"ours": 6, "onnxruntime": 6}
    bare = _FakeWorker("ours")
    bench.measure_interleaved([bare], Plan(runs=6, warmup=2, rounds=3, turn_warmup=0))
    assert bare.calls == [2, 2, 2, 2]


def test_worker_reports_setup_failures(tiny, tmp_path):
    p = SystemProcess("torch", _spec(tiny, tmp_path), 1, str(tmp_path))  # no torch definition of this model
    assert not p.wait_ready(timeout=300)
    assert "no torch definition" in p.error


def test_compile_bench_json(tiny, capsys):
    from compiler.cli import main

    assert main(["bench", str(tiny), "--target", "reference", "--runs", "3", "--warmup", "1",
                 "--batch", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (row,) = out["results"]
    assert row["label"] == "ours (reference interpreter, not compiled)" and row["runs"] == 3
    assert out["input_shapes"] == {"image": [2, 3, 32, 32]}
    assert row["throughput_per_s"] == pytest.approx(2 / (row["median_ms"] / 1e3))


def test_compile_bench_rejects_unknown_peers(tiny, capsys):
    from compiler.cli import main

    assert main(["bench", str(tiny), "--vs", "tensorrt"]) == 1
    assert "unknown system" in capsys.readouterr().err


# --- profile ------------------------------------------------------------------------------


def _events() -> list[KernelEvent]:
    evs = []
    for run in range(3):
        t = 1_000_000 * (run + 1)
        evs.append(KernelEvent("k0_conv", ["Conv(c1)", "Relu(r1)"], t, 3000 + run, 6000, run))
        evs.append(KernelEvent("k1_add", ["Add(a)"], t + 4000, 1000, 10, run))
    return evs


def test_chrome_trace_has_one_track_per_run_starting_at_zero(tmp_path):
    path = tmp_path / "trace.json"
    bench.write_chrome_trace(_events(), path, {"model": "m"})
    trace = json.loads(path.read_text())
    kernels = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(kernels) == 6 and {e["tid"] for e in kernels} == {0, 1, 2}
    first = [e for e in kernels if e["name"] == "k0_conv"]
    assert all(e["ts"] == 0 for e in first) and first[0]["dur"] == 3.0  # microseconds
    assert first[0]["args"]["ops"] == "Conv(c1) + Relu(r1)" and first[0]["args"]["gflops_per_s"] == 2.0
    assert trace["otherData"] == {"model": "m"}


def test_top_kernels_takes_medians_shares_and_rates():
    rows = bench.top_kernels(_events(), n=5)
    assert [r["name"] for r in rows] == ["k0_conv", "k1_add"]
    assert rows[0]["median_ns"] == 3001 and rows[0]["share"] == pytest.approx(3001 / 4001)
    assert rows[0]["gflops_per_s"] == pytest.approx(6000 / 3001)
    assert len(bench.top_kernels(_events(), n=1)) == 1
    table = bench.format_top_table(rows, 4001)
    assert "k0_conv" in table and "Conv(c1) + Relu(r1)" in table and "75.0%" in table


def test_profile_native_times_every_kernel_call(tiny):
    from compiler.ir.errors import TargetError

    feeds, used = bench.random_feeds(str(tiny), batch=1)
    try:
        events = bench.profile_native(str(tiny), used, feeds, runs=2, threads=1)
    except TargetError as e:
        pytest.skip(f"llvm target unavailable: {e}")
    runs = {e.run for e in events}
    assert runs == {0, 1}
    per_run = [e for e in events if e.run == 0]
    assert len(per_run) == len(events) // 2 and all(e.dur_ns >= 0 for e in events)
    starts = [e.start_ns for e in per_run]
    assert starts == sorted(starts)  # calls in program order, stamped by the native clock
    assert any(op.startswith("Conv") for e in per_run for op in e.ops)
    assert sum(e.flops for e in per_run) > 0


# --- benchmarks/ --------------------------------------------------------------------------


def _report() -> dict:
    def system(name, median, **kw):
        return {"system": name, "label": name, "median_ms": median, "p90_ms": median * 1.1, "min_ms": median * 0.9,
                "runs": 30, **kw}

    return {"machine": {"cpu": "Test CPU", "logical_cpus": 4, "physical_cores": 2, "features": ["avx2", "fma"]},
            "threads": 2, "peak": {"fma_peak_gflops": 100.0, "sgemm_gflops": 80.0},
            "plan": {"runs": 30, "warmup": 2, "rounds": 10, "budget_s": 60, "caps": {"tvm": 10}},
            "models": [{"name": "m", "flops": 2_000_000_000, "systems": [
                system("onnxruntime", 10.0, max_abs_diff=0.0),
                system("ours", 20.0, max_abs_diff=1e-6, reduced_runs=True),
                system("torch", 5.0, max_abs_diff=float("nan")),
                {"system": "tvm", "label": "tvm", "error": "RuntimeError: boom"}]}]}


def test_report_rows_ratios_and_peak_fraction():
    rows = {r["system"]: r for r in report.rows(_report())}
    assert rows["ours"]["ratio"] == 2.0 and rows["onnxruntime"]["ratio"] == 1.0
    assert rows["onnxruntime"]["gflops"] == pytest.approx(200.0) and rows["ours"]["peak_fraction"] == pytest.approx(1.0)
    assert rows["tvm"]["error"] == "RuntimeError: boom" and "ratio" not in rows["tvm"]


def test_markdown_table(tmp_path):
    md = report.markdown(_report())
    assert "Test CPU, 2 cores / 4 threads, avx2 fma" in md
    assert "| m | 1 | 2.00 | ours | 20.00 | 22.00 | 18.00 | 30* | 2.00 | 100.00 | 100.0 | 50.00 | 1e-06 |" in md
    assert "failed: RuntimeError: boom" in md
    assert "| torch | 5.00 |" in md and "**wrong (NaN or shape)**" in md
    pytest.importorskip("matplotlib")
    paths = report.write_all(_report(), tmp_path)
    assert paths["chart"].read_bytes()[:4] == b"\x89PNG" and json.loads(paths["json"].read_text())["threads"] == 2


def test_machine_info_reads_this_host():
    info = report.machine_info()
    assert info["logical_cpus"] >= 1 and isinstance(info["features"], list)


def test_fma_peak_kernel_is_independent_vector_fma_chains():
    text = peak.fma_module(8, chains=4)
    assert text.count("call <8 x float> @\"llvm.fma.v8f32\"") == 4
    assert peak.vector_lanes({"avx", "avx512f"}) == 16 and peak.vector_lanes({"avx"}) == 8
    assert peak.vector_lanes(set()) == 4
    k = peak.FmaKernel()
    assert np.isfinite(k.run(1000)) and k.flops(10) == 2 * 10 * peak.CHAINS * k.lanes


def test_torch_systems_run_only_torch_defined_models():
    from benchmarks import models, run

    cnn = models.BenchModel("resnet50", "m.onnx", "i.npz", {}, None, 1, True)
    mlp = models.BenchModel("mlp", "m.onnx", "i.npz", {}, "mlp", 1, True)
    systems = ["ours", "onnxruntime", "torch", "torch.compile"]
    assert run.systems_for(cnn, systems) == ["ours", "onnxruntime"]
    assert run.systems_for(mlp, systems) == systems


def test_prepare_writes_the_seeded_mlp_with_its_flops(tmp_path):
    pytest.importorskip("torch")
    from benchmarks import models

    m = models.prepare("mlp", tmp_path)
    assert m.input_shapes == {"x": [64, 784]} and m.torch_model == "mlp" and m.flops_exact
    macs = 784 * 512 + 512 * 512 + 512 * 10
    assert m.flops == 64 * (2 * macs + 512 + 512 + 10) + 64 * (512 + 512)  # Gemm + bias, then two ReLUs
    assert models.prepare("mlp", tmp_path) == m  # cached
