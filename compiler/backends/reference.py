"""The `reference` target: the numpy interpreter runs the graph node by node.

It is the oracle every compiled target is checked against, so it runs the graph as
imported (-O0) unless asked for a level: then the passes' results can be checked on it too.
Its artifact holds the graph's text form and raw constants (`runtime.interpreted`).
"""
from __future__ import annotations

from .. import __version__
from ..ir.flops import node_flops
from ..ir.graph import Graph
from ..runtime.interpreted import InterpretedModel, decode, encode
from .base import Artifact, Backend, BuildOptions, BuildPlan


class ReferenceBackend(Backend):
    kind = "reference"
    description = "numpy reference interpreter"
    default_opt_level = 0

    def plan(self, graph: Graph, target, options: BuildOptions, ctx=None) -> BuildPlan:
        level = self.level(options)
        optimized = self.optimize(graph, level, ctx)
        calls = []
        for node in optimized.nodes:  # the interpreter runs each node (a FusedKernel's body at once)
            body = node.attrs["body"].nodes if node.op == "FusedKernel" else [node]
            calls.append({"kernel": node.name or node.op, "ops": [n.op for n in body],
                          "nodes": [n.name for n in body], "flops": node_flops(node) or 0})
        return BuildPlan(optimized, level, calls, len(calls))

    def _manifest(self, target, source: str, level: int, graph: Graph) -> dict:
        from ..passes.index_guards import index_guards

        return {"compiler_version": __version__, "target": str(target), "source": source, "opt_level": level,
                "index_guards": index_guards(graph)}

    def build(self, graph: Graph, target, options: BuildOptions, source: str) -> Artifact:
        level = self.level(options)
        optimized = self.optimize(graph, level)
        return Artifact(*encode(optimized, self._manifest(target, source, level, graph)))

    def load(self, artifact: Artifact, where: str, num_threads: int | None = None, lazy: bool = False):
        return InterpretedModel(decode(artifact.manifest, artifact.sections, where), artifact.manifest, where)

    def compile_model(self, graph: Graph, target, options: BuildOptions, source: str):
        """The graph itself runs: no round trip through the artifact's text form."""
        level = self.level(options)
        return InterpretedModel(self.optimize(graph, level), self._manifest(target, source, level, graph), source,
                                check_types=options.check_types)
