"""Every zoo model built for the cuda target: the nine light CNNs, the BERT encoder and the
MLP compile to GPU launches, NVRTC compiles them for sm_80 and sm_90, and the emulator
runs them end to end against the reference interpreter and onnxruntime within the
whole-model tolerances of `compiler.zoo.tolerances`.

Slow-marked: the emulator runs every thread of every launch (ResNet-50 is about a minute).
"""
from __future__ import annotations

import time

import onnx
import pytest

import compiler
from compiler.zoo import light

from zoo_checks import assert_matches_peers

pytest.importorskip("cuda.bindings.nvrtc")
pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.slow

TARGET = "cuda -arch=sm_80,sm_90 -device=emulator-native"


def _check(path, feeds, shapes=None):
    start = time.perf_counter()
    cm = compiler.compile(str(path), target=TARGET, input_shapes=shapes, cache=False)
    built = time.perf_counter() - start
    assert set(cm.manifest["archs"]) == {"sm_80", "sm_90"}
    assert all(cm._sections[f"{a}.cubin"][:4] == b"\x7fELF" for a in ("sm_80", "sm_90"))
    start = time.perf_counter()
    out = cm.run(feeds)
    print(f"\n{path.stem}: {cm.manifest['kernels']} kernels, {cm.manifest['launches']} launches; built in "
          f"{built:.1f}s, emulated in {time.perf_counter() - start:.1f}s")
    assert_matches_peers(out, path, feeds, shapes)


@pytest.mark.parametrize("name", light.LIGHT_MODELS)
def test_light_model_on_the_emulator(name, tmp_path):
    model = light.with_pre_softmax_output(light.load_light_model(name, 0))
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    _check(path, light.light_model_inputs(model))


@pytest.mark.parametrize("name", ["mlp", "bert"])
def test_torch_model_on_the_emulator(name, tmp_path):
    pytest.importorskip("torch")
    from compiler.zoo import export, torch_models

    path = export.TORCH_MODELS[name](tmp_path / f"{name}.onnx", 0)
    feeds = {k: v.numpy() for k, v in (torch_models.bert_inputs() if name == "bert" else torch_models.mlp_inputs()).items()}
    _check(path, feeds, {k: list(v.shape) for k, v in feeds.items()})
