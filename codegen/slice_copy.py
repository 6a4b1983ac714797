"""A fused group of views around one Slice as one strided copy with collapsed axes.

Lowered op by op, a Slice followed by a Reshape (a 3-D convolution's depth taps viewed as a
batch of images: [N, D, H, W, C] -> [N*Dout, H, W, C]) unravels every output position
through the Reshape (a div and a mod per axis) before it finds its source, and its inner
loop is as short as the last axis (3 channels on a video network's first layer): measured
at 1-2 GB/s. Seen as a whole, the group is `x.reshape(S)[window].reshape(out)` written out
row-major, and an axis the Slice keeps whole merges into the axis outside it when that one
is read with step 1: the depth taps become [Dout, H*W*C], a long contiguous run per tap.
"""
from __future__ import annotations

from ..ir.graph import Node, Value
from . import loop_ir as L
from .schedule import recorded_knobs
from .lowering.injective import slice_window
from .permute_copy import views_around
from .te import Compute, Tensor, numel, strides_of


def match_slice(nodes: list[Node], escaping: set, consts: dict) -> tuple[Value, Value, tuple, tuple, list, list] | None:
    """(source, result, the Slice's input shape S and output shape, first index and step per
    axis of S) when `nodes` is a chain of views with exactly one Slice whose window is
    constant, and only the last value leaves the group; else None."""
    sl = views_around(nodes, escaping, "Slice")
    if sl is None:
        return None
    shape, counts = sl.inputs[0].type.shape, sl.outputs[0].type.shape
    window = [None if i >= len(sl.inputs) or sl.inputs[i] is None else consts.get(sl.inputs[i]) for i in range(1, 5)]
    starts, ends, axes, steps = window
    if (shape is None or counts is None or not all(isinstance(d, int) for d in (*shape, *counts))
            or starts is None or ends is None
            or (axes is None and len(sl.inputs) > 3 and sl.inputs[3] is not None)
            or (steps is None and len(sl.inputs) > 4 and sl.inputs[4] is not None)):
        return None
    begin, step = slice_window(shape, starts, axes, steps)
    return nodes[0].inputs[0], nodes[-1].outputs[0], tuple(shape), tuple(counts), begin, step


def collapse(shape: tuple, counts: tuple, begin: list, step: list) -> tuple[int, list[tuple[int, int, int]]]:
    """The window as the flat offset of its first element and (input stride, step, count)
    per merged axis, outermost first: size-1 output axes dropped (their first index stays in
    the offset), an axis read whole merged into the one outside it when that one steps by 1."""
    strides = strides_of(shape)
    offset = sum(b * s for b, s in zip(begin, strides))
    axes: list[list[int]] = []  # [stride, step, count] with the first index folded into `offset`
    for a in range(len(shape)):
        if counts[a] == 1:
            continue
        whole = begin[a] == 0 and step[a] == 1 and counts[a] == shape[a]
        if whole and axes and axes[-1][1] == 1 and axes[-1][0] == strides[a] * shape[a]:
            axes[-1] = [strides[a], 1, axes[-1][2] * counts[a]]
        else:
            axes.append([strides[a], step[a], counts[a]])
    return offset, [tuple(a) for a in axes]


def slice_kernel(name: str, source: Value, result: Value, shape: tuple, counts: tuple, begin: list, step: list,
                 target, schedule=None):
    """The loop-IR kernel copying the window of `source` (read as `shape`) into `result`
    (`schedule`: an injective-class Schedule, else the target's default)."""
    offset, axes = collapse(shape, counts, begin, step)
    src = L.Buffer("p0", source.type.dtype, max(1, numel(source.type.shape)))
    dst = L.Buffer("p1", result.type.dtype, max(1, numel(result.type.shape)))
    out_shape = tuple(c for _, _, c in axes) or (1,)

    def element(idx):
        flat: L.Expr = L.const(offset)
        for i, (stride, st, _) in zip(idx, axes):
            flat = L.add(flat, L.mul(i, stride * st))
        return L.Load(src.dtype, src, flat)

    stage = Compute(out_shape, result.type.dtype, element)
    body = target.lower_stage(stage, Tensor(dst, out_shape), "injective", schedule)
    return L.Kernel(name, (src, dst), body, "injective", recorded_knobs(target, "injective", schedule))
