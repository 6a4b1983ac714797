"""Integer matmuls that arrive in a model (onnxruntime's dynamic quantization:
DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul) on the int8 kernels
(`passes.fold_integer_matmul`): the rewrite's forms and refusals, exactness against the
integer sums, a model quantized by onnxruntime's own tool against onnxruntime and our
reference interpreter, DynamicQuantizeLinear's rule bit for bit, and a CPU without VNNI.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
from compiler.api import import_model
from compiler.backends import BuildOptions, parse_target
from compiler.ir import dtypes, int8
from compiler.ir.interpreter import run_graph
from compiler.passes.core import PassContext

from test_precision import _cosine, needs_cpu_feature


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPILER_CACHE_DIR", str(tmp_path / "cache"))


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "integer_matmul", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _integer_matmul(w: np.ndarray, rows=(2, 5), zp="input", w_zp=None, a_type=TensorProto.UINT8) -> onnx.ModelProto:
    """Cast(MatMulInteger(a, W, zp[, w_zp]), float32) with `zp` a graph input, a constant
    (an int) or absent (None)."""
    k, n = w.shape
    inputs = [helper.make_tensor_value_info("a", a_type, [*rows, k])]
    inits = [numpy_helper.from_array(w, "w")]
    names = ["a", "w"]
    if zp == "input":
        inputs.append(helper.make_tensor_value_info("zp", a_type, []))
        names.append("zp")
    elif zp is not None:
        inits.append(numpy_helper.from_array(np.asarray(zp, np.uint8 if a_type == TensorProto.UINT8 else np.int8), "zp"))
        names.append("zp")
    if w_zp is not None:
        if len(names) == 2:
            names.append("")
        inits.append(numpy_helper.from_array(np.asarray(w_zp, np.int8), "w_zp"))
        names.append("w_zp")
    nodes = [helper.make_node("MatMulInteger", names, ["i"]), helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT)]
    return _model(nodes, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [*rows, n])], inits)


def _optimized(model, target="llvm"):
    return parse_target(target).backend.optimize(import_model(model), 2, PassContext(verify=True), BuildOptions())


def _int8_gemms(graph, target="llvm") -> list:
    from compiler.autotune.problems import problems_of_graph

    return [p for p, _ in problems_of_graph(graph, parse_target(target).backend.cpu(parse_target(target)))
            if getattr(p, "quant", None) is not None]


def _weights(k, n, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-128, 128, (k, n)).astype(np.int8)


@pytest.mark.parametrize("zp", ["input", 131, None])
def test_integer_matmul_runs_on_the_int8_kernel_exactly(zp):
    """The rewrite for a run-time, a constant and an absent activation zero point: one int8
    Linear on the codes (weights as codes), the zero point's correction as its bias; the
    result is the integer sum exactly (all sums here are below 2**24)."""
    w = _weights(40, 24)
    model = _integer_matmul(w, zp=zp)
    graph = _optimized(model)
    linears = [n for n in graph.nodes if n.op == "Linear"]
    assert not [n for n in graph.nodes if n.op == "MatMulInteger"]
    assert len(linears) == 1 and linears[0].attrs["compute"] is dtypes.int8 and linears[0].attrs["weight_codes"] == 1
    assert (len(linears[0].inputs) == 3) == (zp is not None)  # the correction is the bias
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (2, 5, 40)).astype(np.uint8)
    feeds = {"a": a}
    z = 0 if zp is None else 77 if zp == "input" else zp
    if zp == "input":
        feeds["zp"] = np.array(z, np.uint8)
    exact = (a.astype(np.int64) - z) @ w.astype(np.int64)
    np.testing.assert_array_equal(compiler.compile(model).run(feeds)["y"], exact.astype(np.float32))
    if "avx512vnni" in parse_target("llvm").backend.cpu(parse_target("llvm")).required:
        assert len(_int8_gemms(graph)) == 1  # the VNNI kernel, not the loop-IR rule


def test_sums_past_float32_integers_round_like_float32():
    """K = 3072 codes of 255 against weights of 127: sums near 10**8, past float32's integers.
    The kernel converts its int32 sum and adds the float32 correction, two roundings: within
    two float32 spacings of the exact value (ONNX's one Cast rounds once)."""
    k, n = 3072, 32
    w = np.full((k, n), 127, np.int8)
    w[:, 1::2] = -128  # the int8 extreme: 255 x -128 per product
    w[::3, 2] = 5
    a = np.full((2, 5, k), 255, np.uint8)
    a[0, 1, ::2] = 0
    model = _integer_matmul(w)
    feeds = {"a": a, "zp": np.array(3, np.uint8)}
    exact = (a.astype(np.int64) - 3) @ w.astype(np.int64)
    got = compiler.compile(model).run(feeds)["y"].astype(np.float64)
    assert np.all(np.abs(got - exact) <= 2 * np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64))


