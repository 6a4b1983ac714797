"""`CompiledModel`: what `compile` and `load` return. Validates inputs, runs, saves.

The model's signature (names, dtypes, shapes with symbolic dims) is checked before
anything runs, so a wrong input gets a message naming it instead of a crash inside.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from . import __version__
from .artifact import pack_arrays, read_artifact, unpack_arrays, write_artifact
from .ir.errors import ArtifactError, InputError
from .ir.graph import Graph
from .ir.types import TensorType
from .runtime.calling import PositionalCall


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a compiled model."""

    name: str
    dtype: str  # DType name, e.g. "float32"
    shape: tuple  # ints and symbol names

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, d: dict) -> "TensorSpec":
        return cls(d["name"], d["dtype"], tuple(d["shape"]))

    @classmethod
    def of(cls, value) -> "TensorSpec":
        t = value.type
        if not isinstance(t, TensorType):
            return cls(value.name, str(t), ())
        return cls(value.name, t.dtype.name, tuple(t.shape) if t.shape is not None else ("*",))


class CompiledModel(PositionalCall):
    """A model compiled for one target. `run({name: array})` returns {name: array}."""

    def __init__(self, graph: Graph, target: str, source: str = ""):
        self.graph = graph
        self.target = target
        self.source = source
        self.inputs = [TensorSpec.of(v) for v in graph.inputs]
        self.outputs = [TensorSpec.of(v) for v in graph.outputs]
        from .ir.interpreter import Interpreter

        self._interpreter = Interpreter()

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if not isinstance(feeds, Mapping):
            raise InputError(f"run() takes a dict of input name -> array; the model takes {[s.name for s in self.inputs]}")
        return self._interpreter.run(self.graph, feeds)

    def save(self, path: str | Path) -> None:
        from .ir.printer import print_graph

        constants = _all_constants(self.graph)
        names = [c.name for c in constants]
        unique = len(set(names)) == len(names)
        text = print_graph(self.graph, embed_constants=not unique)
        index, blob = pack_arrays({c.name: c.const for c in constants} if unique else {})
        manifest = {
            "compiler_version": __version__,
            "target": self.target,
            "source": self.source,
            "inputs": [s.to_json() for s in self.inputs],
            "outputs": [s.to_json() for s in self.outputs],
            "weights": index,
        }
        write_artifact(path, manifest, {"graph.ir": text.encode(), "weights.bin": blob})

    def __repr__(self) -> str:
        sig = ", ".join(f"{s.name}: {s.dtype}{list(s.shape)}" for s in self.inputs)
        return f"<CompiledModel target={self.target} ({sig}) -> {[s.name for s in self.outputs]}>"


def _all_constants(graph: Graph) -> list:
    found = list(graph.constants)
    for node in graph.nodes:
        for sub in node.subgraphs():
            found.extend(_all_constants(sub))
    return found


def native_artifact(graph: Graph, build, target: str, source: str) -> tuple[dict, dict[str, bytes]]:
    """The manifest and sections of an llvm artifact (see compiler/artifact.py for the container)."""
    from .runtime.native import NATIVE_ABI

    manifest = {
        "compiler_version": __version__,
        "target": target,
        "source": source,
        "inputs": [TensorSpec.of(v).to_json() for v in graph.inputs],
        "outputs": [TensorSpec.of(v).to_json() for v in graph.outputs],
        "native_abi": NATIVE_ABI,
        "cpu": build.target.cpu,
        "cpu_features": list(build.target.required),
        "arena_size": build.arena_size,
        "kernels": build.num_kernels,
        "kernel_calls": build.num_calls,
    }
    sections = {"model.so": build.library, "weights.bin": build.weights, "kernels.txt": build.kernel_listing.encode()}
    return manifest, sections


def load(path: str | Path, num_threads: int | None = None):
    """Load an artifact written by `save` (reference or llvm); `num_threads` applies to native code (0/None = all cores)."""
    manifest, sections = read_artifact(path)
    target = manifest.get("target", "")
    if target.split()[0:1] == ["llvm"]:
        from .runtime.native import NativeModel

        return NativeModel(manifest, sections, where=str(path), num_threads=num_threads)
    if target.split()[0:1] != ["reference"]:
        raise ArtifactError(f"{path}: artifact is for target {target!r}, which this build cannot run")
    from .ir.errors import GraphError
    from .ir.parser import parse_graph

    try:
        blobs = unpack_arrays(manifest.get("weights", []), sections["weights.bin"])
        graph = parse_graph(sections["graph.ir"].decode(), blobs)
    except (KeyError, ValueError, GraphError) as e:
        raise ArtifactError(f"{path}: corrupt artifact ({e})") from None
    return CompiledModel(graph, target, manifest.get("source", ""))
