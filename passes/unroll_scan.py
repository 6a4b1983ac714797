"""Scan unrolled over its static number of steps into the body's own ops: a legalization
every native target runs at every -O level (beside `unroll_recurrent`).

A Scan whose scan inputs have a static length runs its body that many times, each time on
the states the previous step left and on one slice of each scan input. With the length
known at compile time that is a fixed graph: per step, a Gather takes the slice (from the
end for a scan input scanned backwards), the body's nodes are emitted again on it (values
the body reads from the enclosing graph are read as they are; the body's constants once
for all steps), and the step's states feed the next. Each scan output is the steps'
values unsqueezed and concatenated along its axis (in reverse for a prepending output).
Nothing is approximated: the nodes are the body's own, so the result follows the
reference interpreter's loop exactly.

Left to the refusal that names the op (`ir.registry.CONTROL_FLOW`): a length known only at
run time, a body holding subgraphs of its own, zero steps, and a body so long that the
unrolled graph would pass `MAX_UNROLLED_NODES` (compile time grows with it).
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node, Value
from ..ir.ops import get_op
from .core import PassContext, graph_pass
from .rewriter import Rewriter, Rule, apply_rules, rule_table

MAX_UNROLLED_NODES = 20_000  # steps x body nodes: beyond it compile time, not run time, dominates


def _ints(value, count: int) -> list[int]:
    return list(value) if value else [0] * count


def _step_length(node: Node, scans: list, axes: list[int]) -> int | None:
    """The static number of steps (every scan input agreeing), or None."""
    lengths = set()
    for x, axis in zip(scans, axes):
        shape = getattr(x.type, "shape", None)
        if shape is None or not x.type.is_static:
            return None
        lengths.add(shape[axis % len(shape)])
    return lengths.pop() if len(lengths) == 1 else None


def _unroll(node: Node, rw: Rewriter):
    attrs = get_op("Scan").resolve_attrs(node.attrs, node.describe())
    body: Graph = attrs["body"]
    n_scan = attrs["num_scan_inputs"]
    n_state = len(node.inputs) - n_scan
    n_out = len(body.outputs) - n_state
    scans = node.inputs[n_state:]
    in_axes, in_dirs = _ints(attrs["scan_input_axes"], n_scan), _ints(attrs["scan_input_directions"], n_scan)
    out_axes, out_dirs = _ints(attrs["scan_output_axes"], n_out), _ints(attrs["scan_output_directions"], n_out)
    steps = _step_length(node, scans, in_axes) if n_scan else None
    if not steps or any(b.subgraphs() for b in body.nodes) or steps * max(len(body.nodes), 1) > MAX_UNROLLED_NODES:
        return None
    consts = {v: rw.constant(v.const, f"{node.name}_{v.name}") for v in body.constants}
    states = list(node.inputs[:n_state])
    collected: list[list[Value]] = [[] for _ in range(n_out)]
    for t in range(steps):
        env: dict[Value, Value] = dict(consts)
        env.update(zip(body.inputs[:n_state], states))
        for j, (x, axis, backwards) in enumerate(zip(scans, in_axes, in_dirs)):
            at = rw.constant(np.asarray(steps - 1 - t if backwards else t, np.int64), f"{node.name}_t{t}")
            env[body.inputs[n_state + j]] = rw.op("Gather", x, at, name=f"{node.name}_t{t}_in{j}",
                                                  axis=axis % x.type.rank)
        for inner in body.nodes:
            outs = rw.emit(inner.op, [None if v is None else env.get(v, v) for v in inner.inputs], inner.attrs,
                           name=f"{node.name}_t{t}_{inner.name}", num_outputs=len(inner.outputs))
            env.update((old, new) for old, new in zip(inner.outputs, outs) if old is not None)
        results = [env.get(v, v) for v in body.outputs]
        states = results[:n_state]
        for j, v in enumerate(results[n_state:]):
            collected[j].append(v)
    outputs = list(states)
    for j, values in enumerate(collected):
        axis = out_axes[j] % (values[0].type.rank + 1)
        where = rw.constant(np.asarray([axis], np.int64), f"{node.name}_out{j}_axis")
        parts = [rw.op("Unsqueeze", v, where, name=f"{node.name}_out{j}") for v in (values[::-1] if out_dirs[j] else values)]
        outputs.append(parts[0] if len(parts) == 1 else rw.op("Concat", *parts, name=f"{node.name}_out{j}", axis=axis))
    return outputs


RULES = rule_table([Rule("Scan", _unroll, "a Scan over a static number of steps is its body once per step")])


@graph_pass
def unroll_scan(graph: Graph, ctx: PassContext) -> Graph:
    return apply_rules(graph, ctx, RULES, "unroll_scan")
