"""Tuning loop-IR kernels (compiler.autotune.loop_kernels): every point of a kernel class's
schedule space computes what the default computes (checked over whole spaces, strict), a
wrong candidate is caught before it is timed, results land in the tuning database and
builds use them, kernels that read run-time indices are left alone, and the cost model
learns an order from timings.

Timings are only checked to be positive: the machine is shared.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from compiler.api import import_model
from compiler.autotune import TunedSchedules
from compiler.autotune import database as D
from compiler.autotune.cost_model import CostModel, available
from compiler.autotune.device import device_of
from compiler.autotune.loop_kernels import LoopTask, candidates, tune_loop_kernel
from compiler.autotune.model import loop_tasks_of_graph
from compiler.autotune.tuner import CandidateMismatch
from compiler.backends import parse_target
from compiler.backends.base import BuildOptions
from compiler.codegen.schedule import SPACES, HeuristicDefault, Schedule, default_schedule, space_points

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from make_example import build_tiny_cnn  # noqa: E402


pytestmark = pytest.mark.usefixtures("private_tuning_cache")


@pytest.fixture(scope="module")
def target(tuning_target):
    return tuning_target


def _model(op: str, shape: list, attrs: dict | None = None, extra_inputs=(), initializers=()) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node(op, ["x", *[i.name for i in extra_inputs], *[t.name for t in initializers]], ["y"],
                            **(attrs or {}))
    graph = helper.make_graph([node], op.lower(), [x, *extra_inputs], [y], initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _tasks(model: onnx.ModelProto, target) -> list[LoopTask]:
    backend = parse_target("llvm").backend
    graph = backend.optimize(import_model(model), backend.default_opt_level, options=BuildOptions())
    return [task for task, _ in loop_tasks_of_graph(graph, target)]


def _layernorm():
    scale = helper.make_tensor("s", TensorProto.FLOAT, [40], np.linspace(0.5, 1.5, 40, dtype=np.float32))
    bias = helper.make_tensor("b", TensorProto.FLOAT, [40], np.linspace(-1, 1, 40, dtype=np.float32))
    return _model("LayerNormalization", [6, 40], {"axis": -1}, initializers=[scale, bias])


def test_every_space_point_is_a_schedule_and_the_default_is_one(target):
    for klass, knobs in SPACES.items():
        points = space_points(klass)
        assert len(points) == np.prod([len(k.choices) for k in knobs])
        assert len({tuple(sorted(p.knobs.items())) for p in points}) == len(points)
        assert default_schedule(klass, target.vector_bits) in points


@pytest.mark.parametrize("model", [
    pytest.param(_layernorm, id="layernorm"),
    pytest.param(lambda: _model("Softmax", [5, 37], {"axis": -1}), id="softmax"),
    pytest.param(lambda: _model("MaxPool", [1, 3, 13, 11], {"kernel_shape": [3, 3], "strides": [2, 2]}),
                 id="maxpool"),
    pytest.param(lambda: _model("Transpose", [2, 5, 16, 24], {"perm": [0, 2, 3, 1]}), id="transpose"),
    pytest.param(lambda: _model("Erf", [3, 37]), id="elementwise"),
    pytest.param(lambda: _model("ReduceSum", [7, 9, 33], {"keepdims": 0},
                                initializers=[helper.make_tensor("axes", TensorProto.INT64, [1], [2])]), id="reducesum"),
])
def test_every_candidate_of_a_kernel_computes_what_the_default_computes(model, target):
    """The whole space, strict: a candidate that differs from the default raises."""
    tasks = _tasks(model(), target)
    searched = 0
    for task in tasks:
        cands = candidates(task)
        assert isinstance(cands[0][0], HeuristicDefault) and cands[0][1] is task.plan
        assert len({plan.key() for _, plan in cands}) == len(cands)  # one candidate per distinct kernel
        result = tune_loop_kernel(task, target, 2, budget_s=60.0, max_trials=len(cands), strict=True)
        if len(cands) == 1:  # a layout copy the schedule does not shape: nothing to search
            assert result is None
            continue
        searched += 1
        assert result is not None and not result.rejected
        assert result.candidates == len(cands) and result.ms > 0 and result.default_ms > 0
        assert isinstance(result.timings[0][0], HeuristicDefault)
    assert searched, "the op's own kernel has a space to search"


def test_a_candidate_that_computes_something_else_is_caught(target):
    relu, = _tasks(_model("Relu", [4, 50]), target)
    sigmoid, = _tasks(_model("Sigmoid", [4, 50]), target)
    # the same signature and class, other values: the check must refuse it before timing it
    wrong = LoopTask(relu.plan, sigmoid.rebuild, relu.consts)
    with pytest.raises(CandidateMismatch, match="different result"):
        tune_loop_kernel(wrong, target, 2, budget_s=30.0, strict=True)
    with pytest.warns(RuntimeWarning, match="different result"):
        result = tune_loop_kernel(wrong, target, 2, budget_s=30.0)
    assert result.rejected and all("different result" in r for r in result.rejected)
    assert isinstance(result.schedule, HeuristicDefault)  # only the default stood


def test_a_kernel_reading_run_time_indices_is_not_tuned(target):
    idx = helper.make_tensor_value_info("i", TensorProto.INT64, [6])
    model = _model("Gather", [10, 16], {"axis": 0}, extra_inputs=[idx])
    backend = parse_target("llvm").backend
    graph = backend.optimize(import_model(model), backend.default_opt_level, options=BuildOptions())
    from compiler.codegen.model_builder import build_program
    from compiler.codegen.schedule import Schedules

    seen = []

    class Look(Schedules):
        def for_loop_kernel(self, plan, rebuild, target, consts):
            seen.append(LoopTask(plan, rebuild, consts).why_not_tunable())
            return plan

    build_program(graph, target, Look())
    assert any(why and "known only at run time" in why for why in seen)
    assert not [t for t, _ in loop_tasks_of_graph(graph, target) if "gather" in t.name]


def test_the_database_keeps_loop_schedules_and_builds_use_them(target, tmp_path):
    import compiler

    model = _layernorm()
    task, = _tasks(model, target)
    point = next(p for p in space_points(task.kernel_class)
                 if p.knobs["vector_width"] == 4 and p.knobs["unroll"] == 2 and p.knobs["parallel"] == 0)
    db = D.TuningDatabase(device_of(target, 2))
    db.put(task.key, point, 0.01, 0.02, 3, [(HeuristicDefault(task.kernel_class), 0.02), (point, 0.01)])
    entry = db.entries()[task.key]
    assert entry["schedule"] == point
    assert [s for s, _, _ in db.timings(task.key)] == [HeuristicDefault(task.kernel_class), point]
    # a build asks TunedSchedules and gets the recorded schedule's kernel
    tuned = TunedSchedules(threads=2).for_loop_kernel(task.plan, task.rebuild, target, task.consts)
    assert tuned.kernel.schedule == point.knobs and tuned.key() != task.plan.key()
    x = np.random.default_rng(1).standard_normal((6, 40)).astype(np.float32)
    got = compiler.compile(model, num_threads=2).run({"x": x})["y"]
    want = compiler.compile(model, num_threads=2, tuned=False).run({"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert "vector_width=4" in compiler.compile(model, num_threads=2).kernel_listing
    # the default recorded as the winner: the build keeps the untuned kernel
    db.put(task.key, HeuristicDefault(task.kernel_class), 0.02, 0.02, 3)
    again = TunedSchedules(threads=2).for_loop_kernel(task.plan, task.rebuild, target, task.consts)
    assert again is task.plan


def test_a_record_of_another_kernel_class_is_not_applied(target):
    task, = _tasks(_layernorm(), target)
    other = next(iter(space_points("elementwise")))
    assert task.schedule_plan(other) is None
    assert task.schedule_plan(HeuristicDefault("pool")) is None


def test_compile_tune_reports_loop_kernels_and_fills_the_database(target, tmp_path, capsys):
    from compiler.cli import main

    path = tmp_path / "tiny.onnx"
    onnx.save(build_tiny_cnn(), path)
    assert main(["tune", str(path), "--input-shape", "image=1,3,32,32", "--threads", "2", "--budget", "8"]) == 0
    out = capsys.readouterr().out
    assert "pool maxpoolnhwc" in out and "total" in out
    loops = {k: e for k, e in D.TuningDatabase(device_of(target, 2)).entries().items() if k.startswith("loop:")}
    assert loops and all(e["ms"] > 0 and e["candidates"] >= 1 for e in loops.values())
    assert main(["tune", str(path), "--input-shape", "image=1,3,32,32", "--threads", "2", "--budget", "8"]) == 0
    second = capsys.readouterr().out
    assert "pool maxpoolnhwc" in second and "(cached)" in second
    rows = D.TuningDatabase(device_of(target, 2)).entries()
    assert {k for k in rows if k.startswith("loop:")} == set(loops)  # the second run tuned nothing new


@pytest.mark.skipif(not available(), reason="the cost model needs the 'tune' extra (lightgbm)")
def test_the_cost_model_learns_which_knob_values_are_faster(target):
    """Synthetic timings in which wider vectors are faster: the model must rank by width."""
    task, = _tasks(_layernorm(), target)
    model = CostModel()
    cands = candidates(task)[1:]
    for schedule, plan in cands:
        model.add(model.features(task, schedule, plan), 1.0 / schedule.knobs["vector_width"])
    assert model.ready()
    scores = model.predict([model.features(task, s, p) for s, p in cands])
    widths = [s.knobs["vector_width"] for (s, _), _ in sorted(zip(cands, scores), key=lambda cs: cs[1])]
    assert widths[0] == max(widths) and widths[-1] == min(widths)


def test_without_enough_rows_the_model_keeps_the_random_order(target):
    model = CostModel()
    assert not model.ready()
    assert model.predict([[0.0], [1.0]]) == [0.0, 0.0]


def test_schedules_validate_their_knobs():
    with pytest.raises(Exception, match="outside"):
        Schedule("pool", {"vector_width": 3, "parallel": 1, "min_parallel_work": 4096, "unroll": 4})


def test_a_terminal_gets_a_progress_bar_and_a_log_gets_lines(target):
    import io

    from compiler.autotune.model import tune_graph

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    backend = parse_target("llvm").backend
    graph = backend.optimize(import_model(build_tiny_cnn(), {"image": [1, 3, 32, 32]}), backend.default_opt_level,
                             options=BuildOptions())
    tty, log = Terminal(), io.StringIO()
    reports = tune_graph(graph, target, 2, 6.0, stream=tty)
    assert "autotune:" in tty.getvalue() and "%|" in tty.getvalue()  # tqdm's bar
    assert sum("autotune [" in line for line in tty.getvalue().split("\n")) >= len(reports)
    tune_graph(graph, target, 2, 6.0, stream=log)  # all cached now: one line per kernel, no bar
    assert "%|" not in log.getvalue() and log.getvalue().count(": cached") == len(reports)
