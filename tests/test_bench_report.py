"""The issue-6 reporting of benchmarks/: batch sizes (model rewrite, flag), the ours-vs-onnxruntime
tables (ratio, geometric mean, max, fraction of peak, items/s), the two-panel chart, and
profile_compare (op-kind grouping, onnxruntime profile parsing, the tiny model end to end).
Correctness only: nothing here asserts how fast anything is."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))
from benchmarks import models, profile_compare, report, run  # noqa: E402
from make_example import build_tiny_cnn  # noqa: E402

from compiler.ir.errors import CompilerError, TargetError  # noqa: E402

# --- batch sizes --------------------------------------------------------------------------


def _flatten_then_matmul() -> onnx.ModelProto:
    """x [1, 2, 2] -> Reshape to the constant [1, 4] -> MatMul by w [4, 3] -> y [1, 3], plus a
    Reshape of a weight whose target also starts with 1 (it must keep its size)."""
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(1, 12), "w_flat")
    inits = [numpy_helper.from_array(np.array([1, 4], np.int64), "flat_shape"),
             numpy_helper.from_array(np.array([4, 3], np.int64), "w_shape"), w]
    nodes = [helper.make_node("Reshape", ["x", "flat_shape"], ["flat"], name="flatten"),
             helper.make_node("Reshape", ["w_flat", "w_shape"], ["w"], name="weight"),
             helper.make_node("MatMul", ["flat", "w"], ["y"], name="fc")]
    graph = helper.make_graph(nodes, "flat_mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits,
                              value_info=[helper.make_tensor_value_info("flat", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by the installed onnxruntime, whatever onnx writes by default
    return model


def test_with_batch_rewrites_io_and_activation_reshapes_only():
    import onnxruntime as ort

    original = _flatten_then_matmul()
    batched = models.with_batch(original, 3)
    dims = [d.dim_value for d in batched.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [3, 2, 2] and batched.graph.output[0].type.tensor_type.shape.dim[0].dim_value == 3
    assert not batched.graph.value_info  # the stale [1, 4] annotation is gone
    reshapes = {n.name: n.input[1] for n in batched.graph.node if n.op_type == "Reshape"}
    assert reshapes["weight"] == "w_shape"  # a weight's reshape is left alone
    assert original.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1  # the input model is untouched
    x = np.random.default_rng(0).standard_normal((3, 2, 2)).astype(np.float32)
    one = ort.InferenceSession(original.SerializeToString(), providers=["CPUExecutionProvider"])
    many = ort.InferenceSession(batched.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = np.concatenate([one.run(None, {"x": x[i:i + 1]})[0] for i in range(3)])
    np.testing.assert_allclose(many.run(None, {"x": x})[0], expected, rtol=1e-6)


def test_mlp_keeps_its_fixed_batch_and_others_follow_the_flag():
    assert models.batches_for("mlp", [1, 8]) == [64]
    assert models.batches_for("squeezenet", [1, 8]) == [1, 8]
    assert models.batches_for("bert", [8]) == [8]


def test_batch_flag_parses_distinct_positive_sizes():
    assert run.parse_batches("1,8") == [1, 8]
    assert run.parse_batches("8, 1,8") == [8, 1]
    for bad in ("0", "1,x", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            run.parse_batches(bad)


# --- the ours-vs-onnxruntime tables ----------------------------------------------------------


def _entry(name: str, batch: int, flops: float, ours_ms: float, ort_ms: float, **ours_extra) -> dict:
    def system(sys_name, median, **kw):
        return {"system": sys_name, "label": sys_name, "median_ms": median, "p90_ms": median, "min_ms": median,
                "runs": 30, **kw}

    return {"name": name, "batch": batch, "flops": flops, "input_shapes": {"x": [batch, 3]},
            "systems": [system("ours", ours_ms, **ours_extra), system("onnxruntime", ort_ms, max_abs_diff=0.0)]}


def _results() -> dict:
    return {"machine": {"cpu": "Test CPU", "logical_cpus": 2, "physical_cores": 2, "features": ["avx2"]},
            "threads": 2, "peak": {"fma_peak_gflops": 200.0, "sgemm_gflops": 50.0},
            "plan": {"runs": 30, "warmup": 1, "rounds": 10, "budget_s": 60, "caps": {}},
            "models": [_entry("a", 1, 1e9, 20.0, 10.0, max_abs_diff=1e-6),  # ratio 2, 50 GFLOP/s
                       _entry("a", 8, 8e9, 80.0, 40.0, max_abs_diff=1e-6),  # ratio 2
                       _entry("b", 1, 2e9, 80.0, 10.0, max_abs_diff=float("nan")),  # ratio 8, wrong output
                       _entry("b", 8, 16e9, 160.0, 80.0, max_abs_diff=1e-6)]}  # ratio 2


def test_geomean():
    assert report.geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert report.geomean([]) is None
    with pytest.raises(ValueError):
        report.geomean([1.0, 0.0])


def test_comparison_per_batch_has_ratios_geomean_max_peak_fraction_and_items_per_s():
    per_batch = report.comparison(_results())
    assert list(per_batch) == [1, 8]
    one = per_batch[1]
    a, b = one["rows"]
    assert (a["model"], a["ratio"], a["gflops"], a["peak_fraction"]) == ("a", 2.0, pytest.approx(50.0),
                                                                         pytest.approx(0.25))
    assert a["items_per_s"] == pytest.approx(50.0) and a["ort_items_per_s"] == pytest.approx(100.0)
    assert b["wrong"] and not a["wrong"]
    assert one["geomean_ratio"] == pytest.approx(4.0) and (one["max_ratio"], one["max_ratio_model"]) == (8.0, "b")
    eight = per_batch[8]
    assert eight["geomean_ratio"] == pytest.approx(2.0)
    assert eight["rows"][0]["items_per_s"] == pytest.approx(8 / 0.080)


def test_comparison_skips_models_without_both_systems():
    results = _results()
    results["models"][0]["systems"][1] = {"system": "onnxruntime", "label": "ort", "error": "boom"}
    assert [r["model"] for r in report.comparison(results)[1]["rows"]] == ["b"]


def test_batch_of_old_results_is_the_first_inputs_leading_dim():
    assert report.batch_of({"input_shapes": {"x": [64, 784]}}) == 64
    assert report.batch_of({"batch": 8, "input_shapes": {"x": [1, 3]}}) == 8
    assert report.batch_of({}) == 1


def test_markdown_has_a_table_per_batch_and_the_throughput_side_by_side():
    md = report.markdown(_results())
    assert "#### Batch 1" in md and "#### Batch 8" in md
    assert "| a | 20.00 | 10.00 | 2.00 | 50.00 | 25.00 | 100.00 | 50.00 | 50.00 | 100 | 30/30 |" in md
    assert "| b (**wrong output**) |" in md
    assert "Batch 1: geometric mean ratio 4.00 over 2 model(s); max ratio 8.00 (b)." in md
    assert "Batch 8: geometric mean ratio 2.00 over 2 model(s); max ratio 2.00 (a)." in md
    assert "| model | ours b1 | ours b8 | onnxruntime b1 | onnxruntime b8 |" in md
    assert "| a | 50.00 | 100 | 100 | 200 |" in md
    assert "| a | 8 | 8.00 | ours | 80.00 |" in md  # the every-system table keeps the batch per row


def test_chart_has_a_panel_per_batch(tmp_path):
    pytest.importorskip("matplotlib")
    paths = report.write_all(_results(), tmp_path)
    assert paths["chart"].read_bytes()[:4] == b"\x89PNG"
    assert [m["batch"] for m in json.loads(paths["json"].read_text())["models"]] == [1, 8, 1, 8]


# --- profile_compare ------------------------------------------------------------------------


@pytest.mark.parametrize("text, kind", [
    ("k12_convnhwc", "conv"), ("FusedConv", "conv"), ("ConvTranspose", "conv"),
    ("k3_maxpoolnhwc", "pool/reduce"), ("GlobalAveragePool", "pool/reduce"), ("k4_reducemean", "pool/reduce"),
    ("MatMul", "gemm/matmul"), ("FusedGemm", "gemm/matmul"), ("k5_1_linear", "gemm/matmul"),
    ("Concat", "concat/transpose/copy"), ("ReorderOutput", "concat/transpose/copy"),
    ("Transpose", "concat/transpose/copy"), ("Expand", "concat/transpose/copy"), ("k1_relu", "elementwise"),
    ("Add", "elementwise"), ("Max", "elementwise"), ("Softmax", "other"), ("LayerNormalization", "other"),
    ("ArgMax", "other"), ("k9_frobnicate", "other"),
])
def test_op_kind(text, kind):
    assert profile_compare.op_kind(text) == kind


def test_kernel_kind_falls_back_on_the_ops_it_computes():
    assert profile_compare.kernel_kind("k4_conv_relu", ["Conv(c)", "Relu(r)"]) == "conv"
    assert profile_compare.kernel_kind("k4_fused", ["Conv(c)", "Relu(r)"]) == "conv"
    assert profile_compare.kernel_kind("k4_fused", ["Frob(f)"]) == "other"


def _ort_events() -> list[dict]:
    events = [{"cat": "Session", "name": "session_initialization", "dur": 5000}]
    for scale in (100, 1, 2, 3):  # the first run is the warm-up, far slower
        events.append({"cat": "Session", "name": "model_run", "dur": 10 * scale})
        events.append({"cat": "Node", "name": "conv1_fence_before", "dur": 0, "args": {"op_name": "Conv"}})
        events.append({"cat": "Node", "name": "conv1_kernel_time", "dur": 6 * scale, "args": {"op_name": "Conv"}})
        events.append({"cat": "Node", "name": "fc_kernel_time", "dur": 2 * scale, "args": {"op_name": "Gemm"}})
    return events


def test_parse_ort_profile_takes_per_node_medians_after_the_warmup():
    parsed = profile_compare.parse_ort_profile(_ort_events(), warmup_runs=1)
    assert [(n["name"], n["op"], n["median_ns"], n["calls"]) for n in parsed["nodes"]] == [
        ("conv1", "Conv", 12_000.0, 4), ("fc", "Gemm", 4_000.0, 4)]  # microseconds -> ns
    assert parsed["run_median_ns"] == 20_000.0


def test_kind_table_sums_shares_and_ratios():
    ours = [{"name": "k0_conv", "ops": ["Conv(c)"], "median_ns": 30e6, "kind": "conv"},
            {"name": "k1_relu", "ops": ["Relu(r)"], "median_ns": 10e6, "kind": "elementwise"}]
    ort = [{"name": "c", "op": "FusedConv", "median_ns": 3e6}, {"name": "t", "op": "Transpose", "median_ns": 1e6}]
    rows = {r["kind"]: r for r in profile_compare.kind_table(ours, ort)}
    assert list(rows) == list(profile_compare.KINDS) + ["total"]
    assert rows["conv"]["ours_ms"] == 30.0 and rows["conv"]["ours_share"] == 0.75 and rows["conv"]["ratio"] == 10.0
    assert rows["elementwise"]["ratio"] is None and rows["concat/transpose/copy"]["ort_share"] == 0.25
    assert rows["total"]["ours_ms"] == 40.0 and rows["total"]["ratio"] == 10.0
    md = profile_compare.markdown("m", list(rows.values()), [dict(k, flops=0, gflops_per_s=0.0) for k in ours], ort,
                                  top=1, notes=["note"])
    assert "| conv | 30.000 | 75.0% | 3.000 | 75.0% | 10.00 |" in md
    assert "| k0_conv | conv | 30.000 | 75.0% |" in md and "k1_relu" not in md  # only the top 1


def test_run_span_is_first_start_to_last_end_per_run():
    from compiler.bench import KernelEvent

    events = [KernelEvent("k0", [], 100, 10, 0, 0), KernelEvent("k1", [], 150, 20, 0, 0),  # span 70
              KernelEvent("k0", [], 1000, 10, 0, 1), KernelEvent("k1", [], 1010, 80, 0, 1),  # span 90
              KernelEvent("k0", [], 5000, 5, 0, 2), KernelEvent("k1", [], 5005, 75, 0, 2)]  # span 80
    assert profile_compare.run_span_median(events) == 80.0
    assert profile_compare.run_span_median([]) is None


def test_slowest_model_is_the_largest_ratio_at_the_batch():
    assert profile_compare.slowest_model(_results(), 1) == "b"
    with pytest.raises(CompilerError, match="batch 4"):
        profile_compare.slowest_model(_results(), 4)


def test_profile_compare_runs_the_tiny_model_end_to_end(tmp_path, capsys):
    path = tmp_path / "tiny_cnn.onnx"
    onnx.save(build_tiny_cnn(), path)
    try:
        code = profile_compare.main([str(path), "--runs", "2", "--threads", "1", "--out", str(tmp_path)])
    except TargetError as e:
        pytest.skip(f"llvm target unavailable: {e}")
    assert code == 0
    text = (tmp_path / "profile_tiny_cnn.md").read_text()
    assert text == capsys.readouterr().out.split("written:")[0].rstrip("\n") + "\n"
    conv = next(line for line in text.splitlines() if line.startswith("| conv |"))
    cells = [c.strip() for c in conv.strip("|").split("|")]
    assert float(cells[1]) > 0 and float(cells[3]) > 0  # both systems spent time in the two convolutions
    assert "onnxruntime's top 15 nodes" in text and "| Conv | conv |" in text


def test_profile_compare_rejects_an_unknown_model(tmp_path, capsys):
    assert profile_compare.main(["no_such_model", "--out", str(tmp_path)]) == 1
    assert "neither an ONNX file nor a zoo model" in capsys.readouterr().err


def test_call_sites_name_the_nodes_each_call_computes():
    """The profile credits each kernel call with the nodes the artifact's listing says it computes."""
    from compiler.bench import call_sites

    listing = [{"kernel": "k1_0_convnhwc", "function": "k1_0_convnhwc", "ops": ["ConvNhwc"], "nodes": ["c"], "flops": 100},
               {"kernel": "k1_1_relu", "function": "k1_1_relu", "ops": ["Relu"], "nodes": ["r"], "flops": 1},
               {"kernel": "copy_f32_10", "function": "copy_f32_10", "ops": [], "nodes": [], "flops": 0}]
    assert call_sites(listing) == [("k1_0_convnhwc", ["ConvNhwc(c)"], 100), ("k1_1_relu", ["Relu(r)"], 1),
                                   ("copy_f32_10", ["copy_f32_10"], 0)]
