"""Compile and time candidate schedules of one problem, and check their results.

Each candidate is its own small module (`microkernels.build`), so a candidate that fails
to build costs only itself. Building is LLVM time, which releases the GIL: batches of
candidates compile in a thread pool, then are timed one at a time with the pool idle
(timing while LLVM runs on the same cores would measure the compiler, not the kernel).

Inputs are real-size random buffers made once per problem (`Workload`); every candidate
computes the same outputs, checked against the reference (the default schedule) before
its time may count.
"""
from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import ml_dtypes
import numpy as np

from ..codegen.llvm.microkernels import ConvProblem, GemmProblem, emit_conv, emit_gemm, pack_weights
from ..codegen.llvm.microkernels.build import compile_module, new_module
from ..codegen.llvm.microkernels.conv import pack_conv_weights
from ..codegen.llvm.microkernels.gemm import PARAMS, target_lanes

KERNEL = "candidate"
SLOWER_THAN_BEST = 1.5  # stop timing a candidate whose fastest sample is this much slower than the best score
MIN_SAMPLE_S = 5e-4  # one sample: enough calls that the timer's own cost is negligible
SCORE_QUANTILE = 25  # percent; see Timing.score_ms
ALIGN = 64  # bytes; passes.plan_memory.ALIGNMENT, every arena and weight offset


def aligned(array: np.ndarray, align: int = ALIGN) -> np.ndarray:
    """A copy of `array` starting on an `align`-byte boundary, as every buffer of a compiled
    model does (its arena and weights are 64-byte aligned). numpy only promises 16 bytes:
    two candidates' buffers at different offsets in a cache line would time differently
    for reasons that are not the schedule's."""
    raw = np.empty(array.nbytes + align, np.uint8)
    start = -raw.ctypes.data % align
    out = raw[start:start + array.nbytes].view(array.dtype).reshape(array.shape)
    out[...] = array
    return out


class Workload:
    """Random operands of a problem's real size, shared by every candidate.

    The raw weights are kept unpacked: each schedule packs them its own way (nr)."""

    def __init__(self, problem: GemmProblem | ConvProblem, seed: int = 0):
        self.problem = problem
        rng = np.random.default_rng(seed)
        normal = lambda *shape: rng.standard_normal(shape, dtype=np.float32)  # noqa: E731
        if isinstance(problem, ConvProblem):  # depthwise
            c = problem
            self.x = normal(c.batch, c.in_h, c.in_w, c.in_c)
            self.raw_w = normal(c.out_c, 1, c.kh, c.kw)
            self.out_shape, self.columns, self.k = (c.batch, c.out_h, c.out_w, c.out_c), c.out_c, c.kh * c.kw
        else:
            a = problem.a
            self.x = normal(a.batch * a.in_h * a.in_w * a.pixel_stride)
            self.raw_w = normal(problem.groups, a.k, problem.n)
            self.out_shape, self.columns, self.k = (problem.m, problem.out_stride), problem.n * problem.groups, a.k
        vectors = max(self.columns, self.out_shape[-1])
        self.vectors = {name: aligned(normal(vectors)) for name in ("bias", "scale", "shift")}
        self.residual = aligned(normal(*self.out_shape))
        # a narrow chain's activation arrives as uint8 codes, bfloat16 or float16, and its output leaves so
        if getattr(problem, "a_codes", False):
            self.x = rng.integers(0, 256, self.x.shape, dtype=np.uint8)
        elif getattr(problem, "a_bf16", False):
            self.x = self.x.astype(ml_dtypes.bfloat16)
        elif getattr(problem, "a_f16", False):
            self.x = self.x.astype(np.float16)
        self.x = aligned(self.x)
        if getattr(problem, "out_quant", None) is not None:
            self.y_dtype = np.dtype(np.uint8)
        elif getattr(problem, "out_bf16", False):
            self.y_dtype = np.dtype(ml_dtypes.bfloat16)
        elif getattr(problem, "out_f16", False):
            self.y_dtype = np.dtype(np.float16)
        else:
            self.y_dtype = np.dtype(np.float32)

    def packed(self, schedule, target) -> np.ndarray:
        if isinstance(self.problem, ConvProblem):
            return pack_conv_weights(self.raw_w, self.problem, schedule, target_lanes(target))
        return pack_weights(self.raw_w, schedule, self.problem)

    def arrays(self, schedule, target) -> dict:
        """Kernel arguments (PARAMS name -> array) with a fresh NaN-filled output, so a
        candidate that skips an element is caught."""
        fill = 0 if self.y_dtype == np.uint8 else np.nan  # uint8 codes have no NaN
        return dict(x=self.x, w=aligned(self.packed(schedule, target)),
                    y=aligned(np.full(self.out_shape, fill, self.y_dtype)), res=self.residual, **self.vectors)

    def written(self, y: np.ndarray) -> np.ndarray:
        """The part of the output the kernel writes (all of it unless ldc > columns)."""
        return y.reshape(-1, self.out_shape[-1])[:, :self.columns]

    def agrees(self, y: np.ndarray, reference: np.ndarray) -> bool:
        """Same result up to fp32 summation order (K terms of unit variance), which moves a
        narrow output by at most one step of its grid (one uint8 code, one bfloat16 or float16 ulp)."""
        got, want = self.written(y).astype(np.float64), self.written(reference).astype(np.float64)
        tol = 1e-4 * np.sqrt(self.k)
        if y.dtype == np.uint8:
            return bool(np.abs(got - want).max(initial=0) <= 1)
        rtol = 2 ** -7 if y.dtype == ml_dtypes.bfloat16 else 2 ** -10 if y.dtype == np.float16 else 1e-4
        return bool(np.isfinite(got).all() and np.allclose(got, want, rtol=rtol, atol=tol))


