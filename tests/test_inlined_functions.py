"""Ops with no native rule yet that ONNX defines as functions are imported as their function
body by the code-generating targets (`Backend.inlined_ops`), and kept as the op by the
interpreter: LinearAttention (whose body holds a Scan with untyped body inputs, typed from
the node's inputs) compiles and matches the op's own reference."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

import compiler
from compiler.api import import_model
from compiler.backends import parse_target


def _linear_attention_model() -> onnx.ModelProto:
    f = TensorProto.FLOAT
    node = helper.make_node("LinearAttention", ["q", "k", "v"], ["y", "state"], q_num_heads=2, kv_num_heads=2,
                            update_rule="linear")
    graph = helper.make_graph([node], "la", [helper.make_tensor_value_info(n, f, [2, 5, 16]) for n in "qkv"],
                              [helper.make_tensor_value_info("y", f, None), helper.make_tensor_value_info("state", f, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 27)])


def test_an_op_without_a_rule_is_imported_as_its_function_body_for_native_targets():
    model = _linear_attention_model()
    llvm = parse_target("llvm").backend
    assert "LinearAttention" in llvm.inlined_ops() and not parse_target("reference").backend.inlined_ops()
    inlined = import_model(model, inline=llvm.inlined_ops())
    assert "LinearAttention" not in {n.op for n in inlined.nodes}
    assert [n.op for n in import_model(model).nodes] == ["LinearAttention"]
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal((2, 5, 16)).astype(np.float32) for n in "qkv"}
    got = compiler.compile(model, cache=False).run(feeds)
    want = compiler.compile(model, target="reference").run(feeds)
    for name in ("y", "state"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5, err_msg=name)
