"""What `compile inspect` reports about a build: the -O pipeline's passes, node counts
before and after them, every kernel call of the build (its kernel and the ops it computes)
and the arena. It asks the target's backend for its plan, the very plan `build` compiles,
so what it shows is what the artifact runs (a test holds the two against each other on
every zoo model). With a dump folder, the graph after each pass goes there as numbered text
files, with the calls and the memory plan as JSON."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .backends import BuildOptions, BuildPlan, parse_target
from .ir.graph import Graph


def _nodes_compiled(graph: Graph) -> int:
    """Nodes the code generator receives (a FusedKernel node stands for its body's)."""
    return sum(len(n.attrs["body"].nodes) if n.op == "FusedKernel" else 1 for n in graph.nodes)


def inspect_build(graph: Graph, target: str = "llvm", level: int | None = None, dump_dir: str | Path | None = None,
                  verify: bool = False) -> tuple[BuildPlan, dict]:
    """(the build plan, a JSON-ready summary of it) for `target` at -O`level`."""
    from .passes.core import PassContext
    from .passes.pipeline import pipeline

    tgt = parse_target(target)
    backend = tgt.backend
    ctx = PassContext(verify=verify, dump_dir=dump_dir)
    start = time.perf_counter()
    plan = backend.plan(graph, tgt, BuildOptions(opt_level=level), ctx)
    memory = plan.memory
    op_counts: dict[str, int] = {}
    for call in plan.calls:
        for op in call["ops"]:
            op_counts[op] = op_counts.get(op, 0) + 1
    summary = {
        "target": str(tgt),
        "level": plan.level,
        "passes": [p.name for p in pipeline(plan.level, backend.layout_passes, legalize=backend.legalize_passes)],
        "nodes_before": len(graph.nodes),
        "nodes_after": _nodes_compiled(plan.graph),
        "num_kernels": plan.num_kernels,
        "num_calls": len(plan.calls),
        "kernels": plan.calls,
        "arena_bytes": None if memory is None else memory.arena_bytes,
        "naive_bytes": None if memory is None else memory.naive_bytes,
        "arena_ratio": round(memory.arena_bytes / memory.naive_bytes, 4) if memory and memory.naive_bytes else None,
        **plan.details,
        "op_counts_after": dict(sorted(op_counts.items())),
        "seconds": round(time.perf_counter() - start, 3),
    }
    if dump_dir is not None:
        folder = Path(dump_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "kernels.json").write_text(json.dumps(plan.calls, indent=1))
        if memory is not None:
            (folder / "memory_plan.json").write_text(json.dumps(dict(memory.summary(), offsets=memory.offsets), indent=1))
    return plan, summary
