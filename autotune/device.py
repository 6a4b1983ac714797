"""The device a tuning result belongs to: CPU, the ISA features the code may use, the
vector lanes, the cores the machine has and the thread count the timings were taken with.

Two targets with the same key run the same schedules at the same speed (as far as the
tuner can tell), so they share the tuning database's rows; anything else has its own.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass

from ..codegen.llvm.microkernels.gemm import target_lanes
from ..ir.errors import CompilerError


@dataclass(frozen=True)
class Device:
    cpu: str
    features: tuple[str, ...]  # sorted: the order LLVM reports them in must not matter
    lanes: int
    cores: int  # CPUs the machine has (os.cpu_count): cache and core sharing differ between machine sizes
    threads: int

    @property
    def key(self) -> str:
        """A short stable hash of every field: the device column of the tuning database."""
        text = json.dumps(self.describe(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def describe(self) -> dict:
        return {**asdict(self), "features": list(self.features)}


def default_threads() -> int:
    """What a compiled model runs with unless told otherwise: the thread pool's default, the
    cores this process may run on (csrc/thread_pool.c counts the same affinity mask)."""
    return len(os.sched_getaffinity(0)) or 1


def device_of(target, threads: int | None = None) -> Device:
    """The Device for an llvm CPUTarget; `threads` None = the runtime's default thread count.
    A CPU below AVX2+FMA has no microkernels but still runs loop-IR kernels (tuned or not):
    its lanes are its vector width."""
    try:
        lanes = target_lanes(target)
    except CompilerError:
        lanes = max(1, target.vector_bits // 32)
    return Device(target.cpu, tuple(sorted(target.required)), lanes, os.cpu_count() or 1,
                  threads or default_threads())
