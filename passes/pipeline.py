"""The optimization pipelines, one explicit list per level.

    -O0  nothing: the imported graph as is
    -O1  simplify: constants, shapes, identities, dead code, common subexpressions
    -O2  O1, then BatchNorm folding, then recognition of decomposed LayerNorm / GELU /
         Softmax / attention / MatMul+Add alternating with simplification
    -O3  O2, then fusion into kernels and memory planning

`LLVM_PIPELINE`, what the llvm target runs: O2, then the channels-last layout pass (NHWC
conv chains with fused epilogues, for the CPU microkernels), then simplification again so
leftover Transpose pairs and size-1 Transposes disappear.

Order matters and is deliberate: simplification first (patterns match canonical forms:
no Identity or Dropout in the way, shapes constant); BatchNorm folding before recognition
(a folded BN leaves MatMul -> Add for the Linear rule); fusion last (it sees the final
ops); memory planning after fusion (only kernel boundaries hold buffers).
"""
from __future__ import annotations

from ..ir.graph import Graph
from .core import Pass, PassContext, fixed_point, run_pipeline
from .eliminate_common_subexpressions import eliminate_common_subexpressions
from .eliminate_dead_code import eliminate_dead_code
from .fold_batchnorm import fold_batchnorm
from .fold_constants import fold_constants
from .fold_shapes import fold_shapes
from .fuse import fuse
from .plan_memory import plan_memory
from .recognize_patterns import recognize_patterns
from .simplify_algebra import simplify_algebra
from .to_channels_last import to_channels_last

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

O1 = [SIMPLIFY]
O2 = O1 + [fold_batchnorm, RECOGNIZE]
O3 = O2 + [fuse, plan_memory]

LLVM_PIPELINE = O2 + [to_channels_last, SIMPLIFY]

PIPELINES: dict[int, list[Pass]] = {0: [], 1: O1, 2: O2, 3: O3}


def optimize(graph: Graph, level: int = 2, ctx: PassContext | None = None) -> Graph:
    """Run the -O`level` pipeline on `graph`; results of analyses land in `ctx.analyses`."""
    if level not in PIPELINES:
        raise ValueError(f"optimization level must be one of {sorted(PIPELINES)}, got {level}")
    return run_pipeline(graph, PIPELINES[level], ctx)
