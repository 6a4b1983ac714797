"""The `llvm` target: native code for x86-64 CPUs (`codegen.llvm`).

    llvm                 the host CPU
    llvm -mcpu=NAME      another x86-64 CPU or micro-architecture level (cross-compiling)

Plan: the -O pipeline with the channels-last layout passes, then the program
(`codegen.model_builder`: kernels, calls, arena), extern kernels' schedules from the
autotuner's cache for this device (tuned now with `tune`). Build: the program as one shared
library with the `cm_entry` entry point. Load: the numpy-only runtime (`runtime.native`),
which refuses code needing CPU features this host lacks. This module imports llvmlite and
the code generator only when it compiles, so `compiler.load` stays light.
"""
from __future__ import annotations

import json

from .. import __version__
from ..ir.graph import Graph
from ..runtime.native import NATIVE_ABI, NativeModel
from ..runtime.signature import TensorSpec
from .base import Artifact, Backend, BuildOptions, BuildPlan


class LLVMBackend(Backend):
    kind = "llvm"
    description = "host CPU through LLVM (options: -mcpu=NAME)"
    option_names = ("mcpu",)
    default_opt_level = 3
    static_shapes = True
    profiling = True
    tuning = True
    precisions = ("fp32", "bf16", "fp16", "int8")

    @property
    def legalize_passes(self) -> tuple:
        from ..passes.pipeline import LEGALIZE

        return LEGALIZE

    @property
    def layout_passes(self) -> tuple:
        from ..passes.pipeline import CHANNELS_LAST

        return CHANNELS_LAST

    @property
    def capabilities(self):
        from ..codegen.llvm.target import CAPABILITIES

        return CAPABILITIES

    def cpu(self, target):
        from ..codegen.llvm.target import cpu_target

        return cpu_target(target.options)

    def _schedules(self, options: BuildOptions):
        from ..autotune import TunedSchedules
        from ..codegen.schedule import HEURISTIC

        if not options.tuned:
            return HEURISTIC
        return TunedSchedules(threads=options.num_threads, tune=options.tune, budget_s=options.tune_budget_s)

    def plan(self, graph: Graph, target, options: BuildOptions, ctx=None) -> BuildPlan:
        from ..codegen.llvm.target import check_precision_isa

        cpu = self.cpu(target)
        check_precision_isa(cpu, options.precision)
        return self.plan_program(graph, options, cpu, self._schedules(options), ctx)

    def build(self, graph: Graph, target, options: BuildOptions, source: str) -> Artifact:
        from ..codegen.llvm.build import compile_program
        from ..codegen.llvm.entry import KernelTimers

        plan = self.plan(graph, target, options)
        build = compile_program(plan.program, self.cpu(target), KernelTimers() if options.profile else None)
        artifact = self.package(plan.graph, build, target, source, plan.level, options.profile)
        artifact.manifest["precision"] = {"requested": options.precision, "exclude": list(options.exclude),
                                          "nodes": plan.details["precision"]}
        from ..codegen.llvm.target import PRECISION_FEATURES

        if options.precision in PRECISION_FEATURES:  # named in the refusal of a host without it
            artifact.manifest["precision"]["isa"] = list(PRECISION_FEATURES[options.precision])
        if plan.details.get("int8_ranges") is not None:
            artifact.manifest["precision"]["int8"] = plan.details["int8_ranges"]
            # values that cross memory as uint8 codes (`passes.chain_narrow`)
            artifact.manifest["precision"]["uint8_values"] = plan.details["int8_chains"]
        if plan.details.get("bf16_chains"):  # values that cross memory as bfloat16
            artifact.manifest["precision"]["bfloat16_values"] = plan.details["bf16_chains"]
        if plan.details.get("fp16_chains"):  # values that cross memory as float16
            artifact.manifest["precision"]["float16_values"] = plan.details["fp16_chains"]
        artifact.timings = {**plan.details["phase_seconds"], **build.timings}
        return artifact

    def package(self, graph: Graph, build, target, source: str, level: int | None = None,
                profiled: bool = False) -> Artifact:
        """The artifact of a `codegen.llvm.build.NativeBuild` of `graph` (its signature)."""
        from ..codegen.model_builder import kernel_listing

        program = build.program
        manifest = {
            "compiler_version": __version__,
            "target": str(target),
            "source": source,
            "opt_level": level,
            "inputs": [TensorSpec.of(v).to_json() for v in graph.inputs],
            "outputs": [s.to_json() for s in TensorSpec.outputs_of(graph)],
            "native_abi": NATIVE_ABI,
            "cpu": build.target.cpu,
            "cpu_features": list(build.target.required),
            "arena_size": program.arena_size,
            "kernels": len(program.kernels),
            "kernel_calls": len(program.calls),
            "profiled": profiled,
        }
        sections = {"model.so": build.library, "weights.bin": program.weights,
                    "kernels.txt": kernel_listing(program).encode(),
                    "calls.json": json.dumps(program.call_listing()).encode()}
        return Artifact(manifest, sections)

    def load(self, artifact: Artifact, where: str, num_threads: int | None = None, lazy: bool = False):
        return NativeModel(artifact.manifest, artifact.sections, where=where, num_threads=num_threads, lazy=lazy)

    def cache_key(self, target, options: BuildOptions) -> str | None:
        """Options, level, and a fingerprint of the tuned schedules the build would use
        (tuning after a compile must not return the old artifact). Profiling builds are
        not cached."""
        from ..autotune import fingerprint

        if options.profile:
            return None
        precision = options.precision + "".join(f" -exclude={x}" for x in sorted(options.exclude))
        tuned = fingerprint(self.cpu(target), options.num_threads) if options.tuned else "off"
        return f"{target} -O{self.level(options)} precision={precision} tuned={tuned}"

    def tuning_database(self, target, threads: int):
        from ..autotune.database import TuningDatabase
        from ..autotune.device import device_of

        return TuningDatabase(device_of(self.cpu(target), threads))

    def tune(self, graph: Graph, target, threads: int, budget_s: float, retune: bool = False,
             precision: str = "fp32", ray: str | None = None):
        """Tune every extern kernel problem of the model, built at `precision`, for this
        device and thread count (bf16 and int8 products are problems of their own; int8
        needs no calibration here, its tuning key leaves the activation ranges out)."""
        from ..autotune.model import tune_graph
        from ..codegen.llvm.target import check_precision_isa

        cpu = self.cpu(target)
        check_precision_isa(cpu, precision)
        calibration = None
        if precision == "int8":  # ranges do not change a kernel's speed (`autotune.problems.TUNING_QUANT`)
            from ..passes.int8_ranges import Calibration

            calibration = Calibration(placeholder=True)
        optimized = self.optimize(graph, self.default_opt_level,
                                  options=BuildOptions(precision=precision, calibration=calibration))
        return tune_graph(optimized, cpu, threads, budget_s, retune=retune, ray=ray)
