"""The llvm target end to end: compiled models vs the reference interpreter, the artifact
(save/load, hashes, CPU-feature refusal, -mcpu cross-compiles), the serving runtime
(imports, input validation, threads) and the generated code's shape (vectors, threads)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

import compiler
from compiler.ir.errors import ArtifactError, InputError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from make_example import build_tiny_cnn  # noqa: E402

from compiler.zoo.tolerances import assert_close  # noqa: E402

from filecheck import FileCheck


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPILER_CACHE_DIR", str(tmp_path / "cache"))


def _model(nodes, inputs, outputs, inits=(), opset=18):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, shape, t=TP.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


@pytest.fixture(scope="module")
def tiny_cnn():
    return build_tiny_cnn()


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)


def _reference(model, feeds, shapes=None):
    return compiler.compile(model, target="reference", input_shapes=shapes).run(feeds)


def test_tiny_cnn_matches_reference(tiny_cnn, image):
    shapes = {"image": [2, 3, 32, 32]}
    cm = compiler.compile(tiny_cnn, target="llvm", input_shapes=shapes)
    out = cm.run({"image": image})
    ref = _reference(tiny_cnn, {"image": image}, shapes)
    for k in ref:
        assert_close(out[k], ref[k])
    np.testing.assert_array_equal(cm(image), out["probs"])  # positional call


def test_mlp_with_gemm_and_prepacked_weights():
    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((64, 37)).astype(np.float32), rng.standard_normal((10, 64)).astype(np.float32)
    b1 = rng.standard_normal(64).astype(np.float32)
    m = _model([helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
                helper.make_node("Relu", ["h"], ["r"]),
                helper.make_node("Gemm", ["r", "w2"], ["y"], transB=1, alpha=0.5)],
               [_vi("x", [5, 37])], [_vi("y", [5, 10])],
               [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (w2, "w2"), (b1, "b1"))])
    x = rng.standard_normal((5, 37)).astype(np.float32)
    assert_close(compiler.compile(m, target="llvm").run({"x": x})["y"], _reference(m, {"x": x})["y"], end_to_end=True)


@pytest.mark.parametrize("op, attrs", [
    ("Softmax", {"axis": 1}), ("LogSoftmax", {"axis": -1}), ("ReduceMean", {"keepdims": 1}), ("ReduceMax", {"keepdims": 1}),
    ("Sigmoid", {}), ("Tanh", {}), ("Erf", {}), ("Transpose", {"perm": [2, 0, 1]}), ("Exp", {}),
])
def test_single_ops_match_reference(op, attrs):
    m = _model([helper.make_node(op, ["x"], ["y"], **attrs)], [_vi("x", [3, 5, 19])], [_vi("y", None)])
    x = np.random.default_rng(1).standard_normal((3, 5, 19)).astype(np.float32)
    assert_close(compiler.compile(m, target="llvm").run({"x": x})["y"], _reference(m, {"x": x})["y"])


def test_symbolic_input_dims_are_refused_with_a_hint():
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", ["n", 4])], [_vi("y", None)])
    with pytest.raises(compiler.ir.CompilerError, match=r"input 'x'.*not a static-shaped tensor.*\{'x': \[1, 4\]\}"):
        compiler.compile(m, target="llvm")
    assert compiler.compile(m, target="llvm", input_shapes={"x": [3, 4]}).run(
        {"x": -np.ones((3, 4), np.float32)})["y"].max() == 0


def test_unlowerable_nodes_are_listed_in_one_error():
    m = _model([helper.make_node("NonZero", ["x"], ["z"]), helper.make_node("Unique", ["x"], ["u"]),
                helper.make_node("Relu", ["x"], ["y"])],
               [_vi("x", [2, 4])], [_vi("y", None), _vi("z", None, TP.INT64), _vi("u", None)])
    with pytest.raises(compiler.ir.CompilerError) as e:
        compiler.compile(m, target="llvm")
    msg = str(e.value)
    assert msg.startswith("2 node(s) cannot be compiled") and "(NonZero)" in msg and "(Unique)" in msg
    assert "the output shape depends on the input values" in msg


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_cnn):
    d = tmp_path_factory.mktemp("art")
    os.environ.setdefault("COMPILER_CACHE_DIR", str(d / "cache"))
    path = d / "tiny.cmod"
    compiler.compile(tiny_cnn, target="llvm", input_shapes={"image": [2, 3, 32, 32]}, cache=False).save(path)
    return path


def test_artifact_round_trip_and_manifest(saved, image):
    from compiler.artifact import read_artifact

    manifest, sections = read_artifact(saved)
    assert manifest["target"] == "llvm" and "avx2" in manifest["cpu_features"] or "sse2" in manifest["cpu_features"]
    assert {"model.so", "weights.bin", "kernels.txt"} <= set(sections)
    loaded = compiler.load(saved)
    assert_close(loaded.run({"image": image})["probs"], _reference(build_tiny_cnn(), {"image": image},
                                                                     {"image": [2, 3, 32, 32]})["probs"])


def test_corrupt_artifact_is_refused(saved, tmp_path):
    raw = bytearray(saved.read_bytes())
    raw[-10] ^= 0xFF
    bad = tmp_path / "bad.cmod"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="does not match its sha256"):
        compiler.load(bad)


def test_host_without_the_features_is_refused(saved, monkeypatch):
    monkeypatch.setenv("COMPILER_HOST_CPU_FEATURES", "sse,sse2")  # a fake x86-64-v1 host
    with pytest.raises(ArtifactError, match="needs CPU features .* this host lacks"):
        compiler.load(saved)


def test_every_checked_feature_is_read_from_cpuinfo_flags():
    """A host compile records LLVM feature names; the loader must find each in the kernel's
    flags spelling, or an artifact built here is refused here (it was, on a Zen 5 host:
    avx512vnni vs avx512_vnni)."""
    from compiler.codegen.llvm.target import CHECKED_FEATURES
    from compiler.runtime.cpu import CPUINFO_NAME, features_from_cpuinfo_flags

    zen5_flags = set("fpu sse sse2 pni ssse3 fma sse4_1 sse4_2 popcnt avx f16c abm bmi1 avx2 bmi2 movbe avx512f "
                     "avx512dq avx512cd avx512bw avx512vl avx_vnni avx512_bf16 avx512_vnni".split())
    have = features_from_cpuinfo_flags(zen5_flags)
    amx = {"amx-tile", "amx-bf16", "amx-int8"}
    assert set(CHECKED_FEATURES) - {"avx512fp16"} - amx <= have
    assert "avx512fp16" not in have and not amx & have
    assert features_from_cpuinfo_flags({"avx512_fp16"}) >= {"avx512fp16"}
    assert features_from_cpuinfo_flags({"amx_tile", "amx_bf16", "amx_int8"}) >= amx  # Sapphire Rapids spelling
    for name in CHECKED_FEATURES:  # every name is either spelled alike or mapped
        flag = CPUINFO_NAME.get(name, name)
        assert name in features_from_cpuinfo_flags({flag}), name


def test_host_compile_loads_on_this_host(saved):
    from compiler.artifact import read_artifact
    from compiler.runtime.cpu import missing_features

    assert missing_features(read_artifact(saved)[0]["cpu_features"]) == []


def test_avx512_artifact_refused_here_but_v3_runs(tmp_path, image, monkeypatch):
    shapes = {"image": [2, 3, 32, 32]}
    tiny = build_tiny_cnn()
    v4 = tmp_path / "v4.cmod"
    compiler.compile(tiny, target="llvm -mcpu=skylake-avx512", input_shapes=shapes).save(v4)
    monkeypatch.setenv("COMPILER_HOST_CPU_FEATURES", "sse,sse2,sse3,ssse3,sse4.1,sse4.2,popcnt,avx,avx2,fma,f16c,"
                                                      "bmi,bmi2,lzcnt,movbe")
    with pytest.raises(ArtifactError, match="avx512f"):
        compiler.load(v4)
    v3 = tmp_path / "v3.cmod"
    cm = compiler.compile(tiny, target="llvm -mcpu=x86-64-v3", input_shapes=shapes)
    cm.save(v3)
    monkeypatch.delenv("COMPILER_HOST_CPU_FEATURES")
    from compiler.artifact import read_artifact

    assert not any(f.startswith("avx512") for f in read_artifact(v3)[0]["cpu_features"])
    assert_close(compiler.load(v3).run({"image": image})["probs"], cm.run({"image": image})["probs"])


def test_inputs_are_validated(saved, image):
    m = compiler.load(saved)
    with pytest.raises(InputError, match="missing input"):
        m.run({})
    with pytest.raises(InputError, match="expected element type float32"):
        m.run({"image": image.astype(np.float64)})
    with pytest.raises(InputError, match=r"expected shape \[2, 3, 32, 32\]"):
        m.run({"image": image[:1]})
    strided = np.asfortranarray(image)
    np.testing.assert_array_equal(m.run({"image": strided})["probs"], m.run({"image": image})["probs"])


def test_two_threads_share_one_model(saved):
    m = compiler.load(saved)
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((2, 3, 32, 32)).astype(np.float32) for _ in range(2)]
    expected = [m.run({"image": x})["probs"] for x in xs]
    errors = []

    def worker(k):
        for _ in range(20):
            if not np.array_equal(m.run({"image": xs[k]})["probs"], expected[k]):
                errors.append(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


SERVING = r"""
import builtins, sys
real_import = builtins.__import__
def guarded(name, *a, **k):
    if name.split(".")[0] in ("llvmlite", "onnx", "torch", "onnxruntime"):
        raise ImportError("serving must not import " + name)
    return real_import(name, *a, **k)
