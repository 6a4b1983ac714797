"""Tuning loop-IR kernels: every kernel the lowering rules build (elementwise chains,
reductions, normalizations, softmax, pooling, attention pieces, copies...) searched over
its class's declared schedule space (`codegen.schedule.SPACES`) on the llvm target.

    LoopTask           one kernel: its default plan, how to rebuild it under a schedule, its
                       workload key (a hash of the default kernel's canonical text)
    candidates         the distinct kernels the space gives, the default first: points that
                       generate the same code are one candidate
    tune_loop_kernel   build candidates (several per module, modules in a thread pool or as
                       Ray tasks), check each against the default's output, time them
                       interleaved, then confirm the winner against the default

The order candidates are tried in comes from the cost model (`cost_model.CostModel`, when
it has learned enough from this run's timings and lightgbm is installed), else a seeded
random order; `max_trials` and the time budget bound the search.

The workload: every argument a real-size buffer; floats standard normal, compile-time
values (weights, folded tables) their real contents, outputs NaN-filled so a candidate that
skips an element is caught. A kernel that reads an integer argument unknown at compile time
(indices from the graph's inputs) is not tuned: random indices could read out of bounds.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import ml_dtypes
import numpy as np

from ..codegen import loop_ir as L
from ..codegen.schedule import SPACES, HeuristicDefault, Schedule, space_points
from ..ir.errors import CompilerError
from . import measure
from .tuner import CONFIRM_ROUNDS, FINALISTS, MIN_GAIN, CandidateMismatch, TuneResult

MAX_TRIALS = 24  # candidates timed per kernel, the default included
PER_MODULE = 4  # candidates compiled into one module (one LLVM run, one link)
EXPLORE = 6  # candidates tried in random order before the cost model ranks the rest
SEED = 0


def _numpy_dtype(dt) -> np.dtype:
    if dt.name == "bfloat16":
        return np.dtype(ml_dtypes.bfloat16)
    if dt.kind == "bool":
        return np.dtype(np.uint8)  # a byte per element, as the kernels store it
    return np.dtype(dt.name)


def _written(kernel: L.Kernel) -> set:
    return {n.buffer for n in L.walk(kernel.body) if isinstance(n, L.Store)}


def _signature(plan) -> list:
    return [(b.dtype.name, b.size, arg[0]) for b, arg in zip(plan.kernel.params, plan.args)]


class LoopTask:
    """One loop-IR kernel to tune. `rebuild(schedule)` gives its KernelPlan under a
    `Schedule` of its class; `consts` the compile-time values among its arguments."""

    def __init__(self, plan, rebuild: Callable, consts: dict):
        self.plan, self.rebuild, self.consts = plan, rebuild, consts
        self.kernel_class = plan.kernel.kernel_class
        text = plan.key()
        self.key = f"loop:{self.kernel_class}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"

    @property
    def name(self) -> str:
        op = self.plan.kernel.name.split("_", 2)[-1]
        biggest = max((b.size for b in self.plan.kernel.params), default=0)
        return f"{self.kernel_class} {op} {biggest} elements"

    def why_not_tunable(self) -> str | None:
        """Why this kernel is left at its default, or None."""
        if not isinstance(self.plan.kernel, L.Kernel) or self.kernel_class not in SPACES:
            return "no schedule space"
        written = _written(self.plan.kernel)
        for b, (kind, value) in zip(self.plan.kernel.params, self.plan.args):
            if kind == "value" and b not in written and value not in self.consts and not b.dtype.is_float \
                    and b.dtype.kind != "bool":
                return f"reads {b.dtype} values known only at run time"
        return None

    def schedule_plan(self, schedule):
        """The plan under `schedule` (a Schedule or HeuristicDefault), or None when it does
        not fit this kernel (another class, or another argument list)."""
        if isinstance(schedule, HeuristicDefault):
            return self.plan if schedule.kernel_class == self.kernel_class else None
        if not isinstance(schedule, Schedule) or schedule.kernel_class != self.kernel_class:
            return None
        plan = self.rebuild(schedule)
        return plan if _signature(plan) == _signature(self.plan) else None


def candidates(task: LoopTask) -> list[tuple[object, object]]:
    """(schedule, plan) of every distinct kernel of the space, the default first."""
    seen = {task.plan.key()}
    found = [(HeuristicDefault(task.kernel_class), task.plan)]
    for point in space_points(task.kernel_class):
        plan = task.rebuild(point)
        key = plan.key()
        if key not in seen and _signature(plan) == _signature(task.plan):
            seen.add(key)
            found.append((point, plan))
    return found


class Workload:
    """The kernel's arguments as aligned arrays; outputs NaN-filled for each check."""

    def __init__(self, task: LoopTask, seed: int = SEED):
        rng = np.random.default_rng(seed)
        kernel = task.plan.kernel
        self.written = _written(kernel)
        self.params = kernel.params
        # what a candidate must reproduce: the values it writes (not its scratch buffers)
        self.results = [b for b, (kind, _) in zip(kernel.params, task.plan.args) if kind == "value" and b in self.written]
        self.inputs: dict = {}
        for b, (kind, value) in zip(kernel.params, task.plan.args):
            dt = _numpy_dtype(b.dtype)
            if kind == "packed":
                data = np.ascontiguousarray(value).reshape(-1)
                data = data.view(dt) if data.dtype.itemsize == dt.itemsize else data.astype(dt)
            elif kind == "value" and value in task.consts:
                data = np.asarray(task.consts[value]).reshape(-1).astype(dt)
            elif b.dtype.is_float:
                data = rng.standard_normal(b.size).astype(dt)
            elif b.dtype.kind == "bool":
                data = rng.integers(0, 2, b.size).astype(dt)
            else:
                data = np.zeros(b.size, dt)
            if data.size < b.size:  # a temp's bytes, or a packed table narrower than its buffer
                data = np.resize(data, b.size)
            self.inputs[b] = measure.aligned(data[:b.size])

    def arrays(self) -> list[np.ndarray]:
        """Fresh arguments: inputs shared, written buffers NaN (floats) or 0xAB bytes."""
        out = []
        for b in self.params:
            a = self.inputs[b]
            if b in self.written:
                a = measure.aligned(a)
                if b.dtype.is_float:
                    a[...] = np.nan
                else:
                    a.view(np.uint8)[...] = 0xAB
            out.append(a)
        return out

    def outputs(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return [a for b, a in zip(self.params, arrays) if b in self.results]


def agrees(got: list[np.ndarray], want: list[np.ndarray]) -> bool:
    """Same outputs up to float summation order (a reduction's lanes and unrolled partial
    sums combine in another order); integers and booleans exactly."""
    for g, w in zip(got, want):
        if g.dtype.kind in "iub" and g.dtype != ml_dtypes.bfloat16:
            if not np.array_equal(g, w):
                return False
            continue
        g64, w64 = g.astype(np.float64), w.astype(np.float64)
        scale = float(np.nanmax(np.abs(w64), initial=0.0))
        rtol = 2 ** -6 if g.dtype in (ml_dtypes.bfloat16, np.float16) else 1e-3
        if not np.allclose(g64, w64, rtol=rtol, atol=rtol * max(scale, 1e-6), equal_nan=True):
            return False
    return True


# ---- building ----
def build_local(kernels: list[L.Kernel], target):
    """One shared library holding `kernels` (names kept) and the thread-count setter."""
    from ..codegen.llvm.emitter import ModuleBuilder
    from ..codegen.llvm.microkernels.build import Library
    from ..codegen.llvm.toolchain import emit_object, link_shared

    mb = ModuleBuilder("tune_loop", runtime=True, internal=False)
    for k in kernels:
        mb.add_kernel(k)
    return Library(link_shared(emit_object(str(mb.module), target)))


def build_all(kernels: list[L.Kernel], target, pool: ThreadPoolExecutor, builder: Callable = build_local) -> list:
    """Libraries (or the exception a module failed with), one per kernel, in order."""
    groups = [kernels[i:i + PER_MODULE] for i in range(0, len(kernels), PER_MODULE)]
    futures = [pool.submit(builder, g, target) for g in groups]
    out = []
    for g, f in zip(groups, futures):
        try:
            lib = f.result()
        except Exception as exc:  # noqa: BLE001 - reported per candidate by the caller
            lib = exc
        out += [lib] * len(g)
    return out


def _callable(lib, name: str, arrays: list[np.ndarray], threads: int) -> Callable[[], None]:
    import ctypes

    fn = getattr(lib.lib, name)
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p] * len(arrays)
    setter = lib.lib.cm_set_num_threads
    setter.argtypes = [ctypes.c_int]
    setter(threads)
    ptrs = [a.ctypes.data for a in arrays]
    return lambda: fn(*ptrs)


