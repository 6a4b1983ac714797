"""Reduction and normalization ops: references against plain numpy (or naive loops on small
inputs), inference against run-time shapes (the interpreter checks them), and the errors
that inference raises for invalid nodes."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.ir import GraphBuilder, ShapeInferenceError, dtypes, run_graph
from compiler.ir.types import TensorType

RNG = np.random.default_rng(0)


class Const:
    """Marks an operand that should be a compile-time constant rather than a graph input."""

    def __init__(self, value):
        self.value = np.asarray(value)


def run_op(op, inputs, attrs=None, num_outputs=1):
    """Build a one-node graph and run it with run-time type checks; returns (outputs, output types)."""
    b = GraphBuilder(op.lower())
    values, feeds = [], {}
    for i, x in enumerate(inputs):
        if x is None:
            values.append(None)
        elif isinstance(x, Const):
            values.append(b.const(x.value, f"c{i}"))
        else:
            x = np.asarray(x)
            values.append(b.input(f"in{i}", TensorType(x.shape, dtypes.from_numpy(x.dtype))))
            feeds[f"in{i}"] = x
    outs = b.node(op, values, attrs or {}, num_outputs=num_outputs)
    b.output(*outs)
    result = run_graph(b.build(), feeds, check_types=True)
    return [result[v.name] for v in outs], [v.type for v in outs]


def run1(op, inputs, attrs=None):
    return run_op(op, inputs, attrs)[0][0]


# --- Reduce* -------------------------------------------------------------------------------------

X = RNG.standard_normal((3, 4, 5)).astype(np.float32)

REDUCE_NUMPY = {
    "ReduceSum": lambda x, a, k: np.sum(x, axis=a, keepdims=k),
    "ReduceMean": lambda x, a, k: np.mean(x, axis=a, keepdims=k),
    "ReduceMax": lambda x, a, k: np.max(x, axis=a, keepdims=k),
    "ReduceMin": lambda x, a, k: np.min(x, axis=a, keepdims=k),
    "ReduceProd": lambda x, a, k: np.prod(x, axis=a, keepdims=k),
    "ReduceL1": lambda x, a, k: np.sum(np.abs(x), axis=a, keepdims=k),
    "ReduceL2": lambda x, a, k: np.sqrt(np.sum(x * x, axis=a, keepdims=k)),
    "ReduceSumSquare": lambda x, a, k: np.sum(x * x, axis=a, keepdims=k),
    "ReduceLogSum": lambda x, a, k: np.log(np.sum(x, axis=a, keepdims=k)),
    "ReduceLogSumExp": lambda x, a, k: np.log(np.sum(np.exp(x), axis=a, keepdims=k)),
}


@pytest.mark.parametrize("op", sorted(REDUCE_NUMPY))
@pytest.mark.parametrize("axes,keepdims", [([1], 1), ([0, -1], 0), (None, 1), (None, 0)])
@pytest.mark.parametrize("const_axes", [True, False])
def test_reduce_matches_numpy(op, axes, keepdims, const_axes):
    x = np.abs(X) + 0.5 if op == "ReduceLogSum" else X
    axes_in = None if axes is None else (Const(np.array(axes, np.int64)) if const_axes else np.array(axes, np.int64))
    (out,), (t,) = run_op(op, [x, axes_in], {"keepdims": keepdims})
    np_axes = None if axes is None else tuple(axes)
    np.testing.assert_allclose(out, REDUCE_NUMPY[op](x, np_axes, bool(keepdims)), rtol=1e-5, atol=1e-6)
    if const_axes or axes is None:
        assert t.shape == out.shape  # static axes give a static shape


def test_reduce_noop_keeps_composite_steps():
    axes = np.zeros((0,), np.int64)
    np.testing.assert_array_equal(run1("ReduceSum", [X, axes], {"noop_with_empty_axes": 1}), X)
    np.testing.assert_allclose(run1("ReduceSumSquare", [X, axes], {"noop_with_empty_axes": 1}), X * X)
    assert run1("ReduceSum", [X, axes], {"keepdims": 0}).shape == ()  # empty axes without noop: all


@pytest.mark.parametrize("op,x,expected", [
    ("ReduceSum", np.zeros((2, 0, 3), np.float32), 0.0),
    ("ReduceProd", np.zeros((2, 0, 3), np.float32), 1.0),
    ("ReduceMax", np.zeros((2, 0, 3), np.float32), -np.inf),
    ("ReduceMin", np.zeros((2, 0, 3), np.int32), np.iinfo(np.int32).max),
    ("ReduceMax", np.zeros((2, 0, 3), bool), False),
    ("ReduceLogSumExp", np.zeros((2, 0, 3), np.float32), -np.inf),
])
def test_reduce_over_empty_set_gives_identity(op, x, expected):
    out = run1(op, [x, Const(np.array([1], np.int64))])
    assert out.shape == (2, 1, 3) and out.dtype == x.dtype
    np.testing.assert_array_equal(out, np.full((2, 1, 3), expected, x.dtype))


def test_reduce_keeps_integer_and_low_precision_types():
    ints = RNG.integers(-100, 100, (4, 6)).astype(np.int32)
    assert run1("ReduceSum", [ints]).dtype == np.int32
    half = np.full((4096,), 0.1, np.float16)  # a float16 accumulator would stall near 256
    np.testing.assert_allclose(run1("ReduceSum", [half]), [409.6], rtol=1e-3)
    assert run1("ReduceMax", [np.array([[True, False]]), Const(np.array([1]))]).tolist() == [[True]]


def test_reduce_log_sum_exp_is_stable():
    big = np.array([[1000.0, 1000.0]], np.float32)
    np.testing.assert_allclose(run1("ReduceLogSumExp", [big, Const(np.array([1]))]), [[1000 + np.log(2)]])


def test_reduce_with_runtime_axes_infers_rank():
    (_,), (t,) = run_op("ReduceSum", [X, np.array([0, 2], np.int64)], {"keepdims": 0})
    assert t.rank == 1


# --- ArgMax / ArgMin, softmax family ----------------------------------------------------------

@pytest.mark.parametrize("op,pick", [("ArgMax", np.argmax), ("ArgMin", np.argmin)])
def test_arg_reduce_first_and_last_index(op, pick):
    x = np.array([[2, 7, 7, 1], [5, 5, 0, 0]], np.float32)
    first = run1(op, [x], {"axis": 1, "keepdims": 0})
    np.testing.assert_array_equal(first, pick(x, axis=1))
    last = run1(op, [x], {"axis": -1, "select_last_index": 1})
    expected = x.shape[1] - 1 - pick(x[:, ::-1], axis=1)
    np.testing.assert_array_equal(last, expected[:, None])
    assert last.dtype == np.int64


def test_softmax_family():
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    soft = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(run1("Softmax", [x], {"axis": 1}), soft, rtol=1e-6)
    np.testing.assert_allclose(run1("LogSoftmax", [x], {"axis": 1}), np.log(soft), rtol=1e-5, atol=1e-6)
    hard = run1("Hardmax", [np.array([[1, 3, 3], [0, 0, 0]], np.float32)])
    np.testing.assert_array_equal(hard, [[0, 1, 0], [1, 0, 0]])  # first maximum wins
    np.testing.assert_allclose(run1("Softmax", [np.array([1e4, 1e4], np.float32)]), [0.5, 0.5])


# --- CumSum / CumProd, TopK, Det -------------------------------------------------------------

@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
def test_cumulative_ops(exclusive, reverse):
    x = np.array([[1, 2, 3], [4, 5, 6]], np.int32)
    attrs = {"exclusive": exclusive, "reverse": reverse}
    for op, identity, combine in (("CumSum", 0, np.add), ("CumProd", 1, np.multiply)):
        out = run1(op, [x, np.array(1, np.int64)], attrs)
        expected = np.empty_like(x)
        for j in range(3):  # naive definition, column by column
            cols = range(j + 1, 3) if reverse else range(0, j)
            cols = list(cols) + ([] if exclusive else [j])
            expected[:, j] = combine.reduce(x[:, cols], axis=1, initial=identity)
        np.testing.assert_array_equal(out, expected)
        assert out.dtype == np.int32


def test_topk_orders_ties_by_lower_index():
    x = np.array([[3, 5, 5, 1, 5], [0, 0, 2, 2, 1]], np.uint64)
    (values, idx), (vt, it) = run_op("TopK", [x, Const(np.array([3], np.int64))], num_outputs=2)
    np.testing.assert_array_equal(idx, [[1, 2, 4], [2, 3, 4]])
    np.testing.assert_array_equal(values, [[5, 5, 5], [2, 2, 1]])
    assert vt.shape == (2, 3) and it.dtype == dtypes.int64
    (values, idx), _ = run_op("TopK", [x, np.array([2], np.int64)], {"largest": 0, "axis": 1}, num_outputs=2)
    np.testing.assert_array_equal(idx, [[3, 0], [0, 1]])


def test_det_batches():
    m = RNG.standard_normal((2, 3, 4, 4)).astype(np.float32)
    out = run1("Det", [m])
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out, np.linalg.det(m), rtol=1e-4)


# --- normalizations ----------------------------------------------------------------------------

def test_batchnorm_inference_and_training():
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    scale, bias, mean = (RNG.standard_normal(3).astype(np.float32) for _ in range(3))
    var = RNG.random(3).astype(np.float32) + 0.5
    ch = (1, 3, 1, 1)
    y = run1("BatchNormalization", [x, scale, bias, mean, var])
    expected = (x - mean.reshape(ch)) / np.sqrt(var.reshape(ch) + 1e-5) * scale.reshape(ch) + bias.reshape(ch)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    (y, rm, rv), _ = run_op("BatchNormalization", [x, scale, bias, mean, var], {"training_mode": 1}, 3)
    bm, bv = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(rm, 0.9 * mean + 0.1 * bm, rtol=1e-5)
    np.testing.assert_allclose(rv, 0.9 * var + 0.1 * bv, rtol=1e-5)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), bias, atol=1e-5)


def test_layernorm_outputs_statistics():
    x = RNG.standard_normal((2, 3, 4)).astype(np.float16)
    scale, bias = np.full((3, 4), 2, np.float16), np.ones((4,), np.float16)
    (y, mean, inv), (yt, mt, _) = run_op("LayerNormalization", [x, scale, bias], {"axis": 1}, 3)
    xf = x.astype(np.float32)
    m = xf.mean(axis=(1, 2), keepdims=True)
    s = 1 / np.sqrt(xf.var(axis=(1, 2), keepdims=True) + 1e-5)
    assert mt == TensorType((2, 1, 1), dtypes.float32) and yt.dtype == dtypes.float16
    np.testing.assert_allclose(mean, m, rtol=1e-6)
    np.testing.assert_allclose(inv, s, rtol=1e-5)
    np.testing.assert_allclose(y, ((xf - m) * s) * 2 + 1, rtol=1e-2, atol=1e-2)


def test_rms_group_instance_norms():
    x = RNG.standard_normal((2, 4, 3, 3)).astype(np.float32)
    scale = RNG.standard_normal(4).astype(np.float32)
    bias = RNG.standard_normal(4).astype(np.float32)
    rms = run1("RMSNormalization", [x, np.float32(3) * np.ones((3,), np.float32)])
    np.testing.assert_allclose(rms, 3 * x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + 1e-5), rtol=1e-5)
    # With one channel per group GroupNormalization is InstanceNormalization.
    group = run1("GroupNormalization", [x, scale, bias], {"num_groups": 4})
    inst = run1("InstanceNormalization", [x, scale, bias])
    np.testing.assert_allclose(group, inst, rtol=1e-5, atol=1e-6)
    xr = x.reshape(2, 2, 2 * 9)
    norm = ((xr - xr.mean(-1, keepdims=True)) / np.sqrt(xr.var(-1, keepdims=True) + 1e-5)).reshape(x.shape)
    two = run1("GroupNormalization", [x, scale, bias], {"num_groups": 2})
    np.testing.assert_allclose(two, norm * scale[:, None, None] + bias[:, None, None], rtol=1e-5, atol=1e-5)


def test_lp_mvn_lrn():
    x = np.array([[3, 4], [0, 0]], np.float32)
    np.testing.assert_allclose(run1("LpNormalization", [x]), [[0.6, 0.8], [0, 0]])
    np.testing.assert_allclose(run1("LpNormalization", [x], {"p": 1, "axis": 0}), [[1, 1], [0, 0]])
    y = run1("MeanVarianceNormalization", [X[None]], {"axes": [0, 2, 3]})
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    x = RNG.standard_normal((1, 6, 2, 2)).astype(np.float32)
    size = 4
    out = run1("LRN", [x], {"size": size, "alpha": 0.01, "beta": 0.5, "bias": 2.0})
    expected = np.empty_like(x)
    for c in range(6):  # naive window: [c - 1, c + 2] clipped to the channels
        window = x[:, max(0, c - 1):min(6, c + 3)]
        expected[:, c] = x[:, c] / (2.0 + 0.01 / size * (window ** 2).sum(axis=1)) ** 0.5
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def _naive_nll(logp, target, weight, reduction, ignore):
    losses, weights = [], []
    for idx in np.ndindex(target.shape):
        c = target[idx]
        w = 0.0 if c == ignore else (1.0 if weight is None else weight[c])
        losses.append(0.0 if c == ignore else -logp[(idx[0], c) + idx[1:]] * w)
        weights.append(w)
    losses = np.array(losses).reshape(target.shape)
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.sum() / sum(weights)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
def test_losses_match_naive_loops(reduction, weighted):
    scores = RNG.standard_normal((3, 5, 2)).astype(np.float32)
    target = RNG.integers(0, 5, (3, 2)).astype(np.int64)
    target[0, 1] = -1
    weight = RNG.random(5).astype(np.float32) if weighted else None
    attrs = {"reduction": reduction, "ignore_index": -1}
    nll = run1("NegativeLogLikelihoodLoss", [scores, target, weight], attrs)
    np.testing.assert_allclose(nll, _naive_nll(scores, target, weight, reduction, -1), rtol=1e-5)
    (loss, logp), _ = run_op("SoftmaxCrossEntropyLoss", [scores, target, weight], attrs, 2)
    shifted = scores - scores.max(axis=1, keepdims=True)
    expected_logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(logp, expected_logp, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss, _naive_nll(expected_logp, target, weight, reduction, -1), rtol=1e-5)


# --- inference errors --------------------------------------------------------------------------

@pytest.mark.parametrize("op,inputs,attrs,match", [
    ("TopK", [X, Const(np.array([9], np.int64))], {}, "K=9 must lie"),
    ("GroupNormalization", [np.zeros((1, 6, 2), np.float32), np.ones(6, np.float32), np.ones(6, np.float32)],
     {"num_groups": 4}, "num_groups=4 must divide"),
    ("ReduceSum", [X, Const(np.array([3], np.int64))], {}, "axis 3 is out of range"),
    ("Softmax", [np.zeros(3, np.int32)], {}, "floating-point"),
    ("BatchNormalization", [np.zeros((2, 3), np.float32)] + [np.zeros(4, np.float32)] * 4, {}, "per-channel"),
    ("Det", [np.zeros((2, 3), np.float32)], {}, "square"),
])
def test_inference_rejects_invalid_nodes(op, inputs, attrs, match):
    num_outputs = 2 if op == "TopK" else 1
    with pytest.raises(ShapeInferenceError, match=match):
        run_op(op, inputs, attrs, num_outputs)


def test_layernorm_scale_must_broadcast_to_input():
    with pytest.raises(ShapeInferenceError, match="must broadcast"):
        run_op("LayerNormalization", [X, np.ones((4,), np.float32)])
