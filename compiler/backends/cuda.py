"""The `cuda` target: NVIDIA GPUs through CUDA C compiled in-process by NVRTC (`codegen.cuda`).

    cuda                               the local GPU (its architecture read from the driver)
    cuda -arch=sm_80|sm_86|sm_89|sm_90 cross-compiles, no GPU needed (several: -arch=sm_80,sm_90)
    cuda -arch=sm_80 -device=emulator  the same build, run on the GPU emulator (no GPU at all)
    ... -device=emulator-native        launches whose threads never interact as CPU code, the
                                       rest emulated (big models in seconds; fewer checks)

Plan: the -O pipeline (no layout passes: kernels read NCHW as imported), then the program
(`codegen.model_builder`) with every stage lowered to GPU launches (`codegen.gpu_schedule`).
Build: one CUDA C module, a cubin per architecture plus PTX of the oldest, the launch
table, the kernels' loop IR (for the emulator) and the weights, in one artifact. Load:
the driver-API runtime (`runtime.cuda_driver`: module, arena, weights, a CUDA graph) or,
for `-device=emulator`, the emulator (`runtime.emulated`). Loading needs numpy and
cuda-bindings only; NVRTC is needed to compile.
"""
from __future__ import annotations

import json

from .. import __version__
from ..ir.errors import TargetError
from ..ir.graph import Graph
from ..runtime.gpu_program import LAUNCH_ABI
from ..runtime.signature import TensorSpec
from .base import Artifact, Backend, BuildOptions, BuildPlan

DEVICES = ("gpu", "emulator", "emulator-native")


class CUDABackend(Backend):
    kind = "cuda"
    description = ("NVIDIA GPU through NVRTC (options: -arch=sm_80|sm_86|sm_89|sm_90, "
                   "-device=gpu|emulator|emulator-native)")
    option_names = ("arch", "device")
    default_opt_level = 3
    static_shapes = True
    precisions = ("fp32", "fp16", "bf16")
    # the ops whose kernels take 16-bit operands as they are (the tensor-core template,
    # `codegen/cuda/products.py`, and the attention kernel): reduced precision casts around them
    autocast_ops = ("Conv", "MatMul", "Gemm", "Linear", "Attention")

    @property
    def legalize_passes(self) -> tuple:
        from ..passes.pipeline import LEGALIZE

        return LEGALIZE

    def precision_passes(self, options: BuildOptions | None) -> tuple:
        """fp16 / bf16: the products' operands cast to the 16-bit type (`passes.autocast`)."""
        from ..passes.autocast import autocast

        precision = self.check_precision(options)
        return () if precision == "fp32" else (autocast(precision, self.autocast_ops, options.exclude),)

    def parse_options(self, options: dict[str, str], text: str) -> dict[str, str]:
        from ..codegen.cuda.target import parse_archs

        options = super().parse_options(options, text)
        if "arch" in options:
            parse_archs(options["arch"])
        if options.get("device", "gpu") not in DEVICES:
            raise TargetError(f"target {text!r}: -device={options['device']}; cuda runs on {', '.join(DEVICES)}")
        if options.get("device", "gpu").startswith("emulator") and "arch" not in options:
            raise TargetError(f"target {text!r}: the emulator stands in for a GPU of some architecture: "
                              f"give -arch=sm_80 (or sm_86, sm_89, sm_90) too")
        return options

    @property
    def capabilities(self):
        from ..codegen.cuda.target import CAPABILITIES

        return CAPABILITIES

    def gpu(self, target):
        """The CUDATarget of a parsed target: its -arch, or the local GPU's architecture."""
        from ..codegen.cuda.target import CUDATarget, arch_for_capability, parse_archs

        if "arch" in target.options:
            return CUDATarget(parse_archs(target.options["arch"]))
        from ..ir.errors import ArtifactError
        from ..runtime.cuda_driver import open_device

        try:
            _, capability, _, _ = open_device()
        except ArtifactError as e:
            raise TargetError(f"target 'cuda' means the local GPU, and there is none usable here ({e}); to "
                              f"cross-compile give -arch=sm_80|sm_86|sm_89|sm_90, and add -device=emulator to "
                              f"run on the emulator") from None
        return CUDATarget((arch_for_capability(*capability),))

    def plan(self, graph: Graph, target, options: BuildOptions, ctx=None) -> BuildPlan:
        return self.plan_program(graph, options, self.gpu(target), None, ctx)

    def build(self, graph: Graph, target, options: BuildOptions, source: str) -> Artifact:
        from ..codegen.cuda.build import compile_program
        from ..codegen.model_builder import kernel_listing
        from ..runtime.cuda_driver import local_driver_version

        plan = self.plan(graph, target, options)
        gpu = self.gpu(target)
        build = compile_program(plan.program, gpu)
        program = build.program
        manifest = {
            "compiler_version": __version__,
            "target": str(target),
            "source": source,
            "opt_level": plan.level,
            "inputs": [TensorSpec.of(v).to_json() for v in plan.graph.inputs],
            "outputs": [s.to_json() for s in TensorSpec.outputs_of(plan.graph)],
            "launch_abi": LAUNCH_ABI,
            "device": target.options.get("device", "gpu"),
            "archs": list(gpu.archs),
            "ptx_arch": build.ptx_arch,
            "min_compute_capability": list(gpu.min_compute_capability),
            "nvrtc_version": build.nvrtc_version,
            "ptx_min_driver": ".".join(str(build.nvrtc_version).split(".")[:2]),  # the CUDA version of the PTX
            "build_driver_version": local_driver_version(),  # None when cross-compiled without a driver
            "arena_size": program.arena_size,
            "kernels": len(program.kernels),
            "kernel_calls": len(program.calls),
            "launches": sum(len(c["launches"]) for c in build.launches),
        }
        sections = {"model.cu": build.source.encode(), "model.ptx": build.ptx, "weights.bin": program.weights,
                    "launches.json": json.dumps(build.launches).encode(), "kernels.json": build.kernels_json,
                    "kernels.txt": kernel_listing(program).encode(),
                    "calls.json": json.dumps(program.call_listing()).encode(),
                    **{f"{arch}.cubin": cubin for arch, cubin in build.cubins.items()}}
        manifest["precision"] = {"requested": options.precision, "exclude": list(options.exclude),
                                 "nodes": plan.details["precision"]}
        artifact = Artifact(manifest, sections)
        artifact.timings = {**plan.details["phase_seconds"], **build.timings}
        return artifact

    def load(self, artifact: Artifact, where: str, num_threads: int | None = None, lazy: bool = False):
        device = artifact.manifest.get("device")
        if device in ("emulator", "emulator-native"):
            from ..runtime.emulated import EmulatedModel

            return EmulatedModel(artifact.manifest, artifact.sections, where, native=device == "emulator-native")
        from ..runtime.cuda_driver import CudaModel

        return CudaModel(artifact.manifest, artifact.sections, where, lazy=lazy)

    def cache_key(self, target, options: BuildOptions) -> str | None:
        if "arch" not in target.options:
            return None  # the local GPU decides the architecture: not known without asking the driver
        precision = options.precision + "".join(f" -exclude={x}" for x in sorted(options.exclude))
        return f"{target} -O{self.level(options)} precision={precision}"
