"""The Python API: `compile(model, target=...)` and `load(path)`.

Compiling goes through the target's backend (`compiler.backends`). A backend that says how
to key its builds (llvm) gets an on-disk compile cache (COMPILER_CACHE_DIR, default
~/.cache/compiler): the key hashes the model bytes, input shapes, the backend's key (target,
level, tuned schedules), the compiler's version and sources, so recompiling an unchanged
model with the same options only loads the artifact.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Mapping, Sequence

from . import __version__
from .backends import BuildOptions, parse_target
from .calibration import check_samples, digest, is_scales_file, read_samples, scales_digest
from .ir.errors import CompilerError
from .model import load


def import_model(model, input_shapes: Mapping[str, Sequence] | None = None, inline: frozenset[str] = frozenset()):
    """Any supported model form -> IR Graph (ONNX path/bytes/ModelProto for now); `inline`:
    registry ops to import as their ONNX function body (`Backend.inlined_ops`)."""
    from .frontend.onnx_import import import_onnx

    return import_onnx(model, input_shapes=input_shapes, inline=inline)


def compile(model, target: str = "llvm", *, input_shapes: Mapping[str, Sequence] | None = None,
            num_threads: int | None = None, cache: bool = True, opt_level: int | None = None, tune: bool = False,
            tune_budget_s: float = 10.0, tuned: bool = True, precision: str = "fp32", exclude: Sequence[str] = (), calibration=None,
            calibration_method: str = "minmax"):
    """Compile an ONNX model (path, bytes or onnx.ModelProto) for `target`.

    `input_shapes` overrides declared input shapes: {"x": [1, 3, 224, 224]}.
    `opt_level` 0-3 (`passes.pipeline`: 3 fuses kernels, 2 runs the graph passes only, 1
    only simplifies, 0 compiles the graph as imported; for debugging a suspected pass);
    None takes the target's default (llvm 3; reference 0, the interpreter as the oracle).
    llvm: `num_threads` for parallel loops (None/0 = all cores); `cache=False` skips the
    on-disk compile cache; `tune=True` times extern-kernel schedules this device (CPU and
    thread count) has not tuned yet, `tune_budget_s` seconds each, and caches them
    (`compiler.autotune`); later compiles use the tuned schedules either way, unless
    `tuned=False`: the heuristic defaults only, whatever the tuning database holds (the
    untuned build a benchmark compares against).
    `precision` "fp32" (default) or "bf16" (llvm on CPUs with AVX512-BF16): convolutions and
    matrix products compute with bfloat16 operands and float32 accumulation, what the
    registry's precision policies keep in fp32 stays there; inputs and outputs keep the
    model's types. "fp16" (llvm on CPUs with F16C, AVX2 and later) is weight storage: the
    same products take their weights rounded to float16, activations and arithmetic stay
    float32; weights that stream from memory (few rows: dense layers at small batch) are
    kept in float16, half the bytes, the rest widened at compile time
    (`codegen/llvm/microkernels/gemm.py`, knob `half_b`).
    On cuda, "fp16" and "bf16" run convolutions, matrix products and attention on 16-bit
    operands (tensor cores, fp32 accumulation; `passes.autocast`).
    `exclude`: node names or op types ("Conv", "MatMul") kept in fp32. The
    artifact's manifest holds the per-node report (`compile inspect --precision`).
    `calibration`: sample inputs (an .npz of arrays with a leading sample axis, a dict of
    such arrays, or an iterable of feed dicts; `compiler.calibration`), checked against the
    model's inputs; with a reduced precision, the manifest's report then holds each lowered
    layer's and each output's worst cosine and SQNR against fp32 over those samples.
    `precision="int8"` (llvm on CPUs with AVX512-VNNI) needs `calibration`: the products'
    activation ranges are observed on the samples by `calibration_method` ("minmax",
    "percentile" or "entropy"; `passes.int8_ranges`), activations are quantized to uint8
    and weights to int8 per output channel; or `calibration` is the JSON scales file an
    earlier int8 compile wrote (`compiler.calibration.save_scales`), reused without samples.
    """
    from .passes.int8_ranges import INT8_NEEDS_CALIBRATION, Calibration, check_method, read_scales

    tgt = parse_target(target)
    backend = tgt.backend
    if isinstance(exclude, str):
        exclude = [exclude]
    if tune and not tuned:
        raise CompilerError("tune=True with tuned=False: tuning fills the database a build with tuned=False ignores")
    options = BuildOptions(opt_level=opt_level, num_threads=num_threads, tune=tune, tune_budget_s=tune_budget_s,
                           tuned=tuned, precision=precision, exclude=tuple(exclude))
    backend.check_precision(options)  # before the cache: a refused precision never finds an fp32 entry
    samples = where = scales = None
    if options.precision == "int8":
        check_method(calibration_method)
        if calibration is None:
            raise CompilerError(INT8_NEEDS_CALIBRATION)
    if is_scales_file(calibration):
        if options.precision != "int8":
            raise CompilerError(f"calibration {os.fspath(calibration)}: a scales file is for precision 'int8', "
                                f"not '{options.precision}'")
        scales = read_scales(calibration)
        extra = {"calibration": scales_digest(scales)}
    elif calibration is not None:
        samples, where = read_samples(calibration)  # drained once: hashed for the cache, checked after import
        extra = {"calibration": digest(samples)}
    else:
        extra = {}
    if options.precision == "int8":
        extra["calibration_method"] = calibration_method if scales is None else "file"
    source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__
    entry = _cache_path(model, input_shapes, backend, tgt, options, extra) if cache and not tune else None
    if entry is not None and entry.exists():
        try:
            return load(entry, num_threads=num_threads)
        except Exception:  # a stale or corrupt cache entry is rebuilt, never trusted
            entry.unlink(missing_ok=True)
    graph = import_model(model, input_shapes, backend.inlined_ops())
    _check_exclusions(graph, options.exclude)
    if samples is not None:
        samples = check_samples(samples, graph, where)
    if options.precision == "int8":
        options = dataclasses.replace(options, calibration=Calibration(
            tuple(samples or ()), calibration_method, scales, where or f"calibration {calibration}"))
    compiled = backend.compile_model(graph, tgt, options, source)
    if samples is not None and options.precision != "fp32":
        _record_errors(compiled, graph, target, options, samples)
    if cache and tune:  # the tuning results (part of the key) changed while building
        entry = _cache_path(model, input_shapes, backend, tgt, options, extra)
    if entry is not None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        compiled.save(entry)
    return compiled


def _record_errors(compiled, graph, target: str, options: BuildOptions, samples: list) -> None:
    """The per-layer and output errors against fp32 over the calibration samples, into the
    manifest's precision report (saved with the artifact)."""
    from .passes.int8_ranges import Calibration, ranges_from_dict
    from .precision_report import precision_report

    entry = compiled.manifest.setdefault("precision", {})
    calibration = None
    if "int8" in entry:  # the ranges the build chose, not observed again
        calibration = Calibration(ranges=ranges_from_dict(entry["int8"], "manifest"))
    report = precision_report(graph, target, options.precision, options.exclude, samples, calibration)
    errors = {r["node"]: r for r in report["nodes"] if "cosine" in r}
    for row in entry.get("nodes", []):
        if row["node"] in errors:
            row.update(cosine=errors[row["node"]]["cosine"], sqnr_db=errors[row["node"]]["sqnr_db"])
    entry["outputs"] = report["outputs"]
    entry["calibration_samples"] = len(samples)


