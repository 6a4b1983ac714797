"""float8 and float4 on the llvm target (codegen/llvm/narrow_float.py): Cast to and from the
four float8 types and float4e2m1 gives ml_dtypes' codes bit for bit (rounding to nearest
even, NaN, infinity, overflow, subnormals, negative zero), with saturate on and off, on
vector lanes and scalar tails; float8 tensors cross the native entry as ml_dtypes arrays;
f8e8m0 is refused by name."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper

import compiler
from compiler.ir.errors import CompilerError

TYPES = {"FLOAT4E2M1": ml_dtypes.float4_e2m1fn, "FLOAT8E4M3FN": ml_dtypes.float8_e4m3fn, "FLOAT8E4M3FNUZ": ml_dtypes.float8_e4m3fnuz,
         "FLOAT8E5M2": ml_dtypes.float8_e5m2, "FLOAT8E5M2FNUZ": ml_dtypes.float8_e5m2fnuz}


def _values(t) -> np.ndarray:
    rng = np.random.default_rng(0)
    every_code = np.arange(256, dtype=np.uint8).view(t).astype(np.float32)
    ties = (every_code[:-1].astype(np.float64) + every_code[1:]) / 2  # halfway between neighbours: ties to even
    specials = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 464, 470, 1e30, -1e30, 1e-9, -1e-9, 61440]
    xs = np.concatenate([every_code, ties, rng.standard_normal(300) * 10, rng.standard_normal(300) * 1e-3,
                         rng.standard_normal(100) * 3e4, specials]).astype(np.float32)
    return xs[:xs.size - 3]  # an odd count: the last elements take the scalar tail


def _cast_model(name: str, n: int, saturate: int):
    nodes = [helper.make_node("Cast", ["x"], ["y"], to=getattr(TensorProto, name), saturate=saturate),
             helper.make_node("Cast", ["y"], ["z"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "cast", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
                              [helper.make_tensor_value_info("y", getattr(TensorProto, name), [n]),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, [n])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def _same(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Elementwise: the same code, or both NaN (ml_dtypes and we may pick another NaN code)."""
    g, w = got.astype(np.float32), want.astype(np.float32)
    return (got.view(np.uint8) == want.view(np.uint8)) | (np.isnan(g) & np.isnan(w))


@pytest.mark.parametrize("name", TYPES)
@pytest.mark.parametrize("saturate", [0, 1])
def test_cast_to_and_from_float8_matches_ml_dtypes_bit_for_bit(name, saturate):
    t = TYPES[name]
    x = _values(t)
    out = compiler.compile(_cast_model(name, x.size, saturate)).run({"x": x})
    if saturate:  # ONNX: out-of-range values (infinities included) clamp to the largest finite value
        top = float(ml_dtypes.finfo(t).max)
        want = np.where(np.isnan(x), x, np.clip(x, -top, top)).astype(t)
    else:
        want = x.astype(t)
    assert out["y"].dtype == np.dtype(t)
    bad = ~_same(out["y"], want)
    if t is ml_dtypes.float4_e2m1fn:  # no NaN codes: NaN becomes a zero (ml_dtypes picks its sign from NaN's)
        bad &= ~(np.isnan(x) & (out["y"].astype(np.float32) == 0))
    assert not bad.any(), list(zip(x[bad][:5], out["y"].view(np.uint8)[bad][:5], want.view(np.uint8)[bad][:5]))
    back = want.astype(np.float32)
    np.testing.assert_array_equal(out["z"], back)  # decoding is exact (NaN where NaN)


def test_float8_inputs_cross_the_entry_as_ml_dtypes_arrays():
    graph = helper.make_graph([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)], "widen",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT8E4M3FN, [5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5])])
    model = compiler.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))
    x = np.array([0.5, -2, 448, 0.001953125, 3], np.float32).astype(ml_dtypes.float8_e4m3fn)
    np.testing.assert_array_equal(model.run({"x": x})["y"], x.astype(np.float32))
    with pytest.raises(CompilerError, match="float8e4m3fn"):  # float32 where float8 is expected: named
        model.run({"x": x.astype(np.float32)})


def test_float8e8m0_is_refused_by_name():
    n = 4
    graph = helper.make_graph([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT8E8M0)], "e8m0",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT8E8M0, [n])])
    with pytest.raises(CompilerError, match="f8e8m0"):
        compiler.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 24)]))
