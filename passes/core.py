"""Pass infrastructure: what a pass is, the context every pass receives, the fixed-point
wrapper, and the runner that verifies and dumps the graph after each pass.

A pass is a named function `(graph, ctx) -> graph`. Returning the very same Graph object
means "nothing changed"; that is how the fixed-point wrapper knows when to stop.
Passes never mutate their input graph (Values and Nodes are shared, never edited), so a
test can run the graph before and after and compare.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..ir.errors import CompilerError
from ..ir.graph import Graph
from ..ir.printer import print_graph
from ..ir.verify import verify_graph


class PassError(CompilerError):
    """A pass broke an invariant (the verifier failed after it, or a fixed point never came)."""


@dataclass
class PassContext:
    """Options and results shared by the passes of one pipeline run (no global state).

    `verify`: run the verifier after every pass (tests and debug mode; the environment
    variable COMPILER_VERIFY_PASSES=1 turns it on for every context).
    `dump_dir`: write the graph after each pass as numbered text files.
    `fold_limit_bytes`: constant folding leaves a node alone when its result is bigger, so
    huge weights are not materialized twice (once as input, once folded).
    `analyses`: what analysis passes computed (the memory plan, fusion statistics...).
    """

    verify: bool = field(default_factory=lambda: os.environ.get("COMPILER_VERIFY_PASSES") == "1")
    dump_dir: str | Path | None = None
    fold_limit_bytes: int = 16 << 20
    max_iterations: int = 50
    analyses: dict[str, Any] = field(default_factory=dict)
    log: list[tuple[str, int, int, float]] = field(default_factory=list)  # (pass, nodes before, after, seconds)
    _dump_index: int = 0

    def dump(self, graph: Graph, label: str) -> None:
        if self.dump_dir is None:
            return
        folder = Path(self.dump_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{self._dump_index:02d}_{label}.txt").write_text(print_graph(graph))
        self._dump_index += 1


@dataclass(frozen=True)
class Pass:
    """A named graph-to-graph function."""

    name: str
    run: Callable[[Graph, PassContext], Graph]

    def __call__(self, graph: Graph, ctx: PassContext) -> Graph:
        return self.run(graph, ctx)


def graph_pass(fn: Callable[[Graph, PassContext], Graph]) -> Pass:
    """Decorator: a function becomes a Pass named after it."""
    return Pass(fn.__name__, fn)


def apply_pass(p: Pass, graph: Graph, ctx: PassContext) -> Graph:
    """Run one pass; verify its result in debug mode, log it, dump it."""
    start = time.perf_counter()
    out = p(graph, ctx)
    ctx.log.append((p.name, len(graph.nodes), len(out.nodes), time.perf_counter() - start))
    if out is not graph:
        if ctx.verify:
            try:
                verify_graph(out)
            except CompilerError as e:
                raise PassError(f"pass '{p.name}' produced an invalid graph: {e}") from e
        ctx.dump(out, p.name)
    return out


def fixed_point(name: str, passes: Sequence[Pass], max_iterations: int | None = None) -> Pass:
    """A pass running `passes` in order until a whole round changes nothing.

    Raises PassError past the bound: a pair of rewrites undoing each other is a bug, and
    silently stopping would hide it.
    """

    def run(graph: Graph, ctx: PassContext) -> Graph:
        bound = max_iterations or ctx.max_iterations
        for _ in range(bound):
            before = graph
            for p in passes:
                graph = apply_pass(p, graph, ctx)
            if graph is before:
                return graph
        raise PassError(f"fixed point '{name}' did not converge in {bound} rounds of "
                        f"{', '.join(p.name for p in passes)}")

    return Pass(name, run)


def run_pipeline(graph: Graph, passes: Sequence[Pass], ctx: PassContext | None = None) -> Graph:
    """Run a pipeline (a plain list of passes) on `graph`; the context collects the results."""
    ctx = ctx or PassContext()
    ctx.dump(graph, "input")
    for p in passes:
        graph = apply_pass(p, graph, ctx)
    return graph
