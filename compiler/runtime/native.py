"""`NativeModel`: a compiled model's shared library, weights and arena behind `run()`.

Loading checks the host has every CPU feature the code was compiled for before the
library is opened (an error, never SIGILL). A profiling build (manifest `profiled`) also
exports the time before and after each kernel call; `kernel_times` reads them, and `calls`
says what each call computes (the artifact's `calls.json` listing). `run` validates inputs (names, dtypes,
shapes; non-contiguous arrays are copied) and then makes one call into native code.
Calls from several threads are safe: each call takes its own arena from a pool, so
concurrent calls never share scratch memory, and the pool never grows beyond the number
of calls in flight at once.
"""
from __future__ import annotations

import ctypes
import json
import os
import tempfile
import threading
from functools import cached_property
from typing import Any, Mapping

import numpy as np

from ..ir.errors import ArtifactError
from .calling import ArtifactSections, OpensOnce, PositionalCall
from ..codegen.amx_permission import request_amx
from .cpu import missing_features
from .signature import TensorSpec, host_arrays, np_dtype

_ALIGN = 64
NATIVE_ABI = "cm_entry-v1"  # int cm_entry(void **inputs, void **outputs, void *weights, void *arena)
PROFILE_SYMBOL = "cm_prof_ns"  # profiling builds: int64[2 * calls], ns before and after each call


def check_host(manifest: dict, where: str) -> None:
    """Refuse (ArtifactError) native code that needs CPU features this host lacks."""
    required = manifest.get("cpu_features", [])
    missing = missing_features(required)
    if not missing:
        if "amx-tile" in required and not request_amx():
            raise ArtifactError(f"{where}: compiled for a CPU with AMX tiles (this one has them), but the operating "
                                "system refused this process the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM; "
                                "Linux 5.16 or later grants it); recompile on this machine, which then leaves AMX out")
        return
    entry = manifest.get("precision") or {}
    precision = entry.get("requested", "fp32")
    feature, instruction = entry.get("isa") or (None, None)  # what its reduced-precision kernels need
    if feature in missing:
        raise ArtifactError(
            f"{where}: compiled with precision '{precision}': its convolutions and matrix products use "
            f"{feature.upper()} ({instruction}), which this CPU lacks (missing features {missing}); recompile "
            f"on this machine with precision='fp32' (CLI: --precision fp32)")
    raise ArtifactError(
        f"{where}: compiled for CPU '{manifest.get('cpu')}' and needs CPU features {missing} "
        f"this host lacks; recompile on this machine or for an older CPU "
        f"(e.g. --target \"llvm -mcpu=x86-64-v2\")")


def _aligned_empty(nbytes: int) -> np.ndarray:
    """A byte array whose data starts on a 64-byte boundary (vector loads, cache lines)."""
    raw = np.empty(nbytes + _ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % _ALIGN
    return raw[start:start + nbytes]


class NativeModel(OpensOnce, ArtifactSections, PositionalCall):
    def __init__(self, manifest: dict, sections: dict[str, bytes], where: str = "artifact",
                 num_threads: int | None = None, lazy: bool = False):
        """`lazy`: open the library on the first run (a cross-compiled model can still be saved)."""
        if manifest.get("native_abi") != NATIVE_ABI:
            raise ArtifactError(f"{where}: native code ABI {manifest.get('native_abi')!r}, this runtime runs {NATIVE_ABI!r}; "
                                f"recompile the model with this compiler")
        library, weights = sections.get("model.so"), sections.get("weights.bin")
        if library is None or weights is None:
            raise ArtifactError(f"{where}: corrupt artifact (no native library or weights section)")
        self._sections = sections

        self.manifest = manifest
        self.where = where
        self.target = manifest.get("target", "llvm")
        self.inputs = [TensorSpec.from_json(d) for d in manifest["inputs"]]
        self.outputs = [TensorSpec.from_json(d) for d in manifest["outputs"]]
        self._in_dtypes = [np_dtype(s.dtype) for s in self.inputs]
        self._out_dtypes = [np_dtype(s.dtype) for s in self.outputs]
        self._arena_size = max(1, int(manifest.get("arena_size", 0)))
        self._arenas: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._num_threads = num_threads or 0
        self._lib = None
        if not lazy:
            self._open()

    def _open(self) -> None:
        """Check the host's CPU features, then map the library and the weights."""
        with self._lock:
            if self._lib is not None:
                return
            check_host(self.manifest, self.where)
            weights = self._sections["weights.bin"]
            self._weights = _aligned_empty(max(1, len(weights)))
            self._weights[: len(weights)] = np.frombuffer(weights, dtype=np.uint8)
            lib = _open_library(self._sections["model.so"])
            self._entry = lib.cm_entry
            self._entry.restype = ctypes.c_int
            self._entry.argtypes = [ctypes.POINTER(ctypes.c_void_p)] * 2 + [ctypes.c_void_p] * 2
            lib.cm_set_num_threads(ctypes.c_int(int(self._num_threads)))
            self._lib = lib

    @cached_property
    def calls(self) -> list[dict]:
        """Per kernel call, in order: {kernel, ops, nodes, flops} (empty for an artifact
        written before the listing existed)."""
        data = self._sections.get("calls.json")
        return json.loads(data.decode()) if data else []

    @property
    def kernel_listing(self) -> str:
        """Every distinct kernel of the model as text (loop IR in full, extern kernels by problem)."""
        return self._sections.get("kernels.txt", b"").decode()

    def kernel_times(self) -> list[tuple[int, int]]:
        """(start ns, duration ns) of each kernel call of the last run, for a profiling build."""
        if not self.manifest.get("profiled"):
            raise ArtifactError(f"{self.where}: not a profiling build (no timers around its kernel calls)")
        self._open()
        n = len(self.calls)
        ticks = (ctypes.c_int64 * (2 * max(1, n))).in_dll(self._lib, PROFILE_SYMBOL)
        return [(ticks[2 * i], ticks[2 * i + 1] - ticks[2 * i]) for i in range(n)]

    def set_num_threads(self, n: int) -> None:
        """Threads for parallel loops; 0 = all cores."""
        self._num_threads = int(n)
        if self._lib is not None:
            self._lib.cm_set_num_threads(ctypes.c_int(self._num_threads))

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        self._open()
        arrays = host_arrays(self.inputs, self._in_dtypes, feeds, self.manifest.get("index_guards", ()))
        outs = [np.empty(s.shape, dt) for s, dt in zip(self.outputs, self._out_dtypes)]
        in_ptrs = (ctypes.c_void_p * max(1, len(arrays)))(*[a.ctypes.data for a in arrays])
        out_ptrs = (ctypes.c_void_p * max(1, len(outs)))(*[o.ctypes.data for o in outs])
        arena = self._take_arena()
        try:
            rc = self._entry(in_ptrs, out_ptrs, self._weights.ctypes.data, arena.ctypes.data)
        finally:
            self._give_back(arena)
        if rc != 0:
            raise RuntimeError(f"native model returned error code {rc}")
        return {s.name: o for s, o in zip(self.outputs, outs)}

    def _take_arena(self) -> np.ndarray:
        with self._lock:
            if self._arenas:
                return self._arenas.pop()
        return _aligned_empty(self._arena_size)

    def _give_back(self, arena: np.ndarray) -> None:
        with self._lock:
            self._arenas.append(arena)


def _open_library(data: bytes) -> ctypes.CDLL:
    """dlopen the library from a private temporary file, removed once it is mapped."""
    fd, path = tempfile.mkstemp(prefix="cmodel-", suffix=".so")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
    finally:
        os.unlink(path)
