"""The Python API: `compile(model, target=...)` and `load(path)`.

The llvm target keeps an on-disk compile cache (COMPILER_CACHE_DIR, default
~/.cache/compiler): the key hashes the model bytes, input shapes, target and compiler
version, so recompiling an unchanged model with the same options only loads the artifact.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Mapping, Sequence

from . import __version__
from .model import CompiledModel, load, native_artifact
from .targets import parse_target


def import_model(model, input_shapes: Mapping[str, Sequence] | None = None):
    """Any supported model form -> IR Graph (ONNX path/bytes/ModelProto for now)."""
    from .frontend.onnx_import import import_onnx

    return import_onnx(model, input_shapes=input_shapes)


def compile(model, target: str = "llvm", *, input_shapes: Mapping[str, Sequence] | None = None,
            num_threads: int | None = None, cache: bool = True, opt_level: int = 2, tune: bool = False,
            tune_budget_s: float = 10.0):
    """Compile an ONNX model (path, bytes or onnx.ModelProto) for `target`.

    `input_shapes` overrides declared input shapes: {"x": [1, 3, 224, 224]}.
    llvm only: `num_threads` for parallel loops (None/0 = all cores); `cache=False` skips
    the on-disk compile cache; `opt_level` 2 (graph passes + fusion), 1 (graph passes, one
    kernel per node) or 0 (as imported; for debugging a suspected pass). `tune=True` times
    microkernel schedules for conv/GEMM problems this device (CPU and thread count) has not
    tuned yet, `tune_budget_s` seconds each, and caches them (`compiler.autotune`); later
    compiles use the cached schedules either way.
    """
    tgt = parse_target(target)
    source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__
    if tgt.kind != "llvm":
        return CompiledModel(import_model(model, input_shapes), str(tgt), source)
    entry = _cache_path(model, input_shapes, _cache_target(tgt, opt_level, num_threads)) if cache and not tune else None
    if entry is not None and entry.exists():
        try:
            return load(entry, num_threads=num_threads)
        except Exception:  # a stale or corrupt cache entry is rebuilt, never trusted
            entry.unlink(missing_ok=True)
    from .autotune import tuning
    from .native_build import build_native
    from .runtime.native import NativeModel

    # Outside tuning too: the thread count picks which device's tuned schedules apply.
    with tuning(enabled=tune, threads=num_threads or None, budget_s=tune_budget_s):
        graph, build = build_native(import_model(model, input_shapes), tgt.options, opt_level)
    if cache and tune:  # the tuning results (part of the key) changed while building
        entry = _cache_path(model, input_shapes, _cache_target(tgt, opt_level, num_threads))
    manifest, sections = native_artifact(graph, build, str(tgt), source)
    compiled = NativeModel(manifest, sections, where=source, num_threads=num_threads, lazy=True)
    compiled.timings = build.timings
    if entry is not None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        compiled.save(entry)
    return compiled


def _cache_target(tgt, opt_level: int, num_threads: int | None) -> str:
    """The target part of a compile-cache key: options, level, and a fingerprint of the tuned
    schedules the build would use (tuning after a compile must not return the old artifact)."""
    from .autotune import fingerprint
    from .codegen.llvm_target import cpu_target

    return f"{tgt} -O{opt_level} tuned={fingerprint(cpu_target(tgt.options), num_threads or None)}"


def _model_bytes(model) -> bytes | None:
    if isinstance(model, (str, os.PathLike)):
        try:
            return Path(model).read_bytes()
        except OSError:
            return None
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    if hasattr(model, "SerializeToString"):
        return model.SerializeToString()
    return None


def _compiler_code_hash() -> str:
    """A hash of the sources that shape an artifact (importer, IR, graph passes, code
    generator with its C thread pool): a compiler edited in place (an editable install
    between releases) never reuses artifacts the previous code produced."""
    from . import codegen, frontend, ir, passes

    h = hashlib.sha256()
    for package in (codegen, frontend, ir, passes):
        for pattern in ("*.py", "*.c"):
            for path in sorted(Path(package.__file__).parent.rglob(pattern)):
                h.update(path.read_bytes())
    return h.hexdigest()


def _cache_path(model, input_shapes, target: str) -> Path | None:
    data = _model_bytes(model)
    if data is None:
        return None
    root = Path(os.environ.get("COMPILER_CACHE_DIR") or Path.home() / ".cache" / "compiler")
    h = hashlib.sha256(data)
    h.update(json.dumps({"shapes": {k: list(v) for k, v in (input_shapes or {}).items()}, "target": target,
                         "version": __version__, "code": _compiler_code_hash()}, sort_keys=True).encode())
    return root / "llvm" / f"{h.hexdigest()}.cmod"


__all__ = ["compile", "load", "CompiledModel"]
