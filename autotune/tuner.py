"""The search for one problem: time the candidates of `space` on the tuning thread count,
within a time budget, and keep the fastest one that computes the right result.

    default -> stage 1 (register tiles) -> stage 2 (blocking around the stage-1 winner)
            -> confirmation (the fastest few and the default re-timed, interleaved)

The confirmation guards against lucky samples on a shared machine: the FINALISTS fastest
candidates and the default are timed again, interleaved, and the best of them replaces
the default only if it is at least MIN_GAIN faster on those fresh samples and again in a
second head-to-head with the default.
"""
from __future__ import annotations

import os
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from ..codegen.llvm.microkernels import ConvProblem
from ..ir.errors import CompilerError
from . import measure, space
from .problems import describe, problem_key, tuning_problem

MIN_GAIN = 0.03  # a tuned schedule must beat the default by 3% (re-timed twice) to replace it
BATCH_PER_CORE = 2  # candidates compiled per batch, per core
FINALISTS = 3  # the fastest candidates re-timed against the default at the end
CONFIRM_ROUNDS = 21  # samples per finalist in the confirmation


class CandidateMismatch(CompilerError):
    """A candidate schedule computed a different result than the default: a kernel bug."""


@dataclass
class TuneResult:
    key: str
    name: str
    schedule: object
    ms: float
    default_ms: float
    candidates: int  # timed (including the default)
    rejected: list[str] = field(default_factory=list)  # "schedule: why" for candidates that failed
    timings: list[tuple] = field(default_factory=list)  # (schedule, ms) of every candidate timed, the default first

    @property
    def speedup(self) -> float:
        return self.default_ms / self.ms if self.ms > 0 else 1.0


class _Search:
    """State of one problem's search: the workload, the reference output, the best so far."""

    def __init__(self, problem, target, threads: int, deadline: float, strict: bool,
                 report: Callable[[str], None], builder: Callable = measure.compile_all):
        self.problem, self.target, self.threads = problem, target, threads
        self.builder = builder
        self.deadline, self.strict, self.report = deadline, strict, report
        self.workload = measure.Workload(problem)
        self.reference = None
        self.timed: list[tuple[object, measure.Timing, object]] = []  # schedule, timing, library
        self.tried: list = []
        self.rejected: list[str] = []
        self.workers = os.cpu_count() or 1

    @property
    def best(self):
        return min(self.timed, key=lambda st: st[1].score_ms) if self.timed else None

    def out_of_time(self) -> bool:
        return time.perf_counter() > self.deadline

    def run(self, schedules: list, pool: ThreadPoolExecutor, always: bool = False) -> None:
        """Compile `schedules` in batches; check and time each batch (interleaved); stops at
        the deadline (`always`: the first schedule, the default, is measured regardless)."""
        batch_size = BATCH_PER_CORE * self.workers
        for lo in range(0, len(schedules), batch_size):
            batch = schedules[lo:lo + batch_size]
            if self.out_of_time():
                if not (always and lo == 0):
                    return
                batch = batch[:1]  # no time at all: the default alone
            timers = []
            for schedule, lib in zip(batch, self.builder(self.problem, batch, self.target, pool)):
                self.tried.append(schedule)
                if isinstance(lib, Exception):
                    self._reject(schedule, f"does not build: {lib}")
                elif self._correct(schedule, lib):
                    timers.append(measure.Timer(lib, self.workload, schedule, self.target, self.threads))
            best = self.best
            measure.time_interleaved(timers, best[1].score_ms if best else None)
            self.timed += [(t.schedule, t.timing(), t.library) for t in timers]
            best = self.best
            self.report(f"{len(self.tried)} tried, best {best[1].score_ms:.3f} ms "
                        f"(default {self.timed[0][1].score_ms:.3f} ms)")

    def _correct(self, schedule, lib) -> bool:
        y = measure.run_once(lib, self.workload, schedule, self.target, self.threads)
        if self.reference is None:  # the first candidate is the default: its output is the reference
            self.reference = y
            return True
        if not self.workload.agrees(y, self.reference):
            self._reject(schedule, "computes a different result than the default schedule", mismatch=True)
            return False
        return True

    def _reject(self, schedule, why: str, mismatch: bool = False) -> None:
        text = f"{schedule}: {why}"
        if mismatch and self.strict:
            raise CandidateMismatch(f"autotune {describe(self.problem)}: {text}")
        if mismatch:
            warnings.warn(f"autotune {describe(self.problem)}: skipped {text} (a kernel bug; please report)",
                          RuntimeWarning, stacklevel=2)
        self.rejected.append(text)