@pytest.mark.parametrize("case", ["weight_zero_point", "per_row_zero_point", "int8_activation"])
def test_forms_the_kernel_cannot_take_keep_the_exact_rule(case):
    """Weights whose integers leave int8 after their zero point (-127 - 3), a zero point per
    row, a signed activation: the MatMulInteger stays, and the result is the reference's
    integers exactly."""
    rng = np.random.default_rng(2)
    w = _weights(24, 16)
    a_type, zp, w_zp, a_dtype = TensorProto.UINT8, "input", None, np.uint8
    if case == "weight_zero_point":
        w[3, 4], w_zp = -127, 3
    elif case == "int8_activation":
        a_type, a_dtype = TensorProto.INT8, np.int8
    model = _integer_matmul(w, rows=(6,), zp=zp, w_zp=w_zp, a_type=a_type)
    if case == "per_row_zero_point":
        model.graph.input[1].CopyFrom(helper.make_tensor_value_info("zp", TensorProto.UINT8, [6]))
    graph = _optimized(model)
    assert [n.op for n in graph.nodes if n.op == "MatMulInteger"] == ["MatMulInteger"], case
    info = np.iinfo(a_dtype)
    feeds = {"a": rng.integers(info.min, info.max + 1, (6, 24)).astype(a_dtype),
             "zp": (rng.integers(0, 100, (6,)) if case == "per_row_zero_point" else np.array(9)).astype(a_dtype)}
    want = run_graph(import_model(model), feeds)["y"]
    np.testing.assert_array_equal(compiler.compile(model).run(feeds)["y"], want)


def _mlp() -> onnx.ModelProto:
    """x[4, 16, 96] -> MatMul + Add -> Relu -> MatMul + Add: two dense layers."""
    rng = np.random.default_rng(0)

    def w(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32), name)

    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["a1"]),
             helper.make_node("Relu", ["a1"], ["r1"]), helper.make_node("MatMul", ["r1", "w2"], ["m2"]),
             helper.make_node("Add", ["m2", "b2"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16, 96])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 16, 48])],
                  [w("w1", 96, 160), w("b1", 160), w("w2", 160, 48), w("b2", 48)])


