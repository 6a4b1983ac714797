"""Convolution, matmul, pooling, quantization and dropout ops: numpy references and type
inference against torch (the oracle), on the cases ONNX's node tests leave out (groups,
depthwise, 1-D/3-D, dilations with strides, asymmetric padding, batches, fp16/bf16)."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from compiler.ir import GraphBuilder, Interpreter, ShapeInferenceError, dtypes, parse_graph, print_graph, tensor
from compiler.ir.types import TensorType

torch = pytest.importorskip("torch")
F = torch.nn.functional


def build(op, inputs, attrs=None, num_outputs=None, consts=(), symbolic=None):
    """A one-node graph: inputs are graph inputs except the indices in `consts` (constants)."""
    b = GraphBuilder("t")
    values, feeds = [], {}
    for i, a in enumerate(inputs):
        if a is None:
            values.append(None)
        elif i in consts:
            values.append(b.const(a, f"c{i}"))
        else:
            shape = symbolic[i] if symbolic and i in symbolic else a.shape
            v = b.input(f"x{i}", TensorType(tuple(shape), dtypes.from_numpy(a.dtype)))
            feeds[v.name] = a
            values.append(v)
    outs = b.node(op, values, attrs or {}, num_outputs=num_outputs)
    b.output(*outs)
    return b.build(), feeds


def run(op, inputs, attrs=None, num_outputs=None, consts=(), symbolic=None):
    """Run one op through inference + the reference, with run-time type checks; returns its outputs."""
    g, feeds = build(op, inputs, attrs, num_outputs, consts, symbolic)
    res = Interpreter(check_types=True).run(g, feeds)
    outs = [res[v.name] for v in g.outputs]
    return outs[0] if len(outs) == 1 else outs


def rand(*shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


# ---------------------------------------------------------------- Conv

CONV_CASES = [
    # (x shape, w shape, attrs, torch kwargs)
    ((2, 4, 9), (6, 4, 3), {"strides": [2], "pads": [1, 1]}, dict(stride=2, padding=1)),
    ((1, 6, 10, 11), (6, 2, 3, 3), {"group": 3, "dilations": [2, 1], "pads": [2, 1, 2, 1]},
     dict(groups=3, dilation=(2, 1), padding=(2, 1))),
    ((2, 8, 12, 12), (8, 1, 3, 3), {"group": 8, "strides": [2, 2], "pads": [1, 1, 1, 1]},
     dict(groups=8, stride=2, padding=1)),  # depthwise
    ((1, 4, 12, 12), (8, 1, 5, 5), {"group": 4, "pads": [2, 2, 2, 2]}, dict(groups=4, padding=2)),  # multiplier 2
    ((1, 3, 6, 7, 8), (4, 3, 3, 2, 3), {"strides": [1, 2, 2], "dilations": [2, 1, 1]}, dict(stride=(1, 2, 2), dilation=(2, 1, 1))),
    ((1, 16, 7, 7), (32, 16, 1, 1), {}, {}),  # 1x1
    ((1, 3, 15, 15), (4, 3, 7, 7), {"strides": [2, 2], "pads": [3, 3, 3, 3]}, dict(stride=2, padding=3)),
]


@pytest.mark.parametrize("xs,ws,attrs,kw", CONV_CASES)
def test_conv_matches_torch(xs, ws, attrs, kw):
    x, w, b = rand(*xs), rand(*ws, seed=1), rand(ws[0], seed=2)
    y = run("Conv", [x, w, b], attrs)
    conv = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[len(xs)]
    np.testing.assert_allclose(y, conv(t(x), t(w), t(b), **kw).numpy(), rtol=1e-4, atol=1e-4)


def test_conv_asymmetric_pads_and_auto_pad():
    x, w = rand(1, 2, 7, 8), rand(3, 2, 3, 3, seed=1)
    y = run("Conv", [x, w], {"pads": [0, 1, 2, 0], "strides": [2, 2]})
    ref = F.conv2d(F.pad(t(x), (1, 0, 0, 2)), t(w), stride=2).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    for mode, (top, bottom) in {"SAME_UPPER": (0, 1), "SAME_LOWER": (1, 0)}.items():
        y = run("Conv", [x, w], {"auto_pad": mode, "strides": [2, 2]})
        # out = ceil(in / 2): H 7 -> 4 needs 2 rows of padding, W 8 -> 4 needs 1 column.
        ref = F.conv2d(F.pad(t(x), (top, bottom, 1, 1)), t(w), stride=2).numpy()
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_conv_low_precision_accumulates_in_fp32(dtype):
    x, w = rand(1, 64, 6, 6).astype(dtype), rand(8, 64, 3, 3, seed=1).astype(dtype)
    y = run("Conv", [x, w], {"pads": [1, 1, 1, 1]})
    assert y.dtype == np.dtype(dtype)
    ref = F.conv2d(t(x.astype(np.float32)), t(w.astype(np.float32)), padding=1).numpy().astype(dtype)
    # One rounding at the end: at most 1 ulp from the fp32 result rounded once.
    np.testing.assert_allclose(y.astype(np.float32), ref.astype(np.float32), rtol=1e-2, atol=1e-2)


def test_conv_keeps_symbolic_batch_and_checks_channels():
    g, _ = build("Conv", [rand(2, 4, 8, 8), rand(6, 4, 3, 3)], {"strides": [2, 2]}, symbolic={0: ("N", 4, 8, 8)})
    assert g.outputs[0].type == tensor(["N", 6, 3, 3], "f32")
    with pytest.raises(ShapeInferenceError, match="channels"):
        build("Conv", [rand(1, 5, 8, 8), rand(6, 4, 3, 3)])
    with pytest.raises(ShapeInferenceError, match="auto_pad"):
        build("Conv", [rand(1, 4, 8, 8), rand(6, 4, 3, 3)], {"auto_pad": "SAME"})


def test_conv_integer_and_qlinear_conv_per_channel():
    x = np.random.default_rng(0).integers(0, 255, (1, 4, 6, 6)).astype(np.uint8)
    w = np.random.default_rng(1).integers(-100, 100, (3, 4, 3, 3)).astype(np.int8)
    x_zp, w_zp = np.uint8(7), np.array([1, -2, 3], np.int8)
    y = run("ConvInteger", [x, w, np.array(x_zp), w_zp], {"pads": [1, 1, 1, 1]})
    ref = F.conv2d(t(x.astype(np.float64) - 7), t(w.astype(np.float64) - w_zp.reshape(3, 1, 1, 1)), padding=1)
    np.testing.assert_array_equal(y, ref.numpy().astype(np.int32))
    scales = np.array([0.02, 0.01, 0.03], np.float32)
    bias = np.array([100, -50, 0], np.int32)
    q = run("QLinearConv", [x, np.float32(0.05), np.array(x_zp), w, scales, w_zp, np.float32(0.5), np.uint8(128),
                            bias], {"pads": [1, 1, 1, 1]})
    real = (ref.numpy() + bias.reshape(3, 1, 1)) * (0.05 * scales.astype(np.float64)).reshape(3, 1, 1) / 0.5
    np.testing.assert_array_equal(q, np.clip(np.rint(real) + 128, 0, 255).astype(np.uint8))


# ---------------------------------------------------------------- ConvTranspose

CONV_T_CASES = [
    ((2, 4, 5), (4, 3, 3), {"strides": [2], "pads": [1, 0], "output_padding": [1]},
     dict(stride=2, padding=(0,), output_padding=1), (1, 0)),
    ((1, 4, 5, 6), (4, 2, 3, 2), {"group": 2, "strides": [2, 3], "dilations": [2, 1]},
     dict(groups=2, stride=(2, 3), dilation=(2, 1)), None),
    ((1, 2, 3, 4, 3), (2, 3, 2, 3, 2), {"strides": [2, 1, 2], "pads": [1, 1, 0, 1, 1, 0]},
     dict(stride=(2, 1, 2), padding=(1, 1, 0)), None),
]


@pytest.mark.parametrize("xs,ws,attrs,kw,crop", CONV_T_CASES)
def test_conv_transpose_matches_torch(xs, ws, attrs, kw, crop):
    x, w = rand(*xs), rand(*ws, seed=1)
    b = rand(ws[1] * attrs.get("group", 1), seed=2)
    y = run("ConvTranspose", [x, w, b], attrs)
    fn = {3: F.conv_transpose1d, 4: F.conv_transpose2d, 5: F.conv_transpose3d}[len(xs)]
    ref = fn(t(x), t(w), t(b), **kw).numpy()
    if crop:  # torch pads symmetrically; ONNX's asymmetric (1, 0) crops one more at the start
        ref = ref[..., crop[0] - kw["padding"][0]:]
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


def test_conv_transpose_output_shape_is_inferred():
    g, _ = build("ConvTranspose", [rand(1, 1, 3, 3), rand(1, 2, 3, 3)], {"strides": [3, 2], "output_shape": [10, 8]})
    assert g.outputs[0].type.shape == (1, 2, 10, 8)
    g, _ = build("ConvTranspose", [rand(1, 1, 3, 3), rand(1, 2, 3, 3)], {"strides": [2, 2], "auto_pad": "SAME_UPPER"})
    assert g.outputs[0].type.shape == (1, 2, 6, 6)


# ---------------------------------------------------------------- DeformConv, Col2Im

def test_deform_conv_with_zero_offsets_is_conv():
    x, w, b = rand(2, 4, 7, 7), rand(6, 2, 3, 3, seed=1), rand(6, seed=2)
    attrs = {"group": 2, "pads": [1, 1, 1, 1], "strides": [2, 2], "offset_group": 2}
    offset = np.zeros((2, 2 * 9 * 2, 4, 4), np.float32)
    y = run("DeformConv", [x, w, offset, b], attrs)
    ref = F.conv2d(t(x), t(w), t(b), stride=2, padding=1, groups=2).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


def test_deform_conv_integer_offsets_shift_the_taps():
    x, w = rand(1, 1, 6, 6), np.ones((1, 1, 1, 1), np.float32)
    offset = np.zeros((1, 2, 6, 6), np.float32)
    offset[0, 1] = 1.0  # every tap reads one column to the right; the last column reads outside (0)
    y = run("DeformConv", [x, w, offset])
    np.testing.assert_allclose(y[0, 0], np.pad(x[0, 0, :, 1:], ((0, 0), (0, 1))), atol=1e-6)


def test_col2im_matches_torch_fold():
    cols = rand(2, 3 * 2 * 3, 3 * 2)  # padded image 7x6, block 2x3, stride 2: 3x2 block positions
    y = run("Col2Im", [cols, np.array([5, 6]), np.array([2, 3])], {"strides": [2, 2], "pads": [1, 0, 1, 0],
                                                                    "dilations": [1, 1]}, consts=(1, 2))
    ref = F.fold(t(cols), (5, 6), (2, 3), stride=2, padding=(1, 0)).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- MatMul, Gemm, Einsum

@pytest.mark.parametrize("sa,sb", [((3,), (3,)), ((3,), (2, 3, 4)), ((2, 1, 4, 3), (5, 3, 2)), ((4, 3), (3,))])
def test_matmul_shapes(sa, sb):
    a, b = rand(*sa), rand(*sb, seed=1)
    np.testing.assert_allclose(run("MatMul", [a, b]), a @ b, rtol=1e-5, atol=1e-5)


def test_matmul_errors_name_the_inner_dims():
    with pytest.raises(ShapeInferenceError, match="inner dims"):
        build("MatMul", [rand(2, 3), rand(4, 2)])


def test_matmul_integer_and_qlinear_matmul_per_row_column():
    a = np.random.default_rng(0).integers(0, 255, (3, 5)).astype(np.uint8)
    b = np.random.default_rng(1).integers(-128, 127, (5, 4)).astype(np.int8)
    a_zp, b_zp = np.array([1, 2, 3], np.uint8), np.array([0, 1, -1, 2], np.int8)
    y = run("MatMulInteger", [a, b, a_zp, b_zp])
    exact = (a.astype(np.int64) - a_zp[:, None]) @ (b.astype(np.int64) - b_zp)
    np.testing.assert_array_equal(y, exact.astype(np.int32))
    q = run("QLinearMatMul", [a, np.float32(0.1), np.uint8(3), b, np.float32(0.2), np.int8(-1), np.float32(4.0),
                              np.uint8(10)])
    exact = (a.astype(np.int64) - 3) @ (b.astype(np.int64) + 1)
    np.testing.assert_array_equal(q, np.clip(np.rint(exact * (0.1 * 0.2 / 4.0)) + 10, 0, 255).astype(np.uint8))


def test_gemm_all_attributes_and_int():
    a, b, c = rand(4, 3), rand(5, 4, seed=1), rand(5, seed=2)
    y = run("Gemm", [a, b, c], {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0})
    np.testing.assert_allclose(y, 0.5 * a.T @ b.T + 2.0 * c, rtol=1e-5, atol=1e-5)
    ai, bi = np.arange(6, dtype=np.int32).reshape(2, 3), np.arange(6, dtype=np.int32).reshape(3, 2)
    np.testing.assert_array_equal(run("Gemm", [ai, bi]), ai @ bi)


@pytest.mark.parametrize("eq,shapes", [("ij,jk", [(2, 3), (3, 4)]), ("...ij,...jk->...ik", [(5, 2, 3), (1, 3, 4)]),
                                       ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]), ("ii", [(4, 4)]),
                                       ("i,j,k->ijk", [(2,), (3,), (4,)])])
def test_einsum_matches_numpy(eq, shapes):
    ops = [rand(*s, seed=i) for i, s in enumerate(shapes)]
    y = run("Einsum", ops, {"equation": eq})
    np.testing.assert_allclose(y, np.einsum(eq, *ops), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- pooling

@pytest.mark.parametrize("ceil", [0, 1])
def test_max_pool_values_and_indices_match_torch(ceil):
    x = rand(2, 3, 9, 10)
    y, idx = run("MaxPool", [x], {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 1, 0], "ceil_mode": ceil,
                                  "dilations": [1, 2]}, num_outputs=2)
    ref, ref_idx = F.max_pool2d(t(x), (3, 2), 2, (1, 0), dilation=(1, 2), ceil_mode=bool(ceil), return_indices=True)
    np.testing.assert_array_equal(y, ref.numpy())
    # torch's indices are per (n, c) plane; ONNX's count from the start of the tensor.
    plane = (np.arange(2)[:, None] * 3 + np.arange(3)[None, :]).reshape(2, 3, 1, 1) * 90
    np.testing.assert_array_equal(idx, ref_idx.numpy() + plane)


def test_max_pool_int8_and_unpool_round_trip():
    x = np.random.default_rng(0).integers(-128, 127, (1, 2, 4, 4)).astype(np.int8)
    y, idx = run("MaxPool", [x], {"kernel_shape": [2, 2], "strides": [2, 2]}, num_outputs=2)
    np.testing.assert_array_equal(y, x.reshape(1, 2, 2, 2, 2, 2).max(axis=(3, 5)))
    up = run("MaxUnpool", [y, idx], {"kernel_shape": [2, 2], "strides": [2, 2]})
    assert up.shape == x.shape and np.all((up == x) | (up == 0))
    np.testing.assert_array_equal(run("MaxPool", [up], {"kernel_shape": [2, 2], "strides": [2, 2]}), y)


@pytest.mark.parametrize("include_pad,ceil", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_average_pool_matches_torch(include_pad, ceil):
    x = rand(1, 2, 8, 7, dtype=np.float32)
    y = run("AveragePool", [x], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                 "count_include_pad": include_pad, "ceil_mode": ceil})
    ref = F.avg_pool2d(t(x), 3, 2, 1, ceil_mode=bool(ceil), count_include_pad=bool(include_pad)).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_lp_and_global_pools():
    x = rand(2, 3, 6, 5)
    y = run("LpPool", [x], {"kernel_shape": [2, 2], "strides": [2, 1], "p": 3})
    ref = F.lp_pool2d(t(np.abs(x)), 3, (2, 2), (2, 1)).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(run("GlobalAveragePool", [x]), x.mean(axis=(2, 3), keepdims=True), rtol=1e-6)
    np.testing.assert_array_equal(run("GlobalMaxPool", [x]), x.max(axis=(2, 3), keepdims=True))
    np.testing.assert_allclose(run("GlobalLpPool", [x], {"p": 2}),
                               np.sqrt((x ** 2).sum(axis=(2, 3), keepdims=True)), rtol=1e-5)


def test_average_pool_fp16_accumulates_in_fp32():
    x = np.full((1, 1, 64, 64), 1000.0, np.float16)  # a float16 running sum would overflow past 65504
    y = run("GlobalAveragePool", [x])
    assert y.dtype == np.float16 and float(y.ravel()[0]) == 1000.0


# ---------------------------------------------------------------- quantization

def test_quantize_dequantize_per_axis_round_trip():
    x = rand(2, 3, 4)
    scale, zp = np.array([0.01, 0.02, 0.05], np.float32), np.array([0, 10, -5], np.int8)
    q = run("QuantizeLinear", [x, scale, zp], {"axis": 1})
    assert q.dtype == np.int8
    ref = np.clip(np.rint(x / scale.reshape(1, 3, 1)) + zp.reshape(1, 3, 1), -128, 127)
    np.testing.assert_array_equal(q, ref)
    back = run("DequantizeLinear", [q, scale, zp], {"axis": 1})
    np.testing.assert_allclose(back, (ref - zp.reshape(1, 3, 1)) * scale.reshape(1, 3, 1), rtol=1e-6)


def test_quantize_blocked_int4_saturates():
    x = np.array([[100.0, 1.0, -1.0, -100.0, 0.5, 7.0]], np.float32)
    scale = np.array([[1.0, 0.5, 2.0]], np.float32)
    q = run("QuantizeLinear", [x, scale], {"axis": 1, "block_size": 2, "output_dtype": dtypes.int4})
    assert q.dtype == ml_dtypes.int4
    np.testing.assert_array_equal(q.astype(np.int8), [[7, 1, -2, -8, 0, 4]])  # 0.25 -> 0, 3.5 -> 4 (half to even)


def test_quantize_float8_saturate_flag():
    x = np.array([1000.0, -np.inf, 1.0], np.float32)
    zp = np.zeros(1, ml_dtypes.float8_e4m3fn).reshape(())
    sat = run("QuantizeLinear", [x, np.float32(1.0), zp])
    np.testing.assert_array_equal(sat.astype(np.float32), [448.0, -448.0, 1.0])
    raw = run("QuantizeLinear", [x, np.float32(1.0), zp], {"saturate": 0})
    assert np.isnan(raw.astype(np.float32)[:2]).all()


def test_quantize_rejects_conflicting_output_dtype():
    with pytest.raises(ShapeInferenceError, match="output_dtype"):
        build("QuantizeLinear", [rand(3), np.float32(1.0), np.uint8(0)], {"output_dtype": dtypes.int8})


def test_dynamic_quantize_linear():
    x = np.array([-1.0, 0.0, 2.0, 3.0], np.float32)
    y, scale, zp = run("DynamicQuantizeLinear", [x])
    assert scale.shape == () and scale.dtype == np.float32 and zp.dtype == np.uint8
    np.testing.assert_allclose(scale, 4.0 / 255, rtol=1e-6)
    assert int(zp) == 64  # round(1 / (4 / 255)) = round(63.75)
    np.testing.assert_array_equal(y, np.clip(np.rint(x / scale) + zp, 0, 255))


# ---------------------------------------------------------------- Dropout, text form

def test_dropout_inference_is_identity_and_training_is_seeded():
    x = rand(4, 5)
    y, mask = run("Dropout", [x], num_outputs=2)
    np.testing.assert_array_equal(y, x)
    assert mask.dtype == np.bool_ and mask.all()
    args = [x, np.float32(0.5), np.array(True)]
    y1, m1 = run("Dropout", args, {"seed": 3}, num_outputs=2)
    y2, m2 = run("Dropout", args, {"seed": 3}, num_outputs=2)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_allclose(y1, np.where(m1, x * 2, 0), rtol=1e-6)
    assert 0 < m1.sum() < m1.size


def test_graph_with_these_ops_prints_and_parses_back():
    b = GraphBuilder("cnn")
    x = b.input("x", tensor(["N", 3, 16, 16], "f32"))
    w = b.const(rand(2, 3, 1, 1), "w")  # small enough to print inline
    y = b.op("Conv", x, w, auto_pad="SAME_UPPER", strides=[2, 2])
    y = b.op("MaxPool", y, kernel_shape=[2, 2], strides=[2, 2])
    q = b.op("QuantizeLinear", y, b.const(np.float32(0.1), "s"), output_dtype=dtypes.int8)
    b.output(b.op("DequantizeLinear", q, b.const(np.float32(0.1), "s2")))
    g = b.build()
    text = print_graph(g)
    assert print_graph(parse_graph(text)) == text
