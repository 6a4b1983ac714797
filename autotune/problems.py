"""The problems the tuner works on, their cache keys and names, and how to find every
microkernel problem of a model.

A tuning problem is what decides the emitted code apart from the schedule:
    GemmProblem   plain GEMMs (Linear/MatMul/Gemm) and every non-depthwise conv (as the
                  implicit GEMM `ConvProblem.gemm()` describes it: same kernel, same code)
    ConvProblem   depthwise convs (their own kernel and schedule space)
The key is the dataclass repr (of `tuning_problem`): every field (shape, strides, groups,
epilogue, precision) in a fixed order, readable in the cache file. A field added to a problem class changes the keys, so
old entries simply stop matching (never a wrong hit).
"""
from __future__ import annotations

import dataclasses

from ..codegen.llvm.microkernels import ConvProblem
from ..codegen.llvm.microkernels.conv import canonical_problem

# The stand-in activation quantization of int8 problems: the scale and zero point are
# constants in the code that do not change its speed, so one tuning serves every calibration.
TUNING_QUANT = (1.0, 0)


def tuning_problem(problem):
    """The problem as tuned and keyed: `canonical_problem`, with an int8 problem's
    quantization replaced by TUNING_QUANT (and weights given as codes keyed as any int8 weights)."""
    p = canonical_problem(problem)
    if getattr(p, "quant", None) is not None:
        p = dataclasses.replace(p, quant=TUNING_QUANT)
    if getattr(p, "out_quant", None) is not None:
        p = dataclasses.replace(p, out_quant=TUNING_QUANT)
    if getattr(p, "res_quant", None) is not None:
        p = dataclasses.replace(p, res_quant=TUNING_QUANT)
    if getattr(p, "b_codes", False):  # how the weights were quantized: packing only, the same code
        p = dataclasses.replace(p, b_codes=False)
    return p


def problem_key(problem) -> str:
    return repr(tuning_problem(problem))


def describe(problem) -> str:
    """A short human name: `conv 3x3/2 56x56x128->128` or `gemm 1x2048->1000`."""
    p = tuning_problem(problem)
    if isinstance(p, ConvProblem):  # depthwise
        return f"dwconv {p.kh}x{p.kw}/{p.stride[0]} {p.batch}x{p.in_h}x{p.in_w}x{p.in_c}"
    a = p.a
    groups = f" g{p.groups}" if p.groups > 1 else ""
    epilogue = f" +{p.epilogue.key}" if p.epilogue.key != "none" else ""
    precision = " int8" if p.quant is not None else " bf16" if p.bf16 else " fp16" if p.fp16 else ""
    if a.pointwise and a.batch == 1 and a.in_w == 1:
        return f"gemm {a.rows}x{a.k}->{p.n}{groups}{epilogue}{precision}"
    cin, cout = a.cin * p.groups, p.n * p.groups
    return f"conv {a.kh}x{a.kw}/{a.stride[0]} {a.batch}x{a.in_h}x{a.in_w}x{cin}->{cout}{groups}{epilogue}{precision}"


def flops(problem) -> int:
    return tuning_problem(problem).flops


def problems_of_graph(graph, target) -> list[tuple[object, int]]:
    """Every distinct microkernel problem of an (optimized, possibly fused) graph with how many nodes use
    it, in graph order: the problems the extern lowering rules accept (the rules decide, so
    this never disagrees with what the code generator will ask the tuner for)."""
    from ..codegen.model_builder import fold_constants, kernel_groups
    from ..codegen.schedule import HEURISTIC
    from ..ir.ops import get_op

    graph, _ = kernel_groups(graph)  # the nodes inside fused kernels too
    known = fold_constants(graph)
    found: dict[str, list] = {}
    for node in graph.nodes:
        rule = get_op(node.op).extern_lowering(target.kind)
        if rule is None or all(v in known for v in node.outputs):  # folded nodes run at compile time
            continue
        plan = rule(node, known, target, HEURISTIC)  # heuristic schedules: nothing may be timed here
        if plan is not None and plan.kernel.schedule is not None:  # attention has no knobs to tune
            problem = tuning_problem(plan.kernel.problem)
            found.setdefault(problem_key(problem), [problem, 0])[1] += 1
    return [(problem, count) for problem, count in found.values()]