def test_onnxruntime_dynamic_quantization_runs_on_the_int8_kernels(tmp_path):
    """A model quantized by onnxruntime's `quantize_dynamic` (its default: QInt8 weights,
    uint8 activations quantized at run time): every MatMulInteger becomes an int8 Linear, and
    the result agrees with onnxruntime on the same file and with our reference interpreter
    (the same integers; a code can flip where x / scale lies on a rounding tie in float32
    sums of a different order, hence the bound), and stays close to the fp32 model."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = tmp_path / "fp32.onnx", tmp_path / "dynamic.onnx"
    onnx.save(_mlp(), src)
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    ops = {n.op_type for n in onnx.load(dst).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops
    graph = _optimized(str(dst))
    assert not [n for n in graph.nodes if n.op == "MatMulInteger"]
    assert [n.attrs.get("weight_codes") for n in graph.nodes if n.op == "Linear"] == [1, 1]
    feeds = {"x": np.random.default_rng(3).standard_normal((4, 16, 96)).astype(np.float32)}
    got = compiler.compile(str(dst)).run(feeds)["y"]
    ref = run_graph(import_model(str(dst)), feeds)["y"]
    want = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(["y"], feeds)[0]
    step = float(np.abs(ref).max()) / 64
    np.testing.assert_allclose(got, ref, rtol=0, atol=step)
    assert np.mean(np.abs(got - ref) <= 1e-5 * np.abs(ref).max()) > 0.99  # nearly all identical to rounding
    np.testing.assert_allclose(got, want, rtol=0, atol=step)
    assert _cosine(got, compiler.compile(_mlp()).run(feeds)["y"]) > 0.999


@pytest.mark.parametrize("shape,fill", [((1, 128, 384), None), ((7,), None), ((3, 5, 17), None),
                                        ((4, 33), 0.0), ((4, 33), -2.5), ((2, 9), 3.0)])
def test_dynamic_quantize_linear_is_the_references_bit_for_bit(shape, fill):
    """DynamicQuantizeLinear's rule (vectorized range reduction, scale and zero point computed
    once): codes, scale and zero point equal the reference's, for mixed signs, all zeros,
    all negative and all positive inputs."""
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32) * 3 if fill is None else \
        np.full(shape, fill, np.float32)
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
    model = _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                   [helper.make_tensor_value_info("y", TensorProto.UINT8, list(shape)),
                    helper.make_tensor_value_info("s", TensorProto.FLOAT, []),
                    helper.make_tensor_value_info("z", TensorProto.UINT8, [])], [])
    got = compiler.compile(model).run({"x": x})
    want = run_graph(import_model(model), {"x": x})
    for name in ("y", "s", "z"):
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_a_cpu_without_vnni_computes_the_same_integers():
    """Compiled for an AVX2 CPU (no VNNI), the rewritten int8 product runs its loop-IR rule
    (the model asked for nothing, so nothing is refused) with the same result."""
    needs_cpu_feature("avx2")
    w = _weights(40, 24)
    model = _integer_matmul(w)
    a = np.random.default_rng(5).integers(0, 256, (2, 5, 40)).astype(np.uint8)
    feeds = {"a": a, "zp": np.array(200, np.uint8)}
    exact = (a.astype(np.int64) - 200) @ w.astype(np.int64)
    target = "llvm -mcpu=x86-64-v3"
    assert not _int8_gemms(_optimized(model, target), target)
    np.testing.assert_array_equal(compiler.compile(model, target=target).run(feeds)["y"], exact.astype(np.float32))
    conv = _integer_conv(np.random.default_rng(6).integers(-128, 128, (12, 8, 3, 3)).astype(np.int8), pads=[1, 1, 1, 1])
    feeds = {"x": np.random.default_rng(7).integers(0, 256, (2, 8, 9, 9)).astype(np.uint8), "zp": np.array(9, np.uint8)}
    np.testing.assert_array_equal(compiler.compile(conv, target=target).run(feeds)["y"],
                                  run_graph(import_model(conv), feeds)["y"])


def test_weight_codes_must_be_codes():
    assert int8.are_weight_codes(np.array([[-127, 0, 127]], np.float32))
    assert int8.are_weight_codes(np.array([[-128, 127]], np.int8))
    for bad in ([[0.5]], [[-129.0]], [[128.0]]):
        assert not int8.are_weight_codes(np.array(bad, np.float32))
        with pytest.raises(ValueError, match=r"integers in \[-128, 127\]"):
            int8.quantize_weights(np.array(bad, np.float32), -1, codes=True)
    q, scales = int8.quantize_weights(np.array([[3.0, -4.0], [1.0, 0.0]], np.float32), -1, codes=True)
    assert q.dtype == np.int8 and q.tolist() == [[3, -4], [1, 0]] and scales.tolist() == [1.0, 1.0]


def _integer_conv(w: np.ndarray, x_shape=(2, 8, 9, 9), zp="input", **attrs) -> onnx.ModelProto:
    """Cast(ConvInteger(x, W, zp), float32), x uint8 NCHW."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.UINT8, list(x_shape))]
    names = ["x", "w"]
    inits = [numpy_helper.from_array(w, "w")]
    if zp == "input":
        inputs.append(helper.make_tensor_value_info("zp", TensorProto.UINT8, []))
        names.append("zp")
    nodes = [helper.make_node("ConvInteger", names, ["i"], **attrs), helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT)]
    return _model(nodes, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)


