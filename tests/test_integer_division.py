"""Integer Div and Mod never trap in native code (issue: a zero divisor, or INT_MIN / -1,
raised SIGFPE inside the kernel and killed the process): x / 0 = 0, x % 0 = 0,
INT_MIN / -1 = INT_MIN (wraps), INT_MIN % -1 = 0, the reference interpreter's (numpy's)
answers, on llvm and on the cuda target (through the emulator, with the CUDA C compiled by
NVRTC), for every integer width and both signs, divisors that arrive at run time and
divisors that are constants.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler

TYPES = {np.int8: TensorProto.INT8, np.int16: TensorProto.INT16, np.int32: TensorProto.INT32,
         np.int64: TensorProto.INT64, np.uint8: TensorProto.UINT8, np.uint32: TensorProto.UINT32,
         np.uint64: TensorProto.UINT64}
OPS = [("Div", {}), ("Mod", {"fmod": 0}), ("Mod", {"fmod": 1})]
TARGETS = ["llvm", "cuda -arch=sm_80 -device=emulator"]


def _operands(npdt):
    """Dividends and divisors covering 0, -1 with INT_MIN, signs, and ordinary cases (33
    lanes: whole vectors and a tail)."""
    info = np.iinfo(npdt)
    a = [7, info.min, info.min, info.max, 5, 0, info.max, 1]
    b = [0, 0, -1 if info.min < 0 else 1, 0, 3, 0, info.max, 2]
    if info.min < 0:
        a, b = a + [-7, -7, 7, info.min], b + [2, -2, -2, 1]
    reps = -(-33 // len(a))
    return np.array((a * reps)[:33], npdt), np.array((b * reps)[:33], npdt)


def _model(op, attrs, elem, divisor=None):
    inputs = [helper.make_tensor_value_info("a", elem, [33])]
    inits = []
    if divisor is None:
        inputs.append(helper.make_tensor_value_info("b", elem, [33]))
    else:
        inits.append(numpy_helper.from_array(divisor, "b"))
    graph = helper.make_graph([helper.make_node(op, ["a", "b"], ["y"], **attrs)], "g", inputs,
                              [helper.make_tensor_value_info("y", elem, [33])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("target", TARGETS, ids=["llvm", "cuda"])
@pytest.mark.parametrize("op,attrs", OPS, ids=["div", "mod", "fmod"])
@pytest.mark.parametrize("npdt", list(TYPES), ids=lambda t: t.__name__)
def test_zero_divisors_and_overflow_give_the_reference_answer(target, op, attrs, npdt):
    if target.startswith("cuda"):
        pytest.importorskip("cuda.bindings.nvrtc")
    a, b = _operands(npdt)
    m = _model(op, attrs, TYPES[npdt])
    want = compiler.compile(m, target="reference").run({"a": a, "b": b})["y"]
    got = compiler.compile(m, target=target, cache=False).run({"a": a, "b": b})["y"]
    np.testing.assert_array_equal(got, want)
    if op == "Div":
        assert (got[b == 0] == 0).all()


@pytest.mark.parametrize("op,attrs", OPS, ids=["div", "mod", "fmod"])
def test_constant_divisors_of_zero_and_minus_one(op, attrs):
    """Divisors known at compile time take the same rule (a constant 0 or -1 must not be
    folded into a trapping instruction either)."""
    for divisor in (0, -1, 3):
        a, _ = _operands(np.int32)
        m = _model(op, attrs, TensorProto.INT32, np.full(33, divisor, np.int32))
        want = compiler.compile(m, target="reference").run({"a": a})["y"]
        got = compiler.compile(m, target="llvm", cache=False).run({"a": a})["y"]
        np.testing.assert_array_equal(got, want, err_msg=f"divisor {divisor}")
