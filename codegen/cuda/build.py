"""A `NativeProgram` (codegen.model_builder) -> a CUDA build: the module's CUDA C, a cubin
per architecture and PTX, and the launch table a runtime replays.

The launch table is the program for a GPU: per call, the storage of every argument
(input / output / weight / arena, with its byte offset) and the launches of its kernel
in order (function, grid, block, shared bytes). The CUDA driver runtime records it once
into a CUDA graph; the emulator walks it over the kernels' loop IR, which the build keeps
too (`kernels.json`), so both run exactly the same plan.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ...ir.errors import CompilerError
from .. import loop_ir as L
from ..gpu_schedule import launches_of
from ..loop_ir_json import encode_kernel
from ..model_builder import NativeProgram
from ..verify import verify_kernel
from . import nvrtc
from .renderer import function_name, module_source
from .target import CUDATarget


@dataclass
class CudaBuild:
    source: str
    cubins: dict[str, bytes]  # arch -> cubin
    ptx: bytes
    ptx_arch: str
    launches: list[dict]  # per call: {"args": [[kind, index, offset], ...], "launches": [...]}
    kernels_json: bytes
    program: NativeProgram
    nvrtc_version: str
    timings: dict = field(default_factory=dict)


def launch_table(program: NativeProgram) -> list[dict]:
    """Per call, its arguments' storages and its kernel's launches (see the module docstring)."""
    geometry = {}
    for fname, plan in program.kernels.items():
        if not isinstance(plan.kernel, L.Kernel):
            raise CompilerError(f"kernel {fname}: the cuda target runs loop-IR kernels only, not "
                                f"{type(plan.kernel).__name__}")
        verify_kernel(plan.kernel)  # templates too: the lowering rules' kernels were verified when built
        geometry[fname] = [{"function": function_name(fname, i), "grid": g.grid, "block": g.block,
                            "shared_bytes": g.shared_bytes} for i, (_, g) in enumerate(launches_of(plan.kernel))]
    return [{"kernel": call.function, "args": [[s.kind, s.index, s.offset] for s in call.storages],
             "launches": geometry[call.function]} for call in program.calls]


def compile_program(program: NativeProgram, target: CUDATarget) -> CudaBuild:
    timings = {}
    t0 = time.perf_counter()
    kernels = [plan.kernel for plan in program.kernels.values()]
    table = launch_table(program)
    source = module_source(kernels)
    timings["emit_cuda"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    # NVRTC releases the GIL while it compiles: the architectures compile side by side. The
    # oldest one's PTX is the artifact's PTX (newer GPUs JIT it).
    with ThreadPoolExecutor(max_workers=len(target.archs)) as pool:
        outs = list(pool.map(lambda arch: nvrtc.compile_source(source, arch), target.archs))
    timings["nvrtc"] = time.perf_counter() - t1
    cubins = {arch: cubin for arch, (cubin, _) in zip(target.archs, outs)}
    kernels_json = json.dumps([encode_kernel(k) for k in kernels]).encode()
    return CudaBuild(source, cubins, outs[0][1], target.archs[0], table, kernels_json, program, nvrtc.version(), timings)
