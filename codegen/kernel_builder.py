"""One kernel from a group of graph nodes: lowering rules -> tensor expressions -> loop IR.

A group is one node today; the fusion partitioner will hand over several. Inside a group
a value produced by an elementwise/broadcast/injective stage and read only inside the
group is inlined into its consumers (never stored); every other value is a kernel
parameter. Scratch stages (softmax's maximum, a conv's padded input) become parameters
too, placed in the arena by the memory planner for the duration of the kernel.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..ir import dtypes
from ..ir.ops import REGISTRY
from ..ir.types import TensorType
from ..passes.match import concat_axis
from . import loop_ir as L
from .concat_copy import concat_kernel, match_concat
from .index_simplify import simplify_kernel
from .lowering import LowerContext, NotLowerable
from .permute_copy import match_permute, permute_kernel
from .printer import kernel_text
from .schedule import recorded_knobs
from .slice_copy import match_slice, slice_kernel
from .te import Compute, Reduce, StridedTensor, Tensor, numel, strides_of
from .verify import verify_kernel


@dataclass
class KernelPlan:
    """A kernel and what each of its parameters is bound to."""

    kernel: L.Kernel
    args: list = field(default_factory=list)  # ("value", Value) | ("temp", nbytes) | ("packed", ndarray)

    def key(self) -> str:
        """The kernel's text with generated names canonicalised: equal keys = interchangeable code."""
        text = kernel_text(self.kernel)
        return canonical_text(text[text.index("("):])  # the kernel's own name is not part of its identity


# Element type spellings (f32, i64, bf16, ...) look like generated names but are not:
# renaming them made an f32 and an f64 kernel of the same shape share one function.
_DTYPE_WORDS = frozenset(d.short for d in dtypes.ALL_DTYPES)


def canonical_text(text: str) -> str:
    names: dict[str, str] = {}

    def rename(m):
        if m.group(0) in _DTYPE_WORDS:
            return m.group(0)
        return names.setdefault(m.group(0), f"{m.group(1)}{len(names)}")

    return re.sub(r"\b([a-z]+)\d+\b", rename, text)


class InlineTensor:
    """A value computed inside the group: indexing it yields its producer's expression."""

    def __init__(self, stage: Compute):
        self.stage = stage
        self.shape = stage.shape
        self.rank = len(stage.shape)
        self.dtype = stage.dtype

    def __getitem__(self, idx):
        return L.cast(self.stage.fn(list(idx) if isinstance(idx, (list, tuple)) else [idx]), self.dtype)

    def bcast(self, idx, out_rank: int):
        lead = out_rank - self.rank
        return self[[L.const(0) if d == 1 else idx[lead + k] for k, d in enumerate(self.shape)]]

    def load_flat(self, flat):
        """Row-major position `flat` unravelled into the producer's index (a fused Reshape reads this way)."""
        idx, rest = [], flat
        for k in range(self.rank - 1, -1, -1):
            d = self.shape[k]
            idx.insert(0, L.const(0) if d == 1 else (L.mod(rest, d) if k else rest))
            if d != 1:
                rest = L.div(rest, d)
        return self[idx]

    def load_if(self, idx, pred, other):
        safe = [L.select(pred, i, L.const(0)) for i in idx]  # never evaluate the producer out of range
        return L.select(pred, self[safe], L.as_expr(other, self.dtype))


def build_kernel(name: str, nodes: list, consts: dict, escaping: set, target,
                 schedules: dict | None = None, row_length: dict | None = None) -> KernelPlan:
    """Lower `nodes` (topologically ordered) into one kernel for `target` (a CodegenTarget:
    its vector width shapes the schedules, its capabilities bound what the kernel may use).

    consts: Value -> compile-time array (weights and folded values); escaping: values the
    rest of the graph reads (they get a parameter even when produced inside the group);
    row_length: outputs stored as rows of a wider last axis (Value -> its length: a Concat's
    slice, `concat_in_place`). Index arithmetic is then simplified under the loops' ranges
    (`index_simplify`).
    """
    plan = _build_kernel(name, nodes, consts, escaping, target, schedules, row_length or {})
    plan.kernel = simplify_kernel(plan.kernel)
    return plan


def _build_kernel(name: str, nodes: list, consts: dict, escaping: set, target,
                  schedules: dict | None, row_length: dict) -> KernelPlan:
    strided = {v: row_length[v] for n in nodes for v in (*n.inputs, *n.outputs) if v is not None and v in row_length}
    if strided:  # the copy fast paths read and store packed tensors: lower the group op by op instead
        return _lowered(name, nodes, consts, escaping, target, schedules, strided)
    copy = (schedules or {}).get("injective")  # the copy kernels' schedule
    moved = match_permute(nodes, escaping)
    if moved is not None:  # reshapes around one Transpose: one permuted copy (see permute_copy)
        source, result, shape, perm = moved
        return KernelPlan(permute_kernel(name, source, result, shape, perm, target, copy),
                          [("value", source), ("value", result)])
    window = match_slice(nodes, escaping, consts)
    if window is not None:  # views around one constant Slice: one strided copy (see slice_copy)
        source, result, shape, counts, begin, step = window
        return KernelPlan(slice_kernel(name, source, result, shape, counts, begin, step, target, copy),
                          [("value", source), ("value", result)])
    concat = match_concat(nodes)
    if concat is not None:  # a Concat alone: one copy per input (see concat_copy)
        kernel, values = concat_kernel(name, concat, target, copy)
        return KernelPlan(kernel, [("value", v) for v in values])
    return _lowered(name, nodes, consts, escaping, target, schedules, {})


