"""int8 post-training quantization through the public API and CLI: which products are
lowered and with what activation quantization (`passes.lower_precision`,
`passes.int8_ranges`), the compiled model against the reference interpreter of the lowered
graph (same integers: tight) and against fp32 (int8's rounding: loose), the three range
methods, the scales file round trip and its refusals, CPU refusals, and top-1 accuracy of
a classifier trained here on real images.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

import compiler
from compiler.api import import_model
from compiler.backends import BuildOptions, parse_target
from compiler.calibration import save_scales
from compiler.ir import dtypes, int8
from compiler.ir.errors import CompilerError, TargetError
from compiler.ir.interpreter import run_graph
from compiler.passes.core import PassContext
from compiler.passes.int8_ranges import BINS, Calibration, _entropy_threshold, _percentile_threshold

from test_precision import _cosine, _feeds, _samples, needs_cpu_feature, refused_on_a_host_without, small_net


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPILER_CACHE_DIR", str(tmp_path / "cache"))


def _needs_vnni():
    needs_cpu_feature("avx512vnni")


def _calibration(n=4, method="minmax"):
    return [{"x": s} for s in _samples(n)], method


def _lowered(model, method="minmax", exclude=()):
    samples, method = _calibration(method=method)
    ctx = PassContext(verify=True)
    options = BuildOptions(precision="int8", exclude=tuple(exclude), calibration=Calibration(tuple(samples), method))
    graph = parse_target("llvm").backend.optimize(import_model(model), 2, ctx, options)
    return graph, {r.node: r for r in ctx.analyses.get("precision", ())}


# ---------------------------------------------------------------- the pass


def test_products_get_int8_with_their_activation_quantization():
    graph, report = _lowered(small_net())
    lowered = [n for n in graph.nodes if n.attrs.get("compute") is not None]
    assert {n.op for n in lowered} == {"ConvNhwc", "Linear"} and len(lowered) == 3
    for n in lowered:
        assert n.attrs["compute"] is dtypes.int8 and n.attrs["act_scale"] > 0 and 0 <= n.attrs["act_zero_point"] <= 255
        assert report[n.name].precision == "int8" and "uint8 activations" in report[n.name].reason
    depthwise = [r for r in report.values() if "depthwise" in r.reason]
    assert len(depthwise) == 1 and depthwise[0].precision == "float32"
    # the first conv reads the raw (signed) input: a zero point inside the range
    first = next(n for n in lowered if n.name.startswith("conv1"))
    assert 0 < first.attrs["act_zero_point"] < 255


def test_lowered_reference_carries_int8_error_only():
    graph32 = parse_target("llvm").backend.optimize(import_model(small_net()), 2, PassContext(), BuildOptions())
    graph8, _ = _lowered(small_net())
    y32, y8 = run_graph(graph32, _feeds())["logits"], run_graph(graph8, _feeds())["logits"]
    assert not np.array_equal(y32, y8)
    assert _cosine(y8, y32) > 0.995


def test_int8_without_calibration_is_refused():
    with pytest.raises(CompilerError, match="precision 'int8' needs calibration data"):
        compiler.compile(small_net(), precision="int8", cache=False)
    with pytest.raises(CompilerError, match="calibration_method 'kl' is not one of minmax, percentile, entropy"):
        compiler.compile(small_net(), precision="int8", calibration=_calibration()[0], calibration_method="kl")


# ---------------------------------------------------------------- range methods


def test_percentile_and_entropy_clip_a_rare_outlier_that_minmax_keeps():
    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_normal(200_000))
    x[0] = 100.0  # one outlier
    hist = np.histogram(x, BINS, (0.0, 100.0))[0]
    p = _percentile_threshold(hist, 100.0, signed=True)
    e = _entropy_threshold(hist, 100.0, signed=True)
    assert 3.0 < p < 6.0, p
    assert 2.0 < e < 10.0, e


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_each_method_compiles_and_stays_close_to_fp32(method):
    _needs_vnni()
    samples, _ = _calibration()
    cm = compiler.compile(small_net(), precision="int8", calibration=samples, calibration_method=method)
    fp32 = compiler.compile(small_net()).run(_feeds())
    out = cm.run(_feeds())
    assert _cosine(out["logits"], fp32["logits"]) > 0.995
    entry = cm.manifest["precision"]
    assert entry["requested"] == "int8" and entry["int8"]["method"] == method
    assert entry["outputs"]["logits"]["cosine"] > 0.995 and entry["calibration_samples"] == 4


# ---------------------------------------------------------------- compiled


def test_compiled_int8_matches_lowered_reference():
    """Same integer codes on both sides: only float32 rounding of the final scaling differs."""
    _needs_vnni()
    samples, _ = _calibration()
    cm = compiler.compile(small_net(), precision="int8", calibration=samples)
    graph8, _ = _lowered(small_net())
    want = run_graph(graph8, _feeds())
    out = cm.run(_feeds())
    np.testing.assert_allclose(out["logits"], want["logits"], rtol=1e-4, atol=1e-4)
    assert out["probs"].dtype == np.float32  # inputs and outputs keep the model's types


def test_loop_ir_fallback_quantizes_like_the_kernels():
    """A Linear with 3-D constant weights has no microkernel: its loop-IR rule quantizes
    activations and weights the same way (the attributes are set by hand here)."""
    from compiler.backends.base import BuildOptions as Options
    from compiler.ir.builder import GraphBuilder
    from compiler.ir.types import TensorType

    rng = np.random.default_rng(0)
    gb = GraphBuilder("linear")
    a = gb.input("a", TensorType((2, 5, 33), dtypes.float32))
    b = gb.const(rng.standard_normal((2, 33, 7)).astype(np.float32), "b")
    scale, zp = int8.activation_params(-3.0, 3.0)
    (y,) = gb.node("Linear", [a, b], attrs={"compute": dtypes.int8, "act_scale": scale, "act_zero_point": zp})
    gb.output(y)
    graph = gb.build()
    feeds = {"a": rng.standard_normal((2, 5, 33)).astype(np.float32)}
    want = run_graph(graph, feeds)
    backend = parse_target("llvm").backend
    got = backend.compile_model(graph, parse_target("llvm"), Options(), "test").run(feeds)
    name = graph.outputs[0].name
    np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)
    assert np.abs(got[name] - feeds["a"].astype(np.float64) @ b.const).max() > 1e-3


# ---------------------------------------------------------------- scales file


def test_scales_file_reproduces_the_build(tmp_path):
    _needs_vnni()
    samples, _ = _calibration()
    cm = compiler.compile(small_net(), precision="int8", calibration=samples, calibration_method="percentile")
    path = tmp_path / "scales.json"
    save_scales(cm, path)
    again = compiler.compile(small_net(), precision="int8", calibration=path)
    for name, value in cm.run(_feeds()).items():
        np.testing.assert_array_equal(again.run(_feeds())[name], value)
    assert again.manifest["precision"]["int8"]["activations"] == json.loads(path.read_text())["activations"]


def test_bad_scales_files_are_refused_by_name(tmp_path):
    samples, _ = _calibration()
    cm = compiler.compile(small_net(), precision="int8", calibration=samples, target="llvm -mcpu=znver4")
    good = json.loads(json.dumps(cm.manifest["precision"]["int8"]))
    missing = dict(good, activations={k: v for k, v in list(good["activations"].items())[1:]})
    cases = {
        "missing.json": (missing, "no range for 1 int8 activation"),
        "foreign.json": ({"format": "something-else"}, "not an int8 scales file"),
        "newer.json": (dict(good, version=99), "scales file version 99"),
        "bad_range.json": (dict(good, activations={k: {"min": 1.0, "max": -1.0} for k in good["activations"]}),
                           r"has range \[1.0, -1.0\]"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_text(json.dumps(data))
        with pytest.raises(CompilerError, match=message):
            compiler.compile(small_net(), precision="int8", calibration=tmp_path / name, target="llvm -mcpu=znver4")
    (tmp_path / "torn.json").write_text("{\"format\": ")
    with pytest.raises(CompilerError, match="cannot read it as a JSON scales file"):
        compiler.compile(small_net(), precision="int8", calibration=tmp_path / "torn.json")
    (tmp_path / "ok.json").write_text(json.dumps(good))
    with pytest.raises(CompilerError, match="a scales file is for precision 'int8', not 'bf16'"):
        compiler.compile(small_net(), precision="bf16", calibration=tmp_path / "ok.json")
    with pytest.raises(CompilerError, match="only an int8 build has activation scales"):
        save_scales(compiler.compile(small_net()), tmp_path / "x.json")


# ---------------------------------------------------------------- CPUs


def test_int8_refused_for_a_cpu_without_vnni():
    with pytest.raises(TargetError, match=r"AVX512VNNI \(vpdpbusd\).*precision='fp32'"):
        compiler.compile(small_net(), target="llvm -mcpu=x86-64-v4", precision="int8",
                         calibration=_calibration()[0], cache=False)


def test_int8_artifact_refused_on_a_host_without_vnni(tmp_path, monkeypatch):
    refused_on_a_host_without("avx512vnni", tmp_path, monkeypatch,
                              r"precision 'int8'.*AVX512VNNI \(vpdpbusd\).*precision='fp32'", precision="int8",
                              calibration=_calibration()[0])


def test_cache_keys_calibration_and_method():
    _needs_vnni()
    samples, _ = _calibration()
    a = compiler.compile(small_net(), precision="int8", calibration=samples)
    b = compiler.compile(small_net(), precision="int8", calibration=samples, calibration_method="entropy")
    c = compiler.compile(small_net(), precision="int8", calibration=[{"x": s} for s in _samples(4, seed=1)])
    methods = [m.manifest["precision"]["int8"]["method"] for m in (a, b, c)]
    assert methods == ["minmax", "entropy", "minmax"]
    assert a.manifest["precision"]["int8"] != c.manifest["precision"]["int8"]


# ---------------------------------------------------------------- CLI


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "compiler.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_int8_compile_save_scales_reuse_and_inspect(tmp_path):
    onnx.save(small_net(), tmp_path / "net.onnx")
    np.savez(tmp_path / "cal.npz", x=_samples(3))
    mcpu = ["--target", "llvm -mcpu=znver4"]
    done = _cli("net.onnx", *mcpu, "--precision", "int8", "--calibrate", "cal.npz", "--calibration-method", "entropy",
                "--save-scales", "s.json", "-o", "a.cmod", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "s.json").read_text())["method"] == "entropy"
    done = _cli("net.onnx", *mcpu, "--precision", "int8", "--calibrate", "s.json", "-o", "b.cmod", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    shown = _cli("inspect", "net.onnx", *mcpu, "--precision", "int8", "--calibrate", "cal.npz", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert sum(r["precision"] == "int8" for r in report["nodes"]) == 3 and report["outputs"]["probs"]["cosine"] > 0.99
    bad = _cli("net.onnx", "--precision", "int8", cwd=tmp_path)
    assert bad.returncode != 0 and "needs calibration data" in bad.stderr and "Traceback" not in bad.stderr


# ---------------------------------------------------------------- real images


def test_digits_classifier_keeps_its_accuracy_in_int8():
    """A small CNN trained here on scikit-learn's bundled 8x8 handwritten digits (real
    scans, no download), calibrated on one batch of training images: int8 top-1 within
    half a point of fp32 on the held-out third, for every method."""
    _needs_vnni()
    from test_precision import _digits_model

    model, x, y, train, test = _digits_model()
    feeds = {"x": x[test]}
    fp32 = compiler.compile(model).run(feeds)["logits"]
    acc32 = float((fp32.argmax(1) == y[test]).mean())
    assert acc32 > 0.9  # it did learn
    calibration = [{"x": x[train[:len(test)]]}]  # one batch of training images (the model's batch size)
    for method in ("minmax", "percentile", "entropy"):
        cm = compiler.compile(model, precision="int8", calibration=calibration, calibration_method=method)
        q = cm.run(feeds)["logits"]
        acc8 = float((q.argmax(1) == y[test]).mean())
        assert abs(acc8 - acc32) <= 0.005, (method, acc32, acc8)


# ---------------------------------------------------------------- models that arrive quantized


def _ort_quantized(model: onnx.ModelProto, tmp_path, samples, reduce_range: bool = False, qoperator: bool = False) -> str:
    """`model` quantized by onnxruntime's own tool (QDQ, or QLinearConv/QLinearMatMul with
    `qoperator`; per-channel int8 weights, uint8 activations), as its users produce such files."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(samples)

        def get_next(self):
            return next(self.items, None)

    src, dst = tmp_path / "fp32.onnx", tmp_path / "qdq.onnx"
    onnx.save(model, src)
    quant_format = QuantFormat.QOperator if qoperator else QuantFormat.QDQ
    quantize_static(str(src), str(dst), Reader(), quant_format=quant_format, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=reduce_range)
    return str(dst)


