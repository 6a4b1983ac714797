"""Dynamic batching: requests for one model version queue here and run merged.

Each of the version's `instance_count` worker threads takes the highest-priority, oldest
request, then every queued request of the same per-sample shape (`Pending.key`) that still
fits `max_batch_size`, and runs them as one batch when the batch is full (the largest
preferred size, or `max_batch_size`), when the oldest has waited `max_queue_delay_us`, or
when the batcher is draining. So with the default delay of 0 a lone request never waits,
and requests arriving while a batch runs are merged into the next one. The merged batch is
padded to an artifact's batch size by `ModelVersion.run_batch`; the outputs are split back.

Native code releases the GIL, so workers run while the event loop parses the next
requests; the loop awaits each request's `concurrent.futures.Future`.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from .errors import ServingError


@dataclass(eq=False)
class Pending:
    """One queued request."""

    inputs: dict[str, np.ndarray]
    batch: int  # its leading-dim size (1 without batching)
    key: tuple  # what must match to share a batch: per-sample shapes and dtypes
    priority: int  # index into the levels: 0 first
    deadline_ns: int | None
    arrived_ns: int = field(default_factory=time.perf_counter_ns)
    future: Future = field(default_factory=Future)


class DynamicBatcher:
    """The queue and workers of one model version (`ModelVersion` owns it)."""

    def __init__(self, version, *, max_batch_size: int, merge: bool, preferred: tuple[int, ...],
                 delay_us: int, instances: int, levels: int, max_queue: int):
        self._version = version
        self._max = max(1, max_batch_size)
        self._merge = merge and max_batch_size > 1
        self._preferred = tuple(sorted(preferred))
        self._full = max(preferred) if preferred else self._max  # run at once when a batch reaches this
        self._delay_ns = delay_us * 1000
        self._max_queue = max_queue
        self._levels = [deque() for _ in range(max(1, levels))]
        self._queued = 0
        self._cond = threading.Condition()
        self._closing = False
        self._hurry = False  # the server is stopping: run what is queued without waiting for more
        self._threads = [threading.Thread(target=self._work, daemon=True, name=f"batcher-{version.label}-{i}")
                         for i in range(max(1, instances))]
        for t in self._threads:
            t.start()

    @property
    def accepting(self) -> bool:
        return not self._closing

    def submit(self, pending: Pending) -> Future:
        """Queue a request; ServingError 503 when the queue is full or the version unloading."""
        with self._cond:
            if self._closing:
                raise VersionRetired(self._version.label)
            if self._max_queue and self._queued >= self._max_queue:
                raise ServingError(503, f"model {self._version.label}: the queue is full "
                                        f"({self._max_queue} requests); try again later")
            self._levels[pending.priority].append(pending)
            self._queued += 1
            self._cond.notify()
        return pending.future

    def hurry(self) -> None:
        """Stop waiting for fuller batches (the server is stopping); still take requests."""
        with self._cond:
            self._hurry = True
            self._cond.notify_all()

    def close(self, timeout: float | None = None) -> None:
        """Stop taking requests, run every queued one, and wait for the workers."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    def _work(self) -> None:
        while True:
            group = self._take()
            if group is None:
                return
            self._version.run_group(group)

    def _take(self) -> list[Pending] | None:
        with self._cond:
            while True:
                if not self._queued:
                    if self._closing:
                        return None
                    self._cond.wait()
                    continue
                now = time.perf_counter_ns()
                self._expire(now)
                if not self._queued:
                    continue
                head = next(p for level in self._levels for p in level)
                group, total = self._gather(head)
                wait_ns = head.arrived_ns + self._delay_ns - now
                if total >= self._full or wait_ns <= 0 or self._closing or self._hurry:
                    for p in group:
                        self._levels[p.priority].remove(p)
                    self._queued -= len(group)
                    return group
                self._cond.wait(wait_ns / 1e9)

    def _gather(self, head: Pending) -> tuple[list[Pending], int]:
        if not self._merge:
            return [head], head.batch
        group, total = [], 0
        for level in self._levels:
            for p in level:
                if p.key == head.key and total + p.batch <= self._max:
                    group.append(p)
                    total += p.batch
                    if total == self._max:
                        return group, total
        return self._trim(group, total)

    def _trim(self, group: list[Pending], total: int) -> tuple[list[Pending], int]:
        """The largest preferred size the queue can fill, as Triton forms batches: 9 queued
        with artifacts for 8 and 16 run as 8 now and 1 next, not as 16 with 7 rows of padding.
        The oldest request always goes; fewer than it needs run as they are (padded)."""
        head = group[0]
        fits = [s for s in self._preferred if head.batch <= s <= total]
        if not fits or total in self._preferred:
            return group, total
        target = max(fits)
        kept, size = [head], head.batch
        for p in group[1:]:  # priority and arrival order kept; a request never splits
            if size + p.batch <= target:
                kept.append(p)
                size += p.batch
        return kept, size

    def _expire(self, now: int) -> None:
        for level in self._levels:
            late = [p for p in level if p.deadline_ns is not None and p.deadline_ns <= now]
            for p in late:
                level.remove(p)
                self._queued -= 1
                waited_us = (now - p.arrived_ns) // 1000
                p.future.set_exception(ServingError(504, f"model {self._version.label}: the request's timeout expired "
                                                         f"after {waited_us} us in the queue"))


class VersionRetired(Exception):
    """The version stopped taking requests (a newer one replaced it); resolve again."""
