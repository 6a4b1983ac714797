"""Shape and data-movement ops: inference with constant and run-time shape inputs (symbolic dims
included), references against plain numpy, and the errors invalid inputs raise."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.ir import dtypes
from compiler.ir.builder import GraphBuilder
from compiler.ir.errors import ShapeInferenceError
from compiler.ir.interpreter import run_graph
from compiler.ir.types import TensorType

F32, I64 = dtypes.float32, dtypes.int64


def _infer(op, input_types, attrs=None, consts=None, num_outputs=None):
    """Output types of one node; `consts` maps input positions to constant values."""
    b = GraphBuilder()
    consts = consts or {}
    inputs = []
    for i, t in enumerate(input_types):
        if i in consts:
            inputs.append(b.const(np.asarray(consts[i])))
        elif t is None:
            inputs.append(None)
        else:
            inputs.append(b.input(f"x{i}", t))
    return [v.type for v in b.node(op, inputs, attrs or {}, num_outputs=num_outputs)]


def _run(op, arrays, attrs=None, num_outputs=None):
    """Run one node on arrays (all graph inputs) with run-time type checks; returns the outputs."""
    b = GraphBuilder()
    inputs = [None if a is None else b.input(f"x{i}", TensorType(a.shape, dtypes.from_numpy(a.dtype)))
              for i, a in enumerate(arrays)]
    outs = b.node(op, inputs, attrs or {}, num_outputs=num_outputs)
    b.output(*outs)
    g = b.build()
    result = run_graph(g, {f"x{i}": a for i, a in enumerate(arrays) if a is not None}, check_types=True)
    return [result[v.name] for v in outs]


def _i64(*values):
    return np.array(values, dtype=np.int64)


# ---- inference: reshape family with symbolic dims ---------------------------------------

@pytest.mark.parametrize("in_shape, target, allowzero, expected", [
    (("batch", 12, 64), [0, -1], 0, ("batch", 768)),
    (("batch", "seq", 768), [0, 0, 12, 64], 0, ("batch", "seq", 12, 64)),
    (("batch", "seq", 12, 64), [0, 0, -1], 0, ("batch", "seq", 768)),
    ((2, 3, 4), [4, -1], 0, (4, 6)),
    ((2, 0, 4), [0, 4], 1, (0, 4)),
    (("n", 4), [4, -1], 0, (4, "n")),
])
def test_reshape_constant_target(in_shape, target, allowzero, expected):
    (out,) = _infer("Reshape", [TensorType(in_shape, F32), None], {"allowzero": allowzero}, {1: _i64(*target)})
    assert out.shape == expected


def test_reshape_minus_one_over_several_symbols_is_a_fresh_symbol():
    (out,) = _infer("Reshape", [TensorType(("b", "s", 768), F32), None], consts={1: _i64(-1, 768)})
    assert out.shape[1] == 768 and isinstance(out.shape[0], str) and out.shape[0] not in ("b", "s")


def test_reshape_run_time_target_keeps_the_rank():
    (out,) = _infer("Reshape", [TensorType((2, 3), F32), TensorType((3,), I64)])
    assert out.rank == 3 and all(isinstance(d, str) for d in out.shape)


def test_reshape_rejects_a_size_mismatch():
    with pytest.raises(ShapeInferenceError, match="cannot reshape"):
        _infer("Reshape", [TensorType((2, 3), F32), None], consts={1: _i64(4, 2)})


def test_shape_chain_keeps_ranks_and_sizes():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape, as exporters write it, with a symbolic batch."""
    b = GraphBuilder()
    x = b.input("x", TensorType(("batch", "seq", 768), F32))
    shape = b.op("Shape", x)
    batch = b.op("Gather", shape, b.const(np.int64(0)), axis=0)
    seq = b.op("Gather", shape, b.const(np.int64(1)), axis=0)
    dims = [b.op("Unsqueeze", d, b.const(_i64(0))) for d in (batch, seq)]
    target = b.op("Concat", *dims, b.const(_i64(12, 64)), axis=0)
    y = b.op("Reshape", x, target)
    assert shape.type.shape == (3,) and batch.type.shape == () and dims[0].type.shape == (1,)
    assert target.type.shape == (4,) and y.type.rank == 4
    b.output(y)
    out = run_graph(b.build(), {"x": np.zeros((2, 5, 768), np.float32)}, check_types=True)
    assert out[y.name].shape == (2, 5, 12, 64)