def _optimized(path):
    return parse_target("llvm").backend.optimize(import_model(path), 2, PassContext(verify=True), BuildOptions())


def test_qdq_model_runs_its_products_on_the_int8_kernels(tmp_path):
    """onnxruntime's QDQ file: the convs with a Q -> DQ activation become compute=int8 (the
    pairs disappear), and the result agrees with onnxruntime running the same file
    and with our reference interpreter on the imported graph (one uint8 code at most: the
    division vs inverse-multiply tie, `passes.fold_qdq`)."""
    import onnxruntime as ort

    _needs_vnni()
    path = _ort_quantized(small_net(), tmp_path, _calibration()[0])
    graph = _optimized(path)
    computes = {n.name: n.attrs.get("compute") for n in graph.nodes if n.op == "ConvNhwc"}
    # both convs (the first through the input's layout Transpose), not the depthwise one
    assert [name.split("_")[0] for name, c in computes.items() if c is dtypes.int8] == ["conv1", "conv2"], computes
    assert not [n for n in graph.nodes if n.op == "QuantizeLinear" and n.inputs[0].name == "x"]
    feeds = _feeds()
    got = compiler.compile(path).run(feeds)
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(["logits"], feeds)[0]
    ref = run_graph(import_model(path), feeds)["logits"]
    step = float(np.abs(ref).max()) / 64  # a generous bound on one code of the output's quantization
    np.testing.assert_allclose(got["logits"], ref, rtol=0, atol=step)
    np.testing.assert_allclose(got["logits"], want, rtol=0, atol=step)
    assert _cosine(got["logits"], want) > 0.999


