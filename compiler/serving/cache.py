"""The response cache: outputs of earlier requests, keyed by model, version and input bytes.

A hit needs the SHA-256 key to match and then every input to compare equal, name, dtype,
shape and bytes, so a hash collision can never answer with another request's outputs.
Bounded in bytes (inputs and outputs both count), least recently used out first.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes() for k in a)


class ResponseCache:
    """Thread-safe LRU of {inputs -> outputs} under `max_bytes`."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple] = OrderedDict()  # key -> (inputs, outputs, size)
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = self.misses = self.evictions = 0

    @staticmethod
    def key(model: str, version: int, inputs: dict[str, np.ndarray]) -> str:
        h = hashlib.sha256(f"{model}\0{version}".encode())
        for name in sorted(inputs):
            a = np.ascontiguousarray(inputs[name])
            h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}".encode())
            h.update(a.data)
        return h.hexdigest()

    def get(self, key: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or not _same(entry[0], inputs):
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: str, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
        inputs = {k: np.array(v) for k, v in inputs.items()}  # own copies: never a view into a request body
        outputs = {k: np.array(v) for k, v in outputs.items()}
        size = sum(a.nbytes for a in inputs.values()) + sum(a.nbytes for a in outputs.values())
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old[2]
            self._entries[key] = (inputs, outputs, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, _, dropped) = self._entries.popitem(last=False)
                self.bytes -= dropped
                self.evictions += 1

    def __len__(self) -> int:
        return len(self._entries)
