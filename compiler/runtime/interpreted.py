"""`InterpretedModel`: the reference target's runnable model, an IR graph run node by node
by the numpy interpreter (`ir.interpreter`). Its artifact holds the graph's text form and
its constants as raw arrays (`encode`); loading parses them back (`decode`). No pickle."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..artifact import pack_arrays, unpack_arrays, write_artifact
from ..ir.errors import ArtifactError, GraphError, InputError
from ..ir.graph import Graph
from .calling import PositionalCall
from .signature import TensorSpec, check_index_guards


class InterpretedModel(PositionalCall):
    """A graph run by the interpreter. `run({name: array})` returns {name: array}."""

    def __init__(self, graph: Graph, manifest: dict, where: str = "", check_types: bool = False):
        from ..ir.interpreter import Interpreter

        self.graph = graph
        self.manifest = manifest
        self.where = where
        self.target = manifest.get("target", "reference")
        self.source = manifest.get("source", "")
        self.inputs = [TensorSpec.of(v) for v in graph.inputs]
        self.outputs = TensorSpec.outputs_of(graph)
        self.timings: dict = {}
        self._interpreter = Interpreter(check_types=check_types)

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if not isinstance(feeds, Mapping):
            raise InputError(f"run() takes a dict of input name -> array; the model takes {[s.name for s in self.inputs]}")
        check_index_guards(self.manifest.get("index_guards", ()), feeds)
        return self._interpreter.run(self.graph, feeds)

    def save(self, path: str | Path) -> None:
        manifest, sections = encode(self.graph, self.manifest)
        write_artifact(path, manifest, sections)

    def __repr__(self) -> str:
        sig = ", ".join(f"{s.name}: {s.dtype}{list(s.shape)}" for s in self.inputs)
        return f"<CompiledModel target={self.target} ({sig}) -> {[s.name for s in self.outputs]}>"


def _all_constants(graph: Graph) -> list:
    found = list(graph.constants)
    for node in graph.nodes:
        for sub in node.subgraphs():
            found.extend(_all_constants(sub))
    return found


def encode(graph: Graph, manifest: dict) -> tuple[dict, dict[str, bytes]]:
    """The artifact of a graph: its text (constants by name) and the constants as raw arrays
    (embedded in the text instead when two constants share a name)."""
    from ..ir.printer import print_graph

    constants = _all_constants(graph)
    names = [c.name for c in constants]
    unique = len(set(names)) == len(names)
    text = print_graph(graph, embed_constants=not unique)
    index, blob = pack_arrays({c.name: c.const for c in constants} if unique else {})
    manifest = {**manifest, "inputs": [TensorSpec.of(v).to_json() for v in graph.inputs],
                "outputs": [s.to_json() for s in TensorSpec.outputs_of(graph)], "weights": index}
    return manifest, {"graph.ir": text.encode(), "weights.bin": blob}


def decode(manifest: dict, sections: dict[str, bytes], where: str) -> Graph:
    """The graph an artifact written by `encode` holds."""
    from ..ir.parser import parse_graph

    try:
        blobs = unpack_arrays(manifest.get("weights", []), sections["weights.bin"])
        graph = parse_graph(sections["graph.ir"].decode(), blobs)
        # the IR text names outputs by their values; the manifest keeps the names callers see
        names = [TensorSpec.from_json(d).name for d in manifest["outputs"]]
    except (KeyError, ValueError, GraphError) as e:
        raise ArtifactError(f"{where}: corrupt artifact ({e})") from None
    if len(names) != len(graph.outputs):
        raise ArtifactError(f"{where}: corrupt artifact (the manifest names {len(names)} outputs, the graph has "
                            f"{len(graph.outputs)})")
    if names != [v.name for v in graph.outputs]:
        graph.output_names = names
    return graph