def test_qdq_weights_off_the_kernel_grid_stay_float(tmp_path):
    """reduce_range weights use 7 bits (max code 63 or 64): requantizing them to the
    kernel's 127-code grid would change them, so those products keep float32 on the
    dequantized weights, and the result is the reference's."""
    path = _ort_quantized(small_net(), tmp_path, _calibration()[0], reduce_range=True)
    graph = _optimized(path)
    assert not [n for n in graph.nodes if n.attrs.get("compute") is not None]
    feeds = _feeds()
    np.testing.assert_allclose(compiler.compile(path).run(feeds)["logits"], run_graph(import_model(path), feeds)["logits"],
                               rtol=1e-5, atol=1e-5)


def test_max_pool_moves_in_front_of_its_quantization():
    """MaxPool(DQ(Q(x))) == DQ(Q(MaxPool(x))): quantizing is monotone."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["c", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
             helper.make_node("MaxPool", ["d"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])]
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "s"), numpy_helper.from_array(np.array(120, np.uint8), "z"),
             numpy_helper.from_array((rng.standard_normal((8, 8, 3, 3)) / 8).astype(np.float32), "w")]
    graph = helper.make_graph(nodes, "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 9, 9])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 5, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    optimized = _optimized(model)
    order = [n.op for n in optimized.nodes if n.op in ("MaxPoolNhwc", "QuantizeLinear", "DequantizeLinear")]
    assert order == ["MaxPoolNhwc", "QuantizeLinear", "DequantizeLinear"]
    feeds = {"x": rng.standard_normal((1, 8, 9, 9)).astype(np.float32)}
    got, want = compiler.compile(model).run(feeds)["y"], run_graph(import_model(model), feeds)["y"]
    np.testing.assert_allclose(got, want, rtol=0, atol=0.02 + 1e-6)  # at most one code (float32 sums' order)
    assert np.mean(got == want) > 0.98


def _conv_mlp() -> onnx.ModelProto:
    """Conv -> Relu -> Conv/2 -> Relu -> Flatten -> MatMul: what onnxruntime's QOperator format
    writes with standard ops only (QLinearConv, QLinearMatMul)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def w(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32), name)

    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], strides=[2, 2]), helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Flatten", ["r2"], ["f"]), helper.make_node("MatMul", ["f", "fc"], ["logits"])]
    graph = helper.make_graph(nodes, "conv_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 12, 12])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, 10])],
                              [w("w1", 16, 3, 3, 3), w("b1", 16), w("w2", 24, 16, 2, 2), w("b2", 24), w("fc", 24 * 36, 10)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_qlinear_model_runs_on_the_int8_kernels(tmp_path):
    """onnxruntime's QOperator file (QLinearConv, QLinearMatMul): decomposed into DQ ->
    product -> Q, every product on the int8 kernels, and the result equals onnxruntime's and
    our reference's (the op's exact integer rule) here."""
    import onnxruntime as ort

    _needs_vnni()
    path = _ort_quantized(_conv_mlp(), tmp_path, _calibration()[0], qoperator=True)
    assert {n.op_type for n in onnx.load(path).graph.node} >= {"QLinearConv", "QLinearMatMul"}
    graph = _optimized(path)
    assert [n.attrs.get("compute") for n in graph.nodes if n.op in ("ConvNhwc", "Linear")] == [dtypes.int8] * 3
    assert not [n for n in graph.nodes if n.op.startswith("QLinear")]
    feeds = _feeds()
    got = compiler.compile(path).run(feeds)["logits"]
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(["logits"], feeds)[0]
    ref = run_graph(import_model(path), feeds)["logits"]
    step = float(np.abs(ref).max()) / 100  # one output code at most (the requantization's rounding)
    np.testing.assert_allclose(got, ref, rtol=0, atol=step)
    np.testing.assert_allclose(got, want, rtol=0, atol=step)
    assert np.mean(got == ref) > 0.95


def test_int8_chain_passes_uint8_codes_between_products():
    """conv1 is read only by conv2 (an int8 product): conv1's epilogue writes uint8 codes and
    conv2 copies them as they are; the result is the unchained graph's to float32 rounding
    (the same integers), and the reference of the chained graph agrees with the kernels."""
    _needs_vnni()
    samples, _ = _calibration()
    options = BuildOptions(precision="int8", calibration=Calibration(tuple(samples)))
    graph = parse_target("llvm").backend.optimize(import_model(_conv_mlp()), 2, PassContext(verify=True), options)
    convs = [n for n in graph.nodes if n.op == "ConvNhwc"]
    assert convs[0].attrs["out_scale"] > 0 and convs[0].outputs[0].type.dtype is dtypes.uint8
    assert convs[1].inputs[0] is convs[0].outputs[0] and not convs[1].attrs.get("out_scale")
    assert convs[0].attrs["out_scale"] == convs[1].attrs["act_scale"]
    feeds = _feeds()
    cm = compiler.compile(_conv_mlp(), precision="int8", calibration=samples)
    got = cm.run(feeds)["logits"]
    np.testing.assert_allclose(got, run_graph(graph, feeds)["logits"], rtol=1e-4, atol=1e-4)
    fp32 = compiler.compile(_conv_mlp()).run(feeds)["logits"]
    assert _cosine(got, fp32) > 0.995
    assert cm.manifest["precision"]["uint8_values"] == [convs[0].outputs[0].name]
    # the report reads the codes as the floats they stand for
    from compiler.precision_report import precision_report

    report = precision_report(import_model(_conv_mlp()), "llvm", "int8", (), [feeds], Calibration(tuple(samples)))
    lowered = [r for r in report["nodes"] if r["precision"] == "int8"]
    assert len(lowered) == 3 and all(r["cosine"] > 0.99 for r in lowered), lowered


def test_int8_chain_runs_max_pools_on_codes():
    """conv -> relu -> max pool -> conv: the pool runs on uint8 codes (quantizing commutes
    with max), the first conv quantizing with the second's parameters."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array((rng.standard_normal(s) / np.sqrt(np.prod(s[1:]))).astype(np.float32), n)
             for n, s in (("w1", (16, 3, 3, 3)), ("w2", (8, 16, 3, 3)))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["p1", "w2"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "pooled", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8, 6, 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    samples, _ = _calibration()
    options = BuildOptions(precision="int8", calibration=Calibration(tuple(samples)))
    lowered = parse_target("llvm").backend.optimize(import_model(model), 2, PassContext(verify=True), options)
    pool = next(n for n in lowered.nodes if n.op == "MaxPoolNhwc")
    convs = [n for n in lowered.nodes if n.op == "ConvNhwc"]
    assert pool.inputs[0].type.dtype is dtypes.uint8 and pool.outputs[0].type.dtype is dtypes.uint8
    assert (convs[0].attrs["out_scale"], convs[0].attrs["out_zero_point"]) == \
        (convs[1].attrs["act_scale"], convs[1].attrs["act_zero_point"])
    feeds = _feeds()
    _needs_vnni()  # the graph checks above hold anywhere; the kernels need VNNI
    got = compiler.compile(model, precision="int8", calibration=samples).run(feeds)["y"]
    np.testing.assert_allclose(got, run_graph(lowered, feeds)["y"], rtol=1e-4, atol=1e-4)
    assert _cosine(got, compiler.compile(model).run(feeds)["y"]) > 0.995


def _residual_block() -> onnx.ModelProto:
    """conv -> relu (a) -> conv -> relu -> conv, + a -> relu -> conv: a ResNet block, its
    input read by the block's first conv and added by its last."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(4)
    inits = [numpy_helper.from_array((rng.standard_normal(s) / np.sqrt(np.prod(s[1:]))).astype(np.float32), n)
             for n, s in (("w1", (16, 3, 3, 3)), ("w2", (16, 16, 3, 3)), ("w3", (16, 16, 1, 1)), ("w4", (8, 16, 3, 3)))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["a"]),
             helper.make_node("Conv", ["a", "w2"], ["c2"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Conv", ["r2", "w3"], ["c3"]), helper.make_node("Add", ["c3", "a"], ["s"]),
             helper.make_node("Relu", ["s"], ["block"]), helper.make_node("Conv", ["block", "w4"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "residual", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8, 12, 12])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_int8_chain_hands_a_residual_over_as_codes():
    """The block input is read by an int8 conv and added as the residual of another: it
    leaves its producer as uint8 codes, the adding conv dequantizes them in its epilogue
    (residual_scale / residual_zero_point are the codes' own), and the kernels agree with
    the chained graph's reference."""
    model = _residual_block()
    samples, _ = _calibration()
    options = BuildOptions(precision="int8", calibration=Calibration(tuple(samples)))
    lowered = parse_target("llvm").backend.optimize(import_model(model), 2, PassContext(verify=True), options)
    convs = [n for n in lowered.nodes if n.op == "ConvNhwc"]
    first, adding = convs[0], next(n for n in convs if len(n.inputs) > 3 and n.inputs[3] is not None)
    assert first.outputs[0].type.dtype is dtypes.uint8 and adding.inputs[3] is first.outputs[0]
    assert (adding.attrs["residual_scale"], adding.attrs["residual_zero_point"]) == \
        (first.attrs["out_scale"], first.attrs["out_zero_point"])
    assert adding.outputs[0].type.dtype is dtypes.uint8  # the block output feeds the last conv as codes too
    feeds = _feeds()
    _needs_vnni()  # the graph checks above hold anywhere; the kernels need VNNI
    got = compiler.compile(model, precision="int8", calibration=samples).run(feeds)["y"]
    np.testing.assert_allclose(got, run_graph(lowered, feeds)["y"], rtol=1e-4, atol=1e-4)
    assert _cosine(got, compiler.compile(model).run(feeds)["y"]) > 0.99


def _joined_branches(extra_reader: bool = False) -> onnx.ModelProto:
    """Two conv branches joined on the channels, the join read by a conv (and with
    `extra_reader` by a Sigmoid too, which keeps it float32)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array((rng.standard_normal(s) / np.sqrt(np.prod(s[1:]))).astype(np.float32), n)
             for n, s in (("wa", (8, 3, 1, 1)), ("wb", (12, 3, 3, 3)), ("wc", (8, 20, 3, 3)))]
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"]), helper.make_node("Relu", ["a"], ["ra"]),
             helper.make_node("Conv", ["x", "wb"], ["b"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["b"], ["rb"]),
             helper.make_node("Concat", ["ra", "rb"], ["cat"], axis=1),
             helper.make_node("Conv", ["cat", "wc"], ["y"], pads=[1, 1, 1, 1])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8, 12, 12])]
    if extra_reader:
        nodes.append(helper.make_node("Sigmoid", ["cat"], ["gate"]))
        outputs.append(helper.make_tensor_value_info("gate", TensorProto.FLOAT, [2, 20, 12, 12]))
    graph = helper.make_graph(nodes, "joined", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 12, 12])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("extra_reader", [False, True], ids=["conv_reads_the_join", "a_float_reader_too"])
def test_int8_chain_joins_codes_in_a_concat(extra_reader):
    """Both branches quantize with the reading conv's parameters, so the Concat joins their
    uint8 codes (written in place by the branches); a float reader of the join keeps it float."""
    model = _joined_branches(extra_reader)
    samples, _ = _calibration()
    options = BuildOptions(precision="int8", calibration=Calibration(tuple(samples)))
    lowered = parse_target("llvm").backend.optimize(import_model(model), 2, PassContext(verify=True), options)
    cat = next(n for n in lowered.nodes if n.op == "Concat")
    reader = next(n for n in lowered.nodes if n.op == "ConvNhwc" and n.inputs[0] is cat.outputs[0])
    branches = [n for n in lowered.nodes if n.op == "ConvNhwc" and n.outputs[0] in cat.inputs]
    assert len(branches) == 2
    if extra_reader:
        assert cat.outputs[0].type.dtype is dtypes.float32 and not any(b.attrs.get("out_scale") for b in branches)
    else:
        assert cat.outputs[0].type.dtype is dtypes.uint8
        assert all((b.attrs["out_scale"], b.attrs["out_zero_point"]) ==
                   (reader.attrs["act_scale"], reader.attrs["act_zero_point"]) for b in branches)
    feeds = _feeds()
    _needs_vnni()
    cm = compiler.compile(model, precision="int8", calibration=samples)
    got = cm.run(feeds)["y"]
    np.testing.assert_allclose(got, run_graph(lowered, feeds)["y"], rtol=1e-4, atol=1e-4)
    assert _cosine(got, compiler.compile(model).run(feeds)["y"]) > 0.99
    if not extra_reader:
        assert not any("concat" in c["kernel"] for c in cm.calls)  # written in place
