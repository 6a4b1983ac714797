"""The LLVM CPU target: which CPU and ISA features code is generated for, and what a host
must have to run it.

`llvm` compiles for the host (LLVM's host CPU name and feature string). `llvm -mcpu=NAME`
cross-compiles for an x86-64 micro-architecture level (x86-64, -v2, -v3, -v4) or a known
CPU name mapped to its level, so the features recorded in the artifact are exactly the
ones the code generator was allowed to use. The runtime compares them with the host's
(`compiler.runtime.cpu`) before loading any native code: a missing feature is an error
message, never SIGILL.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...ir import dtypes
from ...ir.errors import TargetError
from ..narrow_floats import NARROW_FLOATS
from ..target import CPU_LOOP_KINDS, Capabilities, CodegenTarget, native_dtype
from ..amx_permission import AMX_FEATURES, request_amx

# ISA features the loader checks. Others LLVM reports (system instructions such as
# shstk or invpcid) never appear in generated kernels.
CHECKED_FEATURES = (
    "sse", "sse2", "sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "avx", "avx2", "fma", "f16c",
    "bmi", "bmi2", "lzcnt", "movbe", "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl",
    "avx512vnni", "avx512bf16", "avx512fp16", "avxvnni", "amx-tile", "amx-bf16", "amx-int8",
)

_V1 = ("sse", "sse2")
_V2 = _V1 + ("sse3", "ssse3", "sse4.1", "sse4.2", "popcnt")
_V3 = _V2 + ("avx", "avx2", "fma", "f16c", "bmi", "bmi2", "lzcnt", "movbe")
_V4 = _V3 + ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")
LEVELS = {"x86-64": _V1, "x86-64-v2": _V2, "x86-64-v3": _V3, "x86-64-v4": _V4}

# Named CPUs -> the micro-architecture level whose features their code may use.
CPU_LEVELS = {
    "nehalem": "x86-64-v2", "westmere": "x86-64-v2", "sandybridge": "x86-64-v2",
    "haswell": "x86-64-v3", "broadwell": "x86-64-v3", "skylake": "x86-64-v3", "alderlake": "x86-64-v3",
    "znver1": "x86-64-v3", "znver2": "x86-64-v3", "znver3": "x86-64-v3",
    "skylake-avx512": "x86-64-v4", "cascadelake": "x86-64-v4", "cooperlake": "x86-64-v4",
    "icelake-server": "x86-64-v4", "sapphirerapids": "x86-64-v4", "znver4": "x86-64-v4", "znver5": "x86-64-v4",
}
# Features named CPUs have beyond their level that reduced-precision kernels use.
CPU_EXTRA_FEATURES = {
    "cascadelake": ("avx512vnni",), "icelake-server": ("avx512vnni",),
    "cooperlake": ("avx512vnni", "avx512bf16"), "sapphirerapids": ("avx512vnni", "avx512bf16", "avx512fp16", *AMX_FEATURES),
    "znver4": ("avx512vnni", "avx512bf16"), "znver5": ("avx512vnni", "avx512bf16"),
}


CAPABILITIES = Capabilities(
    loop_kinds=CPU_LOOP_KINDS, scopes=frozenset({"global", "local"}),
    # and the types the llvm emitter stores as bytes: float8 (codes), 4 and 2-bit integers
    dtypes=(frozenset(d.name for d in dtypes.ALL_DTYPES if native_dtype(d)) | {d.name for d in NARROW_FLOATS}
            | {d.name for d in dtypes.INT_DTYPES if d.bits < 8}),
    gpu=False,
    extern_kernels=("gemm", "conv", "depthwise_conv", "attention"))


@dataclass(frozen=True)
class CPUTarget(CodegenTarget):
    kind: ClassVar[str] = "llvm"
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    cpu: str  # LLVM CPU name
    features: str  # LLVM feature string ("" = the CPU's own)
    required: tuple[str, ...]  # CHECKED_FEATURES the code may use
    triple: str

    @property
    def vector_bits(self) -> int:
        if "avx512f" in self.required:
            return 512
        return 256 if "avx" in self.required else 128

    def default_extern_schedule(self, problem):
        from .microkernels.conv import default_schedule_for

        return default_schedule_for(problem, self)

    def lower_stage(self, stage, out, kernel_class: str, schedule=None):
        from ..schedule import default_schedule, lower_stage

        return lower_stage(stage, out, schedule or default_schedule(kernel_class, self.vector_bits,
                                                                     max(8, out.dtype.bits)))

    def schedule_knobs(self, kernel_class: str) -> dict:
        from ..schedule import default_schedule

        return dict(default_schedule(kernel_class, self.vector_bits).knobs)


# The ISA feature each reduced precision's kernels need (fp32 needs none beyond AVX2+FMA).
PRECISION_FEATURES = {"bf16": ("avx512bf16", "vdpbf16ps"), "fp16": ("f16c", "vcvtph2ps"),
                      "int8": ("avx512vnni", "vpdpbusd")}


def check_precision_isa(target: CPUTarget, precision: str) -> None:
    """Refuse, naming the instruction, a precision whose kernels `target` cannot run."""
    if precision not in PRECISION_FEATURES:
        return
    feature, instruction = PRECISION_FEATURES[precision]
    if feature not in target.required:
        having = [cpu for cpu, level in CPU_LEVELS.items() if feature in LEVELS[level] + CPU_EXTRA_FEATURES.get(cpu, ())]
        raise TargetError(f"precision '{precision}' needs {feature.upper()} ({instruction}); target CPU "
                          f"{target.cpu} does not have it. Compile for a CPU that has it (-mcpu="
                          f"{', '.join(dict.fromkeys(having[:2] + having[-2:]))}) or with precision='fp32'")


def _llvm():
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return llvm


def cpu_target(options: dict[str, str] | None = None) -> CPUTarget:
    """The CPU target for `llvm` target options ({"mcpu": NAME} or none for the host)."""
    llvm = _llvm()
    options = dict(options or {})
    unknown = set(options) - {"mcpu"}
    if unknown:
        raise TargetError(f"llvm target: unknown option(s) {sorted(unknown)}; llvm takes -mcpu=NAME")
    triple = llvm.get_process_triple()
    if not triple.startswith("x86_64"):
        raise TargetError(f"llvm target: only x86-64 hosts are supported, this one is {triple}")
    mcpu = options.get("mcpu")
    if mcpu is None or mcpu == "native":
        feats = llvm.get_host_cpu_features()
        if feats.get("amx-tile", False) and not request_amx():
            for f in AMX_FEATURES:  # the OS refused the tile state: code for this host must not use it
                feats[f] = False
        on = tuple(f for f in CHECKED_FEATURES if feats.get(f, False))
        return CPUTarget(llvm.get_host_cpu_name(), feats.flatten(), on, triple)
    level = mcpu if mcpu in LEVELS else CPU_LEVELS.get(mcpu)
    if level is None:
        known = ", ".join(sorted(LEVELS) + sorted(CPU_LEVELS))
        raise TargetError(f"llvm target: unknown -mcpu={mcpu}; known: {known}")
    extra = CPU_EXTRA_FEATURES.get(mcpu, ())
    return CPUTarget(level, ",".join("+" + f for f in extra), LEVELS[level] + extra, triple)


def target_machine(t: CPUTarget):
    llvm = _llvm()
    target = llvm.Target.from_triple(t.triple)
    return target.create_target_machine(cpu=t.cpu, features=t.features, opt=3, reloc="pic", codemodel="default")
