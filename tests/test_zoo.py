"""The model zoo end to end: import each model, run it on the reference interpreter, and
compare with onnxruntime (CPU) and, for the torch-defined models, with torch eager.

Covers the nine real CNNs shipped in the onnx package (with seeded random weights, on the
final softmax and on the class scores feeding it), the BERT-style encoder and the MLP.
Models are built once per session in a temp dir; nothing large is kept in the repository.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest

ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from compiler.frontend.onnx_import import import_onnx  # noqa: E402
from compiler.ir import run_graph  # noqa: E402
from compiler.zoo import export, light, torch_models  # noqa: E402
from compiler.zoo.tolerances import assert_close, max_errors  # noqa: E402

SEED = 0

# HF-exported BERT graphs have these; the zoo's export must too, or it tests less than it claims.
BERT_OPS = {"LayerNormalization", "Erf", "Softmax", "Where", "MatMul", "Add",
            "Shape", "Gather", "Concat", "Reshape"}


@dataclass(frozen=True)
class BuiltModel:
    """A model saved in the session's temp dir, and what tests need to know of it without
    parsing the file again (VGG-19's is 575 MB)."""
    path: Path
    nodes: int
    op_types: dict[str, int]
    inputs: list[onnx.ValueInfoProto]
    outputs: list[str]


def _describe(model: onnx.ModelProto, path: Path) -> BuiltModel:
    return BuiltModel(path, len(model.graph.node), dict(Counter(n.op_type for n in model.graph.node)),
                      list(model.graph.input), [o.name for o in model.graph.output])


class Zoo:
    """Builds each model the first time a test asks for it, into one temp dir per session."""

    def __init__(self, root: Path):
        self.root = root
        self._built: dict[str, BuiltModel] = {}

    def light(self, name: str) -> BuiltModel:
        if name not in self._built:
            model = light.with_pre_softmax_output(light.load_light_model(name, SEED))
            path = self.root / f"{name}.onnx"
            onnx.save(model, str(path))
            self._built[name] = _describe(model, path)
        return self._built[name]

    def torch_model(self, name: str) -> BuiltModel:
        if name not in self._built:
            path = export.TORCH_MODELS[name](self.root / f"{name}.onnx", SEED)
            self._built[name] = _describe(onnx.load(str(path)), path)
        return self._built[name]


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> Zoo:
    return Zoo(tmp_path_factory.mktemp("zoo"))


def run_onnxruntime(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def run_reference(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # check_types: every node's run-time dtype and shape must match what inference declared.
    return run_graph(import_onnx(path), feeds, check_types=True)


def _report(record_property, name: str, built: BuiltModel, errors: dict[str, float], start: float) -> None:
    seconds = time.perf_counter() - start
    for key, value in {"nodes": built.nodes, "op_types": built.op_types, "seconds": round(seconds, 2),
                       **{f"max_abs_error[{k}]": v for k, v in errors.items()}}.items():
        record_property(key, value)
    errs = ", ".join(f"{k} {v:.2g}" for k, v in errors.items())
    print(f"\n{name}: {built.nodes} nodes, {seconds:.1f}s, max abs error vs onnxruntime: {errs}; ops {built.op_types}")


# --- the light CNNs ------------------------------------------------------------------------


def assert_not_degenerate(scores: np.ndarray, what: str) -> None:
    """Class scores from random weights must spread out: with the shipped constant weights
    every channel is identical and the scores all coincide. (Not all distinct: SqueezeNet's
    scores pass through a ReLU, so a sixth of them are exactly 0.)"""
    scores = scores.reshape(-1)
    assert np.isfinite(scores).all(), f"{what}: non-finite class scores"
    assert scores.std() > 0.1, f"{what}: class scores have std {scores.std():.3g} (collapsed)"
    distinct = len(np.unique(scores))
    assert distinct > 0.5 * scores.size, f"{what}: only {distinct} distinct scores of {scores.size}"


# All nine stay in the fast tier: the whole file is about 80 s of CPU time, VGG-19 (575 MB
# of weights to draw, save and load twice) about 15 s of it.
@pytest.mark.parametrize("name", light.LIGHT_MODELS)
def test_light_model_matches_onnxruntime(zoo, name, record_property):
    start = time.perf_counter()
    built = zoo.light(name)
    feeds = light.light_model_inputs(built.inputs, SEED)
    expected = run_onnxruntime(built.path, feeds)
    actual = run_reference(built.path, feeds)

    # with_pre_softmax_output appends the class scores after the softmax (DenseNet has none).
    final, scores_name = built.outputs[0], built.outputs[-1]
    for out in expected:
        what = f"{name} {'class scores (pre-softmax)' if out == scores_name else 'output'} {out!r}"
        assert_close(actual[out], expected[out], what=what, end_to_end=True)
    assert_not_degenerate(expected[scores_name], f"{name} {scores_name!r}")
    if final != scores_name:
        probs = expected[final]
        assert abs(probs.sum() - 1) < 1e-4 and probs.max() > 2 * probs.min(), \
            f"{name}: softmax sums to {probs.sum():.6g}, spans [{probs.min():.3g}, {probs.max():.3g}] (near uniform)"
    _report(record_property, name, built, {k: max_errors(actual[k], v)[0] for k, v in expected.items()}, start)


def test_light_weights_are_seeded_and_scaled():
    a, b, c = (light.load_light_model("squeezenet", seed) for seed in (0, 0, 1))
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in a.graph.initializer}
    assert [i.name for i in a.graph.input] == ["data_0"], "weights must be initializers, not inputs"
    assert "ConstantOfShape" not in {n.op_type for n in a.graph.node}
    for ta, tb, tc in zip(a.graph.initializer, b.graph.initializer, c.graph.initializer):
        assert ta.SerializeToString() == tb.SerializeToString(), f"{ta.name}: same seed, different weights"
        assert ta.raw_data != tc.raw_data, f"{ta.name}: seed 1 gives seed 0's weights"
    for node in a.graph.node:
        if node.op_type == "Conv":
            w = weights[node.input[1]]
            fan_in = np.prod(w.shape[1:])
            # He scaling before a ReLU: std = sqrt(2 / fan_in), within sampling error.
            assert abs(w.std() * np.sqrt(fan_in / 2) - 1) < 0.1, f"{node.input[1]}: std {w.std():.3g}"


def test_pre_softmax_output():
    model = light.load_light_model("squeezenet")
    extended = light.with_pre_softmax_output(model)
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    assert [o.name for o in extended.graph.output] == [model.graph.output[0].name, softmax.input[0]]
    assert len(model.graph.output) == 1, "the input model is left alone"
    assert light.with_pre_softmax_output(extended).graph.output == extended.graph.output
    # DenseNet-121 ends on its classifier conv: its output already is the class scores.
    densenet = light.load_light_model("densenet121")
    assert light.pre_softmax_name(densenet) == densenet.graph.output[0].name


# --- the torch-defined models -------------------------------------------------------------


def _torch_eager(module: torch.nn.Module, feeds: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return module(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()


@pytest.fixture(scope="session")
def bert_module():
    return torch_models.make_bert(SEED)


def test_torch_models_are_seeded():
    """Every parameter comes from the seed (none is left at torch's global-RNG default)."""
    small = torch_models.BertConfig(vocab_size=50, num_layers=1)
    for make in (torch_models.make_mlp, lambda seed: torch_models.make_bert(seed, small)):
        a = make(0).state_dict()
        torch.rand(3)  # moves the global RNG between the two builds
        b, c = make(0).state_dict(), make(1).state_dict()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{key}: differs between two builds with seed 0"
            assert not torch.equal(a[key], c[key]), f"{key}: identical for seeds 0 and 1"


def test_bert_export_has_hf_bert_ops(zoo):
    built = zoo.torch_model("bert")
    missing = BERT_OPS - set(built.op_types)
    assert not missing, f"exported BERT lacks {sorted(missing)}; has {built.op_types}"
    model = onnx.load(str(built.path))
    for inp in model.graph.input:
        dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
        assert inp.type.tensor_type.elem_type == onnx.TensorProto.INT64 and dims == ["batch", 128], inp


@pytest.mark.parametrize("batch", [2, 3])
def test_bert_matches_onnxruntime_and_torch(zoo, bert_module, batch, record_property):
    start = time.perf_counter()
    built = zoo.torch_model("bert")
    feeds = {k: v.numpy() for k, v in torch_models.bert_inputs(batch, seed=batch).items()}
    assert (feeds["attention_mask"] == 0).any(), "some rows must be padded, or the mask goes untested"
    expected = run_onnxruntime(built.path, feeds)["last_hidden_state"]
    actual = run_reference(built.path, feeds)["last_hidden_state"]
    eager = _torch_eager(bert_module, feeds)

    assert_close(actual, expected, what=f"BERT (batch {batch}) vs onnxruntime", end_to_end=True)
    assert_close(actual, eager, what=f"BERT (batch {batch}) vs torch eager", end_to_end=True)
    assert expected.std(axis=-1).min() > 0.5, "hidden states collapsed"
    _report(record_property, f"bert[batch={batch}]", built, {"last_hidden_state": max_errors(actual, expected)[0]},
            start)


def test_bert_attention_mask_takes_effect(bert_module):
    """Padding must change the unpadded positions' output (the mask reaches every softmax),
    and a padded token's id must not."""
    inputs = torch_models.bert_inputs(batch=2, seed=0)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    with torch.no_grad():
        masked = bert_module(ids, mask)
        unmasked = bert_module(ids, torch.ones_like(mask))
        other_pad = bert_module(torch.where(mask.bool(), ids, (ids + 1) % bert_module.config.vocab_size), mask)
    keep = mask[1].bool()
    assert (masked[1, keep] - unmasked[1, keep]).abs().max() > 1e-2
    torch.testing.assert_close(masked[1, keep], other_pad[1, keep], rtol=1e-5, atol=1e-5)


def test_mlp_matches_onnxruntime_and_torch(zoo, record_property):
    start = time.perf_counter()
    built = zoo.torch_model("mlp")
    feeds = {k: v.numpy() for k, v in torch_models.mlp_inputs(SEED).items()}
    expected = run_onnxruntime(built.path, feeds)["logits"]
    actual = run_reference(built.path, feeds)["logits"]
    assert actual.shape == (torch_models.MLP_BATCH, 10)
    assert_close(actual, expected, what="MLP vs onnxruntime", end_to_end=True)
    assert_close(actual, _torch_eager(torch_models.make_mlp(SEED), feeds), what="MLP vs torch eager", end_to_end=True)
    assert expected.std(axis=-1).min() > 0.1, "logits collapsed"
    _report(record_property, "mlp", built, {"logits": max_errors(actual, expected)[0]}, start)


def test_mismatch_report_handles_scalars():
    from compiler.zoo.tolerances import mismatch_report, tolerance

    assert mismatch_report(np.float32(1.0), np.float32(1.0), tolerance("float32")) is None
    assert "1 of 1 elements" in mismatch_report(np.float32(1.0), np.float32(2.0), tolerance("float32"))
