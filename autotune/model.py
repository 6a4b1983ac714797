"""Tune every microkernel problem of a model within one total time budget, and report
default vs tuned time per problem (what `python -m compiler.autotune` prints).

The budget is shared out as the run goes: each problem gets the time left divided by the
problems left, so time a small problem does not use goes to the later ones.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from .database import TuningDatabase
from .device import device_of
from .problems import describe, flops, problem_key, problems_of_graph
from .tuner import stderr_reporter, tune_problem


@dataclass
class ProblemReport:
    name: str
    count: int  # nodes of the model with this problem
    gflop: float  # per call
    default_ms: float
    tuned_ms: float
    schedule: object
    source: str  # "tuned" now, or "cached" from an earlier run

    @property
    def speedup(self) -> float:
        return self.default_ms / self.tuned_ms if self.tuned_ms > 0 else 1.0


def tune_graph(graph, target, threads: int, budget_s: float, *, retune: bool = False,
               stream=None, ray: str | None = None) -> list[ProblemReport]:
    """Tune the problems of an optimized graph (the llvm backend's -O pipeline output)
    that the cache has no valid result for (all of them with `retune`). `ray`: a Ray
    cluster address ("local", "auto", HOST:PORT) to build candidates on Ray tasks and time
    them on the device's actor (`distributed`); None tunes in this process."""
    stream = stream or sys.stderr
    problems = problems_of_graph(graph, target)
    device = device_of(target, threads)
    cache = TuningDatabase(device)
    actor = None
    if ray is not None and problems:
        from .distributed import connect, device_tuner

        connect(ray, device)
        actor = device_tuner(device)
    deadline = time.perf_counter() + budget_s
    reports = []
    for i, (problem, count) in enumerate(problems):
        key, name = problem_key(problem), describe(problem)
        prefix = f"autotune [{i + 1}/{len(problems)}] {name}"
        entry = None if retune else cache.entries().get(key)
        schedule = None if entry is None else entry["schedule"]
        if schedule is not None:
            reports.append(ProblemReport(name, count, problem.flops / 1e9, entry["default_ms"], entry["ms"], schedule,
                                         "cached"))
            print(f"{prefix}: cached, {entry['ms']:.3f} ms", file=stream, flush=True)
            continue
        share = max(deadline - time.perf_counter(), 0.0) / (len(problems) - i)
        if actor is not None:
            from .distributed import tune_on

            result = tune_on(actor, problem, target, threads, share)
        else:
            result = tune_problem(problem, target, threads, share, report=stderr_reporter(prefix, stream))
        cache.put(key, result.schedule, result.ms, result.default_ms, result.candidates, result.timings)
        print(f"\r{prefix}: {result.ms:.3f} ms (default {result.default_ms:.3f} ms, {result.candidates} candidates)",
              file=stream, flush=True)
        reports.append(ProblemReport(name, count, flops(problem) / 1e9, result.default_ms, result.ms, result.schedule,
                                     "tuned"))
    return reports


def format_table(reports: list[ProblemReport]) -> str:
    """One row per problem and a total weighted by how many nodes use each problem."""
    lines = ["wall ms per call (low quartile of interleaved samples, measure.Timing); total = sum of n x ms",
             f"{'problem':40s} {'n':>3s} {'GFLOP':>7s} {'default ms':>10s} {'tuned ms':>9s} {'speedup':>7s}  schedule"]
    for r in reports:
        sched = getattr(r.schedule, "key", None) or f"cb{r.schedule.cb}_owb{r.schedule.owb}"
        lines.append(f"{r.name:40s} {r.count:3d} {r.gflop:7.3f} {r.default_ms:10.3f} {r.tuned_ms:9.3f} "
                     f"{r.speedup:6.2f}x  {sched}{' (cached)' if r.source == 'cached' else ''}")
    total_default = sum(r.count * r.default_ms for r in reports)
    total_tuned = sum(r.count * r.tuned_ms for r in reports)
    if reports:
        lines.append(f"{'total (x n)':40s} {sum(r.count for r in reports):3d} "
                     f"{sum(r.count * r.gflop for r in reports):7.3f} {total_default:10.3f} {total_tuned:9.3f} "
                     f"{total_default / max(total_tuned, 1e-9):6.2f}x")
    return "\n".join(lines)
