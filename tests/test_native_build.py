"""The llvm target's whole build (`compiler.backends.llvm`): graph passes, fused kernels and
code generation together, at every optimization level; pure data-movement groups as one
permuted copy (`codegen.permute_copy`)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

import compiler
from compiler.codegen.permute_copy import collapse
from compiler.frontend.onnx_import import import_onnx
from compiler.backends import BACKENDS
from compiler.zoo.tolerances import assert_close

from filecheck import FileCheck

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from make_example import build_tiny_cnn  # noqa: E402


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPILER_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("shape, perm, expected", [
    ((1, 56, 56, 3, 80), (0, 1, 2, 4, 3), ((3136, 3, 80), (0, 2, 1))),  # ShuffleNet's channel shuffle
    ((2, 1, 3, 4), (3, 1, 0, 2), ((6, 4), (1, 0))),  # a size-1 axis between two that merge
    ((2, 3, 4), (0, 1, 2), ((24,), (0,))),  # the identity is one flat copy
    ((2, 3, 4, 5), (0, 3, 1, 2), ((2, 12, 5), (0, 2, 1))),  # NCHW -> NHWC
    ((1, 1), (1, 0), ((), ())),
])
def test_collapse_merges_axes_that_move_together(shape, perm, expected):
    assert collapse(shape, perm) == expected


@pytest.mark.parametrize("shape, perm", [((1, 56, 56, 3, 80), (0, 1, 2, 4, 3)), ((2, 1, 3, 4), (3, 1, 0, 2)),
                                         ((2, 3, 4, 5), (0, 3, 1, 2)), ((4, 5, 6), (2, 0, 1))])
def test_collapsed_transpose_is_the_transpose(shape, perm):
    """numpy check of the index algebra the permuted-copy kernel relies on."""
    x = np.arange(np.prod(shape)).reshape(shape)
    in_shape, cperm = collapse(shape, perm)
    got = x.reshape(in_shape or (1,)).transpose(cperm or (0,)).reshape(-1)
    np.testing.assert_array_equal(got, x.transpose(perm).reshape(-1))


def _shuffle_model(groups=3, channels=12, hw=5):
    """Conv -> Relu -> channel shuffle (Reshape, Transpose, Reshape) -> Conv, as ShuffleNet exports it."""
    rng = np.random.default_rng(0)
    w = helper.make_tensor("w", TP.FLOAT, [channels, 4, 1, 1], rng.standard_normal((channels, 4, 1, 1)).astype(np.float32).ravel())
    w2 = helper.make_tensor("w2", TP.FLOAT, [8, channels, 1, 1], rng.standard_normal((8, channels, 1, 1)).astype(np.float32).ravel())
    s1 = helper.make_tensor("s1", TP.INT64, [5], [1, groups, channels // groups, hw, hw])
    s2 = helper.make_tensor("s2", TP.INT64, [4], [1, channels, hw, hw])
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("Relu", ["c"], ["a"]),
             helper.make_node("Reshape", ["a", "s1"], ["r1"]),
             helper.make_node("Transpose", ["r1"], ["t"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t", "s2"], ["r2"]),
             helper.make_node("Conv", ["r2", "w2"], ["y"])]
    g = helper.make_graph(nodes, "shuffle", [helper.make_tensor_value_info("x", TP.FLOAT, [1, 4, hw, hw])],
                          [helper.make_tensor_value_info("y", TP.FLOAT, [1, 8, hw, hw])], [w, w2, s1, s2])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


LLVM = BACKENDS["llvm"]


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_every_level_matches_the_reference(level):
    model = _shuffle_model()
    x = np.random.default_rng(1).standard_normal((1, 4, 5, 5)).astype(np.float32)
    want = compiler.compile(model, target="reference").run({"x": x})["y"]
    got = compiler.compile(model, target="llvm", opt_level=level).run({"x": x})["y"]
    assert_close(got, want, "float32", end_to_end=True)


def test_shuffle_group_is_one_permuted_copy():
    from compiler.codegen.llvm.target import cpu_target
    from compiler.codegen.model_builder import build_program

    graph = LLVM.optimize(import_onnx(_shuffle_model()), 3)
    program = build_program(graph, cpu_target())
    # The layout pass leaves the shuffle as Reshape -> Transpose -> Reshape on NHWC data;
    # fused, it is one copy: source and result only (op by op, the reshapes' shape
    # constants would be parameters too), its output loop over the collapsed [25*4, 3] view.
    shuffle = [c for c in program.calls if any(n.op == "Transpose" and n.inputs[0].type.rank == 5 for n in c.nodes)]
    assert len(shuffle) == 1 and [n.op for n in shuffle[0].nodes] == ["Reshape", "Transpose", "Reshape"]
    kernel = shuffle[0].plan.kernel
    assert len(kernel.params) == 2
    from compiler.codegen.printer import kernel_text
    FileCheck().check(" in 0..100 ").check(" in 0..3 ").run(kernel_text(kernel))


def _transpose_model(shape, perm):
    g = helper.make_graph([helper.make_node("Transpose", ["x"], ["y"], perm=list(perm))], "t",
                          [helper.make_tensor_value_info("x", TP.FLOAT, list(shape))],
                          [helper.make_tensor_value_info("y", TP.FLOAT, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("shape, perm, tiled", [
    ((1, 28, 28, 32), (0, 3, 1, 2), True),     # NHWC -> NCHW: pixels (784 = 49 runs of 16) gather channels
    ((2, 48, 5, 3), (0, 2, 3, 1), True),       # NCHW -> NHWC: channel runs of 16 gather pixel rows
    ((6, 4, 32), (1, 0, 2), False),            # the last axis stays last: rows copy whole
    ((3, 32, 7), (2, 0, 1), True),             # the source's last axis (7) lands first
    ((5, 24, 6), (0, 2, 1), False),            # 24 is no multiple of the run length: untiled
    ((4, 6, 5, 32), (3, 1, 0, 2), False),      # output's last axis 5: untiled
])
def test_transposes_are_tiled_where_the_source_axis_moves(shape, perm, tiled):
    """A copy whose output's last axis is not the source's is tiled: runs of 16 output
    elements, and for each run the source's last axis next (see permute_copy)."""
    from compiler.codegen.llvm.target import cpu_target
    from compiler.codegen.model_builder import build_program
    from compiler.codegen.permute_copy import TILE
    from compiler.codegen.printer import kernel_text

    model = _transpose_model(shape, perm)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(compiler.compile(model).run({"x": x})["y"], x.transpose(perm))
    graph = LLVM.optimize(import_onnx(model), 3)
    call, = build_program(graph, cpu_target()).calls
    text = kernel_text(call.plan.kernel)
    assert (f"transpose_tile={TILE}" in text) == tiled, text


