"""The nine real CNN architectures shipped inside the onnx package, with seeded random weights.

`onnx/backend/test/data/light/light_*.onnx` holds ResNet-50, DenseNet-121, Inception v1
and v2, ShuffleNet, SqueezeNet, VGG-19, AlexNet and ZFNet-512 with their weights cut out
to keep the files small: each weight is a ConstantOfShape filled with 0.02 (plus a few
leftover trained tensors). With every channel identical, most activations coincide and
the softmax is nearly uniform, which hides whole classes of bugs (a transposed weight, a
wrong group, a swapped BatchNorm input all give the same answer). `load_light_model`
puts back seeded random initializers, each drawn for the role its consumer gives it, so
the activations keep a healthy scale through 50+ layers and the class scores differ.

Nothing here is written to disk: callers save the ModelProto where they need it.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

LIGHT_MODELS = (
    "bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
    "shufflenet", "squeezenet", "vgg19", "zfnet512",
)

# Residual branches add their output onto the shortcut; with every BatchNorm keeping unit
# scale, each block would double the variance (2**16 through ResNet-50). Like the
# "zero-init the last BN gamma" recipe (Goyal et al. 2017), but small rather than zero so
# every branch still contributes to the result.
RESIDUAL_GAMMA = 0.5


def light_model_path(name: str) -> Path:
    """The shipped file for `name` (e.g. 'resnet50' or 'light_resnet50')."""
    short = name.removeprefix("light_")
    if short not in LIGHT_MODELS:
        raise ValueError(f"unknown light model {name!r}; expected one of {', '.join(LIGHT_MODELS)}")
    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"light_{short}.onnx"


# --- initializers by role -----------------------------------------------------------------


@dataclass(frozen=True)
class _Use:
    """Where a weight is consumed: the node, the input slot, the weight's shape there (after
    any Reshape/Unsqueeze on the way), and what happens to that node's output."""
    node: onnx.NodeProto
    slot: int
    shape: tuple[int, ...]
    relu_follows: bool  # the output (after any per-channel affine ops) goes into a ReLU
    residual: bool      # the output (after any per-channel affine ops) is added onto a shortcut


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _uniform(rng: np.random.Generator, shape, low: float, high: float) -> np.ndarray:
    # Uniform float32 draws: several times faster than normal ones, which matters for the
    # 100M-weight fully connected layers of VGG-19 and ZFNet.
    arr = rng.random(shape, dtype=np.float32)
    arr *= np.float32(high - low)
    arr += np.float32(low)
    return arr


def _fan_in_uniform(rng: np.random.Generator, use: _Use, fan_in: int) -> np.ndarray:
    # He et al. 2015 before a ReLU (gain 2), LeCun otherwise (gain 1): either way the
    # output's second moment matches the input's, through 50+ layers. U(-a, a) has
    # variance a^2 / 3.
    gain = 2.0 if use.relu_follows else 1.0
    bound = float(np.sqrt(3.0 * gain / fan_in))
    return _uniform(rng, use.shape, -bound, bound)


def _conv_weight(rng, use: _Use) -> np.ndarray:
    # [M, C/group, k...]: each output sums C/group * prod(k) inputs.
    return _fan_in_uniform(rng, use, int(np.prod(use.shape[1:])))


def _gemm_weight(rng, use: _Use) -> np.ndarray:
    fan_in = use.shape[1] if _attr(use.node, "transB", 0) else use.shape[0]
    return _fan_in_uniform(rng, use, fan_in)


def _bias(rng, use: _Use) -> np.ndarray:
    # Small, so it shifts pre-activations without swamping the weighted sum.
    return _uniform(rng, use.shape, -0.1, 0.1)


def _bn_scale(rng, use: _Use) -> np.ndarray:
    gamma = RESIDUAL_GAMMA if use.residual else 1.0
    return _uniform(rng, use.shape, 0.8 * gamma, 1.2 * gamma)


def _bn_mean(rng, use: _Use) -> np.ndarray:
    return _uniform(rng, use.shape, -0.2, 0.2)


def _bn_var(rng, use: _Use) -> np.ndarray:
    # Near 1 and bounded away from 0, so 1/sqrt(var + eps) stays tame.
    return _uniform(rng, use.shape, 0.5, 1.5)


