"""Node tests of ONNX's conformance suite that fail on the cuda target (on the emulator):
the llvm target's exclusions, which share their causes (no lowering rule, run-time
shapes, element types), plus the cuda target's own, grouped by cause."""
from __future__ import annotations

from conformance_exclusions_llvm import EXCLUDED as _LLVM

_CUDA_ONLY: dict[str, tuple[str, ...]] = {
}

EXCLUDED: dict[str, tuple[str, ...]] = {**_LLVM, **_CUDA_ONLY}