def _concat_model(axis, widths, shape=(2, 3, 4, 5)):
    """Concat of the graph inputs on `axis` (alone in its group)."""
    nodes, inputs, names = [], [], []
    for i, w in enumerate(widths):
        dims = list(shape)
        dims[axis] = w
        inputs.append(helper.make_tensor_value_info(f"x{i}", TP.FLOAT, dims))
        names.append(f"x{i}")
    nodes.append(helper.make_node("Concat", names, ["y"], axis=axis))
    out = list(shape)
    out[axis] = sum(widths)
    g = helper.make_graph(nodes, "cat", inputs, [helper.make_tensor_value_info("y", TP.FLOAT, out)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("axis, widths", [(1, (3, 1, 5)), (3, (5, 2)), (0, (2, 1)), (2, (4, 0, 3))])
def test_a_concat_alone_is_one_copy_per_input(axis, widths):
    from compiler.codegen.llvm.target import cpu_target
    from compiler.codegen.model_builder import build_program
    from compiler.codegen.printer import kernel_text

    model = _concat_model(axis, widths)
    rng = np.random.default_rng(1)
    feeds = {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
             for i in model.graph.input}
    got = compiler.compile(model, target="llvm").run(feeds)["y"]
    want = np.concatenate([feeds[f"x{i}"] for i in range(len(widths))], axis=axis)
    np.testing.assert_array_equal(got, want)
    graph = LLVM.optimize(import_onnx(model), 3)
    calls = [c for c in build_program(graph, cpu_target()).calls if [n.op for n in c.nodes] == ["Concat"]]
    assert len(calls) == 1 and "select" not in kernel_text(calls[0].plan.kernel)  # copies, no per-element choice


def test_llvm_pipeline_feeds_codegen_channels_last_convs():
    graph = LLVM.optimize(import_onnx(build_tiny_cnn()), 2)
    ops = [n.op for n in graph.nodes]
    assert "Conv" not in ops and "ConvNhwc" in ops
    fused = LLVM.optimize(import_onnx(build_tiny_cnn()), 3)
    assert {n.op for n in fused.nodes} == {"FusedKernel"}
    inside = sorted(m.name for n in fused.nodes for m in n.attrs["body"].nodes)
    assert inside == sorted(n.name for n in graph.nodes)  # -O3 fuses exactly what -O2 leaves


def test_opt_level_is_checked():
    with pytest.raises(ValueError, match="optimization level"):
        compiler.compile(_shuffle_model(), "llvm", opt_level=7)


def test_cli_takes_an_opt_level(tmp_path):
    from compiler.cli import main

    path = tmp_path / "m.onnx"
    onnx.save(_shuffle_model(), path)
    assert main([str(path), "-O", "1", "-o", str(tmp_path / "m.cmod")]) == 0
    assert (tmp_path / "m.cmod").exists()


def test_compile_with_tune_caches_schedules_and_keys_the_artifact_on_them(tmp_path):
    """tune=True fills the tuning database; the compile cache key changes with it,
    so an artifact built before tuning is not returned after."""
    import os

    model = _shuffle_model()
    x = np.random.default_rng(2).standard_normal((1, 4, 5, 5)).astype(np.float32)
    want = compiler.compile(model, target="reference").run({"x": x})["y"]
    root = Path(os.environ["COMPILER_CACHE_DIR"])
    compiler.compile(model, target="llvm", num_threads=2)
    before = set((root / "llvm").glob("*.cmod"))
    tuned = compiler.compile(model, target="llvm", num_threads=2, tune=True, tune_budget_s=1.0)
    assert_close(tuned.run({"x": x})["y"], want, "float32", end_to_end=True)
    assert (root / "autotune" / "tuning.sqlite3").exists()
    after = set((root / "llvm").glob("*.cmod"))
    assert len(after - before) == 1  # a new key: the tuned schedules are part of it


def test_cli_tune_subcommand(tmp_path, capsys):
    from compiler.cli import main

    path = tmp_path / "m.onnx"
    onnx.save(_shuffle_model(), path)
    assert main(["tune", str(path), "--threads", "1", "--budget", "5"]) == 0


def test_a_concat_ending_a_fused_group_stores_each_input_into_its_slice():
    """Lookups and activations fused with the Concat (a DLRM's stack of embeddings) are
    stored input by input into the output's slices: no per-element choice among inputs."""
    from compiler.codegen.llvm.target import cpu_target
    from compiler.codegen.model_builder import build_program
    from compiler.codegen import loop_ir as L
    from compiler.codegen.printer import kernel_text

    rng = np.random.default_rng(3)
    table = rng.standard_normal((50, 16)).astype(np.float32)
    axes = helper.make_tensor("axes", TP.INT64, [1], [1])
    nodes = [helper.make_node("Gather", ["table", "ids"], ["e"]),
             helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sigmoid", ["x"], ["s"])]
    nodes += [helper.make_node("Unsqueeze", [v, "axes"], [f"{v}1"]) for v in ("e", "r", "s")]
    nodes.append(helper.make_node("Concat", ["e1", "r1", "s1"], ["y"], axis=1))
    g = helper.make_graph(nodes, "stack", [helper.make_tensor_value_info("x", TP.FLOAT, [4, 16]),
                                           helper.make_tensor_value_info("ids", TP.INT64, [4])],
                          [helper.make_tensor_value_info("y", TP.FLOAT, [4, 3, 16])],
                          [numpy_helper.from_array(table, "table"), axes])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    x, ids = rng.standard_normal((4, 16)).astype(np.float32), np.array([3, 0, 49, 7])
    want = np.stack([table[ids], np.maximum(x, 0), 1 / (1 + np.exp(-x))], axis=1)
    np.testing.assert_allclose(compiler.compile(model).run({"x": x, "ids": ids})["y"], want, rtol=1e-6, atol=1e-6)
    graph = LLVM.optimize(import_onnx(model), 3)
    calls = [c for c in build_program(graph, cpu_target()).calls if "Concat" in [n.op for n in c.nodes]]
    kernel = calls[0].plan.kernel
    stores = [n for n in L.walk(kernel.body) if isinstance(n, L.Store)]
    assert len(calls) == 1 and len(calls[0].nodes) > 1 and len(stores) == 3, kernel_text(kernel)  # one per input