def test_squeeze_without_axes_on_symbolic_dims_has_unknown_rank():
    (out,) = _infer("Squeeze", [TensorType(("n", 1, 3), F32)])
    assert out.shape is None
    (out,) = _infer("Squeeze", [TensorType((2, 1, 3), F32)])
    assert out.shape == (2, 3)


def test_unsqueeze_and_flatten_shapes():
    (out,) = _infer("Unsqueeze", [TensorType(("n", 3), F32), None], consts={1: _i64(0, -1)})
    assert out.shape == (1, "n", 3, 1)
    (out,) = _infer("Flatten", [TensorType(("n", 3, 4), F32)], {"axis": 1})
    assert out.shape == ("n", 12)


def test_concat_sums_static_and_keeps_symbols():
    (out,) = _infer("Concat", [TensorType(("n", 2), F32), TensorType(("n", 3), F32)], {"axis": 1})
    assert out.shape == ("n", 5)
    with pytest.raises(ShapeInferenceError, match="disagree"):
        _infer("Concat", [TensorType((1, 2), F32), TensorType((2, 3), F32)], {"axis": 1})


def test_slice_shapes():
    x = TensorType(("n", 10), F32)
    (out,) = _infer("Slice", [x, None, None, None, None],
                    consts={1: _i64(0, -2), 2: _i64(2 ** 63 - 1, -10 ** 9), 3: _i64(0, 1), 4: _i64(1, -1)})
    assert out.shape == ("n", 9)
    (out,) = _infer("Slice", [x, TensorType((1,), I64), TensorType((1,), I64), None], consts={3: _i64(1)})
    assert out.shape[0] == "n" and isinstance(out.shape[1], str)


def test_split_uneven_and_gather_shapes():
    outs = _infer("Split", [TensorType((7, 2), F32)], {"num_outputs": 4}, num_outputs=4)
    assert [t.shape[0] for t in outs] == [2, 2, 2, 1]
    (out,) = _infer("Gather", [TensorType(("v", 16), F32), TensorType(("b", "s"), I64)], {"axis": 0})
    assert out.shape == ("b", "s", 16)


def test_transpose_rejects_a_bad_perm():
    with pytest.raises(ShapeInferenceError, match="not a permutation"):
        _infer("Transpose", [TensorType((2, 3), F32)], {"perm": [0, 0]})


# ---- references against numpy ----------------------------------------------------------

rng = np.random.default_rng(0)


def test_slice_negative_steps_and_clamping():
    x = rng.standard_normal((5, 6)).astype(np.float32)
    (y,) = _run("Slice", [x, _i64(-1, 100), _i64(-100, 1), _i64(0, 1), _i64(-2, -1)])
    np.testing.assert_array_equal(y, x[::-2, :1:-1])


def test_pad_negative_pads_crop_and_modes_match_numpy():
    x = rng.standard_normal((4, 5)).astype(np.float32)
    (y,) = _run("Pad", [x, _i64(-1, 2, 0, -2)])
    np.testing.assert_array_equal(y, np.pad(x[1:, :3], [(0, 0), (2, 0)]))
    for mode in ("reflect", "edge", "wrap"):
        (y,) = _run("Pad", [x, _i64(1, 2, 2, 1)], {"mode": mode})
        np.testing.assert_array_equal(y, np.pad(x, [(1, 2), (2, 1)], mode=mode))


