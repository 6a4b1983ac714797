"""Graph optimization passes: simplify -> fold BatchNorm -> recognize patterns -> fuse -> plan memory.

A pass is a named `Graph -> Graph` function (`core`); `pipeline.PIPELINES` lists the
passes of each -O level and `optimize(graph, level)` runs one. One pass per module:

    fold_constants, fold_shapes, simplify_algebra,          simplification (rule tables
    eliminate_dead_code, eliminate_common_subexpressions     run by `rewriter.apply_rules`)
    fold_batchnorm                                           BN into Conv/Gemm/MatMul weights
    recognize_patterns                                       LayerNorm, Gelu, Softmax, Attention, Linear
    fuse                                                     FusedKernel nodes (post-dominator regions)
    plan_memory                                              arena offsets, reuse, in-place
    report                                                   what `compile inspect --json` prints
"""
from __future__ import annotations

from .core import Pass, PassContext, PassError, fixed_point, graph_pass, run_pipeline
from .pipeline import PIPELINES, optimize

__all__ = ["Pass", "PassContext", "PassError", "fixed_point", "graph_pass", "run_pipeline", "PIPELINES", "optimize"]
