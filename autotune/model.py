"""Tune every kernel of a model (microkernel problems, then loop-IR kernels) within one
total time budget, and report default vs tuned time per kernel (what `compile tune` prints).

The budget is shared out as the run goes: each problem gets the time left divided by the
problems left, so time a small problem does not use goes to the later ones.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from tqdm import tqdm

from .database import TuningDatabase
from .device import device_of
from .problems import describe, problem_key, problems_of_graph
from .tuner import tune_problem


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


def loop_tasks_of_graph(graph, target) -> list[tuple[object, int]]:
    """Every distinct tunable loop-IR kernel of an optimized graph (a LoopTask) with how many
    kernel calls run it, in build order: the kernels the code generator builds (it is asked
    through `for_loop_kernel`, so this never disagrees with a build)."""
    from ..codegen.model_builder import build_program
    from ..codegen.schedule import Schedules
    from .loop_kernels import LoopTask

    found: dict[str, list] = {}

    class Collect(Schedules):
        def for_loop_kernel(self, plan, rebuild, target, consts):
            task = LoopTask(plan, rebuild, consts)
            if task.why_not_tunable() is None:
                found.setdefault(task.key, [task, 0])[1] += 1
            return plan

    build_program(graph, target, Collect())
    return [(task, count) for task, count in found.values()]


def tune_graph(graph, target, threads: int, budget_s: float, *, retune: bool = False,
               stream=None, ray: str | None = None, loop_kernels: bool = True) -> list[ProblemReport]:
    """Tune the kernels of an optimized graph (the llvm backend's -O pipeline output) that
    the database has no valid result for (all of them with `retune`): the microkernel
    problems, then (`loop_kernels`) every loop-IR kernel. `ray`: a Ray cluster address
    ("local", "auto", HOST:PORT) to build candidates on Ray tasks and time microkernels on
    the device's actor (`distributed`); loop-IR kernels are timed in this process, on this
    machine's device; None tunes in this process alone."""
    from .cost_model import CostModel
    from .loop_kernels import tune_loop_kernel

    stream = stream or sys.stderr
    problems = problems_of_graph(graph, target)
    tasks = loop_tasks_of_graph(graph, target) if loop_kernels else []
    device = device_of(target, threads)
    cache = TuningDatabase(device)
    actor, loop_builder = None, None
    if ray is not None and (problems or tasks):
        from .distributed import connect, device_tuner, loop_ray_builder

        connect(ray, device)
        actor = device_tuner(device) if problems else None
        loop_builder = loop_ray_builder()
    deadline = time.perf_counter() + budget_s
    entries = {} if retune else cache.entries()
    model = CostModel()
    total = len(problems) + len(tasks)
    reports = []
    work = [(p, c, problem_key(p), describe(p), p.flops / 1e9) for p, c in problems] + \
           [(t, c, t.key, t.name, 0.0) for t, c in tasks]
    # a progress bar on a terminal (tqdm: kernels done, the current one's best so far); a log
    # gets one line per kernel
    bar = tqdm(total=total, desc="autotune", unit="kernel", file=stream, disable=None, leave=False,
               dynamic_ncols=True)

    def say(line: str) -> None:
        if bar.disable:
            print(line, file=stream, flush=True)
        else:
            bar.write(line, file=stream)

    for i, (item, count, key, name, gflop) in enumerate(work):
        prefix = f"autotune [{i + 1}/{total}] {name}"
        entry = entries.get(key)
        if entry is not None:
            reports.append(ProblemReport(name, count, gflop, entry["default_ms"], entry["ms"], entry["schedule"],
                                         "cached"))
            say(f"{prefix}: cached, {entry['ms']:.4f} ms")
            bar.update()
            continue
        share = max(deadline - time.perf_counter(), 0.0) / (total - i)

        def report(text: str, name=name) -> None:
            if not bar.disable:
                bar.set_postfix_str(f"{name}: {text}")

        if i >= len(problems):
            kwargs = {"builder": loop_builder} if loop_builder is not None else {}
            result = tune_loop_kernel(item, target, threads, share, model=model, report=report, **kwargs)
        elif actor is not None:
            from .distributed import tune_on

            result = tune_on(actor, item, target, threads, share)
        else:
            result = tune_problem(item, target, threads, share, report=report)
        bar.update()
        if result is None:  # the space gives this loop kernel no other code
            continue
        cache.put(key, result.schedule, result.ms, result.default_ms, result.candidates, result.timings)
        say(f"{prefix}: {result.ms:.4f} ms (default {result.default_ms:.4f} ms, {result.candidates} candidates)")
        reports.append(ProblemReport(name, count, gflop, result.default_ms, result.ms, result.schedule, "tuned"))
    bar.close()
    return reports


def _schedule_text(schedule) -> str:
    if hasattr(schedule, "knobs"):  # a loop-IR schedule
        k = schedule.knobs
        return " ".join(f"{n}={v}" for n, v in sorted(k.items()))
    if hasattr(schedule, "kernel_class"):  # HeuristicDefault
        return "default"
    return getattr(schedule, "key", None) or f"cb{schedule.cb}_owb{schedule.owb}"


def format_table(reports: list[ProblemReport]) -> str:
    """One row per problem and a total weighted by how many nodes use each problem."""
    lines = ["wall ms per call (low quartile of interleaved samples, measure.Timing); total = sum of n x ms",
             f"{'problem':40s} {'n':>3s} {'GFLOP':>7s} {'default ms':>10s} {'tuned ms':>9s} {'speedup':>7s}  schedule"]
    for r in reports:
        sched = _schedule_text(r.schedule)
        lines.append(f"{r.name:40s} {r.count:3d} {r.gflop:7.3f} {r.default_ms:10.4f} {r.tuned_ms:9.4f} "
                     f"{r.speedup:6.2f}x  {sched}{' (cached)' if r.source == 'cached' else ''}")
    total_default = sum(r.count * r.default_ms for r in reports)
    total_tuned = sum(r.count * r.tuned_ms for r in reports)
    if reports:
        lines.append(f"{'total (x n)':40s} {sum(r.count for r in reports):3d} "
                     f"{sum(r.count * r.gflop for r in reports):7.3f} {total_default:10.4f} {total_tuned:9.4f} "
                     f"{total_default / max(total_tuned, 1e-9):6.2f}x")
    return "\n".join(lines)