def test_gather_nd_with_batch_dims():
    data = rng.standard_normal((2, 3, 4)).astype(np.float32)
    idx = np.array([[[1, 2], [0, -1]], [[2, 3], [1, 0]]], dtype=np.int64)
    (y,) = _run("GatherND", [data, idx], {"batch_dims": 1})
    expected = np.array([[data[b, i, j] for i, j in idx[b]] for b in range(2)])
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("reduction, ufunc", [("add", np.add), ("mul", np.multiply), ("max", np.maximum)])
def test_scatter_reductions_apply_every_duplicate(reduction, ufunc):
    data = rng.standard_normal((4, 3)).astype(np.float32)
    idx = np.array([[1], [1], [3]], dtype=np.int64)
    upd = rng.standard_normal((3, 3)).astype(np.float32)
    (y,) = _run("ScatterND", [data, idx, upd], {"reduction": reduction})
    expected = data.copy()
    ufunc.at(expected, idx[:, 0], upd)
    np.testing.assert_allclose(y, expected)


def test_scatter_elements_negative_indices():
    data = np.zeros((2, 3), np.float32)
    (y,) = _run("ScatterElements", [data, np.array([[-1], [0]], np.int64), np.ones((2, 1), np.float32)], {"axis": 1})
    np.testing.assert_array_equal(y, [[0, 0, 1], [1, 0, 0]])


def test_unique_unsorted_follows_first_occurrence():
    x = np.array([2, 1, 1, 3, 4, 3], dtype=np.float32)
    y, first, inverse, counts = _run("Unique", [x], {"sorted": 0}, num_outputs=4)
    np.testing.assert_array_equal(y, [2, 1, 3, 4])
    np.testing.assert_array_equal(first, [0, 1, 3, 4])
    np.testing.assert_array_equal(inverse, [0, 1, 1, 2, 3, 2])
    np.testing.assert_array_equal(counts, [1, 2, 2, 1])


def test_reverse_sequence_batch_major():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    (y,) = _run("ReverseSequence", [x, _i64(1, 2, 4)], {"batch_axis": 0, "time_axis": 1})
    np.testing.assert_array_equal(y, [[0, 1, 2, 3], [5, 4, 6, 7], [11, 10, 9, 8]])


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_space_to_depth_inverts_depth_to_space(mode):
    x = rng.standard_normal((2, 8, 3, 5)).astype(np.float32)
    (up,) = _run("DepthToSpace", [x], {"blocksize": 2, "mode": mode})
    (back,) = _run("SpaceToDepth", [up], {"blocksize": 2, "mode": mode})
    assert up.shape == (2, 2, 6, 10)
    np.testing.assert_array_equal(back, x)


def test_one_hot_axis_and_out_of_range():
    (y,) = _run("OneHot", [_i64(0, -1, 5), _i64(3), np.array([0, 1], np.float32)], {"axis": 0})
    np.testing.assert_array_equal(y, [[1, 0, 0], [0, 0, 0], [0, 1, 0]])


def test_range_and_nonzero_and_compress():
    (y,) = _run("Range", [np.array(10, np.int32), np.array(4, np.int32), np.array(-2, np.int32)])
    np.testing.assert_array_equal(y, [10, 8, 6])
    x = np.array([[1, 0], [0, 3]], np.float32)
    (nz,) = _run("NonZero", [x])
    np.testing.assert_array_equal(nz, np.array(np.nonzero(x)))
    (c,) = _run("Compress", [x, np.array([False, True])], {"axis": 1})
    np.testing.assert_array_equal(c, x[:, 1:])


def test_expand_tile_trilu_eye_like():
    x = rng.standard_normal((3, 1)).astype(np.float32)
    (y,) = _run("Expand", [x, _i64(2, 1, 4)])
    np.testing.assert_array_equal(y, np.broadcast_to(x, (2, 3, 4)))
    (y,) = _run("Tile", [x, _i64(2, 3)])
    np.testing.assert_array_equal(y, np.tile(x, (2, 3)))
    m = rng.standard_normal((2, 3, 4)).astype(np.float32)
    (y,) = _run("Trilu", [m, np.array(1, np.int64)], {"upper": 0})
    np.testing.assert_array_equal(y, np.tril(m, 1))
    (y,) = _run("EyeLike", [np.zeros((3, 4), np.int32)], {"k": -1, "dtype": dtypes.float32})
    np.testing.assert_array_equal(y, np.eye(3, 4, k=-1, dtype=np.float32))
