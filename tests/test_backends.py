"""The backend registry: one Backend per target kind, target strings parsed and checked by
it, artifacts loaded by the backend their manifest names, each backend's declared
capabilities, and the one build path every entry point shares."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import compiler
from compiler.artifact import read_artifact, write_artifact
from compiler.backends import BACKENDS, PLANNED, backend_for, parse_target
from compiler.codegen.loop_ir import LoopKind
from compiler.ir.errors import ArtifactError, TargetError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from make_example import build_tiny_cnn  # noqa: E402

SHAPES = {"image": [1, 3, 32, 32]}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPILER_CACHE_DIR", str(tmp_path / "cache"))


def test_registry_lists_each_target_once():
    assert set(BACKENDS) == {"reference", "llvm", "cuda"} and all(b.kind == k for k, b in BACKENDS.items())
    assert not set(PLANNED) & set(BACKENDS)


@pytest.mark.parametrize("text, message", [
    ("gpu", "unknown target 'gpu'; known targets: reference .*llvm .*cuda"),
    ("cuda -arch=sm_75", r"unknown -arch=sm_75; known: sm_80 \(A100\), sm_86 .*sm_90 \(H100 / H200\)"),
    ("cuda -device=emulator", "the emulator stands in for a GPU of some architecture: give -arch=sm_80"),
    ("cuda -arch=sm_90 -device=fpga", "-device=fpga; cuda runs on gpu, emulator"),
    ("llvm -arch=sm_90", r"unknown option\(s\) \['arch'\]; llvm takes -mcpu=..."),
    ("reference -mcpu=znver4", r"unknown option\(s\) \['mcpu'\]; reference takes no options"),
    ("llvm mcpu", "is not of the form -name=value"),
])
def test_bad_target_strings_are_refused_by_name(text, message):
    with pytest.raises(TargetError, match=message):
        parse_target(text)


def test_target_strings_round_trip():
    t = parse_target("llvm  -mcpu=x86-64-v3")
    assert str(t) == "llvm -mcpu=x86-64-v3" and t.backend is BACKENDS["llvm"] and backend_for(t) is t.backend


def test_each_backend_declares_what_it_supports():
    llvm = BACKENDS["llvm"].describe()
    assert llvm["capabilities"]["gpu"] is False and "vectorized" in llvm["capabilities"]["loop_kinds"]
    assert set(llvm["capabilities"]["scopes"]) == {"global", "local"}
    assert "float32" in llvm["capabilities"]["dtypes"] and "string" not in llvm["capabilities"]["dtypes"]
    assert "gemm" in llvm["capabilities"]["extern_kernels"] and llvm["static_shapes"] and llvm["profiling"]
    assert LoopKind.GPU_THREAD not in BACKENDS["llvm"].capabilities.loop_kinds
    ref = BACKENDS["reference"].describe()
    assert ref["capabilities"] is None and ref["default_opt_level"] == 0 and not ref["static_shapes"]


def test_compile_and_load_go_through_the_backend_the_target_names(tmp_path):
    x = np.random.default_rng(0).standard_normal(SHAPES["image"]).astype(np.float32)
    models = {t: compiler.compile(build_tiny_cnn(), t, input_shapes=SHAPES) for t in ("reference", "llvm")}
    want = models["reference"].run({"image": x})["probs"]
    for target, model in models.items():
        path = tmp_path / f"{target}.cmod"
        model.save(path)
        loaded = compiler.load(path)
        assert loaded.target == target and type(loaded) is type(model)
        np.testing.assert_allclose(loaded.run({"image": x})["probs"], want, rtol=1e-4, atol=1e-5)


def test_an_artifact_for_a_target_this_build_lacks_is_refused(tmp_path):
    path = tmp_path / "m.cmod"
    compiler.compile(build_tiny_cnn(), "llvm", input_shapes=SHAPES).save(path)
    manifest, sections = read_artifact(path)
    manifest = {k: v for k, v in manifest.items() if k not in ("sections", "format_version")}
    write_artifact(path, dict(manifest, target="tpu -chip=v5"), sections)
    with pytest.raises(ArtifactError, match="artifact is for target 'tpu -chip=v5', which this build cannot run"):
        compiler.load(path)
    write_artifact(path, dict(manifest, target="cuda -arch=sm_90"), sections)  # an llvm artifact relabelled
    with pytest.raises(ArtifactError, match="launch table format None, this runtime runs 'cuda-launch-v1'"):
        compiler.load(path)
    with pytest.raises(ArtifactError, match="load\\(\\) takes the path of a compiled model"):
        compiler.load(None)


def test_the_reference_backend_runs_the_graph_as_imported_unless_asked():
    model = compiler.compile(build_tiny_cnn(), "reference", input_shapes=SHAPES)
    assert model.manifest["opt_level"] == 0 and "Conv" in model.graph.op_counts()
    optimized = compiler.compile(build_tiny_cnn(), "reference", input_shapes=SHAPES, opt_level=3)
    assert set(optimized.graph.op_counts()) == {"FusedKernel"}
