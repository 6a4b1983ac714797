"""What a target is to the rest of the compiler: one `Backend` object.

A backend parses its target options, runs the -O pipeline with its own layout passes,
plans a build (the kernels, their calls, the arena: what `compile inspect` shows), builds a
graph into artifact sections and a manifest, loads an artifact into a runnable model (which
checks the device can run it before any of its code does: the llvm runtime refuses CPU
features the host lacks), and declares what its code generator supports. Every entry point
(`compiler.compile`, the CLI, the torch JIT, the ONNX conformance backend, the benchmark
profiler, the tuner) goes through these methods; none of them branches on a target's name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..ir.errors import TargetError
from ..ir.graph import Graph


@dataclass(frozen=True)
class BuildOptions:
    """How to build, whatever the target (each backend uses what applies to it)."""

    opt_level: int | None = None  # the -O level (passes.pipeline); None: the backend's default
    num_threads: int | None = None  # threads the model runs (and is tuned) with; None: all cores
    tune: bool = False  # time schedules this device has not tuned yet, and cache them
    tune_budget_s: float = 10.0  # per problem tuned
    tuned: bool = True  # schedules from the tuning database where it has them; False: heuristic defaults only
    profile: bool = False  # timers around every kernel call (`compile bench --profile`)
    precision: str = "fp32"  # what products compute in (`ir.registry.PRECISIONS`)
    exclude: tuple[str, ...] = ()  # node names or op types kept in fp32 whatever `precision` says
    calibration: Any = field(default=None, compare=False)  # passes.int8_ranges.Calibration (int8 only)
    check_types: bool = False  # the interpreter checks every value against its type (conformance)


@dataclass
class Artifact:
    """What a build produces and `load` runs: the manifest and the named sections
    (`compiler.artifact` writes them to one file)."""

    manifest: dict
    sections: dict[str, bytes]
    timings: dict = field(default_factory=dict)  # seconds per build phase (not saved)


@dataclass
class BuildPlan:
    """What a build compiles, decided before any code is emitted: the graph the -O pipeline
    leaves, each kernel call in order ({kernel, ops, nodes, flops}), and the arena. The
    artifact's `calls.json` is `calls`, so the plan and the artifact agree by construction."""

    graph: Graph
    level: int
    calls: list[dict]
    num_kernels: int  # distinct kernel functions (calls may share one)
    memory: Any = None  # passes.plan_memory.MemoryPlan; None: the target allocates per node (the interpreter)
    details: dict = field(default_factory=dict)  # backend-specific counts (how nodes were computed...)
    program: Any = None  # the backend's own plan, which `build` compiles

    @property
    def arena_bytes(self) -> int | None:
        return None if self.memory is None else self.memory.arena_bytes


