"""Scan unrolled over its static steps (`passes.unroll_scan`): compiled results equal the
reference interpreter's loop for reversed scan inputs, prepended outputs, non-leading axes,
a body reading an outer value and a body constant; no Scan is left in the compiled graph;
a scan longer than the unrolling bound is refused by name."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
from compiler.api import import_model
from compiler.backends import BuildOptions, parse_target
from compiler.passes.core import PassContext
from compiler.ir.errors import CompilerError
from compiler.passes import unroll_scan


def _scan_model(steps: int = 5) -> onnx.ModelProto:
    """state' = state + x_t * w + c (w an outer value, c a body constant); outputs the state
    after each step (appended along axis 1) and x_t * 2 (prepended along axis 0); x is
    scanned along its axis 1, backwards."""
    f = TensorProto.FLOAT
    body = helper.make_graph(
        [helper.make_node("Mul", ["x_t", "w"], ["xw"]), helper.make_node("Add", ["s", "xw"], ["s1"]),
         helper.make_node("Add", ["s1", "c"], ["s_next"]), helper.make_node("Identity", ["s_next"], ["s_out"]),
         helper.make_node("Mul", ["x_t", "two"], ["doubled"])],
        "body", [helper.make_tensor_value_info("s", f, [3]), helper.make_tensor_value_info("x_t", f, [3])],
        [helper.make_tensor_value_info("s_next", f, [3]), helper.make_tensor_value_info("s_out", f, [3]),
         helper.make_tensor_value_info("doubled", f, [3])],
        [numpy_helper.from_array(np.array([0.5, -1.0, 2.0], np.float32), "c"),
         numpy_helper.from_array(np.array(2.0, np.float32), "two")])
    scan = helper.make_node("Scan", ["s0", "x"], ["final", "states", "doubles"], body=body, num_scan_inputs=1,
                            scan_input_axes=[1], scan_input_directions=[1], scan_output_axes=[1, 0],
                            scan_output_directions=[0, 1])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["w_in"], ["w"]), scan], "g",
        [helper.make_tensor_value_info("s0", f, [3]), helper.make_tensor_value_info("x", f, [3, steps]),
         helper.make_tensor_value_info("w_in", f, [3])],
        [helper.make_tensor_value_info(n, f, None) for n in ("final", "states", "doubles")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_scan_unrolls_to_the_reference_loop():
    rng = np.random.default_rng(0)
    model = _scan_model()
    feeds = {"s0": rng.standard_normal(3).astype(np.float32), "x": rng.standard_normal((3, 5)).astype(np.float32),
             "w_in": rng.standard_normal(3).astype(np.float32)}
    lowered = parse_target("llvm").backend.optimize(import_model(model), 2, PassContext(verify=True), BuildOptions())
    assert "Scan" not in {n.op for n in lowered.nodes} and "Gather" in {n.op for n in lowered.nodes}
    got = compiler.compile(model).run(feeds)
    want = compiler.compile(model, target="reference").run(feeds)
    assert got["states"].shape == (3, 5) and got["doubles"].shape == (5, 3)
    for name in ("final", "states", "doubles"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6, err_msg=name)


def test_a_scan_past_the_unrolling_bound_is_refused_by_name(monkeypatch):
    monkeypatch.setattr(unroll_scan, "MAX_UNROLLED_NODES", 20)  # 5 steps x 5 body nodes = 25
    with pytest.raises(CompilerError, match="Scan"):
        compiler.compile(_scan_model(), cache=False)