def build_candidate(problem, schedule, target):
    """A Library holding one kernel `KERNEL` for `problem` under `schedule`."""
    module = new_module(f"tune_{schedule.__class__.__name__}")
    if isinstance(problem, ConvProblem):
        emit_conv(module, KERNEL, problem, target, schedule)
    else:
        emit_gemm(module, KERNEL, problem, schedule)
    return compile_module(module, target)


def compile_all(problem, schedules: list, target, pool: ThreadPoolExecutor) -> list:
    """Libraries for `schedules` (in order), built in `pool`; an exception in place of a
    library that failed to build."""
    futures = [pool.submit(build_candidate, problem, s, target) for s in schedules]
    out = []
    for f in futures:
        try:
            out.append(f.result())
        except Exception as exc:  # noqa: BLE001 - reported per candidate by the caller
            out.append(exc)
    return out


def run_once(library, workload: Workload, schedule, target, threads: int) -> np.ndarray:
    """The candidate's output on the workload (for the correctness check)."""
    arrays = workload.arrays(schedule, target)
    library.call(KERNEL, arrays, threads)
    return arrays["y"]


@dataclass
class Timing:
    """Wall milliseconds per call. `score_ms`, the low quartile of the samples, is what
    candidates are ranked by: on a machine shared with other busy processes another
    process can only add time (a 2-thread call waits whenever the scheduler gives one of
    its cores to a neighbour), so the samples taken while the kernel had the cores are the
    faster ones, and the median drifts with the neighbours' load. The quartile rather than
    the minimum, so one lucky sample does not decide. (Process CPU time was tried as the
    score and was no steadier here: on this VM a neighbour slows the threads themselves.)"""
    score_ms: float
    median_ms: float
    best_ms: float
    samples: int
    cut_short: bool  # stopped early: clearly slower than the best so far


class CallTimer:
    """One compiled candidate ready to call (`call()` runs it once on bound arguments): its
    per-sample call count calibrated by a warm-up call, its samples (wall ms per call)."""

    def __init__(self, schedule, library, call: Callable[[], None]):
        self.schedule, self.library, self.call = schedule, library, call
        self.calls = max(1, int(MIN_SAMPLE_S / max(self.sample(1), 1e-7)))  # warm-up: page faults, thread team
        self.samples: list[float] = []
        self.cut_short = False

    def sample(self, calls: int) -> float:
        """Wall seconds per call over `calls` calls."""
        call = self.call
        start = time.perf_counter()
        for _ in range(calls):
            call()
        return (time.perf_counter() - start) / calls

    def take(self) -> None:
        self.samples.append(self.sample(self.calls) * 1e3)

    def score(self) -> float:
        return float(np.percentile(self.samples, SCORE_QUANTILE))

    def timing(self) -> Timing:
        return Timing(self.score(), statistics.median(self.samples), min(self.samples), len(self.samples),
                      self.cut_short)


class Timer(CallTimer):
    """A microkernel candidate on the problem's workload."""

    def __init__(self, library, workload: Workload, schedule, target, threads: int):
        self.arrays = workload.arrays(schedule, target)  # kept alive: the pointers below point into them
        fn = library.function(KERNEL)
        ptrs = [self.arrays[p].ctypes.data if self.arrays.get(p) is not None else None for p in PARAMS]
        super().__init__(schedule, library, lambda: fn(*ptrs, threads))


def time_interleaved(timers: list[Timer], best_ms: float | None, rounds: int = 15) -> None:
    """`rounds` samples of every timer, one sample of each in turn: a burst of load from
    another process on the shared machine then slows all candidates alike instead of
    whichever happened to be running. After four rounds a timer whose fastest sample is
    SLOWER_THAN_BEST x the best score so far (`best_ms`, or this batch's) stops: clearly
    not the winner."""
    active = list(timers)
    for r in range(rounds):
        for t in active:
            t.take()
        if r == 3:
            best = min([t.score() for t in active] + ([best_ms] if best_ms else []))
            for t in active:
                t.cut_short = min(t.samples) > SLOWER_THAN_BEST * best
            active = [t for t in active if not t.cut_short]