@pytest.mark.parametrize("attrs", [{"pads": [1, 1, 1, 1]}, {"pads": [0, 2, 1, 0], "strides": [2, 2]},
                                   {"dilations": [2, 2], "pads": [2, 2, 2, 2]}, {"group": 2, "pads": [1, 0, 1, 0]}, {}])
@pytest.mark.parametrize("zp", ["input", None])
def test_integer_conv_runs_on_the_int8_conv_kernel_exactly(attrs, zp):
    """ConvInteger: one int8 ConvNhwc on the codes, the padding made explicit with the zero
    point's code (ONNX's padding is the zero point, a real 0), the zero point's correction as
    the bias; the result is the reference's integers exactly, at the borders too."""
    group = attrs.get("group", 1)
    w = np.random.default_rng(6).integers(-128, 128, (12, 8 // group, 3, 3)).astype(np.int8)
    model = _integer_conv(w, zp=zp, **attrs)
    graph = _optimized(model)
    assert not [n for n in graph.nodes if n.op == "ConvInteger"]
    convs = [n for n in graph.nodes if n.op == "ConvNhwc"]
    assert len(convs) == 1 and convs[0].attrs["weight_codes"] == 1 and convs[0].attrs["compute"] is dtypes.int8
    if zp is not None and any(attrs.get("pads", [])):
        assert list(convs[0].attrs["pads"]) == [0, 0, 0, 0] and [n for n in graph.nodes if n.op == "Pad"]
    rng = np.random.default_rng(7)
    feeds = {"x": rng.integers(0, 256, (2, 8, 9, 9)).astype(np.uint8)}
    if zp is not None:
        feeds["zp"] = np.array(201, np.uint8)
    want = run_graph(import_model(model), feeds)["y"]
    np.testing.assert_array_equal(compiler.compile(model).run(feeds)["y"], want)
    if "avx512vnni" in parse_target("llvm").backend.cpu(parse_target("llvm")).required:
        assert len(_int8_gemms(graph)) == 1


@pytest.mark.parametrize("zp", ["input", None])
def test_depthwise_integer_conv_runs_exactly_in_float(zp):
    """A depthwise ConvInteger (no int8 kernel) runs as the float depthwise conv of x - zp:
    its window sums are integers float32 holds exactly, so the result is the reference's,
    padding included (a real 0 after the shift, as ONNX's zero point is)."""
    w = np.random.default_rng(8).integers(-128, 128, (8, 1, 3, 3)).astype(np.int8)
    model = _integer_conv(w, zp=zp, group=8, pads=[1, 1, 1, 1], strides=[2, 2])
    graph = _optimized(model)
    assert not [n for n in graph.nodes if n.op == "ConvInteger"] and [n for n in graph.nodes if n.op == "ConvNhwc"]
    feeds = {"x": np.random.default_rng(9).integers(0, 256, (2, 8, 9, 9)).astype(np.uint8)}
    if zp is not None:
        feeds["zp"] = np.array(250, np.uint8)
    np.testing.assert_array_equal(compiler.compile(model).run(feeds)["y"], run_graph(import_model(model), feeds)["y"])


def _cnn() -> onnx.ModelProto:
    """Conv 3x3 -> Relu -> Conv 3x3/2 -> Relu -> Conv 1x1 (two readers of one activation) -> Add."""
    rng = np.random.default_rng(0)

    def w(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32), name)

    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"]), helper.make_node("Conv", ["r2", "w3"], ["c3"]),
             helper.make_node("Conv", ["r2", "w4"], ["c4"]), helper.make_node("Add", ["c3", "c4"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 16, 16])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 24, 8, 8])],
                  [w("w1", 16, 3, 3, 3), w("b1", 16), w("w2", 32, 16, 3, 3), w("b2", 32), w("w3", 24, 32, 1, 1),
                   w("w4", 24, 32, 1, 1)])