def _channel_scale(rng, use: _Use) -> np.ndarray:
    # Caffe's Scale layer after a BatchNorm (exported as Unsqueeze -> Mul): a second gamma.
    return _uniform(rng, use.shape, 0.8, 1.2)


# (consumer op, input slot) -> how to draw a weight used there.
_INITIALIZERS: dict[tuple[str, int], Callable[[np.random.Generator, _Use], np.ndarray]] = {
    ("Conv", 1): _conv_weight,
    ("Conv", 2): _bias,
    ("Gemm", 1): _gemm_weight,
    ("Gemm", 2): _bias,
    ("BatchNormalization", 1): _bn_scale,
    ("BatchNormalization", 2): _bias,
    ("BatchNormalization", 3): _bn_mean,
    ("BatchNormalization", 4): _bn_var,
    ("Mul", 1): _channel_scale,   # per-channel scale after Unsqueeze
    ("Add", 1): _bias,            # per-channel shift after Unsqueeze
}

# Ops a weight may pass through on its way to its real consumer; they change only its shape.
_SHAPE_ONLY = {"Reshape", "Unsqueeze"}
# Per-channel affine ops between a conv and its activation function.
_AFFINE = {"BatchNormalization", "Mul", "Add"}


def _shape_after(node: onnx.NodeProto, shape: tuple[int, ...], consts: dict[str, np.ndarray]) -> tuple[int, ...]:
    """The weight's shape after a Reshape or Unsqueeze (numpy applies the same rules)."""
    dummy = np.empty(shape, dtype=np.uint8)
    if node.op_type == "Unsqueeze":  # axes: an attribute before opset 13, an input from then on
        axes = _attr(node, "axes", None)
        axes = [int(a) for a in (axes if axes is not None else consts[node.input[1]])]
        return np.expand_dims(dummy, tuple(axes)).shape
    target = [int(d) for d in consts[node.input[1]]]
    target = [shape[i] if d == 0 else d for i, d in enumerate(target)]  # ONNX: 0 copies the input dim
    return dummy.reshape(target).shape


@dataclass
class _GraphIndex:
    """Who reads each tensor, which tensors depend on the input image, and the initializers."""
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]]
    consts: dict[str, np.ndarray]
    activations: set[str]  # tensors computed from the input image, not from weights alone

    @classmethod
    def of(cls, graph: onnx.GraphProto) -> "_GraphIndex":
        consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        for node in graph.node:
            for slot, x in enumerate(node.input):
                consumers.setdefault(x, []).append((node, slot))
        consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        activations = {i.name for i in graph.input if i.name not in consts}
        for node in graph.node:  # ONNX files list nodes in topological order
            if any(x in activations for x in node.input):
                activations.update(node.output)
        return cls(consumers, consts, activations)

    def is_activation(self, name: str) -> bool:
        return name in self.activations

    def _is_affine(self, node: onnx.NodeProto) -> bool:
        """A per-channel affine op on one activation: BatchNorm, or a Caffe Scale's Mul/Add."""
        return (node.op_type in _AFFINE and self.is_activation(node.input[0])
                and not any(self.is_activation(x) for x in node.input[1:]))

    def _after_affine(self, name: str) -> list[onnx.NodeProto]:
        """The nodes reading `name`, looking through per-channel affine ops."""
        found = []
        for node, _ in self.consumers.get(name, []):
            found += self._after_affine(node.output[0]) if self._is_affine(node) else [node]
        return found

    def relu_follows(self, name: str) -> bool:
        after = self._after_affine(name)
        return bool(after) and all(n.op_type == "Relu" for n in after)

    def residual(self, name: str) -> bool:
        return any(n.op_type in ("Sum", "Add") and sum(map(self.is_activation, n.input)) >= 2
                   for n in self._after_affine(name))


def _find_use(name: str, shape: tuple[int, ...], index: _GraphIndex) -> _Use:
    uses = index.consumers.get(name, [])
    if len(uses) != 1:
        raise ValueError(f"weight {name!r} has {len(uses)} consumers; expected exactly one")
    node, slot = uses[0]
    if node.op_type in _SHAPE_ONLY and slot == 0:
        return _find_use(node.output[0], _shape_after(node, shape, index.consts), index)
    out = node.output[0]
    return _Use(node, slot, shape, index.relu_follows(out), index.residual(out))


