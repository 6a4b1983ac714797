"""A learned cost model that orders loop-kernel candidates: gradient-boosted trees
(lightgbm, the optional `tune` extra) over features of each candidate's loop nest,
trained on the timings of the run so far and predicting a candidate's time relative to its
kernel's default. Without lightgbm, or before MIN_ROWS timings, it is not `ready()` and the
search keeps its random order: the model only reorders what is tried within the trial
bound, every candidate is still checked and timed, so a poor model costs trials, never
correctness.

Features (`features`): the kernel's size and class, the schedule's knobs, and what they
did to the loop nest: how many loops of each kind, their extents (parallel work, vector
lanes, unrolled copies), the nest's statement and memory-access counts. Kernels of one model
share patterns (every LayerNorm, every GELU chain), so what the first ones teach transfers.
"""
from __future__ import annotations

import importlib.util
import math

import numpy as np

from ..codegen import loop_ir as L
from ..codegen.schedule import SPACES

MIN_ROWS = 24
_CLASSES = sorted(SPACES)
_KNOBS = sorted({k.name for knobs in SPACES.values() for k in knobs})


def available() -> bool:
    return importlib.util.find_spec("lightgbm") is not None


def _log2(x: float) -> float:
    return math.log2(max(x, 1.0))


def nest_features(kernel: L.Kernel) -> list[float]:
    """Counts and extents of the loop nest as generated (after the schedule shaped it)."""
    loops = {kind: [] for kind in L.LoopKind}
    loads = stores = calls = nodes = 0
    for n in L.walk(kernel.body):
        nodes += 1
        if isinstance(n, L.For):
            extent = n.extent.value if isinstance(n.extent, L.Const) else 0
            loops[n.kind].append(extent)
        elif isinstance(n, L.Load):
            loads += 1
        elif isinstance(n, L.Store):
            stores += 1
        elif isinstance(n, L.Call):
            calls += 1
    out = []
    for kind in L.LoopKind:
        extents = loops[kind]
        out += [len(extents), _log2(max(extents, default=0)), _log2(sum(extents))]
    return out + [_log2(loads), _log2(stores), _log2(calls), _log2(nodes)]


class CostModel:
    """Rows of (features, time / default time); `predict` ranks candidates (lower = faster)."""

    def __init__(self):
        self.rows: list[list[float]] = []
        self.targets: list[float] = []
        self._booster = None
        self._fitted_on = 0
        self.enabled = available()

    def features(self, task, schedule, plan) -> list[float]:
        kernel = plan.kernel
        size = max((b.size for b in kernel.params), default=1)
        knobs = getattr(schedule, "knobs", None) or kernel.schedule
        return ([_CLASSES.index(task.kernel_class), _log2(size), len(kernel.params)]
                + [float(_log2(knobs[k]) if k in knobs else -1.0) for k in _KNOBS]
                + nest_features(kernel))

    def add(self, features: list[float], relative_ms: float) -> None:
        if relative_ms > 0 and math.isfinite(relative_ms):
            self.rows.append(features)
            self.targets.append(math.log(relative_ms))

    def ready(self) -> bool:
        return self.enabled and len(self.rows) >= MIN_ROWS

    def _fit(self) -> None:
        import lightgbm

        params = {"objective": "regression", "learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 3,
                  "verbose": -1, "seed": 0, "deterministic": True, "num_threads": 1}
        data = lightgbm.Dataset(np.asarray(self.rows, np.float64), np.asarray(self.targets, np.float64))
        self._booster = lightgbm.train(params, data, num_boost_round=60)
        self._fitted_on = len(self.rows)

    def predict(self, features: list[list[float]]) -> list[float]:
        """Predicted log(time / default time) per candidate (refitted when rows were added)."""
        if not self.ready():
            return [0.0] * len(features)
        if self._booster is None or self._fitted_on != len(self.rows):
            self._fit()
        return [float(v) for v in self._booster.predict(np.asarray(features, np.float64))]