builtins.__import__ = guarded
import numpy as np, compiler
m = compiler.load(sys.argv[1])
y = m.run({"image": np.zeros((2, 3, 32, 32), np.float32)})["probs"]
assert y.shape == (2, 10), y.shape
print("ok", sorted(k for k in sys.modules if k.split(".")[0] in ("llvmlite", "onnx", "torch")))
"""


def test_serving_needs_only_numpy(saved):
    proc = subprocess.run([sys.executable, "-c", SERVING, str(saved)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok []"


def test_compile_cache_hit_is_fast(tiny_cnn, tmp_path):
    import time

    path = tmp_path / "m.onnx"
    onnx.save(tiny_cnn, path)
    shapes = {"image": [2, 3, 32, 32]}
    compiler.compile(str(path), target="llvm", input_shapes=shapes)
    t = time.perf_counter()
    compiler.compile(str(path), target="llvm", input_shapes=shapes)
    assert time.perf_counter() - t < 1.0


def test_generated_code_has_vectors_and_threads():
    from compiler.codegen.llvm.toolchain import emit_assembly
    from compiler.codegen.llvm.target import cpu_target
    from compiler.codegen.model_builder import build_program
    from compiler.codegen.llvm.build import emit_module
    from compiler.frontend.onnx_import import import_onnx

    m = _model([helper.make_node("Add", ["a", "b"], ["c"])], [_vi("a", [256, 256]), _vi("b", [256, 256])], [_vi("c", None)])
    target = cpu_target({"mcpu": "x86-64-v3"})
    text = emit_module(build_program(import_onnx(m), target))
    # explicit vector types in the hot loop, and the parallel loop goes through our thread pool
    FileCheck().check("<8 x float>").run(text)
    FileCheck().check("cm_parallel").check_not("GOMP").run(text)
    asm = emit_assembly(text, target)
    FileCheck().check("ymm").run(asm)  # AVX2 registers ...
    FileCheck().check_not("zmm").run(asm)  # ... and no AVX-512 under x86-64-v3


def test_fused_elementwise_group_is_one_kernel_without_intermediates():
    from compiler.codegen.llvm.target import cpu_target
    from compiler.codegen.model_builder import build_program
    from compiler.frontend.onnx_import import import_onnx
    from native import compile_graph_for, fused

    m = _model([helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Relu", ["s"], ["r"]),
                helper.make_node("Mul", ["r", "b"], ["y"])], [_vi("a", [4, 33]), _vi("b", [33])], [_vi("y", None)])
    graph = import_onnx(m)
    graph = fused(graph, list(graph.nodes))
    program = build_program(graph, cpu_target())
    (plan,) = program.kernels.values()
    assert len(plan.kernel.params) == 3  # a, b, y: s and r are inlined, never stored
    a = np.random.default_rng(0).standard_normal((4, 33)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal(33).astype(np.float32)
    y = compile_graph_for(graph).run({"a": a, "b": b})["y"]
    np.testing.assert_allclose(y, np.maximum(a + b, 0) * b, rtol=1e-6)


def test_cli_compile_and_run(tmp_path, tiny_cnn):
    from compiler.cli import main

    src = tmp_path / "m.onnx"
    onnx.save(tiny_cnn, src)
    art, out = tmp_path / "m.cmod", tmp_path / "y.npz"
    assert main([str(src), "--target", "llvm", "--input-shape", "image=1,3,32,32", "-o", str(art)]) == 0
    assert main(["run", str(art), "-o", str(out)]) == 0
    with np.load(out) as data:
        assert data["probs"].shape == (1, 10)


def test_a_cpu_below_avx2_compiles_on_loop_ir_kernels():
    """x86-64-v2 (SSE4.2, no AVX2/FMA) has no microkernels: a conv model and a float16 one
    still compile, on loop-IR kernels, and agree with the reference (the device key of the
    tuning database takes the vector width for lanes instead of refusing the target)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    import compiler

    rng = np.random.default_rng(4)
    for dtype, proto in ((np.float32, TensorProto.FLOAT), (np.float16, TensorProto.FLOAT16)):
        w = numpy_helper.from_array(rng.standard_normal((6, 3, 3, 3)).astype(dtype), "w")
        graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                                   helper.make_node("Relu", ["c"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", proto, [1, 3, 8, 8])],
                                  [helper.make_tensor_value_info("y", proto, None)], [w])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        x = rng.standard_normal((1, 3, 8, 8)).astype(dtype)
        got = compiler.compile(model, target="llvm -mcpu=x86-64-v2", cache=False).run({"x": x})["y"]
        want = compiler.compile(model, target="reference").run({"x": x})["y"]
        tol = 2e-3 if dtype == np.float16 else 1e-5
        np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=tol, atol=tol)
