"""Every zoo model compiled for llvm: the nine light CNNs, the BERT encoder and the MLP,
against the reference interpreter and onnxruntime within `compiler.zoo.tolerances`'
whole-model tier (the one place tolerances per element type are stated); and on each,
`compile inspect --json` shows exactly what the artifact runs (its calls, their ops, the
arena).

Slow-marked: compiling and running ResNet-50 or VGG-19 takes a while. Prints each
model's compile time (and its phases) for the closing note.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

import compiler
from compiler.zoo import light

from zoo_checks import assert_matches_peers

pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.slow

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))


def _compile(path, shapes=None):
    start = time.perf_counter()
    cm = compiler.compile(str(path), target="llvm", input_shapes=shapes, cache=False)
    seconds = time.perf_counter() - start
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in getattr(cm, "timings", {}).items())
    print(f"\n{path.stem}: compiled for llvm in {seconds:.1f}s ({phases}); "
          f"{cm.manifest['kernels']} kernels, {cm.manifest['kernel_calls']} calls")
    return cm


def _check_inspect_matches_artifact(cm, path, shapes, capsys):
    """`compile inspect --json` (a separate import and plan) against the artifact's own listing."""
    import json

    from compiler.cli import main

    argv = ["inspect", str(path), "--json"] + [f"--input-shape={k}={','.join(map(str, v))}" for k, v in shapes.items()]
    capsys.readouterr()
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kernels"] == cm.calls  # every call: its kernel, the ops and nodes it computes, their FLOPs
    assert report["num_kernels"] == cm.manifest["kernels"] and report["num_calls"] == cm.manifest["kernel_calls"]
    assert report["arena_bytes"] == cm.manifest["arena_size"] and report["level"] == cm.manifest["opt_level"]


def _check(cm, path, feeds):
    assert_matches_peers(cm.run(feeds), path, feeds, {k: list(v.shape) for k, v in feeds.items()})


@pytest.mark.parametrize("name", light.LIGHT_MODELS)
def test_light_model_compiled(name, tmp_path, capsys):
    model = light.with_pre_softmax_output(light.load_light_model(name, 0))
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    feeds = light.light_model_inputs(model)
    cm = _compile(path)
    _check(cm, path, feeds)
    _check_inspect_matches_artifact(cm, path, {}, capsys)


@pytest.mark.parametrize("name", ["mlp", "bert"])
def test_torch_model_compiled(name, tmp_path, capsys):
    pytest.importorskip("torch")
    from compiler.zoo import export, torch_models

    path = export.TORCH_MODELS[name](tmp_path / f"{name}.onnx", 0)
    feeds = {k: v.numpy() for k, v in (torch_models.bert_inputs() if name == "bert" else torch_models.mlp_inputs()).items()}
    shapes = {k: list(v.shape) for k, v in feeds.items()}
    cm = _compile(path, shapes)
    _check(cm, path, feeds)
    _check_inspect_matches_artifact(cm, path, shapes, capsys)


def test_many_calls_do_not_grow_memory(tmp_path):
    """10,000 calls of a small compiled model (a softmax's arena scratch and an output each
    time): peak resident memory stays flat, as arenas are pooled and outputs freed."""
    import resource

    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["h"]), helper.make_node("Relu", ["h"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [16, 64])])
    path = tmp_path / "small.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    cm = compiler.compile(str(path), target="llvm", cache=False)
    x = np.zeros((16, 64), np.float32)
    for _ in range(500):
        cm.run({"x": x})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(10_000):
        cm.run({"x": x})
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 8 * 1024, f"peak RSS grew by {grown_kb} KiB over 10,000 calls"