# ---- the search ----
def _order(task: LoopTask, cands: list, model, tried: int) -> list:
    """The untried candidates in the order to try them: the model's prediction once it is
    ready and this kernel has had its EXPLORE random tries, else random."""
    rest = cands[tried:]
    if model is not None and tried >= EXPLORE and model.ready():
        scores = model.predict([model.features(task, s, p) for s, p in rest])
        return [c for _, c in sorted(zip(scores, rest), key=lambda sc: sc[0])]
    return rest


def tune_loop_kernel(task: LoopTask, target, threads: int, budget_s: float, *, model=None,
                     max_trials: int = MAX_TRIALS, strict: bool = False, builder: Callable = build_local,
                     report: Callable[[str], None] = lambda line: None) -> TuneResult | None:
    """Search `task`'s schedules; None when the space gives it no other kernel than the
    default. `model`: a cost_model.CostModel fed with every timing and consulted for order."""
    deadline = time.perf_counter() + budget_s
    cands = candidates(task)
    if len(cands) < 2:
        return None
    rng = random.Random(SEED)
    head, rest = cands[:1], cands[1:]
    rng.shuffle(rest)
    cands = head + rest
    workload = Workload(task)
    timed: list[tuple] = []  # (schedule, Timing, timer)
    rejected: list[str] = []
    reference = None
    shared = workload.arrays()  # what timing calls read and write
    workers = os.cpu_count() or 1
    batch_size = PER_MODULE * workers
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = 0
        while done < min(len(cands), max_trials):
            if done and time.perf_counter() > deadline:
                break
            cands[done:] = _order(task, cands, model, done)
            batch = cands[done:min(done + batch_size, max_trials, len(cands))]
            kernels = [dataclasses.replace(p.kernel, name=f"cand{done + i}") for i, (_, p) in enumerate(batch)]
            libs = build_all(kernels, target, pool, builder)
            timers = []
            for (schedule, plan), kernel, lib in zip(batch, kernels, libs):
                if isinstance(lib, Exception):
                    if not timed and reference is None:
                        raise CompilerError(f"autotune {task.name}: the default kernel does not build: {lib}")
                    rejected.append(f"{schedule}: does not build: {lib}")
                    continue
                fresh = workload.arrays()
                _callable(lib, kernel.name, fresh, threads)()
                outs = workload.outputs(fresh)
                if reference is None:
                    reference = outs
                elif not agrees(outs, reference):
                    text = f"{schedule}: computes a different result than the default schedule"
                    if strict:
                        raise CandidateMismatch(f"autotune {task.name}: {text}")
                    warnings.warn(f"autotune {task.name}: skipped {text} (a kernel bug; please report)",
                                  RuntimeWarning, stacklevel=2)
                    rejected.append(text)
                    continue
                timers.append((measure.CallTimer(schedule, lib, _callable(lib, kernel.name, shared, threads)), plan))
            best = min((t.score_ms for _, t, _ in timed), default=None)
            measure.time_interleaved([t for t, _ in timers], best)
            for t, plan in timers:
                timing = t.timing()
                timed.append((t.schedule, timing, t))
                if model is not None and not timing.cut_short:  # a cut-short score is a bound, not a time
                    model.add(model.features(task, t.schedule, plan), timing.score_ms / timed[0][1].score_ms)
            done += len(batch)
            low = min(t.score_ms for _, t, _ in timed)
            report(f"{done} tried, best {low:.4f} ms (default {timed[0][1].score_ms:.4f} ms)")
    if not timed:
        raise CompilerError(f"autotune {task.name}: no candidate could be timed: {'; '.join(rejected)}")
    default = timed[0]
    ranked = sorted(timed[1:], key=lambda st: st[1].score_ms)[:FINALISTS]
    winner, ms, default_ms = default[0], default[1].score_ms, default[1].score_ms
    if ranked and ranked[0][1].score_ms < default_ms:
        winner, ms, default_ms = _final(default, ranked)
    return TuneResult(task.key, task.name, winner, ms, default_ms, len(timed), rejected,
                      [(s, t.score_ms) for s, t, _ in timed])


def _confirm(finalists: list[tuple]) -> dict:
    timers = [measure.CallTimer(t.schedule, t.library, t.call) for _, _, t in finalists]
    measure.time_interleaved(timers, None, rounds=CONFIRM_ROUNDS)
    return {id(t.schedule): t.timing().score_ms for t in timers}


def _final(default: tuple, ranked: list[tuple]) -> tuple:
    """As tuner._final: the best finalist replaces the default only if it beats it by
    MIN_GAIN in two fresh interleaved confirmations."""
    fresh = _confirm([default] + ranked)
    best = min(ranked, key=lambda st: fresh[id(st[0])])
    again = _confirm([default, best])
    gains = [f[id(default[0])] / f[id(best[0])] for f in (fresh, again)]
    default_ms = (fresh[id(default[0])] + again[id(default[0])]) / 2
    if min(gains) >= 1 / (1 - MIN_GAIN):
        return best[0], (fresh[id(best[0])] + again[id(best[0])]) / 2, default_ms
    return default[0], default_ms, default_ms