class Backend:
    """One target kind. Subclasses set the class attributes and implement the methods."""

    kind: str  # the target's name: `--target KIND [-option=value ...]`
    description: str
    option_names: tuple[str, ...] = ()  # the `-name=value` options it takes
    default_opt_level: int = 3
    layout_passes: tuple = ()  # its layout passes, run at -O2 and above
    legalize_passes: tuple = ()  # decompositions into ops it has rules for, run first at every level
    capabilities = None  # codegen.target.Capabilities of its code generator (None: it runs the IR itself)
    static_shapes: bool = False  # its code needs every shape known at compile time
    profiling: bool = False  # can build with timers around every kernel call
    tuning: bool = False  # has schedules the autotuner can search
    precisions: tuple[str, ...] = ("fp32",)  # the `precision=` values it builds

    def parse_options(self, options: dict[str, str], text: str) -> dict[str, str]:
        """Validate `-name=value` options (`text`: the whole target string, for messages)."""
        unknown = sorted(set(options) - set(self.option_names))
        if unknown:
            takes = ", ".join(f"-{n}=..." for n in self.option_names) or "no options"
            raise TargetError(f"target {text!r}: unknown option(s) {unknown}; {self.kind} takes {takes}")
        return options

    def inlined_ops(self) -> frozenset[str]:
        """Registry ops this target would rather import as their ONNX function body: a code
        generator's ops that wait for a rule of their own (`PENDING_RULE`). The frontend
        inlines them where ONNX defines one (LinearAttention, FlexAttention...), as it does
        for ops the registry lacks; the interpreter runs every op as it is."""
        if self.capabilities is None:
            return frozenset()
        from ..codegen import lowering  # noqa: F401 - registers the rules read below
        from ..ir.ops import REGISTRY
        from ..ir.registry import PENDING_RULE

        return frozenset(name for name, op in REGISTRY.items() if op.lowering is None
                         and op.not_lowerable == PENDING_RULE)

    def level(self, options: BuildOptions) -> int:
        return self.default_opt_level if options.opt_level is None else options.opt_level

    def optimize(self, graph: Graph, level: int, ctx=None, options: BuildOptions | None = None) -> Graph:
        """The -O`level` pipeline with this target's layout passes and the precision
        lowering `options` ask for."""
        from ..passes.pipeline import optimize

        return optimize(graph, level, ctx, self.layout_passes, self.precision_passes(options), self.legalize_passes)

    def check_precision(self, options: BuildOptions | None) -> str:
        """`options.precision`, refused by name when unknown or when this target does not build it."""
        from ..passes.lower_precision import check_precision

        precision = check_precision(options.precision) if options is not None else "fp32"
        if precision not in self.precisions:
            raise TargetError(f"target {self.kind} does not build precision '{precision}'; "
                              f"it builds {', '.join(self.precisions)}")
        return precision

    def precision_passes(self, options: BuildOptions | None) -> tuple:
        """The passes lowering products to `options.precision` (none for fp32)."""
        from ..passes.lower_precision import lower_precision

        precision = self.check_precision(options)
        if precision == "fp32":
            return ()
        lowered = lower_precision(precision, options.exclude, options.calibration)
        if precision in ("int8", "bf16", "fp16"):
            from ..passes.chain_narrow import chain_narrow

            # products read by int8 (bf16, fp16) products only hand them uint8 codes (bfloat16, float16)
            return (lowered, chain_narrow)
        return (lowered,)

    def plan(self, graph: Graph, target, options: BuildOptions, ctx=None) -> BuildPlan:
        raise NotImplementedError

    def plan_program(self, graph: Graph, options: BuildOptions, codegen_target, schedules=None, ctx=None) -> BuildPlan:
        """The plan of a code-generating target: the -O pipeline, then the program
        (`codegen.model_builder`) for `codegen_target` with `schedules` (None: heuristic)."""
        import time
        from collections import Counter

        from ..codegen.model_builder import build_program
        from ..codegen.schedule import HEURISTIC

        from ..passes.core import PassContext

        level = self.level(options)
        ctx = ctx if ctx is not None else PassContext()
        start = time.perf_counter()
        optimized = self.optimize(graph, level, ctx, options)
        passes_s = time.perf_counter() - start
        program = build_program(optimized, codegen_target, schedules or HEURISTIC)
        lower_s = time.perf_counter() - start - passes_s
        details = {"nodes_by_path": dict(sorted(Counter(program.paths.values()).items())),
                   "phase_seconds": {"graph_passes": passes_s, "lower": lower_s},
                   "precision": [r.as_dict() for r in ctx.analyses.get("precision", ())]}
        if "int8_ranges" in ctx.analyses:
            details["int8_ranges"] = ctx.analyses["int8_ranges"].as_dict()
            details["int8_chains"] = ctx.analyses.get("int8_chains", [])
        for chains in ("bf16_chains", "fp16_chains"):
            if chains in ctx.analyses:
                details[chains] = ctx.analyses[chains]
        return BuildPlan(optimized, level, program.call_listing(), len(program.kernels), program.memory, details,
                         program)

    def build(self, graph: Graph, target, options: BuildOptions, source: str) -> Artifact:
        raise NotImplementedError

    def load(self, artifact: Artifact, where: str, num_threads: int | None = None, lazy: bool = False):
        """The runnable model of an artifact (`lazy`: open native code at the first run, so a
        cross-compiled model can still be saved)."""
        raise NotImplementedError

    def compile_model(self, graph: Graph, target, options: BuildOptions, source: str):
        """Build and wrap: the runnable model of `graph`, what `compiler.compile`, the torch
        JIT and the conformance backend return."""
        artifact = self.build(graph, target, options, source)
        from ..passes.index_guards import index_guards

        artifact.manifest["index_guards"] = index_guards(graph)  # inputs the runtime checks as indices
        model = self.load(artifact, where=source, num_threads=options.num_threads, lazy=True)
        model.timings = artifact.timings
        return model

    def cache_key(self, target, options: BuildOptions) -> str | None:
        """The target's part of a compile-cache key; None: builds are not cached."""
        return None

    def tune(self, graph: Graph, target, threads: int, budget_s: float, retune: bool = False,
             precision: str = "fp32", ray: str | None = None):
        raise TargetError(f"target {self.kind!r} has no schedules to tune")

    def tuning_database(self, target, threads: int):
        """The tuning database rows of this device and thread count (`autotune.database`)."""
        raise TargetError(f"target {self.kind!r} has no schedules to tune")

    def describe(self) -> dict:
        """JSON-ready: what this backend is and supports."""
        caps = self.capabilities.describe() if self.capabilities is not None else None
        return {"kind": self.kind, "description": self.description, "options": list(self.option_names),
                "default_opt_level": self.default_opt_level, "capabilities": caps,
                "static_shapes": self.static_shapes, "profiling": self.profiling, "tuning": self.tuning}
