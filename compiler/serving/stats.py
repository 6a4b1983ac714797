"""Per model-version statistics, kept once and shown twice: as Triton's statistics extension
(`GET /v2/models/<m>/stats`) and as Prometheus metrics under Triton's names (`metrics.py`).

Durations are cumulative nanoseconds with a count, as Triton keeps them: `queue` (waiting
for a batch), `compute_input` (merging and padding), `compute_infer` (the native run),
`compute_output` (splitting back), `success` (whole request, arrival to answer), `fail`,
`cache_hit` and `cache_miss` (the cache lookup).
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict

DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit", "cache_miss")


class ModelStats:
    """Counters for one model version; every method is thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self.durations = {k: [0, 0] for k in DURATIONS}  # name -> [count, ns]
        self.inference_count = 0  # samples answered by running the model (a batch of 8 counts 8)
        self.execution_count = 0  # model runs (one per merged batch)
        self.padded_samples = 0  # rows added to fill a batch up to an artifact's size
        self.failures: dict[str, int] = defaultdict(int)  # reason -> requests
        self.batches: dict[int, list] = {}  # run batch size -> [count, input ns, infer ns, output ns]
        self.last_inference_ms = 0
        self.pending = 0  # requests queued or running

    def add(self, name: str, ns: int, count: int = 1) -> None:
        with self._lock:
            entry = self.durations[name]
            entry[0] += count
            entry[1] += ns

    def fail(self, reason: str, ns: int) -> None:
        with self._lock:
            self.failures[reason] += 1
            self.durations["fail"][0] += 1
            self.durations["fail"][1] += ns

    def pending_delta(self, n: int) -> None:
        with self._lock:
            self.pending += n

    def executed(self, batch: int, samples: int, padded: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        with self._lock:
            self.execution_count += 1
            self.inference_count += samples
            self.padded_samples += padded
            self.last_inference_ms = int(time.time() * 1000)
            row = self.batches.setdefault(batch, [0, 0, 0, 0])
            row[0] += 1
            row[1] += input_ns
            row[2] += infer_ns
            row[3] += output_ns
            for name, ns in (("compute_input", input_ns), ("compute_infer", infer_ns), ("compute_output", output_ns)):
                self.durations[name][0] += 1
                self.durations[name][1] += ns

    def to_json(self, name: str, version: str) -> dict:
        """One entry of the statistics extension's `model_stats`."""
        with self._lock:
            return {
                "name": name, "version": version, "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count, "execution_count": self.execution_count,
                "inference_stats": {k: {"count": c, "ns": ns} for k, (c, ns) in self.durations.items()},
                "batch_stats": [{"batch_size": b, "compute_input": {"count": c, "ns": i},
                                 "compute_infer": {"count": c, "ns": f}, "compute_output": {"count": c, "ns": o}}
                                for b, (c, i, f, o) in sorted(self.batches.items())],
                "padded_samples": self.padded_samples,
                "failures": dict(self.failures),
            }
