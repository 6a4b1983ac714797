"""Scan-8 into the newest Scan: a Loop over the batch whose body runs one Scan per sample.

Scan-8 took every state and scan input with a leading batch axis (scan inputs were
scanned along axis 1) plus an optional `sequence_lens`; from opset 9 Scan has no batch
axis. Looping over the batch and letting Loop stack the per-sample results along a new
axis 0 gives back exactly Scan-8's outputs, states and scan outputs alike.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..ir import dtypes
from ..ir.builder import GraphBuilder
from ..ir.types import TensorType

if TYPE_CHECKING:
    from .onnx_converters import ImportContext


def convert_scan8(ctx: ImportContext, inputs, attrs):
    """Loop(batch) { Scan(each state and scan input at batch index i) }."""
    sequence_lens, batched = inputs[0], list(inputs[1:])
    if sequence_lens is not None:
        raise ctx.error("Scan-8 with sequence_lens (per-sample lengths) is not supported; re-export at opset 9+")
    if not batched:
        raise ctx.error("has no state or scan inputs")
    scan_attrs = {"body": attrs["body"], "num_scan_inputs": attrs["num_scan_inputs"]}
    if "directions" in attrs:
        scan_attrs["scan_input_directions"] = attrs["directions"]

    body = GraphBuilder(f"{ctx.node_name}_per_sample")
    index = body.input(f"{ctx.node_name}_sample", TensorType((), dtypes.int64))
    cond = body.input(f"{ctx.node_name}_cond", TensorType((), dtypes.bool_))
    samples = [body.op("Gather", v, index, axis=0, name=f"{ctx.node_name}_take") for v in batched]
    results = body.node("Scan", samples, scan_attrs, name=ctx.node_name, num_outputs=len(ctx.output_names))
    body.output(body.op("Identity", cond, name=f"{ctx.node_name}_keep_going"), *results)

    batch = ctx.emit1("Squeeze", ctx.emit1("Shape", batched[0], start=0, end=1), ctx.ints([0]))
    return ctx.emit("Loop", [batch, None], {"body": body.build(verify=False)}, num_outputs=len(ctx.output_names),
                    output_names=list(ctx.output_names))