def _confirm(search: _Search, finalists: list[tuple]) -> dict:
    """Fresh scores (schedule id -> ms, measure.Timing.score_ms) of the finalists (the
    default among them), timed interleaved: compared on samples taken under the same load."""
    timers = [measure.Timer(lib, search.workload, schedule, search.target, search.threads)
              for schedule, _, lib in finalists]
    measure.time_interleaved(timers, None, rounds=CONFIRM_ROUNDS)
    return {id(t.schedule): t.timing().score_ms for t in timers}


def _final(search: _Search, default: tuple, ranked: list[tuple]) -> tuple:
    """(schedule, ms, default ms): the finalist that wins the first confirmation, if it beats
    the default by MIN_GAIN in that one and in a second one too (a neighbour's burst of load
    during one confirmation cannot crown a candidate alone); else the default."""
    fresh = _confirm(search, [default] + ranked)
    best = min(ranked, key=lambda st: fresh[id(st[0])])
    again = _confirm(search, [default, best])
    gains = [f[id(default[0])] / f[id(best[0])] for f in (fresh, again)]
    default_ms = (fresh[id(default[0])] + again[id(default[0])]) / 2
    if min(gains) >= 1 / (1 - MIN_GAIN):
        return best[0], (fresh[id(best[0])] + again[id(best[0])]) / 2, default_ms
    return default[0], default_ms, default_ms


def tune_problem(problem, target, threads: int, budget_s: float, *, strict: bool = False,
                 report: Callable[[str], None] = lambda line: None, builder: Callable = measure.compile_all) -> TuneResult:
    """Search `problem`'s candidates (space.py) for `budget_s` seconds (the default schedule
    is always measured, however small the budget). `strict`: a candidate that computes a
    wrong result raises CandidateMismatch (tests) instead of being skipped with a warning.
    `builder(problem, schedules, target, pool)` compiles a batch of candidates (the local
    thread pool, or Ray tasks: `distributed.RayBuilder`)."""
    problem = tuning_problem(problem)
    search = _Search(problem, target, threads, time.perf_counter() + budget_s, strict, report, builder)
    with ThreadPoolExecutor(max_workers=search.workers) as pool:
        first = (space.depthwise_candidates(problem, target) if isinstance(problem, ConvProblem)
                 else space.tile_stage(problem, target))
        search.run(first, pool, always=True)
        if not search.timed or search.timed[0][0] is not first[0]:
            raise CompilerError(f"autotune {describe(problem)}: the default schedule {first[0]} did not build: "
                                f"{'; '.join(search.rejected)}")
        if not isinstance(problem, ConvProblem):
            search.run(space.blocking_stage(problem, search.best[0], search.tried), pool)
    default = search.timed[0]
    ranked = sorted(search.timed[1:], key=lambda st: st[1].score_ms)[:FINALISTS]
    winner, ms, default_ms = default[0], default[1].score_ms, default[1].score_ms
    if ranked and ranked[0][1].score_ms < default_ms:
        winner, ms, default_ms = _final(search, default, ranked)
    return TuneResult(problem_key(problem), describe(problem), winner, ms, default_ms, len(search.timed),
                      search.rejected, [(schedule, timing.score_ms) for schedule, timing, _ in search.timed])


def stderr_reporter(prefix: str, stream=None) -> Callable[[str], None]:
    """Progress lines `prefix: text` on stderr, rewritten in place on a terminal."""
    stream = stream or sys.stderr
    tty = stream.isatty()

    def report(text: str) -> None:
        if tty:
            stream.write(f"\r\033[K{prefix}: {text}")
            stream.flush()

    return report
