"""The channels-last layout pass for the CPU target: 2-D convolution chains run in NHWC,
with layout changes only where a chain meets something that needs NCHW.

Three steps, each a rule set of its own module:
  1. layout_convert: every 2-D Conv / pool / LRN becomes its NHWC op between Transposes;
  2. layout_sinking: Transposes to NCHW sink through layout-free ops and cancel against
     the Transposes to NHWC of the next conv or pool;
  3. fuse_epilogues: bias, residual and activation after each conv (and activations
     after dense layers) fold into the op, now that they sit next to it in NHWC.
The SIMPLIFY pipeline that follows in `pipeline.CHANNELS_LAST` removes what is left over (a Transpose
that only moves size-1 axes becomes a Reshape, reshape chains collapse).
"""
from __future__ import annotations

from ..ir.graph import Graph
from .core import PassContext, graph_pass
from .eliminate_dead_code import remove_dead_nodes
from .fuse_epilogues import RULES as EPILOGUE_RULES
from .layout_convert import RULES as CONVERT_RULES
from .layout_sinking import sink_transposes
from .rewriter import apply_rules


@graph_pass
def to_channels_last(graph: Graph, ctx: PassContext) -> Graph:
    converted = apply_rules(graph, ctx, CONVERT_RULES, "to_channels_last/convert")
    sunk = sink_transposes(converted, ctx)
    fused = apply_rules(sunk, ctx, EPILOGUE_RULES, "to_channels_last/epilogues")
    return fused if fused is graph else remove_dead_nodes(fused)