def test_onnxruntime_dynamic_quantization_of_a_cnn_runs_on_the_int8_conv_kernels(tmp_path):
    """`quantize_dynamic` on a CNN writes ConvInteger: every conv becomes an int8 ConvNhwc,
    each run-time quantization happens channels-last (commuted with the conv's Transpose, so
    no quantizing kernel reads across channels), and the result agrees with onnxruntime and
    our reference interpreter, and stays close to fp32."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = tmp_path / "fp32.onnx", tmp_path / "dynamic.onnx"
    onnx.save(_cnn(), src)
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    assert "ConvInteger" in {n.op_type for n in onnx.load(dst).graph.node}
    graph = _optimized(str(dst))
    assert not [n for n in graph.nodes if n.op == "ConvInteger"]
    assert [n.attrs.get("weight_codes") for n in graph.nodes if n.op == "ConvNhwc"] == [1] * 4
    producers = {v: n for n in graph.nodes for v in n.outputs}
    moved = [n for n in graph.nodes if n.op == "Transpose" and n.inputs[0] in producers
             and producers[n.inputs[0]].op == "DynamicQuantizeLinear"]
    assert not moved  # the convs read the codes as they were quantized
    feeds = {"x": np.random.default_rng(3).standard_normal((2, 3, 16, 16)).astype(np.float32)}
    got = compiler.compile(str(dst)).run(feeds)["y"]
    ref = run_graph(import_model(str(dst)), feeds)["y"]
    want = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(["y"], feeds)[0]
    step = float(np.abs(ref).max()) / 64
    np.testing.assert_allclose(got, ref, rtol=0, atol=step)
    np.testing.assert_allclose(got, want, rtol=0, atol=step)
    assert _cosine(got, compiler.compile(_cnn()).run(feeds)["y"]) > 0.99


def test_a_transpose_is_not_gathered_again_in_every_pass_of_the_quantization():
    """DynamicQuantizeLinear reads its input in three passes (min, max, quantize): a Transpose
    before it stays out of its kernel (`OpDef.injective_prologue`), while an elementwise
    producer alone still folds into it."""
    def model(transpose: bool):
        nodes = ([helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1])] if transpose else []) + [
            helper.make_node("Relu", ["t" if transpose else "x"], ["r"]),
            helper.make_node("DynamicQuantizeLinear", ["r"], ["y", "s", "z"])]
        shape = [2, 48, 64] if transpose else [2, 64, 48]
        return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64, 48])],
                      [helper.make_tensor_value_info("y", TensorProto.UINT8, shape),
                       helper.make_tensor_value_info("s", TensorProto.FLOAT, []),
                       helper.make_tensor_value_info("z", TensorProto.UINT8, [])], [])

    feeds = {"x": np.random.default_rng(10).standard_normal((2, 64, 48)).astype(np.float32)}
    for transpose in (True, False):
        cm = compiler.compile(model(transpose))
        quantizing = [set(call["ops"]) for call in cm.calls if "DynamicQuantizeLinear" in call["ops"]]
        assert quantizing == [{"DynamicQuantizeLinear"} if transpose else {"DynamicQuantizeLinear", "Relu"}], cm.calls
        got, want = cm.run(feeds), run_graph(import_model(model(transpose)), feeds)
        for name in ("y", "s", "z"):
            np.testing.assert_array_equal(got[name], want[name])
