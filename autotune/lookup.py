"""What a build asks the tuner: `TunedSchedules`, the `codegen.schedule.Schedules` source
that gives each extern kernel (`for_extern`) and each loop-IR kernel (`for_loop_kernel`)
the schedule this device has tuned for it.

    TunedSchedules(threads=2).for_extern(problem, target)
        the cached tuned schedule for this device and thread count, else the heuristic
        default; never times anything ...
    TunedSchedules(threads=2, tune=True, budget_s=20)
        ... unless asked to: then a miss is tuned (a progress line on stderr per problem)
        and cached

The caller that wants tuned code (the llvm backend's build, `compile tune`) makes one and
hands it to the code generator, which never reaches for the tuner itself. `threads` picks
whose results apply (default: all cores, what a model runs with unless told otherwise).
"""
from __future__ import annotations

import sqlite3
import sys
import warnings

from ..codegen.llvm.microkernels.conv import default_schedule_for
from ..codegen.schedule import Schedules
from . import space
from .cost_model import CostModel
from .database import TuningDatabase
from .device import default_threads, device_of
from .problems import describe, problem_key, tuning_problem
from .tuner import stderr_reporter, tune_problem

DEFAULT_BUDGET_S = 10.0  # per problem


class TunedSchedules(Schedules):
    """Extern kernels' schedules from the per-device tuning cache; with `tune`, a problem
    the cache lacks is tuned now (`budget_s` seconds) and cached. `expected` is how many
    problems the caller expects to be tuned (the n of the "i/n" progress), if known."""

    def __init__(self, threads: int | None = None, tune: bool = False, budget_s: float = DEFAULT_BUDGET_S,
                 expected: int | None = None, stream=None):
        self.threads = threads or default_threads()
        self.tune = tune
        self.budget_s = budget_s
        self.expected = expected
        self.stream = stream or sys.stderr
        self.tuned = 0  # problems tuned by this source so far
        self._loop_entries: dict | None = None
        self.cost_model = CostModel()  # learns from every loop kernel this source tunes

    def for_extern(self, problem, target):
        """The schedule for `problem` (a GemmProblem or ConvProblem) on `target`."""
        default = default_schedule_for(problem, target)  # first: its CompilerError says "no microkernels here"
        cache = TuningDatabase(device_of(target, self.threads))
        p, key = tuning_problem(problem), problem_key(problem)
        cached = cache.schedule(key)
        if cached is not None and space.same_kind(cached, p, target):
            return cached
        if not self.tune:
            return default
        self.tuned += 1
        of = f"/{self.expected}" if self.expected else ""
        prefix = f"autotune [{self.tuned}{of}] {describe(p)}"
        result = tune_problem(p, target, self.threads, self.budget_s, report=stderr_reporter(prefix, self.stream))
        try:
            cache.put(key, result.schedule, result.ms, result.default_ms, result.candidates, result.timings)
        except (OSError, sqlite3.Error) as exc:  # a read-only cache costs the next compile a re-tune, not this one its result
            warnings.warn(f"autotune: could not write {cache.path}: {exc}", RuntimeWarning, stacklevel=2)
        print(f"\r{prefix}: {result.ms:.3f} ms (default {result.default_ms:.3f} ms, {result.candidates} candidates)",
              file=self.stream, flush=True)
        return result.schedule


    def for_loop_kernel(self, plan, rebuild, target, consts: dict):
        """A loop-IR kernel's plan under its tuned schedule (the default plan when the
        database has none for this device, or the kernel cannot be tuned); with `tune`, a
        miss is tuned now (on the same per-problem budget) and recorded."""
        from .loop_kernels import LoopTask, tune_loop_kernel

        cache = TuningDatabase(device_of(target, self.threads))
        if self._loop_entries is None:  # one read for the whole build, not one per kernel
            self._loop_entries = {k: e for k, e in cache.entries().items() if k.startswith("loop:")}
        if not self._loop_entries and not self.tune:  # nothing recorded: no kernel's key is worth its text
            return plan
        task = LoopTask(plan, rebuild, consts)
        if task.why_not_tunable() is not None:
            return plan
        entry = self._loop_entries.get(task.key)
        if entry is not None:
            tuned = task.schedule_plan(entry["schedule"])
            if tuned is not None:
                return tuned
        if not self.tune:
            return plan
        self.tuned += 1
        prefix = f"autotune [{self.tuned}] {task.name}"
        result = tune_loop_kernel(task, target, self.threads, self.budget_s, model=self.cost_model,
                                  report=stderr_reporter(prefix, self.stream))
        if result is None:
            return plan
        try:
            cache.put(task.key, result.schedule, result.ms, result.default_ms, result.candidates, result.timings)
        except (OSError, sqlite3.Error) as exc:
            warnings.warn(f"autotune: could not write {cache.path}: {exc}", RuntimeWarning, stacklevel=2)
        self._loop_entries[task.key] = {"schedule": result.schedule}
        print(f"\r{prefix}: {result.ms:.4f} ms (default {result.default_ms:.4f} ms, {result.candidates} candidates)",
              file=self.stream, flush=True)
        return task.schedule_plan(result.schedule) or plan


def fingerprint(target, threads: int | None = None) -> str:
    """A hash of the tuning results the code generator would use for `target` ("" when
    none): part of any compile-cache key, as tuned schedules change the compiled code."""
    return TuningDatabase(device_of(target, threads)).fingerprint()
