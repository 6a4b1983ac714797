"""Precision lowering to bf16 through the public API: which nodes are lowered and why
(`passes.lower_precision`), the compiled model against the reference interpreter of the
lowered graph (tight) and against fp32 (bfloat16's rounding), refusals with their
messages, the report in the manifest and from `compile inspect`, and top-1 accuracy of a
classifier trained here on real images (scikit-learn's bundled handwritten digits).
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
from compiler.api import import_model
from compiler.backends import BuildOptions, parse_target
from compiler.ir import dtypes
from compiler.ir.errors import ArtifactError, CompilerError, TargetError
from compiler.ir.interpreter import run_graph
from compiler.passes.core import PassContext


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPILER_CACHE_DIR", str(tmp_path / "cache"))


def needs_cpu_feature(feature: str) -> None:
    """Skip unless this host's CPU has `feature` (an llvm feature name, "avx512bf16")."""
    from compiler.codegen.llvm.target import cpu_target

    if feature not in cpu_target().required:
        pytest.skip(f"host has no {feature.upper()}")


def _needs_bf16():
    needs_cpu_feature("avx512bf16")


def small_net(seed: int = 0) -> onnx.ModelProto:
    """Conv (3 channels in) -> Relu -> depthwise Conv -> 1x1 Conv (odd 13 channels) -> global
    pool -> MatMul + Add -> Softmax: every kind of product, and ops the policy keeps."""
    rng = np.random.default_rng(seed)

    def w(name, *shape):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32), name)

    inits = [w("w1", 16, 3, 3, 3), w("b1", 16), w("wd", 16, 1, 3, 3), w("w2", 13, 16, 1, 1),
             w("fc", 13, 10), w("fcb", 10)]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "wd"], ["cd"], name="dw", pads=[1, 1, 1, 1], group=16),
        helper.make_node("Conv", ["cd", "w2"], ["c2"], name="conv2"),
        helper.make_node("GlobalAveragePool", ["c2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "fc"], ["mm"], name="fc"),
        helper.make_node("Add", ["mm", "fcb"], ["logits"], name="fc_bias"),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(nodes, "small_net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 12, 12])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [2, 10]),
                               helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _lowered(model, precision="bf16", exclude=()):
    ctx = PassContext(verify=True)
    graph = parse_target("llvm").backend.optimize(import_model(model), 2, ctx,
                                                  BuildOptions(precision=precision, exclude=tuple(exclude)))
    return graph, {r.node: r for r in ctx.analyses.get("precision", ())}


def _computes(graph) -> dict[str, str | None]:
    return {n.name: (n.attrs.get("compute").name if n.attrs.get("compute") is not None else None)
            for n in graph.nodes if n.op in ("ConvNhwc", "Linear")}


def _feeds(seed=1):
    return {"x": np.random.default_rng(seed).standard_normal((2, 3, 12, 12)).astype(np.float32)}


def _cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


# ---------------------------------------------------------------- the pass


def test_products_are_lowered_and_the_rest_says_why():
    graph, report = _lowered(small_net())
    computes = _computes(graph)
    by_op = {}
    for n in graph.nodes:
        by_op.setdefault(n.op, []).append(computes.get(n.name))
    # the 3-channel conv, the 1x1 conv and the Linear lowered; the depthwise conv kept
    assert sorted(c or "-" for c in by_op["ConvNhwc"]) == ["-", "bfloat16", "bfloat16"]
    assert by_op["Linear"] == ["bfloat16"]
    reasons = {r.op: r.reason for r in report.values() if r.precision != "bf16"}
    assert "depthwise" in reasons["ConvNhwc"]
    assert "policy" in reasons["Softmax"]
    assert all(r.precision == "bf16" for r in report.values() if r.node in computes and computes[r.node])


def test_fp32_lowers_nothing():
    graph, report = _lowered(small_net(), "fp32")
    assert not any(_computes(graph).values()) and not report


@pytest.mark.parametrize("exclude,kept", [(["conv1"], 1), (["Conv"], 2), (["MatMul"], 0)])
def test_exclusions_by_node_name_and_op_type(exclude, kept):
    """A model's node name reaches the node the passes made of it; an ONNX op type reaches
    the products made from it (Conv -> ConvNhwc, MatMul -> Linear)."""
    graph, report = _lowered(small_net(), exclude=exclude)
    convs = [c for n, c in _computes(graph).items() if any(g.name == n and g.op == "ConvNhwc" for g in graph.nodes)]
    linears = [c for n, c in _computes(graph).items() if any(g.name == n and g.op == "Linear" for g in graph.nodes)]
    assert convs.count("bfloat16") == 2 - kept
    assert linears == ([None] if exclude == ["MatMul"] else ["bfloat16"])
    assert any(r.reason == "excluded by the user" for r in report.values())


def test_lowered_reference_rounds_operands():
    """The reference interpreter of the lowered graph computes what the kernels compute:
    differs from fp32 by bfloat16 rounding, not more."""
    graph32, _ = _lowered(small_net(), "fp32")
    graph16, _ = _lowered(small_net())
    y32 = run_graph(graph32, _feeds())["logits"]
    y16 = run_graph(graph16, _feeds())["logits"]
    assert not np.array_equal(y32, y16)
    np.testing.assert_allclose(y16, y32, rtol=0, atol=0.05)
    assert _cosine(y16, y32) > 0.999


# ---------------------------------------------------------------- compiled


# each reduced float precision and the CPU feature its kernels need
FLOAT_PRECISIONS = [("bf16", "avx512bf16"), ("fp16", "f16c")]


@pytest.mark.parametrize("precision,feature", FLOAT_PRECISIONS)
def test_compiled_matches_lowered_reference_and_fp32(precision, feature):
    needs_cpu_feature(feature)
    cm = compiler.compile(small_net(), precision=precision)
    out = cm.run(_feeds())
    graph16, _ = _lowered(small_net(), precision)
    want = run_graph(graph16, _feeds())
    # same 16-bit operands on both sides: float32 accumulation order only
    np.testing.assert_allclose(out["logits"], want["logits"], rtol=1e-5, atol=1e-5)
    fp32 = compiler.compile(small_net()).run(_feeds())
    assert not np.array_equal(out["logits"], fp32["logits"])  # the operands really were rounded
    assert _cosine(out["probs"], fp32["probs"]) > 0.999
    assert out["probs"].dtype == np.float32  # inputs and outputs keep the model's types
    manifest = cm.manifest["precision"]
    assert manifest["requested"] == precision
    assert sum(r["precision"] == precision for r in manifest["nodes"]) == 3


def test_fp16_halves_the_weights_in_the_artifact(tmp_path):
    """fp16 is a storage type on the CPU: the packed weights of the products take half the
    bytes (what the artifact ships and the kernels stream)."""
    needs_cpu_feature("f16c")
    sizes = {}
    for precision in ("fp32", "fp16"):
        path = tmp_path / f"{precision}.cmod"
        compiler.compile(_wide_net(), precision=precision, cache=False).save(path)
        sizes[precision] = path.stat().st_size
    weights = 512 * 1024 * 4
    assert sizes["fp32"] - sizes["fp16"] > 0.45 * weights, sizes


def _wide_net() -> onnx.ModelProto:
    """One 512 -> 1024 dense layer (2 MB of float32 weights) after a ReLU."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((512, 1024)).astype(np.float32), "w")
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("MatMul", ["r", "w"], ["y"])]
    graph = helper.make_graph(nodes, "wide", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 512])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 1024])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_loop_ir_fallback_rounds_like_the_kernels():
    """A Linear whose weights arrive at run time has no microkernel: its loop-IR rule
    rounds the operands to compute=bfloat16 too (the pass leaves such a node in fp32, so
    the attribute is set by hand here)."""
    from compiler.ir.builder import GraphBuilder

    from compiler.ir.types import TensorType

    gb = GraphBuilder("linear")
    a = gb.input("a", TensorType((5, 33), dtypes.float32))
    b = gb.input("b", TensorType((33, 7), dtypes.float32))
    (y,) = gb.node("Linear", [a, b], attrs={"compute": dtypes.bfloat16})
    gb.output(y)
    graph = gb.build()
    rng = np.random.default_rng(0)
    feeds = {"a": rng.standard_normal((5, 33)).astype(np.float32), "b": rng.standard_normal((33, 7)).astype(np.float32)}
    want = run_graph(graph, feeds)
    from compiler.backends.base import BuildOptions as Options

    backend = parse_target("llvm").backend
    got = backend.compile_model(graph, parse_target("llvm"), Options(), "test").run(feeds)
    name = graph.outputs[0].name
    np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)
    assert np.abs(got[name] - feeds["a"].astype(np.float64) @ feeds["b"]).max() > 1e-3


def test_bf16_refused_for_a_cpu_without_avx512_bf16():
    with pytest.raises(TargetError, match="AVX512BF16.*vdpbf16ps.*precision='fp32'"):
        compiler.compile(small_net(), target="llvm -mcpu=x86-64-v4", precision="bf16", cache=False)


def test_fp16_refused_for_a_cpu_without_f16c():
    with pytest.raises(TargetError, match="F16C.*vcvtph2ps.*-mcpu=haswell.*precision='fp32'"):
        compiler.compile(small_net(), target="llvm -mcpu=x86-64-v2", precision="fp16", cache=False)


def test_fp16_runs_on_avx2():
    """F16C came with AVX2 (x86-64-v3): fp16 builds for an AVX2-only CPU run the same
    rounding on 8-lane kernels."""
    needs_cpu_feature("f16c")
    out = compiler.compile(small_net(), target="llvm -mcpu=haswell", precision="fp16", cache=False).run(_feeds())
    want = run_graph(_lowered(small_net(), "fp16")[0], _feeds())
    np.testing.assert_allclose(out["logits"], want["logits"], rtol=1e-5, atol=1e-5)


def test_bf16_cross_compiles_for_a_named_cpu_that_has_it(tmp_path):
    cm = compiler.compile(small_net(), target="llvm -mcpu=znver4", precision="bf16", cache=False)
    path = tmp_path / "net.cmod"
    cm.save(path)
    from compiler.artifact import read_artifact

    manifest = read_artifact(path)[0]
    assert "avx512bf16" in manifest["cpu_features"] and manifest["precision"]["requested"] == "bf16"


def refused_on_a_host_without(feature: str, tmp_path, monkeypatch, message: str, **options) -> None:
    """Compile small_net for Zen 4 with `options`, then load it on a host (as the runtime
    is told it is) with AVX-512 but not `feature`: refused with `message`."""
    cm = compiler.compile(small_net(), target="llvm -mcpu=znver4", cache=False, **options)
    path = tmp_path / "net.cmod"
    cm.save(path)
    host = ["sse", "sse2", "sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "avx", "avx2", "fma", "f16c", "bmi", "bmi2",
            "lzcnt", "movbe", "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "avx512vnni", "avx512bf16"]
    monkeypatch.setenv("COMPILER_HOST_CPU_FEATURES", ",".join(f for f in host if f != feature))
    with pytest.raises(ArtifactError, match=message):
        compiler.load(path)


def test_bf16_artifact_refused_on_a_host_without_avx512_bf16(tmp_path, monkeypatch):
    refused_on_a_host_without("avx512bf16", tmp_path, monkeypatch,
                              r"precision 'bf16'.*AVX512BF16 \(vdpbf16ps\).*precision='fp32'", precision="bf16")


def test_fp16_artifact_refused_on_a_host_without_f16c(tmp_path, monkeypatch):
    refused_on_a_host_without("f16c", tmp_path, monkeypatch, r"precision 'fp16'.*F16C \(vcvtph2ps\)",
                              precision="fp16")


@pytest.mark.parametrize("kwargs,message", [
    ({"precision": "fp8"}, "precision 'fp8' is not one of fp32, bf16"),
    ({"precision": "bf16", "exclude": ["conv_1", "Conv"]}, "'conv_1' name"),
    ({"precision": "int8", "target": "cuda -arch=sm_80 -device=emulator",
      "calibration": {"x": np.zeros((1, 2, 3, 12, 12), np.float32)}}, "target cuda does not build precision 'int8'"),
])
def test_bad_precision_arguments_are_refused(kwargs, message):
    with pytest.raises(CompilerError, match=message):
        compiler.compile(small_net(), cache=False, **kwargs)


def test_cache_keeps_precisions_apart():
    _needs_bf16()
    a = compiler.compile(small_net(), precision="bf16")
    b = compiler.compile(small_net())
    c = compiler.compile(small_net(), precision="bf16")
    assert a.manifest["precision"]["requested"] == c.manifest["precision"]["requested"] == "bf16"
    assert b.manifest["precision"]["requested"] == "fp32"


# ---------------------------------------------------------------- report and CLI


def test_report_measures_each_lowered_layer():
    from compiler.precision_report import format_report, precision_report

    report = precision_report(import_model(small_net()), "llvm", "bf16", (), [_feeds()])
    lowered = [r for r in report["nodes"] if r["precision"] == "bf16"]
    assert len(lowered) == 3 and all(0.999 < r["cosine"] <= 1.0 and r["sqnr_db"] > 30 for r in lowered)
    assert 0.999 < report["outputs"]["probs"]["cosine"] <= 1.0
    text = format_report(report)
    assert "3 node(s) lowered" in text and "depthwise" in text and "output probs" in text


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "compiler.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_compile_and_inspect_precision(tmp_path):
    _needs_bf16()
    onnx.save(small_net(), tmp_path / "net.onnx")
    done = _cli("net.onnx", "--precision", "bf16", "--exclude", "conv2", "-o", "net.cmod", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    from compiler.artifact import read_artifact

    nodes = read_artifact(tmp_path / "net.cmod")[0]["precision"]["nodes"]
    assert sum(r["precision"] == "bf16" for r in nodes) == 2
    shown = _cli("inspect", "net.onnx", "--precision", "bf16", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert sum(r["precision"] == "bf16" for r in report["nodes"]) == 3 and "probs" in report["outputs"]
    bad = _cli("net.onnx", "--precision", "bf16", "--exclude", "nosuchnode", cwd=tmp_path)
    assert bad.returncode != 0 and "nosuchnode" in bad.stderr and "Traceback" not in bad.stderr
    np.savez(tmp_path / "cal.npz", x=_samples(2))
    done = _cli("net.onnx", "--precision", "bf16", "--calibrate", "cal.npz", "-o", "cal.cmod", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert read_artifact(tmp_path / "cal.cmod")[0]["precision"]["calibration_samples"] == 2
    np.savez(tmp_path / "bad.npz", image=_samples(2))
    bad = _cli("net.onnx", "--precision", "bf16", "--calibrate", "bad.npz", cwd=tmp_path)
    assert bad.returncode != 0 and "missing input(s) ['x']" in bad.stderr and "Traceback" not in bad.stderr


# ---------------------------------------------------------------- real images


def _digits_model():
    """(ONNX model, images, labels, train indices, test indices): a small CNN trained here on
    scikit-learn's bundled 8x8 handwritten digits (real scans, no download), exported for a
    batch of the held-out third."""
    torch = pytest.importorskip("torch")
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1200], order[1200:]
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(16, 32, 3, padding=1, stride=2), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(32 * 16, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x[train]), torch.from_numpy(y[train])
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    import io

    buf = io.BytesIO()
    torch.onnx.export(net.eval(), (torch.from_numpy(x[test]),), buf, dynamo=False, input_names=["x"],
                      output_names=["logits"], opset_version=17)
    return buf.getvalue(), x, y, train, test


@pytest.mark.parametrize("precision,feature", FLOAT_PRECISIONS)
def test_digits_classifier_keeps_its_accuracy(precision, feature):
    """The digits CNN (`_digits_model`): bf16 / fp16 top-1 within 0.5 points of fp32 on the
    held-out third."""
    needs_cpu_feature(feature)
    model, x, y, train, test = _digits_model()
    feeds = {"x": x[test]}
    fp32 = compiler.compile(model).run(feeds)["logits"]
    low = compiler.compile(model, precision=precision).run(feeds)["logits"]
    acc32 = float((fp32.argmax(1) == y[test]).mean())
    acc16 = float((low.argmax(1) == y[test]).mean())
    assert acc32 > 0.9  # it did learn
    assert abs(acc16 - acc32) <= 0.005, (acc32, acc16)
    assert _cosine(fp32, low) > 0.999


# ---------------------------------------------------------------- calibration data


def _samples(n=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 2, 3, 12, 12)).astype(np.float32)


@pytest.mark.parametrize("form", ["npz", "dict", "iterable"])
def test_calibration_errors_go_into_the_manifest(tmp_path, form):
    _needs_bf16()
    xs = _samples()
    if form == "npz":
        np.savez(tmp_path / "cal.npz", x=xs)
        calibration = tmp_path / "cal.npz"
    elif form == "dict":
        calibration = {"x": xs}
    else:
        calibration = ({"x": x} for x in xs)  # a generator: drained once
    cm = compiler.compile(small_net(), precision="bf16", calibration=calibration)
    report = cm.manifest["precision"]
    assert report["calibration_samples"] == 3
    lowered = [r for r in report["nodes"] if r["precision"] == "bf16"]
    assert len(lowered) == 3 and all(0.999 < r["cosine"] <= 1 and r["sqnr_db"] > 30 for r in lowered)
    assert set(report["outputs"]) == {"probs", "logits"}
    path = tmp_path / "net.cmod"
    cm.save(path)
    assert compiler.load(path).manifest["precision"]["outputs"]["probs"]["cosine"] > 0.999


def test_calibration_data_is_part_of_the_cache_key():
    _needs_bf16()
    a = compiler.compile(small_net(), precision="bf16", calibration={"x": _samples(2)})
    b = compiler.compile(small_net(), precision="bf16", calibration={"x": _samples(3)})
    assert a.manifest["precision"]["calibration_samples"] == 2
    assert b.manifest["precision"]["calibration_samples"] == 3


def _bad_calibration(tmp_path, case):
    x = _samples(2)
    if case == "not an npz":
        (tmp_path / "cal.npz").write_text("hello")
        return tmp_path / "cal.npz"
    if case == "npy":
        np.save(tmp_path / "cal.npy", x)
        return tmp_path / "cal.npy"
    return {"missing": {"y": x}, "extra": {"x": x, "mask": x}, "shape": {"x": x[:, :, :, :6]},
            "dtype": {"x": x.astype(np.float64)}, "nan": {"x": np.where(x > 2, np.nan, x)},
            "empty": {"x": x[:0]}, "counts": [{"x": x[0]}, {"x": x[1], "y": x[1]}], "not feeds": [x[0]],
            "scalar": {"x": np.float32(1)}}[case]


@pytest.mark.parametrize("case,message", [
    ("not an npz", "cannot read it as an .npz"), ("npy", "single .npy array"),
    ("missing", r"missing input\(s\) \['x'\]"), ("extra", r"unknown name\(s\) \['mask'\]"),
    ("shape", r"input 'x': shape \[2, 3, 6, 12\], expected \[2, 3, 12, 12\]"),
    ("dtype", "input 'x': element type float64, expected float32"), ("nan", "input 'x': holds NaN or Inf"),
    ("empty", "no samples"), ("counts", r"sample 1: unknown name\(s\) \['y'\]"), ("not feeds", "sample 0 is a ndarray"),
    ("scalar", "'x' is a scalar"),
])
def test_bad_calibration_data_is_refused_by_name(tmp_path, case, message):
    with pytest.raises(CompilerError, match=message):
        compiler.compile(small_net(), precision="bf16", calibration=_bad_calibration(tmp_path, case), cache=False)