def _tensor_seed(seed: int, name: str) -> np.random.Generator:
    # Keyed by name, not by order, so one weight's values do not depend on the others.
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


# --- the model rewrite --------------------------------------------------------------------


def _weights(graph: onnx.GraphProto, consts: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """Every float weight: ConstantOfShape placeholders and leftover float initializers."""
    found = {}
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in consts:
            found[node.output[0]] = tuple(int(d) for d in consts[node.input[0]])
    for name, arr in consts.items():
        if arr.dtype == np.float32 and name not in found:
            found[name] = arr.shape
    return found


def _draw_weights(name: str, graph: onnx.GraphProto, seed: int) -> dict[str, np.ndarray]:
    index = _GraphIndex.of(graph)
    weights = {}
    for wname, shape in _weights(graph, index.consts).items():
        if wname not in index.consumers:
            continue  # e.g. an unused data-queue blob left by the Caffe2 exporter
        use = _find_use(wname, shape, index)
        draw = _INITIALIZERS.get((use.node.op_type, use.slot))
        if draw is None:
            raise ValueError(f"{name}: no initializer rule for weight {wname!r} used as input {use.slot} "
                             f"of {use.node.op_type} {use.node.name or use.node.output[0]!r}")
        # Drawn in the consumer's shape (fan-in), stored in the original one.
        weights[wname] = draw(_tensor_seed(seed, wname), use).reshape(shape)
    return weights


def _replace_repeated(field, items) -> None:
    kept = [type(x)() for x in items]
    for new, old in zip(kept, items):
        new.CopyFrom(old)
    del field[:]
    field.extend(kept)


def load_light_model(name: str, seed: int = 0) -> onnx.ModelProto:
    """The shipped architecture `name` with seeded random weights (deterministic per seed).

    Weights become initializers (no longer graph inputs, hence IR version >= 4); the
    ConstantOfShape placeholders and initializers nothing reads any more are dropped.
    """
    model = onnx.load(str(light_model_path(name)))
    graph = model.graph
    weights = _draw_weights(name, graph, seed)

    # Edited in place: VGG-19's weights are 575 MB, and every protobuf copy of them costs seconds.
    _replace_repeated(graph.node, [n for n in graph.node if n.output[0] not in weights])
    read = {x for n in graph.node for x in n.input}
    _replace_repeated(graph.initializer, [t for t in graph.initializer if t.name in read and t.name not in weights])
    for wname, arr in weights.items():
        t = graph.initializer.add()
        t.name, t.data_type = wname, onnx.TensorProto.FLOAT
        t.dims.extend(arr.shape)
        t.raw_data = arr.astype("<f4", copy=False).tobytes()
    init_names = {t.name for t in graph.initializer}
    _replace_repeated(graph.input, [i for i in graph.input if i.name not in init_names and i.name in read])
    model.ir_version = max(model.ir_version, 4)
    model.producer_name = "compiler.zoo.light"
    return model


def pre_softmax_name(model: onnx.ModelProto) -> str:
    """The tensor feeding the model's final Softmax; the output itself when there is none
    (DenseNet-121 ends on its classifier conv)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    out = model.graph.output[0].name
    node = producers.get(out)
    return node.input[0] if node is not None and node.op_type == "Softmax" else out


def with_pre_softmax_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` that also outputs the tensor feeding its final Softmax (the class
    scores before normalisation), after the original outputs."""
    name = pre_softmax_name(model)
    result = onnx.ModelProto()
    result.CopyFrom(model)
    if name in {o.name for o in result.graph.output}:
        return result
    extra = result.graph.output.add()
    extra.CopyFrom(model.graph.output[0])  # Softmax keeps shape and type: the same declaration
    extra.name = name
    extra.doc_string = "the final Softmax's input"
    return result


def light_model_inputs(model, seed: int = 0) -> dict[str, np.ndarray]:
    """A seeded standard-normal image for each graph input (the CNNs take one NCHW batch).
    `model` is the ModelProto or its list of graph inputs."""
    inputs = model.graph.input if isinstance(model, onnx.ModelProto) else model
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in inputs:
        dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        feeds[inp.name] = rng.standard_normal(dims).astype(np.float32)
    return feeds
