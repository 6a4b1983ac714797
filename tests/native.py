"""Test helpers: a graph compiled through the one build path (`Backend.compile_model`), and
a graph with chosen nodes fused into one kernel each (`passes.fuse.fuse_groups`)."""
from __future__ import annotations

from compiler.backends import BuildOptions, parse_target
from compiler.passes.fuse import fuse_groups


def compile_graph_for(graph, target: str = "llvm", level: int = 0, **options):
    """`graph` compiled for `target` at -O`level` (default 0: exactly the nodes given)."""
    tgt = parse_target(target)
    return tgt.backend.compile_model(graph, tgt, BuildOptions(opt_level=level, **options), "test")


def fused(graph, *groups):
    """`graph` with each group (a list of its nodes) one FusedKernel node; every node not in
    a group stays a kernel of its own."""
    chosen = {id(n) for g in groups for n in g}
    pending = list(groups)
    order = []
    for node in graph.nodes:  # each group where its first node stood (groups are contiguous in tests)
        if id(node) not in chosen:
            order.append([node])
        elif pending and node is pending[0][0]:
            order.append(list(pending.pop(0)))
    return fuse_groups(graph, order)


def load_build(graph, build, target: str = "llvm"):
    """The runnable model of a `codegen.llvm.build.NativeBuild` of `graph` (tests that build
    by hand: split modules, another CPU)."""
    backend = parse_target(target).backend
    return backend.load(backend.package(graph, build, target, "test"), where="test")
