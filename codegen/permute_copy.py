"""Pure data-movement groups (reshapes around one Transpose) as one permuted copy with
collapsed axes.

A fusion group like ShuffleNet's channel shuffle, Reshape -> Transpose -> Reshape, moves
every element once. Lowered op by op, each output element unravels its index through
every view (a div and a mod per axis per view) before it finds its source. Seen as a
whole, the group is `transpose(x.reshape(S), perm)` written out row-major, and axes that
stay adjacent and in order under `perm` can be merged: the shuffle [1,56,56,3,80] with
perm [0,1,2,4,3] is a [3136,3,80] -> [3136,80,3] transpose, three index terms per element.
"""
from __future__ import annotations

from ..ir.graph import Node, Value
from ..ir.ops import get_op
from . import loop_ir as L
from .schedule import recorded_knobs
from .te import Compute, StridedTensor, Tensor, numel, strides_of


def views_around(nodes: list[Node], escaping: set, op: str) -> Node | None:
    """The one `op` node when `nodes` is a chain of views with exactly one `op` in it and
    only the last value leaves the group (a pure data-movement group); else None."""
    if not nodes or any(not (get_op(n.op).view or n.op == op) for n in nodes):
        return None
    found = [n for n in nodes if n.op == op]
    if len(found) != 1:
        return None
    for prev, node in zip(nodes, nodes[1:]):
        if not node.inputs or node.inputs[0] is not prev.outputs[0]:
            return None
    if any(n.outputs[0] in escaping for n in nodes[:-1]):
        return None
    return found[0]


def match_permute(nodes: list[Node], escaping: set) -> tuple[Value, Value, tuple, tuple] | None:
    """(source, result, view shape S, perm) when `nodes` is a chain of views with exactly one
    Transpose and only the last value leaves the group; else None."""
    t = views_around(nodes, escaping, "Transpose")
    if t is None:
        return None
    shape = t.inputs[0].type.shape
    perm = tuple(t.attrs.get("perm") or range(len(shape) - 1, -1, -1))
    return nodes[0].inputs[0], nodes[-1].outputs[0], tuple(shape), perm


def collapse(shape: tuple, perm: tuple) -> tuple[tuple, tuple]:
    """Drop size-1 axes and merge runs of axes that stay adjacent and in order under `perm`:
    (input shape of the merged axes, perm over them)."""
    keep = [a for a in range(len(shape)) if shape[a] != 1]
    rank_of = {a: i for i, a in enumerate(keep)}  # size-1 axes gone, neighbours become adjacent
    runs: list[list[int]] = []
    for a in (rank_of[a] for a in perm if shape[a] != 1):
        if runs and runs[-1][-1] + 1 == a:
            runs[-1].append(a)
        else:
            runs.append([a])
    order = sorted(range(len(runs)), key=lambda r: runs[r][0])  # merged axes in input order
    merged_shape = tuple(numel([shape[keep[a]] for a in runs[r]]) for r in order)
    position = {r: i for i, r in enumerate(order)}
    return (merged_shape, tuple(position[r] for r in range(len(runs)))) if keep else ((), ())


# Lanes of one output run in a tiled transpose (see permute_kernel).
TILE = 16


def permute_kernel(name: str, source: Value, result: Value, shape: tuple, perm: tuple, target, schedule=None):
    """The loop-IR kernel copying `source` (read as `shape`) into `result` transposed by `perm`.

    When the source's contiguous (last) axis is not the output's, the copy is tiled: the
    output's last axis is cut into runs of TILE, and for each run the loop over the source's
    last axis comes next, so the TILE source rows one run gathers from stay in L1 while all
    of their elements are used (an NHWC -> NCHW transpose of a 112x112x64 map read each
    source line 64 times from L3 otherwise: 1.8 -> 0.2 ms). `schedule`: an injective-class
    Schedule (a tuner's), else the target's default."""
    in_shape, cperm = collapse(shape, perm)
    out_shape = tuple(in_shape[a] for a in cperm) or (1,)
    n = max(1, numel(result.type.shape))
    src = L.Buffer("p0", source.type.dtype, n)
    dst = L.Buffer("p1", result.type.dtype, n)
    in_strides = strides_of(in_shape)
    rank = len(cperm)
    inner = rank - 1
    j = cperm.index(inner) if rank >= 2 else inner  # where the source's contiguous axis lands
    if rank >= 2 and j != inner and out_shape[inner] % TILE == 0 and out_shape[j] > 1:
        out_strides = strides_of(out_shape)
        order = [k for k in range(inner) if k != j]  # outer output axes, then block, then j, then lanes
        space = tuple(out_shape[k] for k in order) + (out_shape[inner] // TILE, out_shape[j], TILE)
        strides = tuple(out_strides[k] for k in order) + (TILE, out_strides[j], 1)

        def element(it):
            idx = dict(zip(order, it))
            idx[j] = it[-2]
            idx[inner] = L.add(L.mul(it[-3], TILE), it[-1])
            flat: L.Expr = L.const(0)
            for k in range(rank):
                flat = L.add(flat, L.mul(idx[k], in_strides[cperm[k]]))
            return L.Load(src.dtype, src, flat)

        stage = Compute(space, result.type.dtype, element)
        body = target.lower_stage(stage, StridedTensor(dst, space, strides), "injective", schedule)
        knobs = {**recorded_knobs(target, "injective", schedule), "transpose_tile": TILE}  # shown in the listing
        return L.Kernel(name, (src, dst), body, "injective", knobs)

    def element(idx):
        flat: L.Expr = L.const(0)
        for i, a in zip(idx, cperm):
            flat = L.add(flat, L.mul(i, in_strides[a]))
        return L.Load(src.dtype, src, flat)

    stage = Compute(out_shape, result.type.dtype, element)
    body = target.lower_stage(stage, Tensor(dst, out_shape), "injective", schedule)
    return L.Kernel(name, (src, dst), body, "injective", recorded_knobs(target, "injective", schedule))
