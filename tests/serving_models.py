"""Small ONNX models and model repositories for the serving tests."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def mlp_onnx(path: Path, seed: int = 0, features: int = 16, classes: int = 8) -> Path:
    """x[batch, features] -> Gemm -> Relu -> y[batch, classes], and the same x -> sum z[batch, 1]."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((features, classes)).astype(np.float32)
    b = rng.standard_normal(classes).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "W", "B"], ["h"]), helper.make_node("Relu", ["h"], ["y"]),
             helper.make_node("ReduceSum", ["x", "axes"], ["z"], keepdims=1)]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", classes]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B"),
         numpy_helper.from_array(np.array([1], np.int64), "axes")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def make_repository(root: Path, name: str = "mlp", version: int = 1, batch_sizes=(1, 2, 4, 8), seed: int = 0,
                    config: dict | None = None) -> Path:
    """REPO/<name>/<version>/model_b<N>.cmod for each batch size, and config.json if given."""
    from compiler.batch_variants import compile_batch_sizes

    model_dir = root / name
    model_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = mlp_onnx(root / f"{name}-{seed}.onnx", seed)
    compile_batch_sizes(onnx_path, batch_sizes, model_dir / str(version), target="llvm", cache=False)
    if config is not None:
        (model_dir / "config.json").write_text(json.dumps(config))
    return root