def _stores_by_input(node) -> bool:
    """A Concat (ending its group) of static inputs: stored input by input, see _concat_stages."""
    return (node.op == "Concat" and all(v is not None and v.type.is_static for v in node.inputs)
            and node.outputs[0].type.is_static)


def _concat_stages(node, ins: list, param, stages: list) -> Tensor:
    """The group's last node, a Concat, as one stage per input storing that input's values
    (computed inline from the group) into its slice of the output. Its lowering rule would
    compute every output element by asking each input whether the element is its own (a
    select chain evaluating all of them per element: a DLRM's stack of nine embedding
    lookups took 0.1 ms for 9K values that way)."""
    out = node.outputs[0]
    shape = out.type.shape
    axis = concat_axis(node)
    whole = param(out, out.type.dtype, shape, ("value", out))
    start = 0
    for v, t in zip(node.inputs, ins):
        if numel(v.type.shape):
            view = StridedTensor(whole.buffer, v.type.shape, whole.strides,
                                 whole.offset + start * whole.strides[axis])
            stages.append((Compute(v.type.shape, out.type.dtype, lambda idx, t=t: L.cast(t[idx], out.type.dtype)), view))
        start += v.type.shape[axis]
    return whole


def _lowered(name: str, nodes: list, consts: dict, escaping: set, target, schedules: dict | None,
             strided: dict) -> KernelPlan:
    """The group lowered op by op through the lowering rules (see build_kernel)."""
    vector_bits = target.vector_bits
    params: list[L.Buffer] = []
    args: list = []
    tensors: dict = {}
    stages: list[tuple[Compute, Tensor]] = []
    klass = REGISTRY[nodes[-1].op].kernel_class

    def param(value, dtype, shape, binding) -> Tensor:
        if value in strided:  # rows `strided[value]` apart: its slice of a wider tensor
            rows, run = numel(shape[:-1]), shape[-1]
            buf = L.Buffer(f"p{len(params)}", dtype, max(1, (rows - 1) * strided[value] + run))
            tensor = StridedTensor(buf, shape, strides_of(tuple(shape[:-1]) + (strided[value],)))
        else:
            buf = L.Buffer(f"p{len(params)}", dtype, max(1, numel(shape)))
            tensor = Tensor(buf, shape)
        params.append(buf)
        args.append(binding)
        return tensor

    for node in nodes:
        ins = []
        for v in node.inputs:
            if v is None:
                ins.append(None)
            elif v in tensors:
                ins.append(tensors[v])
            else:
                tensors[v] = param(v, v.type.dtype, v.type.shape, ("value", v))
                ins.append(tensors[v])
        if node is nodes[-1] and len(nodes) > 1 and _stores_by_input(node):
            tensors[node.outputs[0]] = _concat_stages(node, ins, param, stages)
            continue
        opdef = REGISTRY[node.op]
        attrs = opdef.resolve_attrs(node.attrs, node.describe())
        out_types = [v.type if isinstance(v.type, TensorType) else None for v in node.outputs]
        ctx = LowerContext(node, ins, out_types, attrs, [None if v is None else consts.get(v) for v in node.inputs],
                           vector_bits)
        rule = opdef.lowering
        if rule is None:
            raise NotLowerable("no lowering rule")
        outs = rule(ctx)
        for t, array in ctx.packed:
            t.buffer = L.Buffer(f"p{len(params)}", t.dtype, t.buffer.size)
            params.append(t.buffer)
            args.append(("packed", array))
        for stage, t in ctx.stages:
            t.buffer = L.Buffer(f"p{len(params)}", t.buffer.dtype, t.buffer.size)
            params.append(t.buffer)
            args.append(("temp", t.buffer.size * t.buffer.dtype.itemsize))
            stages.append((stage, t))
        for v, stage in zip(node.outputs, outs):
            if v is None or stage is None:  # an optional output the node does not have
                continue
            inline = (len(nodes) > 1 and v not in escaping and not isinstance(stage.fn([L.const(0)] * len(stage.shape)), Reduce))
            if inline:
                tensors[v] = InlineTensor(stage)
            else:
                tensors[v] = param(v, v.type.dtype, v.type.shape, ("value", v))
                stages.append((stage, tensors[v]))
    schedule = (schedules or {}).get(klass)
    body = target.lower_stages(stages, klass, schedule)
    kernel = target.finish_kernel(L.Kernel(name, tuple(params), L.seq(*body), klass,
                                           recorded_knobs(target, klass, schedule)))
    verify_kernel(kernel, target.capabilities)
    return KernelPlan(kernel, args)

