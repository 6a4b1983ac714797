"""What `compile inspect` reports about optimization: node counts before and after
simplification, the kernels fusion formed (and the ops each fused), and the memory
plan's arena against the naive sum of all intermediates. With a dump folder, the fusion
groups and the memory plan are written there as JSON next to the per-pass IR."""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..ir.graph import Graph
from .core import PassContext
from .pipeline import PIPELINES, optimize
from .plan_memory import plan


def optimization_report(graph: Graph, level: int = 3, dump_dir: str | Path | None = None,
                        verify: bool = False) -> tuple[Graph, dict]:
    """(optimized graph, JSON-ready summary) for the -O`level` pipeline."""
    ctx = PassContext(verify=verify, dump_dir=dump_dir)
    start = time.perf_counter()
    result = optimize(graph, level, ctx)
    fused = "kernels" in ctx.analyses
    # Nodes after simplification: what fusion received (or the result when there is no fusion).
    nodes_after = next((before for name, before, _, _ in ctx.log if name == "fuse"), len(result.nodes))
    memory = ctx.analyses.get("memory_plan") or plan(result)
    kernels = ctx.analyses.get("kernels", [])
    summary = {
        "level": level,
        "passes": [p.name for p in PIPELINES[level]],
        "nodes_before": len(graph.nodes),
        "nodes_after": nodes_after,
        "num_kernels": len(kernels) if fused else len(result.nodes),
        "kernels": kernels,
        "arena_bytes": memory.arena_bytes,
        "naive_bytes": memory.naive_bytes,
        "arena_ratio": round(memory.arena_bytes / memory.naive_bytes, 4) if memory.naive_bytes else None,
        "in_place": memory.in_place,
        # Intermediates with symbolic sizes are not in the arena numbers (pass --input-shape).
        "dynamic_intermediates": len(memory.dynamic),
        "op_counts_after": _op_counts(result, kernels),
        "seconds": round(time.perf_counter() - start, 3),
    }
    if dump_dir is not None:
        _dump_analyses(Path(dump_dir), kernels, memory)
    return result, summary


def _dump_analyses(folder: Path, kernels: list[dict], memory) -> None:
    """Next to the per-pass IR: the fusion groups and the memory plan, as JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kernels.json").write_text(json.dumps(kernels, indent=1))
    plan_doc = dict(memory.summary(), offsets=memory.offsets, dynamic=memory.dynamic)
    (folder / "memory_plan.json").write_text(json.dumps(plan_doc, indent=1))


def _op_counts(result: Graph, kernels: list[dict]) -> dict[str, int]:
    if not kernels:
        return result.op_counts()
    counts: dict[str, int] = {}
    for k in kernels:
        for op in k["ops"]:
            counts[op] = counts.get(op, 0) + 1
    return dict(sorted(counts.items()))
