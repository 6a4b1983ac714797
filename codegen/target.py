"""What the target-neutral code generator asks of a target: `CodegenTarget`, and the
`Capabilities` a target's code generator declares.

The model builder, the kernel builder and the lowering rules see a target only through
this interface: its kind (whose extern lowerings apply), its vector width (schedule
defaults), its heuristic schedules for extern kernels, how it turns a tensor-expression
stage into loops (CPU loop nests or GPU launches), and what its renderer can emit.
Nothing here branches on a target's name: a new backend subclasses `CodegenTarget`
(the LLVM CPU target is `codegen.llvm.target.CPUTarget`) and declares its capabilities.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..ir.dtypes import DType
from .loop_ir import LoopKind


@dataclass(frozen=True)
class Capabilities:
    """What a target's code generator can emit, which the verifier holds every kernel to."""

    loop_kinds: frozenset  # LoopKinds its renderer runs
    scopes: frozenset  # buffer scopes: "global", "shared", "local"
    dtypes: frozenset  # DType names values may have in native code
    gpu: bool  # block/thread indices, barriers and warp operations
    extern_kernels: tuple[str, ...] = ()  # names of its own kernel families (see codegen.extern)
    mma_shapes: tuple[str, ...] = ()  # tensor-core instruction shapes (loop_ir.Mma) it emits

    def supports_dtype(self, dtype: DType) -> bool:
        return dtype.name in self.dtypes

    def describe(self) -> dict:
        """JSON-ready form (for `compile inspect` and the backend registry)."""
        return {"loop_kinds": sorted(k.value for k in self.loop_kinds), "scopes": sorted(self.scopes),
                "dtypes": sorted(self.dtypes), "gpu": self.gpu, "extern_kernels": list(self.extern_kernels),
                "mma_shapes": list(self.mma_shapes)}


def native_dtype(dt: DType) -> bool:
    """Element types every target's generated code handles (no strings or complex; sub-byte
    ints and float8 only where a target adds them: the llvm target does)."""
    if dt.kind in ("string", "complex"):
        return False
    if dt.is_float:
        return dt.name in ("float16", "bfloat16", "float32", "float64")
    return not dt.is_int or dt.bits >= 8


CPU_LOOP_KINDS = frozenset({LoopKind.SERIAL, LoopKind.PARALLEL, LoopKind.VECTORIZED, LoopKind.UNROLLED})


class CodegenTarget:
    """A target the code generator lowers for. Subclasses set `kind` and `capabilities`
    and give `vector_bits` (the native vector width schedules fill) and
    `default_extern_schedule` (the heuristic schedule of an extern kernel's problem)."""

    kind: ClassVar[str]  # the backend's name: extern lowerings registered under it apply
    capabilities: ClassVar[Capabilities]

    @property
    def vector_bits(self) -> int:
        raise NotImplementedError

    def default_extern_schedule(self, problem):
        """The heuristic schedule for an extern kernel's problem (raises CompilerError when
        this target cannot run that kernel family)."""
        raise NotImplementedError

    def lower_stage(self, stage, out, kernel_class: str, schedule=None):
        """The loop nest (an L.Stmt) that fills tensor `out` with tensor-expression `stage`:
        a CPU target's nest of parallel / vectorized loops (`codegen.schedule`), a GPU
        target's block and thread launches (`codegen.gpu_schedule`). `schedule`: a tuned
        schedule for the kernel class, or None for the target's heuristic default."""
        raise NotImplementedError

    def lower_stages(self, stages, kernel_class: str, schedule=None) -> list:
        """Every (stage, out tensor) of one kernel lowered, in order; each on its own by
        default (a GPU target weighs neighbours: launches it can merge)."""
        return [self.lower_stage(stage, out, kernel_class, schedule) for stage, out in stages]

    def finish_kernel(self, kernel):
        """A kernel once all its stages are lowered, as this target runs it (a GPU target
        merges launches that can share threads); the kernel itself by default."""
        return kernel

    def schedule_knobs(self, kernel_class: str) -> dict:
        """The knobs of the target's default schedule for a kernel class (recorded on the kernel)."""
        raise NotImplementedError
