"""What the code generator calls: `schedule_for(problem, target)`, and the `tuning(...)`
context that decides whether a cache miss is measured.

    schedule_for(problem, target)      cached tuned schedule for this device, else the
                                       heuristic default; never times anything ...
    with tuning(threads=2, budget_s=20):
        build_native(graph)            ... except inside `tuning()`: a miss is tuned (a
                                       progress line on stderr per problem) and cached

The context is a ContextVar, set by the caller that asked for tuning (compile(tune=True),
`compile --tune`, `python -m compiler.autotune`) and visible to the lowering rules it
calls, without threading a flag through every layer. `tuning(enabled=False, threads=N)`
only selects which thread count's results are looked up (default: all cores, what a
model runs with unless told otherwise).
"""
from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from ..codegen.microkernels import ConvProblem, default_schedule
from ..codegen.microkernels.conv import default_depthwise_schedule
from ..codegen.microkernels.gemm import target_lanes
from . import space
from .cache import TuningCache
from .device import default_threads, device_of
from .problems import describe, problem_key, tuning_problem
from .tuner import stderr_reporter, tune_problem

DEFAULT_BUDGET_S = 10.0  # per problem


@dataclass
class TuningSession:
    enabled: bool
    threads: int
    budget_s: float  # per problem tuned
    expected: int | None  # problems the caller expects to be tuned (the n of "i/n"), if known
    stream: object
    tuned: int = 0


_SESSION: ContextVar[TuningSession | None] = ContextVar("compiler_autotune_session", default=None)


@contextmanager
def tuning(enabled: bool = True, threads: int | None = None, budget_s: float = DEFAULT_BUDGET_S,
           expected: int | None = None, stream=None):
    """Within the block, `schedule_for` uses results for `threads` (None: all cores) and,
    when `enabled`, tunes and caches every problem it has no result for, `budget_s`
    seconds each, with a progress line per problem on `stream` (stderr)."""
    session = TuningSession(enabled, threads or default_threads(), budget_s, expected, stream or sys.stderr)
    token = _SESSION.set(session)
    try:
        yield session
    finally:
        _SESSION.reset(token)


def default_for(problem, target):
    """The heuristic default schedule (raises CompilerError when the target lacks AVX2+FMA)."""
    p = tuning_problem(problem)
    if isinstance(p, ConvProblem):
        return default_depthwise_schedule(target_lanes(target), p)
    return default_schedule(target, p)


def schedule_for(problem, target):
    """The schedule the code generator should use for `problem` (a GemmProblem or a
    ConvProblem) on `target`."""
    default = default_for(problem, target)  # first: its CompilerError tells the caller "no microkernels here"
    session = _SESSION.get()
    threads = session.threads if session else default_threads()
    cache = TuningCache(device_of(target, threads))
    p, key = tuning_problem(problem), problem_key(problem)
    cached = cache.schedule(key)
    if cached is not None and space.same_kind(cached, p, target):
        return cached
    if session is None or not session.enabled:
        return default
    session.tuned += 1
    of = f"/{session.expected}" if session.expected else ""
    prefix = f"autotune [{session.tuned}{of}] {describe(p)}"
    result = tune_problem(p, target, threads, session.budget_s, report=stderr_reporter(prefix, session.stream))
    try:
        cache.put(key, result.schedule, result.ms, result.default_ms, result.candidates)
    except OSError as exc:  # a read-only cache costs the next compile a re-tune, not this one its result
        warnings.warn(f"autotune: could not write {cache.path}: {exc}", RuntimeWarning, stacklevel=2)
    print(f"\r{prefix}: {result.ms:.3f} ms (default {result.default_ms:.3f} ms, {result.candidates} candidates)",
          file=session.stream, flush=True)
    return result.schedule


def fingerprint(target, threads: int | None = None) -> str:
    """A hash of the tuning results the code generator would use for `target` ("" when
    none): part of any compile-cache key, as tuned schedules change the compiled code."""
    return TuningCache(device_of(target, threads)).fingerprint()
