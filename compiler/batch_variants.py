"""One model compiled at several batch sizes: the artifacts a served version holds, so the
server's dynamic batcher runs a merged batch on the smallest that fits
(`compile model.onnx --batch-sizes 1,4,16 -o REPO/<model>/1`, `compiler.serving`).

The batch dim is the leading dim of every input; it is set to each size in turn (other
symbolic dims still need `input_shapes`). Artifacts are named `model_b<N>.cmod`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from .ir.errors import CompilerError


def batch_shapes(model, batch: int, input_shapes: Mapping[str, Sequence] | None = None) -> dict[str, list]:
    """Every input's shape (declared, or as `input_shapes` overrides it) with its leading dim
    set to `batch`."""
    from .api import import_model

    graph = import_model(model, input_shapes)
    shapes = {}
    for v in graph.inputs:
        shape = list(getattr(v.type, "shape", None) or ())
        if not shape:
            raise CompilerError(f"input '{v.name}' is a scalar: there is no leading batch dim to set")
        shapes[v.name] = [batch] + shape[1:]
    return shapes


def compile_batch_sizes(model, batch_sizes: Sequence[int], out_dir: str | Path, *,
                        input_shapes: Mapping[str, Sequence] | None = None, progress=None, **options) -> list[Path]:
    """Compile `model` once per batch size into `out_dir/model_b<N>.cmod`; the paths written.
    `options` as `compiler.compile`; `progress(batch)` is called before each build."""
    from .api import compile as compile_model

    sizes = sorted(set(batch_sizes))
    if not sizes or any(not isinstance(b, int) or b < 1 for b in sizes):
        raise CompilerError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    out = Path(out_dir)
    if out.suffix == ".cmod":
        raise CompilerError(f"-o {out}: with several batch sizes the output is a directory (one artifact per size)")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for b in sizes:
        if progress is not None:
            progress(b)
        cm = compile_model(model, input_shapes=batch_shapes(model, b, input_shapes), **options)
        path = out / f"model_b{b}.cmod"
        cm.save(path)
        written.append(path)
    return written
