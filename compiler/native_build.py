"""The llvm target's whole build: imported graph -> optimized graph -> fusion groups -> native code.

    graph --LLVM_PIPELINE--> optimized graph    (simplify, fold BatchNorm, recognize patterns,
                                                  channels-last conv chains with fused epilogues)
          --fusion partition--> groups of nodes  (passes.fuse's post-dominator partition)
          --codegen.native.compile_graph--> NativeBuild (library, packed weights, arena)

Every entry to native code (the Python API, the command line, the torch JIT and the ONNX
conformance backend) goes through `build_native`, so what the tests check is what users
run. `opt_level=0` skips the graph passes and fusion (one kernel per node): a debugging aid
when a pass is suspected.
"""
from __future__ import annotations

import time

from .ir.graph import Graph

OPT_LEVELS = (0, 1, 2)  # 0: as imported, one kernel per node; 1: graph passes; 2: passes + fusion (default)


def optimize_for_llvm(graph: Graph, opt_level: int = 2) -> Graph:
    """The graph passes the llvm target runs (none at level 0)."""
    if opt_level <= 0:
        return graph
    from .passes.core import PassContext, run_pipeline
    from .passes.pipeline import LLVM_PIPELINE

    return run_pipeline(graph, LLVM_PIPELINE, PassContext())


def fusion_groups(graph: Graph) -> list[list]:
    """The fusion partitioner's groups as lists of nodes, in an order the entry can call them."""
    from .passes.fuse import partition_groups

    return [[graph.nodes[i] for i in members] for members in partition_groups(graph)]


def build_native(graph: Graph, options: dict | None = None, opt_level: int = 2):
    """(optimized graph, NativeBuild): what `compiler.compile` and friends package into an artifact."""
    from .codegen.native import compile_graph

    if opt_level not in OPT_LEVELS:
        raise ValueError(f"llvm optimization level must be one of {OPT_LEVELS}, got {opt_level}")
    start = time.perf_counter()
    optimized = optimize_for_llvm(graph, opt_level)
    passes_s = time.perf_counter() - start
    groups = fusion_groups(optimized) if opt_level >= 2 else None
    build = compile_graph(optimized, options, groups)
    build.timings = {"graph_passes": passes_s, **build.timings}
    return optimized, build
