"""Distributed tuning on a local Ray cluster (compiler.autotune.distributed): candidates built
as Ray tasks and timed on the device's actor search exactly what a local run searches, the
results land in the same database, and a cluster without the device's node is refused."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from compiler.autotune import database as D  # noqa: E402
from compiler.autotune.device import device_of  # noqa: E402
from compiler.autotune.distributed import connect, device_resource, device_tuner, tune_on  # noqa: E402
from compiler.autotune.problems import tuning_problem  # noqa: E402
from compiler.autotune.tuner import tune_problem  # noqa: E402
from compiler.codegen.llvm.microkernels import AOperand, Epilogue, GemmProblem  # noqa: E402
from compiler.ir.errors import CompilerError  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from make_example import build_tiny_cnn  # noqa: E402

PROBLEM = GemmProblem(AOperand.matrix(64, 128), 96, epilogue=Epilogue(bias=True, activation="relu"))


@pytest.fixture(scope="module")
def target(tuning_target):
    return tuning_target


@pytest.fixture(scope="module")
def cluster(target):
    connect("local", device_of(target, 2))
    yield
    ray.shutdown()


pytestmark = pytest.mark.usefixtures("private_tuning_cache")


def _decisive(timings: list, margin: float = 1.15) -> bool:
    """The fastest candidate beats every other by `margin`: a winner noise cannot move."""
    ms = sorted(t for _, t in timings)
    return len(ms) < 2 or ms[1] >= margin * ms[0]


def test_ray_and_local_search_the_same_candidates_and_agree_on_a_clear_winner(target, cluster):
    from compiler.autotune import space

    problem = tuning_problem(PROBLEM)
    local = tune_problem(problem, target, 2, budget_s=60.0, strict=True)
    actor = device_tuner(device_of(target, 2))
    remote = tune_on(actor, problem, target, 2, 60.0)
    # stage 1 (register tiles) is the same list for both, each candidate built, checked, timed;
    # stage 2 blocks around stage 1's winner, a timing: it matches when the winners match
    first = space.tile_stage(problem, target)
    for run in (local, remote):
        assert [s for s, _ in run.timings][:len(first)] == first
    assert remote.rejected == local.rejected and remote.key == local.key
    assert remote.default_ms > 0 and remote.ms > 0
    stage1 = [min(run.timings[:len(first)], key=lambda st: st[1])[0] for run in (local, remote)]
    if stage1[0] == stage1[1]:
        assert [s for s, _ in remote.timings] == [s for s, _ in local.timings]
    if _decisive(local.timings) and _decisive(remote.timings):
        assert remote.schedule == local.schedule
    else:  # timings within noise of each other: each winner is among the other run's fastest
        fastest = {str(s) for s, _ in sorted(local.timings, key=lambda st: st[1])[:4]}
        assert str(remote.schedule) in fastest or remote.schedule == local.timings[0][0]


def test_compile_tune_on_ray_fills_the_same_database(target, cluster, tmp_path, capsys):
    import onnx

    from compiler.cli import main

    path = tmp_path / "tiny.onnx"
    onnx.save(build_tiny_cnn(), path)
    assert main(["tune", str(path), "--input-shape", "image=1,3,32,32", "--threads", "2", "--budget", "6",
                 "--ray", "local"]) == 0
    out = capsys.readouterr()
    assert "total" in out.out
    rows = D.TuningDatabase(device_of(target, 2)).entries()
    products = [k for k in rows if not k.startswith("loop:")]
    assert len(products) == 3 and len(rows) > 3 and all(e["ms"] > 0 for e in rows.values())  # and loop kernels
    assert main(["tune", str(path), "--input-shape", "image=1,3,32,32", "--threads", "2", "--budget", "6"]) == 0
    assert capsys.readouterr().out.count("(cached)") == len(rows)  # the local path reads what Ray wrote


def test_a_cluster_without_the_devices_node_is_refused_by_name(target, cluster):
    other = device_of(target, 1)  # another thread count: another device
    with pytest.raises(CompilerError, match=device_resource(other)):
        connect("local", other)


def test_loop_kernel_candidates_built_on_ray_search_what_a_local_run_searches(target, cluster):
    """Loop-IR candidates travel to the Ray tasks as loop_ir_json data and come back built:
    the same candidates, each checked against the default, as the local builder gives."""
    from onnx import TensorProto, helper

    from compiler.api import import_model
    from compiler.autotune.distributed import loop_ray_builder
    from compiler.autotune.loop_kernels import candidates, tune_loop_kernel
    from compiler.autotune.model import loop_tasks_of_graph
    from compiler.backends import parse_target
    from compiler.backends.base import BuildOptions

    node = helper.make_node("Softmax", ["x"], ["y"], axis=-1)
    graph = helper.make_graph([node], "softmax", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6, 45])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    backend = parse_target("llvm").backend
    optimized = backend.optimize(import_model(model), backend.default_opt_level, options=BuildOptions())
    task, = [t for t, _ in loop_tasks_of_graph(optimized, target)]
    trials = min(8, len(candidates(task)))
    local = tune_loop_kernel(task, target, 2, 30.0, max_trials=trials, strict=True)
    remote = tune_loop_kernel(task, target, 2, 30.0, max_trials=trials, strict=True, builder=loop_ray_builder())
    assert [s for s, _ in remote.timings] == [s for s, _ in local.timings]
    assert not remote.rejected and remote.key == local.key
