"""Second step of the channels-last layout pass: push every Transpose to NCHW
(perm [0,3,1,2]; at rank 5, NDHWC to NCDHW, perm [0,4,1,2,3]) down through the ops that
do not care about layout, until it meets a Transpose to channels-last and the two cancel.
Rank 5 is the video case: `conv_forms` runs each 3-D convolution in NDHWC between such
Transposes, and the BN/activation between two of them is layout-free like at rank 4.

    Relu(Transpose(a, to_nchw))   ->   Transpose(Relu(a), to_nchw)

Layout-free ops are the elementwise and broadcasting ones of the registry (constants
are permuted to match: a [C,1,1] bias becomes [1,1,C]), a BatchNormalization with constant
statistics (rewritten as a per-channel Mul and Add over the last axis), a Concat along
the channel axis (which becomes axis 3), and a Reshape that only splits the channel axis
in two (ShuffleNet's channel shuffle: Reshape to [N, g, C/g, H, W], Transpose of the two
channel axes, Reshape back; in NHWC the shuffle stays inside the last axes and the
Transpose to NCHW moves on past the Reshape back), and a Resize with constant per-axis
lists (upsampling between convs: FPNs, U-Nets; its NHWC form reads whole channel vectors).

A Transpose moves down only when every reader of its result accepts NHWC: otherwise a
reader that needs NCHW (a Flatten, a graph output) would keep the old Transpose alive
next to the new ones. Sinking through a node then leaves one Transpose on its output,
shared by all its readers. A runtime NCHW operand of an elementwise op (not from a
Transpose) stops the sinking, unless that value is already transposed to NHWC for some
other reader: then the op reads a copy of that transpose (CSE merges the two).
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node, Value
from ..ir.ops import REGISTRY
from ..ir.ops.layout import channels_first_perm, channels_last_perm
from ..ir.registry import Category
from .core import PassContext, PassError, graph_pass
from .eliminate_dead_code import remove_dead_nodes
from .layout_convert import back_to_nchw
from .match import const_of
from .rewriter import Rewriter, Rule, rule_table, sweep
from .simplify_algebra import transpose_pair

# Elementwise/broadcast ops that still see an axis or the last dimension specially.
_LAYOUT_BOUND = {"SwiGLU", "RotaryEmbedding", "QuantizeLinear", "DequantizeLinear"}


# The ranks whose channels-first/channels-last Transposes sink (NCHW and NCDHW).
_LAYOUT_RANKS = (4, 5)


def _perm_of(node: Node | None) -> tuple[int, ...] | None:
    if (node is None or node.op != "Transpose" or node.inputs[0].type.rank not in _LAYOUT_RANKS
            or node.attrs.get("perm") is None):
        return None
    return tuple(int(p) for p in node.attrs["perm"])


def _to_first(node: Node | None) -> bool:
    """A Transpose from channels-last to channels-first (the kind that sinks)."""
    perm = _perm_of(node)
    return perm is not None and perm == channels_first_perm(len(perm))


def _to_last(node: Node | None) -> bool:
    """A Transpose from channels-first to channels-last (the kind a sunk one cancels against)."""
    perm = _perm_of(node)
    return perm is not None and perm == channels_last_perm(len(perm))


def _rank(v: Value) -> int | None:
    return getattr(v.type, "rank", None)


def _per_tensor_quant(node: Node) -> bool:
    """A QuantizeLinear/DequantizeLinear with one scale (and zero point) for the whole tensor:
    elementwise, whatever its `axis` says."""
    return (node.op in ("QuantizeLinear", "DequantizeLinear")
            and all(v is None or (const_of(v) is not None and const_of(v).size == 1) for v in node.inputs[1:]))


def is_layout_free(node: Node) -> bool:
    """An elementwise/broadcast op with one 4-D or 5-D output whose result does not depend on axis order."""
    op = REGISTRY.get(node.op)
    elementwise = (node.op not in _LAYOUT_BOUND and "axis" not in node.attrs) or _per_tensor_quant(node)
    return (op is not None and op.category in (Category.ELEMENTWISE, Category.BROADCAST) and elementwise
            and len(node.outputs) == 1 and _rank(node.outputs[0]) in _LAYOUT_RANKS)


def _is_channel_concat(node: Node) -> bool:
    rank = _rank(node.outputs[0])
    return (node.op == "Concat" and rank in _LAYOUT_RANKS
            and int(node.attrs.get("axis", 0)) in (1, 1 - rank))


def _is_inference_bn(node: Node) -> bool:
    return (node.op == "BatchNormalization" and len(node.outputs) == 1 and not node.attrs.get("training_mode", 0)
            and _rank(node.outputs[0]) in _LAYOUT_RANKS and all(const_of(v) is not None for v in node.inputs[1:5]))


def _channel_split(node: Node) -> tuple[int, int] | None:
    """(g, C/g) when the node is a Reshape of [N, C, H, W] to [N, g, C/g, H, W]."""
    if node.op != "Reshape" or _rank(node.inputs[0]) != 4 or _rank(node.outputs[0]) != 5:
        return None
    (n, c, h, w), (n2, g, k, h2, w2) = node.inputs[0].type.shape, node.outputs[0].type.shape
    if (n, h, w) != (n2, h2, w2) or not all(isinstance(d, int) for d in (c, g, k, h, w)) or g * k != c:
        return None
    return g, k


def _is_plain_resize(node: Node) -> bool:
    """A 4-D Resize over all axes with constant roi / scales / sizes: separable per axis, so
    the same Resize with those per-axis lists permuted is its NHWC form."""
    if node.op != "Resize" or _rank(node.outputs[0]) != 4 or node.attrs.get("axes"):
        return False
    lists = [const_of(v) for v in node.inputs[1:4] if v is not None]
    return (len(lists) == len([v for v in node.inputs[1:4] if v is not None]) and all(c is not None for c in lists)
            and all(c.size in (0, 4, 8) for c in lists))


def accepts_nhwc(node: Node) -> bool:
    """Can this reader of an NCHW value take the NHWC value instead (after its own rewrite)?"""
    return (_to_last(node) or is_layout_free(node) or _is_channel_concat(node)
            or _is_inference_bn(node) or _channel_split(node) is not None or _is_plain_resize(node))


def _shape_constant(rw: Rewriter, dims, hint: str) -> Value | None:
    """A Reshape target; a symbolic batch (axis 0, which stays in place) is written 0, i.e. copied."""
    if not all(isinstance(d, int) for d in dims[1:]):
        return None
    return rw.constant(np.array([d if isinstance(d, int) else 0 for d in dims], np.int64), hint)


def permuted_constant(c: np.ndarray, rank: int = 4) -> np.ndarray:
    """A constant broadcast against a channels-first tensor of `rank`, rearranged to
    broadcast the same way against its channels-last form.

    It is padded to `rank` on the left, transposed, and the leading 1s that padding added
    are dropped again where possible: [C,1,1] -> [1,1,C], [1,C,1,1] -> [1,1,1,C].
    """
    if c.ndim == 0:
        return c
    out = c.reshape((1,) * (rank - c.ndim) + c.shape).transpose(channels_last_perm(rank))
    while out.ndim > c.ndim and out.shape[0] == 1:
        out = out.reshape(out.shape[1:])
    return np.ascontiguousarray(out)


class _Sinker:
    """The sinking rules for one sweep, knowing every value's readers at the sweep's start."""

    def __init__(self, graph: Graph):
        self.users = graph.users()
        self.graph_outputs = set(graph.outputs)
        self.graph_inputs = set(graph.inputs)
        # A Transpose emitted during this sweep stands for the node output it replaced.
        self.stands_for: dict[Value, Value] = {}
        self.table = rule_table([
            Rule("Transpose", transpose_pair, "Transposes to NHWC and to NCHW cancel"),
            Rule("BatchNormalization", self.batch_norm, "inference BN is a per-channel affine map; in NHWC the "
                 "channel is the last axis"),
            Rule("Concat", self.concat, "concatenating NCHW tensors on C is concatenating NHWC ones on axis 3"),
            Rule("Reshape", self.split_channels, "splitting C of NCHW in two is splitting C of NHWC, then moving "
                 "the two parts to where NCHW has them"),
            Rule("Reshape", merge_channels, "merging two channel parts that a Transpose brought to axes 1 and 2 "
                 "is merging them on the last axes, then moving C to axis 1"),
            Rule("Resize", self.resize, "a Resize is separable per axis: in NHWC it is the same Resize with its "
                 "per-axis roi, scales and sizes permuted"),
            Rule("*", self.elementwise, "elementwise ops commute with any permutation of their operands' axes "
                 "(constants permuted alike)"),
        ])

    def _nhwc_source(self, rw: Rewriter, v: Value | None) -> Value | None:
        """`a` when v = Transpose(a, to_nchw) and every reader of v can take `a` instead."""
        producer = rw.producer(v)
        if not _to_first(producer):
            return None
        original = self.stands_for.get(v, v)
        if original in self.graph_outputs or rw.is_output(v):
            return None
        readers = self.users.get(original, [])
        return producer.inputs[0] if readers and all(self._will_take_nhwc(rw, r) for r in readers) else None

    def _will_take_nhwc(self, rw: Rewriter, reader: Node) -> bool:
        """accepts_nhwc, and for an elementwise op or Concat also: none of its other operands is
        a runtime NCHW value (that would keep it, and the Transpose it reads, in NCHW).
        Operands whose producers this sweep has not reached yet are given the benefit of the doubt."""
        if not accepts_nhwc(reader):
            return False
        if not (is_layout_free(reader) or _is_channel_concat(reader)):
            return True
        for v in reader.inputs:
            v = rw.resolve(v)
            if v is None or const_of(v) is not None or (v.type.is_static and all(d == 1 for d in v.type.shape)):
                continue
            producer = rw.producer(v)
            if producer is None and v not in self.graph_inputs:
                continue  # computed later in this sweep: it may well arrive in NHWC
            if not _to_first(producer) and not self._has_nhwc_copy(v):
                return False
        return True

    def _has_nhwc_copy(self, v: Value) -> bool:
        """Some reader already transposes v to NHWC (the image feeding both the first conv and
        a residual Add): transposing it once more costs nothing, the copies merge (CSE)."""
        return any(_to_last(r) for r in self.users.get(self.stands_for.get(v, v), []))

    def _finish(self, rw: Rewriter, node: Node, y: Value) -> list[Value] | None:
        back = back_to_nchw(rw, y, node.outputs[0])
        if back is None:
            return None
        self.stands_for[back] = node.outputs[0]
        return [back]

    def _operands(self, rw: Rewriter, node: Node, allow_ones: bool) -> list[Value | None] | None:
        """The node's inputs in channels-last: sunk Transposes dropped, constants permuted;
        None if some operand is not available in channels-last at the node's rank (a sunk
        operand of lower rank would broadcast against other axes), or none came through a
        Transpose."""
        rank = _rank(node.outputs[0])
        out, moved = [], False
        for v in node.inputs:
            source = None if v is None else self._nhwc_source(rw, v)
            if v is None:
                out.append(None)
            elif source is not None and _rank(source) == rank:
                out.append(source)
                moved = True
            elif source is not None:
                return None
            elif const_of(v) is not None and v.type.rank <= rank:
                c = const_of(v)
                out.append(v if c.ndim == 0 else rw.constant(permuted_constant(c, rank), f"{v.name}_nhwc"))
            elif allow_ones and v.type.is_static and all(d == 1 for d in v.type.shape):
                out.append(v)  # a runtime scalar in disguise: no layout
            elif _rank(v) == rank and self._has_nhwc_copy(v):
                out.append(rw.op("Transpose", v, perm=list(channels_last_perm(rank))))
            else:
                return None
        return out if moved else None

    def elementwise(self, node: Node, rw: Rewriter):
        if not is_layout_free(node):
            return None
        operands = self._operands(rw, node, allow_ones=True)
        if operands is None:
            return None
        y = rw.emit(node.op, operands, node.attrs, name=node.name)[0]
        return self._finish(rw, node, y)

    def concat(self, node: Node, rw: Rewriter):
        if not _is_channel_concat(node):
            return None
        operands = self._operands(rw, node, allow_ones=False)
        if operands is None:
            return None
        axis = _rank(node.outputs[0]) - 1
        return self._finish(rw, node, rw.op("Concat", *operands, axis=axis, name=node.name))

    def batch_norm(self, node: Node, rw: Rewriter):
        if not _is_inference_bn(node):
            return None
        source = self._nhwc_source(rw, node.inputs[0])
        if source is None:
            return None
        scale, bias, mean, var = (const_of(v).astype(np.float64) for v in node.inputs[1:5])
        s = scale / np.sqrt(var + node.attrs.get("epsilon", 1e-5))
        t = bias - mean * s
        dtype = source.type.dtype.numpy
        y = rw.op("Mul", source, rw.constant(s.astype(dtype), f"{node.name}_scale"), name=f"{node.name}_scale")
        y = rw.op("Add", y, rw.constant(t.astype(dtype), f"{node.name}_shift"), name=f"{node.name}_shift")
        return self._finish(rw, node, y)

    def resize(self, node: Node, rw: Rewriter):
        if not _is_plain_resize(node):
            return None
        source = self._nhwc_source(rw, node.inputs[0])
        if source is None:
            return None
        perm = list(channels_last_perm(4))
        operands = [source]
        for v in node.inputs[1:4]:
            c = None if v is None else const_of(v)
            if c is None or c.size == 0:
                operands.append(v)
                continue
            moved = np.concatenate([c[:4][perm], c[4:][perm]]) if c.size == 8 else c[perm]
            operands.append(rw.constant(np.ascontiguousarray(moved), f"{v.name}_nhwc"))
        y = rw.emit("Resize", operands, node.attrs, name=node.name)[0]
        return self._finish(rw, node, y)

    def split_channels(self, node: Node, rw: Rewriter):
        split = _channel_split(node)
        source = None if split is None else self._nhwc_source(rw, node.inputs[0])
        if source is None:
            return None
        n, h, w, _ = source.type.shape
        shape = _shape_constant(rw, (n, h, w) + split, f"{node.name}_nhwc_shape")
        if shape is None:
            return None
        y = rw.op("Reshape", source, shape, name=node.name)
        return [rw.op("Transpose", y, perm=[0, 3, 4, 1, 2])]


def merge_channels(node: Node, rw: Rewriter):
    """Reshape(Transpose(b, [0, i, j, 1, 2]), [N, C, H, W]) with b = [N, H, W, x, y] and {i, j} = {3, 4}
    -> Transpose(Reshape(Transpose(b, [0, 1, 2, i, j]), [N, H, W, C]), to_nchw)."""
    t = rw.producer_op(node.inputs[0], "Transpose")
    if t is None or _rank(node.outputs[0]) != 4 or _rank(t.inputs[0]) != 5 or not rw.single_use(node.inputs[0]):
        return None
    perm = [int(p) for p in t.attrs.get("perm") or []]
    if perm[:1] + perm[3:] != [0, 1, 2] or sorted(perm[1:3]) != [3, 4]:
        return None
    (n, h, w, _, _), (n2, c, h2, w2) = t.inputs[0].type.shape, node.outputs[0].type.shape
    if (n, h, w) != (n2, h2, w2):
        return None
    shape = _shape_constant(rw, (n, h, w, c), f"{node.name}_nhwc_shape")
    if shape is None:
        return None
    inner = rw.op("Transpose", t.inputs[0], perm=[0, 1, 2] + perm[1:3])
    return [back_to_nchw(rw, rw.op("Reshape", inner, shape, name=node.name), node.outputs[0])]


@graph_pass
def sink_transposes(graph: Graph, ctx: PassContext) -> Graph:
    """Sink Transposes to NCHW and cancel them, sweep after sweep, until nothing moves."""
    for _ in range(ctx.max_iterations):
        swept = sweep(graph, ctx, _Sinker(graph).table)
        if swept is graph:
            return graph
        graph = remove_dead_nodes(swept)
    raise PassError(f"transpose sinking still moves after {ctx.max_iterations} sweeps")
