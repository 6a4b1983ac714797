"""The benchmark's models: the zoo written to ONNX files with the tests' seeded weights.

The nine light CNNs get `compiler.zoo.light.load_light_model(name, SEED)` (the weights the
zoo tests use, not the shipped constant 0.02 placeholders, which a system could fold
away); BERT and the MLP are the torch definitions in `compiler.zoo.torch_models`, exported
by `compiler.zoo.export` with the same seed, so torch eager and torch.compile run exactly
the weights the ONNX systems run. Files are cached by name and seed; FLOPs come from our
IR's static shapes (`compiler.flops`) and are cached beside them.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SEED = 0
BERT_BATCH = 1
# Cheapest first, so an interrupted run still covers most of the zoo.
MODELS = ("mlp", "squeezenet", "shufflenet", "bert", "bvlc_alexnet", "inception_v1", "inception_v2",
          "resnet50", "densenet121", "zfnet512", "vgg19")
TORCH_MODELS = ("bert", "mlp")


@dataclass
class BenchModel:
    name: str
    onnx_path: str
    inputs_path: str
    input_shapes: dict
    torch_model: str | None
    flops: int
    flops_exact: bool


def cache_dir() -> Path:
    root = Path(os.environ.get("COMPILER_CACHE_DIR") or Path.home() / ".cache" / "compiler")
    return root / "bench-zoo"


def _write_model(name: str, path: Path) -> dict[str, np.ndarray]:
    """Write `name` to `path` (if not cached) and return its seeded inputs."""
    if name in TORCH_MODELS:
        from compiler.zoo import export, torch_models

        if name == "bert":
            if not path.exists():
                export.export_bert(path, SEED, batch=BERT_BATCH)
            inputs = torch_models.bert_inputs(batch=BERT_BATCH, seed=SEED)
        else:
            if not path.exists():
                export.export_mlp(path, SEED)
            inputs = torch_models.mlp_inputs(SEED)
        return {k: v.numpy() for k, v in inputs.items()}
    import onnx

    from compiler.zoo.light import light_model_inputs, load_light_model

    model = load_light_model(name, SEED)
    if not path.exists():
        onnx.save(model, str(path))
    return light_model_inputs(model, SEED)


def _count(path: Path, shapes: dict) -> tuple[int, bool]:
    from compiler.api import import_model
    from compiler.flops import count_flops

    report = count_flops(import_model(str(path), shapes))
    return report.total, report.exact


def prepare(name: str, directory: Path | None = None) -> BenchModel:
    """The model's ONNX file, inputs (.npz, graph-input order) and FLOPs, cached on disk."""
    directory = directory or cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"{name}-seed{SEED}"
    meta = stem.with_suffix(".json")
    if meta.exists():
        return BenchModel(**json.loads(meta.read_text()))
    onnx_path = stem.with_suffix(".onnx")
    feeds = _write_model(name, onnx_path)
    inputs_path = stem.with_suffix(".npz")
    np.savez(inputs_path, **feeds)
    shapes = {k: list(v.shape) for k, v in feeds.items()}
    flops, exact = _count(onnx_path, shapes)
    model = BenchModel(name, str(onnx_path), str(inputs_path), shapes,
                       name if name in TORCH_MODELS else None, flops, exact)
    meta.write_text(json.dumps(asdict(model)))
    return model
