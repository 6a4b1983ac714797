"""Builds the demo model, a small CNN classifier, as ONNX with seeded weights.

    python examples/make_example.py OUTDIR     -> OUTDIR/tiny_cnn.onnx and OUTDIR/tiny_cnn_input.npz

Built by script (onnx.helper) rather than committed, so the repository holds no binaries.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build_tiny_cnn(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)

    def weight(name, shape):
        fan_in = int(np.prod(shape[1:]))
        return numpy_helper.from_array((rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32), name)

    inits = [
        weight("conv1_w", (8, 3, 3, 3)), numpy_helper.from_array(np.zeros(8, np.float32), "conv1_b"),
        weight("conv2_w", (16, 8, 3, 3)), numpy_helper.from_array(np.full(16, 0.01, np.float32), "conv2_b"),
        weight("fc_w", (10, 16)), numpy_helper.from_array(np.zeros(10, np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "conv1_w", "conv1_b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2_w", "conv2_b"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="make_example")
    model.ir_version = 8  # what opset 17 was released with; readable by older onnxruntime builds too
    onnx.checker.check_model(model)
    return model


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "examples/build")
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(build_tiny_cnn(), out / "tiny_cnn.onnx")
    image = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.savez(out / "tiny_cnn_input.npz", image=image)
    print(f"wrote {out / 'tiny_cnn.onnx'} and {out / 'tiny_cnn_input.npz'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
