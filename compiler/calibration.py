"""Calibration data: the sample inputs `compiler.compile(..., calibration=...)` takes, checked
against the model's inputs before anything uses them.

Accepted forms:
  - a path to an .npz file whose arrays are named like the model's inputs, each with a
    leading sample axis (`x` of shape [samples, *x's shape]);
  - a mapping of the same (input name -> array with a leading sample axis);
  - an iterable of feed dicts (input name -> one sample), e.g. a generator over a dataset;
  - for precision int8, a JSON scales file an earlier int8 build wrote (`save_scales`):
    the activation ranges themselves, reused without samples.

Every problem is refused with a message that names the input, the sample and what was
expected: an unreadable or foreign file, no samples, missing or unknown input names, sample
counts that differ between inputs, a shape or element type that does not match the input,
NaN or Inf values. Nothing is pickled: .npz files are read with allow_pickle=False.
"""
from __future__ import annotations

import hashlib
import os
from typing import Iterable, Mapping

import numpy as np

from .ir.errors import CompilerError
from .ir.graph import Graph


def _read_npz(path) -> dict[str, np.ndarray]:
    import zipfile

    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CompilerError(f"calibration {os.fspath(path)}: cannot read it as an .npz archive ({e})") from None
    if not hasattr(data, "files"):
        raise CompilerError(f"calibration {os.fspath(path)}: a single .npy array, expected an .npz "
                            "archive with one array per input")
    try:
        with data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CompilerError(f"calibration {os.fspath(path)}: cannot read it as an .npz archive ({e})") from None


def _split(arrays: Mapping[str, np.ndarray], where: str) -> list[dict[str, np.ndarray]]:
    """Per-input arrays with a leading sample axis -> one feed dict per sample."""
    counts = {}
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.ndim == 0:
            raise CompilerError(f"{where}: array '{name}' is a scalar; expected a leading sample axis")
        counts[name] = a.shape[0]
    if len(set(counts.values())) > 1:
        raise CompilerError(f"{where}: inputs have different sample counts {counts}; expected one count")
    n = next(iter(counts.values()), 0)
    return [{name: np.asarray(a)[i] for name, a in arrays.items()} for i in range(n)]


def _check_sample(graph: Graph, feed: Mapping, index: int, where: str) -> dict[str, np.ndarray]:
    if not isinstance(feed, Mapping):
        raise CompilerError(f"{where}: sample {index} is a {type(feed).__name__}; expected a dict of input name -> array")
    names = [v.name for v in graph.inputs]
    missing = [n for n in names if n not in feed]
    extra = sorted(set(feed) - set(names))
    if missing or extra:
        parts = ([f"missing input(s) {missing}"] if missing else []) + ([f"unknown name(s) {extra}"] if extra else [])
        raise CompilerError(f"{where}: sample {index}: {'; '.join(parts)}; the model's inputs are {names}")
    out = {}
    for v in graph.inputs:
        a = np.asarray(feed[v.name])
        want = v.type
        if a.dtype != want.dtype.numpy:
            raise CompilerError(f"{where}: sample {index}, input '{v.name}': element type {a.dtype}, "
                                f"expected {want.dtype.name}")
        shape = tuple(want.shape) if want.shape is not None else None
        if shape is not None and (len(shape) != a.ndim or any(isinstance(d, int) and d != s
                                                               for d, s in zip(shape, a.shape))):
            raise CompilerError(f"{where}: sample {index}, input '{v.name}': shape {list(a.shape)}, "
                                f"expected {list(shape)}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise CompilerError(f"{where}: sample {index}, input '{v.name}': holds NaN or Inf; calibration needs "
                                "finite values")
        out[v.name] = a
    return out


def read_samples(calibration) -> tuple[list, str]:
    """(the samples as a list, unchecked; how messages name them). Reads a file or drains
    an iterator once, so the samples can be hashed before the model is imported."""
    if isinstance(calibration, (str, os.PathLike)):
        where = f"calibration {os.fspath(calibration)}"
        feeds = _split(_read_npz(calibration), where)
    elif isinstance(calibration, Mapping):
        where = "calibration"
        feeds = _split(calibration, where)
    elif isinstance(calibration, Iterable):
        where = "calibration"
        feeds = list(calibration)
    else:
        raise CompilerError(f"calibration: a {type(calibration).__name__}; expected an .npz path, a dict of arrays "
                            "with a leading sample axis, or an iterable of feed dicts")
    if not feeds:
        raise CompilerError(f"{where}: no samples")
    return feeds, where


def check_samples(feeds: list, graph: Graph, where: str = "calibration") -> list[dict[str, np.ndarray]]:
    """Each sample checked against `graph`'s inputs (see the module doc)."""
    return [_check_sample(graph, f, i, where) for i, f in enumerate(feeds)]


def load_samples(calibration, graph: Graph) -> list[dict[str, np.ndarray]]:
    """The calibration samples as feed dicts, each checked against `graph`'s inputs."""
    feeds, where = read_samples(calibration)
    return check_samples(feeds, graph, where)


def digest(samples: list[dict[str, np.ndarray]]) -> str:
    """A content hash of the samples (part of the compile-cache key when they shape the artifact)."""
    h = hashlib.sha256()
    for feed in samples:
        for name in sorted(feed) if isinstance(feed, Mapping) else ():
            a = np.ascontiguousarray(np.asarray(feed[name]))
            h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
            h.update(a.tobytes())
    return h.hexdigest()[:16]


def is_scales_file(calibration) -> bool:
    """A path to a JSON scales file (`passes.int8_ranges`), rather than sample inputs."""
    return isinstance(calibration, (str, os.PathLike)) and os.fspath(calibration).lower().endswith(".json")


def scales_digest(ranges) -> str:
    """A content hash of an `ActivationRanges` (the compile-cache key of a build that reuses them)."""
    import json

    return hashlib.sha256(json.dumps(ranges.as_dict(), sort_keys=True).encode()).hexdigest()[:16]


def save_scales(compiled, path) -> None:
    """Write the activation ranges of an int8 build (its manifest's) as a JSON scales file,
    which a later `compiler.compile(..., precision="int8", calibration=path)` reuses."""
    import json

    entry = (compiled.manifest.get("precision") or {}).get("int8")
    if entry is None:
        raise CompilerError(f"save_scales: the model was compiled with precision "
                            f"'{(compiled.manifest.get('precision') or {}).get('requested', 'fp32')}'; only an "
                            "int8 build has activation scales")
    with open(path, "w") as f:
        json.dump(entry, f, indent=1)
