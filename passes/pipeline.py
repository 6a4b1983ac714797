"""The optimization pipeline: one scale of -O levels for every target and every tool
(`compile`, `compile inspect`, the torch JIT, the conformance backend).

    -O0  nothing: the imported graph as is, one kernel per node (after the target's
         legalization: targets that generate code first decompose the ops they have no
         rule for into ops they have, e.g. recurrent layers unrolled over their steps)
    -O1  simplify: constants, shapes, identities, dead code, common subexpressions
    -O2  O1, then BatchNorm folding, then recognition of decomposed LayerNorm / GELU /
         Softmax / attention / MatMul+Add alternating with simplification, then the
         target's layout passes (the llvm target: channels-last conv chains with fused
         epilogues, then simplification again so leftover Transposes disappear)
    -O3  O2, then fusion: each kernel becomes one FusedKernel node (the default)

The code generator takes the graph as -O`level` leaves it: a FusedKernel node is one
kernel, any other node a kernel of its own. Memory is planned by the build, after
lowering, where each kernel's scratch is known (`passes.plan_memory`'s planner).

Order matters and is deliberate: simplification first (patterns match canonical forms:
no Identity or Dropout in the way, shapes constant); BatchNorm folding before recognition
(a folded BN leaves MatMul -> Add for the Linear rule); layout after recognition (it
rewrites the recognized Gemm/Linear and convs); fusion last (it sees the final ops).
"""
from __future__ import annotations

from typing import Sequence

from ..ir.graph import Graph
from .conv_forms import conv_forms
from .core import Pass, PassContext, fixed_point, run_pipeline
from .eliminate_common_subexpressions import eliminate_common_subexpressions
from .eliminate_dead_code import eliminate_dead_code
from .fold_batchnorm import fold_batchnorm
from .fold_constants import fold_constants
from .decompose_qlinear import decompose_qlinear
from .fold_integer_matmul import fold_integer_matmul
from .fold_qdq import fold_qdq
from .fold_shapes import fold_shapes
from .fuse import fuse
from .recognize_patterns import recognize_patterns
from .simplify_algebra import simplify_algebra
from .to_channels_last import to_channels_last
from .unroll_recurrent import unroll_recurrent
from .unroll_scan import unroll_scan
from .widen_products import widen_products

SIMPLIFY = fixed_point("simplify", [
    fold_shapes,
    fold_constants,
    simplify_algebra,
    eliminate_common_subexpressions,
    eliminate_dead_code,
])

# Recognition and simplification alternate: a recognized pattern can leave a canonical
# form for the next one (attention's K^T Transpose composes with the head-split Transpose,
# and only then do the head split and merge fold into packed Attention).
RECOGNIZE = fixed_point("recognize", [recognize_patterns, SIMPLIFY])

# The layout passes of CPU targets whose convolutions and pools run channels-last, on
# float32 product kernels (16-bit float products widened around them); 1-D and
# non-overlapping transposed convolutions first take forms those kernels run, and a model's
# own quantized products (QLinear ops, integer matmuls) forms the int8 kernels run.
CHANNELS_LAST = (conv_forms, decompose_qlinear, fold_integer_matmul, to_channels_last, fold_qdq, widen_products,
                 SIMPLIFY)

# Decompositions into ops native code has rules for, run first at every level by the
# targets that generate code (the interpreter runs the original ops as they are).
LEGALIZE = (unroll_recurrent, unroll_scan)

LEVELS = (0, 1, 2, 3)
DEFAULT_LEVEL = 3


def pipeline(level: int, layout: Sequence[Pass] = (), precision: Sequence[Pass] = (),
             legalize: Sequence[Pass] = ()) -> list[Pass]:
    """The passes of -O`level` for a target whose layout passes are `layout`, with the
    `precision` lowering (`passes.lower_precision`) after layout and before fusion: it
    marks the ConvNhwc and Linear nodes layout leaves, and fusion sees the final ops.
    `legalize` (the target's decompositions) comes first, at every level."""
    if level not in LEVELS:
        raise ValueError(f"optimization level must be one of {LEVELS}, got {level}")
    passes: list[Pass] = list(legalize)
    if level >= 1:
        passes.append(SIMPLIFY)
    if level >= 2:
        passes += [fold_batchnorm, RECOGNIZE, *layout]
    passes += precision
    if level >= 3:
        passes.append(fuse)
    return passes


# The target-neutral pipelines (no layout passes), by level.
PIPELINES: dict[int, list[Pass]] = {level: pipeline(level) for level in LEVELS}


def optimize(graph: Graph, level: int = DEFAULT_LEVEL, ctx: PassContext | None = None,
             layout: Sequence[Pass] = (), precision: Sequence[Pass] = (), legalize: Sequence[Pass] = ()) -> Graph:
    """Run the -O`level` pipeline (with a target's `legalize`, `layout` and `precision`
    passes) on `graph`."""
    return run_pipeline(graph, pipeline(level, layout, precision, legalize), ctx)
