"""The benchmark's models: the zoo written to ONNX files with the tests' seeded weights.

The nine light CNNs get `compiler.zoo.light.load_light_model(name, SEED)` (the weights the
zoo tests use, not the shipped constant 0.02 placeholders, which a system could fold
away); BERT and the MLP are the torch definitions in `compiler.zoo.torch_models`, exported
by `compiler.zoo.export` with the same seed, so torch eager and torch.compile run exactly
the weights the ONNX systems run. Files are cached by name, batch and seed; FLOPs come
from our IR's static shapes (`compiler.ir.flops`) and are cached beside them.

Batch sizes: the CNNs and BERT run at any batch (`--batch 1,8`). The shipped CNN files
declare batch 1 and their Reshape targets say 1 too, so `with_batch` rewrites both; BERT's
file has a symbolic batch and only its inputs change. The MLP is defined as a batch-64
workload (a GEMM, not a GEMV) and always runs at batch 64, once per benchmark run.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SEED = 0
# Cheapest first, so an interrupted run still covers most of the zoo.
MODELS = ("mlp", "squeezenet", "shufflenet", "bert", "bvlc_alexnet", "inception_v1", "inception_v2",
          "resnet50", "densenet121", "zfnet512", "vgg19")
TORCH_MODELS = ("bert", "mlp")
FIXED_BATCH = {"mlp": 64}  # models whose batch is part of their definition
# The unseen-architecture set (`benchmarks/unseen.py`, `--models unseen`): exported from
# torch as a user would; each runs at the batch its definition gives (1; DLRM 16).
UNSEEN = ("audio1d", "unet", "mobilenetv3", "efficientnet", "convnext", "vit", "window_attention", "gpt_decoder",
          "lstm", "dlrm", "video3d", "dcgan")


@dataclass
class BenchModel:
    name: str
    onnx_path: str
    inputs_path: str
    input_shapes: dict
    torch_model: str | None
    flops: int
    flops_exact: bool
    batch: int = 1


def cache_dir() -> Path:
    root = Path(os.environ.get("COMPILER_CACHE_DIR") or Path.home() / ".cache" / "compiler")
    return root / "bench-zoo"


def batches_for(name: str, batches: list[int]) -> list[int]:
    """The batch sizes `name` runs at when the run asks for `batches`."""
    if name in UNSEEN:
        return [1]
    return [FIXED_BATCH[name]] if name in FIXED_BATCH else list(batches)


def with_batch(model, batch: int):
    """A copy of an ONNX CNN that declares batch `batch`: graph inputs and outputs get it as
    their leading dim, and Reshapes of activations whose constant target starts with 1 (the
    shipped files flatten to [1, features]) get `batch` there instead. Stale intermediate
    shape annotations (value_info) are dropped."""
    import onnx
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name: t for t in graph.initializer}
    for value in list(graph.input) + list(graph.output):
        if value.name in inits:
            continue
        dims = value.type.tensor_type.shape.dim
        if dims and (dims[0].HasField("dim_value") or not dims[0].dim_param):
            dims[0].dim_value = batch
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[0] in inits or node.input[1] not in inits:
            continue
        target = numpy_helper.to_array(inits[node.input[1]])
        if target.ndim != 1 or target.size == 0 or target[0] != 1:
            continue
        target = target.copy()
        target[0] = batch
        # A new initializer per node: the old one may also shape a weight, which keeps its size.
        name = f"{node.input[1]}_batch{batch}_{node.name or node.output[0]}"
        graph.initializer.append(numpy_helper.from_array(target, name))
        node.input[1] = name
    del graph.value_info[:]
    return out


def _write_model(name: str, path: Path, batch: int) -> dict[str, np.ndarray]:
    """Write `name` at `batch` to `path` (if not cached) and return its seeded inputs."""
    if name in UNSEEN:
        from .unseen import export

        return export(name, path)
    if name in TORCH_MODELS:
        from compiler.zoo import export, torch_models

        if name == "bert":
            if not path.exists():
                export.export_bert(path, SEED, batch=batch)  # the file's batch dim is symbolic
            inputs = torch_models.bert_inputs(batch=batch, seed=SEED)
        else:
            if not path.exists():
                export.export_mlp(path, SEED)
            inputs = torch_models.mlp_inputs(SEED)
        return {k: v.numpy() for k, v in inputs.items()}
    import onnx

    from compiler.zoo.light import light_model_inputs, load_light_model

    model = load_light_model(name, SEED)
    if batch != 1:
        model = with_batch(model, batch)
    if not path.exists():
        onnx.save(model, str(path))
    return light_model_inputs(model, SEED)


def _count(path: Path, shapes: dict) -> tuple[int, bool]:
    from compiler.api import import_model
    from compiler.ir.errors import CompilerError
    from compiler.ir.flops import count_flops

    try:
        report = count_flops(import_model(str(path), shapes))
    except CompilerError:  # a model we cannot import yet (its systems' rows say why): no FLOP count
        return 0, False
    return report.total, report.exact


def _stem(directory: Path, name: str, batch: int) -> Path:
    # Batch 1 (and the MLP's fixed batch) keep the names older runs cached them under.
    if batch == 1 or FIXED_BATCH.get(name) == batch:
        return directory / f"{name}-seed{SEED}"
    return directory / f"{name}-b{batch}-seed{SEED}"


def prepare(name: str, directory: Path | None = None, batch: int = 1) -> BenchModel:
    """The model's ONNX file, inputs (.npz, graph-input order) and FLOPs at `batch`, cached
    on disk. Models with a fixed batch (the MLP) ignore `batch`."""
    batch = FIXED_BATCH.get(name, batch)
    directory = directory or cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    stem = _stem(directory, name, batch)
    meta = stem.with_suffix(".json")
    if meta.exists():
        cached = json.loads(meta.read_text())
        cached.setdefault("batch", batch)  # caches written before batches existed
        return BenchModel(**cached)
    onnx_path = stem.with_suffix(".onnx")
    feeds = _write_model(name, onnx_path, batch)
    inputs_path = stem.with_suffix(".npz")
    np.savez(inputs_path, **feeds)
    shapes = {k: list(v.shape) for k, v in feeds.items()}
    flops, exact = _count(onnx_path, shapes)
    model = BenchModel(name, str(onnx_path), str(inputs_path), shapes,
                       name if name in TORCH_MODELS else None, flops, exact, batch)
    meta.write_text(json.dumps(asdict(model)))
    return model
