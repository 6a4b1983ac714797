"""The cuda target on a real GPU (marked `cuda`: skipped where cuInit fails or finds no
GPU; `scripts/gpu_check.sh` runs them on a lent one).

Every zoo model against the reference and onnxruntime; the emulator and the GPU agree on
the same artifact's kernels; torch CUDA tensors in and out without a host copy; calls
from several threads; the CUDA graph's overhead per call beside its kernels' time.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import compiler
from compiler.zoo import light

from zoo_checks import assert_matches_peers

pytestmark = pytest.mark.cuda


def _tiny(shape=(64, 256)):
    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["s"], axis=-1), helper.make_node("Relu", ["s"], ["y"])],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("name", light.LIGHT_MODELS)
def test_light_model_on_the_gpu(name, tmp_path):
    pytest.importorskip("onnxruntime")
    model = light.with_pre_softmax_output(light.load_light_model(name, 0))
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    feeds = light.light_model_inputs(model)
    cm = compiler.compile(str(path), target="cuda", cache=False)
    assert_matches_peers(cm.run(feeds), path, feeds)


def test_gpu_and_emulator_agree_and_the_artifact_reloads(tmp_path):
    x = np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32)
    gpu = compiler.compile(_tiny(), target="cuda", cache=False)
    arch = gpu.manifest["archs"][0]
    emulated = compiler.compile(_tiny(), target=f"cuda -arch={arch} -device=emulator", cache=False)
    np.testing.assert_allclose(gpu.run({"x": x})["y"], emulated.run({"x": x})["y"], rtol=1e-5, atol=1e-7)
    gpu.save(tmp_path / "m.cmod")
    np.testing.assert_array_equal(compiler.load(tmp_path / "m.cmod").run({"x": x})["y"], gpu.run({"x": x})["y"])


def test_torch_cuda_tensors_pass_without_a_host_copy():
    torch = pytest.importorskip("torch")
    cm = compiler.compile(_tiny(), target="cuda", cache=False)
    x = torch.randn(64, 256, device="cuda")
    out = cm.run({"x": x}, device_outputs=True)["y"]
    y = torch.as_tensor(out, device="cuda")
    assert y.is_cuda
    torch.testing.assert_close(y, torch.relu(torch.softmax(x, -1)), rtol=1e-5, atol=1e-6)

    fn = compiler.jit(torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.ReLU()).cuda().eval(),
                      (torch.randn(4, 32, device="cuda"),), target="cuda")
    a = torch.randn(4, 32, device="cuda")
    assert fn(a).is_cuda


@pytest.mark.parametrize("dtype", [TensorProto.FLOAT, TensorProto.FLOAT16])
def test_templates_agree_with_the_emulator_on_the_gpu(dtype):
    """The matrix-product template (cp.async, ldmatrix, mma / FMA tiles) and fused attention
    on real hardware against the emulator's run of the same artifact kernels."""
    rng = np.random.default_rng(1)
    np_dtype = np.float16 if dtype == TensorProto.FLOAT16 else np.float32
    w = (rng.standard_normal((64, 32, 3, 3)) * 0.1).astype(np_dtype)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["c", "shape"], ["q"]),
             helper.make_node("Attention", ["q", "q", "q"], ["y"], is_causal=1)]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", dtype, [1, 32, 24, 24])],
                              [helper.make_tensor_value_info("y", dtype, [1, 4, 144, 64])],
                              [onnx.numpy_helper.from_array(w, "w"),
                               onnx.numpy_helper.from_array(np.array([1, 4, 144, 64], np.int64), "shape")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    x = rng.standard_normal((1, 32, 24, 24)).astype(np_dtype)
    gpu = compiler.compile(m, target="cuda", cache=False)
    assert "cm_cp_async" in gpu.cuda_source and "__shfl_sync" in gpu.cuda_source
    emulated = compiler.compile(m, target=f"cuda -arch={gpu.manifest['archs'][0]} -device=emulator", cache=False)
    tol = 1e-5 if dtype == TensorProto.FLOAT else 2e-3
    np.testing.assert_allclose(gpu.run({"x": x})["y"].astype(np.float32), emulated.run({"x": x})["y"].astype(np.float32),
                               rtol=tol, atol=tol)


def test_dlpack_only_device_tensors_are_taken():
    """A GPU tensor that offers DLPack but not __cuda_array_interface__ (as JAX's do)."""
    torch = pytest.importorskip("torch")

    class DLPackOnly:
        def __init__(self, t):
            self.t = t

        def __dlpack__(self, stream=None):
            return self.t.__dlpack__()

        def __dlpack_device__(self):
            return self.t.__dlpack_device__()

    cm = compiler.compile(_tiny(), target="cuda", cache=False)
    x = torch.randn(64, 256, device="cuda")
    y = cm.run({"x": DLPackOnly(x)})["y"]
    np.testing.assert_allclose(y, torch.relu(torch.softmax(x, -1)).cpu().numpy(), rtol=1e-5, atol=1e-6)


def test_calls_from_several_threads():
    cm = compiler.compile(_tiny(), target="cuda", cache=False)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((64, 256)).astype(np.float32) for _ in range(8)]
    want = [cm.run({"x": x})["y"] for x in xs]
    got = [None] * len(xs)

    def worker(i):
        for _ in range(20):
            got[i] = cm.run({"x": xs[i]})["y"]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_per_call_overhead_of_the_cuda_graph(capsys):
    """A one-launch model: a call's time beyond its kernel (copies in and out, the graph's
    replay, the synchronisation), printed for the closing note."""
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    cm = compiler.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), target="cuda",
                          cache=False)
    x = np.ones(4, np.float32)
    for _ in range(100):
        cm.run({"x": x})
    times = []
    for _ in range(1000):
        start = time.perf_counter()
        cm.run({"x": x})
        times.append(time.perf_counter() - start)
    with capsys.disabled():
        print(f"\nper-call time of a one-launch model: median {np.median(times) * 1e6:.1f} us")


def test_out_of_range_indices_on_the_gpu_are_refused_by_name():
    """Token ids handed over as a GPU tensor are read back and checked like host ones."""
    torch = pytest.importorskip("torch")
    from compiler.ir.errors import InputError

    table = np.random.default_rng(2).standard_normal((100, 8)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Gather", ["table", "ids"], ["y"], name="lookup")], "g",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, [5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 8])],
                              [onnx.numpy_helper.from_array(table, "table")])
    cm = compiler.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), target="cuda",
                          cache=False)
    good = torch.tensor([0, 5, 99, -1, 7], device="cuda")
    np.testing.assert_array_equal(cm.run({"ids": good})["y"], table[good.cpu().numpy()])
    with pytest.raises(InputError, match=r"input 'ids': index 100 is out of range for node 'lookup'"):
        cm.run({"ids": torch.tensor([0, 5, 100, 1, 2], device="cuda")})
