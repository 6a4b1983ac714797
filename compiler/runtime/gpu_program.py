"""What a CUDA artifact's runtimes share: its checked manifest and launch table, and the
one `run()` both the GPU and the emulator expose.

A call binds each kernel argument to a storage: a graph input or output, the weights, or
the arena (a byte offset into each). `GpuProgramModel.run` checks the feeds and hands
them, with output arrays, to `execute`, which the device's runtime implements.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np

from ..ir.errors import ArtifactError
from .calling import ArtifactSections, PositionalCall
from .signature import TensorSpec, host_arrays, np_dtype

LAUNCH_ABI = "cuda-launch-v1"  # the launch table's format (codegen.cuda.build.launch_table)
STORAGE_KINDS = ("input", "output", "weight", "arena")


class GpuProgramModel(ArtifactSections, PositionalCall):
    """The device-independent half of a CUDA artifact's model."""

    def __init__(self, manifest: dict, sections: dict[str, bytes], where: str):
        if manifest.get("launch_abi") != LAUNCH_ABI:
            raise ArtifactError(f"{where}: launch table format {manifest.get('launch_abi')!r}, this runtime runs "
                                f"{LAUNCH_ABI!r}; recompile the model with this compiler")
        for name in ("launches.json", "weights.bin"):
            if name not in sections:
                raise ArtifactError(f"{where}: corrupt artifact (no {name} section)")
        try:
            self.launches = json.loads(sections["launches.json"].decode())
            for call in self.launches:
                for kind, index, offset in call["args"]:
                    if kind not in STORAGE_KINDS or not isinstance(index, int) or not isinstance(offset, int):
                        raise ValueError(f"storage {kind!r}")
                for launch in call["launches"]:
                    if not (isinstance(launch["grid"], int) and isinstance(launch["block"], int)):
                        raise ValueError("launch geometry")
        except (ValueError, KeyError, TypeError) as e:
            raise ArtifactError(f"{where}: corrupt launch table ({e})") from None
        self.manifest = manifest
        self.where = where
        self.target = manifest.get("target", "cuda")
        self._sections = sections
        self.inputs = [TensorSpec.from_json(d) for d in manifest["inputs"]]
        self.outputs = [TensorSpec.from_json(d) for d in manifest["outputs"]]
        self._in_dtypes = [np_dtype(s.dtype) for s in self.inputs]
        self._out_dtypes = [np_dtype(s.dtype) for s in self.outputs]
        self.arena_size = max(1, int(manifest.get("arena_size", 0)))

    @property
    def cuda_source(self) -> str:
        """The CUDA C every cubin and the PTX were compiled from."""
        return self._sections.get("model.cu", b"").decode()

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        arrays = host_arrays(self.inputs, self._in_dtypes, feeds, self.manifest.get("index_guards", ()))
        outs = [np.empty(s.shape, dt) for s, dt in zip(self.outputs, self._out_dtypes)]
        self.execute(arrays, outs)
        return {s.name: o for s, o in zip(self.outputs, outs)}

    def execute(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> None:
        raise NotImplementedError