def _check_exclusions(graph, exclude) -> None:
    from .passes.lower_precision import unknown_exclusions

    unknown = unknown_exclusions(graph, exclude)
    if unknown:
        raise CompilerError(f"exclude: {', '.join(map(repr, unknown))} name(s) no node and no op type of the model")


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
    generator with its C thread pool, backends): a compiler edited in place (an editable
    install between releases) never reuses artifacts the previous code produced."""
    from . import backends, codegen, frontend, ir, passes

    h = hashlib.sha256()
    for package in (codegen, frontend, ir, passes, backends):
        for pattern in ("*.py", "*.c"):
            for path in sorted(Path(package.__file__).parent.rglob(pattern)):
                h.update(path.read_bytes())
    return h.hexdigest()


def _cache_path(model, input_shapes, backend, target, options: BuildOptions, extra: dict | None = None) -> Path | None:
    key = backend.cache_key(target, options)
    data = _model_bytes(model) if key is not None else None
    if data is None:
        return None
    root = Path(os.environ.get("COMPILER_CACHE_DIR") or Path.home() / ".cache" / "compiler")
    h = hashlib.sha256(data)
    h.update(json.dumps({"shapes": {k: list(v) for k, v in (input_shapes or {}).items()}, "target": key,
                         "version": __version__, "code": _compiler_code_hash(), **(extra or {})},
                        sort_keys=True).encode())
    return root / backend.kind / f"{h.hexdigest()}.cmod"


__all__ = ["compile", "load", "import_model"]
