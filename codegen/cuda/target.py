"""The CUDA target: which GPU architectures code is generated for, and what the CUDA
renderer can emit.

`cuda -arch=sm_80` (also sm_86, sm_89, sm_90; several as `-arch=sm_80,sm_90`) compiles a
cubin per architecture plus PTX of the oldest, which newer GPUs' drivers compile at load.
Kernels are GPU launches of loop IR (`codegen.gpu_schedule`): serial and unrolled loops
inside gpu_block / gpu_thread loops, global / shared / local buffers, barriers and warp
shuffles. Values are computed in float32 for float16 and bfloat16 (stored as 16 bits).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...ir import dtypes
from ...ir.errors import TargetError
from .. import loop_ir as L
from ..target import Capabilities, CodegenTarget, native_dtype

# Architectures this build generates code for -> (compute capability, what it is, streaming
# multiprocessors of its usual data-centre part: how many blocks a launch needs to fill it).
ARCHS = {"sm_80": (8, 0, "A100", 108), "sm_86": (8, 6, "RTX 30xx / A10 / A40", 84),
         "sm_89": (8, 9, "L4 / L40 / RTX 40xx", 58), "sm_90": (9, 0, "H100 / H200", 132)}


CAPABILITIES = Capabilities(
    loop_kinds=frozenset({L.LoopKind.SERIAL, L.LoopKind.UNROLLED, L.LoopKind.GPU_BLOCK, L.LoopKind.GPU_THREAD}),
    scopes=frozenset({"global", "shared", "local"}),
    dtypes=frozenset(d.name for d in dtypes.ALL_DTYPES if native_dtype(d)), gpu=True, mma_shapes=("m16n8k16",))


@dataclass(frozen=True)
class CUDATarget(CodegenTarget):
    kind: ClassVar[str] = "cuda"
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    archs: tuple[str, ...]  # cubins for these; PTX of the first (the oldest)

    @property
    def vector_bits(self) -> int:
        return 0  # no SIMD lanes: rows are shared by threads (lowering rules keep reductions whole)

    @property
    def multiprocessors(self) -> int:
        """The most SMs among the targeted parts: launches sized to fill the biggest GPU."""
        return max(ARCHS[a][3] for a in self.archs)

    @property
    def min_compute_capability(self) -> tuple[int, int]:
        return ARCHS[self.archs[0]][:2]

    def default_extern_schedule(self, problem):
        raise TargetError("the cuda target has no extern kernels of its own yet")

    def lower_stage(self, stage, out, kernel_class: str, schedule=None):
        from ..gpu_schedule import lower_stage_gpu

        return lower_stage_gpu(stage, out, schedule)

    def lower_stages(self, stages, kernel_class: str, schedule=None) -> list:
        from ..gpu_schedule import lower_stages_gpu

        return lower_stages_gpu(stages, schedule)

    def finish_kernel(self, kernel):
        from ..gpu_schedule import merge_launches

        return merge_launches(kernel)

    def schedule_knobs(self, kernel_class: str) -> dict:
        from ..gpu_schedule import DEFAULT_KNOBS

        return dict(DEFAULT_KNOBS)


def parse_archs(text: str) -> tuple[str, ...]:
    """"sm_90" or "sm_80,sm_90" -> sorted architectures; unknown ones refused with the list."""
    archs = [a.strip() for a in text.split(",") if a.strip()]
    unknown = [a for a in archs if a not in ARCHS]
    if not archs or unknown:
        known = ", ".join(f"{a} ({v[2]})" for a, v in ARCHS.items())
        raise TargetError(f"cuda target: unknown -arch={text}; known: {known}")
    return tuple(sorted(set(archs), key=lambda a: ARCHS[a][:2]))


def arch_for_capability(major: int, minor: int) -> str:
    """The newest architecture this build targets that a GPU of compute capability
    major.minor runs (cubins run on the same major version, minor at least theirs)."""
    fits = [a for a, (ma, mi, _) in ARCHS.items() if ma == major and mi <= minor]
    if fits:
        return max(fits, key=lambda a: ARCHS[a][:2])
    if (major, minor) < (8, 0):
        raise TargetError(f"this GPU has compute capability {major}.{minor}; the cuda target needs 8.0 (Ampere) "
                          f"or newer")
    return "sm_90"  # newer than every cubin: its driver compiles the PTX
