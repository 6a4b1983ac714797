"""`EmulatedModel`: a CUDA artifact run on the GPU emulator (`gpu_emulator`) instead of a
GPU: the same launch table, arena plan and weights as the GPU runtime, the kernels' loop
IR (the artifact's `kernels.json`) interpreted launch by launch. Slow, and exact about
what a GPU would do: it is how every model is checked on machines without one. With
`native` (target `-device=emulator-native`), launches whose threads never interact run
as CPU code instead (`emulator_native`): big models in seconds, without per-access checks.
"""
from __future__ import annotations

import json
import threading

import numpy as np

from ..ir.errors import ArtifactError
from .gpu_program import GpuProgramModel
from .signature import np_dtype


class EmulatedModel(GpuProgramModel):
    def __init__(self, manifest: dict, sections: dict[str, bytes], where: str = "artifact", native: bool = False):
        """`native`: run thread-independent launches as CPU code (`emulator_native`)."""
        super().__init__(manifest, sections, where)
        from ..codegen.loop_ir_json import decode_kernel

        try:
            kernels = [decode_kernel(d) for d in json.loads(sections["kernels.json"].decode())]
        except (KeyError, ValueError, TypeError, IndexError) as e:
            raise ArtifactError(f"{where}: corrupt or missing kernels.json, which the emulator runs ({e})") from None
        self.kernels = {k.name: k for k in kernels}
        missing = sorted({c["kernel"] for c in self.launches} - set(self.kernels))
        if missing:
            raise ArtifactError(f"{where}: the launch table calls kernels {missing} that kernels.json lacks")
        self._native = None
        if native:
            from .emulator_native import NativeLaunches

            self._native = NativeLaunches(kernels)
        self._weights = np.frombuffer(sections["weights.bin"], np.uint8)
        self._lock = threading.Lock()  # the emulator is not reentrant: calls take turns

    def execute(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> None:
        from .gpu_emulator import run_kernel

        arena = np.zeros(self.arena_size, np.uint8)
        bases = {"input": [a.reshape(-1).view(np.uint8) for a in inputs],
                 "output": [o.reshape(-1).view(np.uint8) for o in outputs],
                 "weight": [self._weights], "arena": [arena]}
        with self._lock:
            for call in self.launches:
                kernel = self.kernels[call["kernel"]]
                arrays = []
                for (kind, index, offset), param in zip(call["args"], kernel.params):
                    base = bases[kind][0 if kind in ("weight", "arena") else index]
                    start = offset + (index if kind in ("weight", "arena") else 0)
                    # An empty tensor's parameter still declares one element; bind what the
                    # storage holds, and the emulator's bounds checks catch any access past it.
                    item = param.dtype.itemsize
                    nbytes = max(0, min(param.size * item, base.size - start)) // item * item
                    arrays.append(base[start:start + nbytes].view(np_dtype(param.dtype.name)))
                if self._native is not None and kernel.name in self._native:
                    self._native.run(kernel.name, arrays)
                else:
                    run_kernel(kernel, arrays)
