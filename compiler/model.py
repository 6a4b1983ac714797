"""`load(path)`: an artifact back into a runnable model, by the backend of the target it was
built for (`compiler.backends`); the backend checks this machine can run it.

Every runnable model has the same face: `inputs`/`outputs` (TensorSpecs), `run({name:
array}) -> {name: array}` (inputs checked by name, dtype and shape before anything runs),
positional calls (`model(x)`), `save(path)` and `target`.
"""
from __future__ import annotations

import os
from pathlib import Path

from .ir.errors import ArtifactError


def load(path: str | Path, num_threads: int | None = None):
    """Load an artifact written by `save`; `num_threads` applies to native code (0/None = all cores)."""
    from .artifact import read_artifact
    from .backends import BACKENDS, Artifact

    if not isinstance(path, (str, os.PathLike)):
        raise ArtifactError(f"load() takes the path of a compiled model (.cmod), got {type(path).__name__}")
    manifest, sections = read_artifact(path)
    target = str(manifest.get("target", ""))
    backend = BACKENDS.get(target.split()[0]) if target.split() else None
    if backend is None:
        raise ArtifactError(f"{path}: artifact is for target {target!r}, which this build cannot run; "
                            f"it runs {', '.join(BACKENDS)}")
    try:
        return backend.load(Artifact(manifest, sections), where=str(path), num_threads=num_threads)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        # the sections are hash-checked, the manifest is not: a field missing or of the wrong
        # kind there is a corrupt (or hand-edited) artifact, said so, not a traceback
        what = f"missing field {e}" if isinstance(e, KeyError) else str(e)
        raise ArtifactError(f"{path}: corrupt artifact manifest ({what}); recompile the model") from None
