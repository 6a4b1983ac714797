"""Convolutions in the forms the CPU kernels run fast: a layout pass of the llvm target, run
before `to_channels_last`.

- A 1-D convolution (X [N, C, W]) is the 2-D convolution of X viewed as [N, C, 1, W] with
  kernel [1, k]: the same sums, so it reaches the conv microkernels (an audio CNN's Conv1d
  stack ran 1.7x onnxruntime's latency on the generic loop-IR rule). 1-D pools take the
  same form, and activations move before the views between them, so a 1-D network stays
  2-D (and channels-last) from conv to conv.
- A 3-D convolution is a sum over its depth taps of 2-D convolutions of depth slices (each
  tap's slices moved beside the batch), so video convolutions run on the same microkernels
  instead of a 3-D loop nest (a small video CNN ran 14x onnxruntime's latency). It is
  written in NDHWC, so a video network stays channels-last from conv to conv (in NCDHW
  the per-tap slices and the way back were transposes that cost 4x the convs).
- A transposed convolution whose stride equals its kernel (no padding, dilation, groups or
  output padding: U-Net's and most segmentation heads' 2x2/2 upsampling) writes each input
  pixel's kernel-sized patch without overlap: Y[n, co, h*kh + i, w*kw + j] = b[co] +
  sum_ci X[n, ci, h, w] W[ci, co, i, j]. That is one dense layer of the pixels
  [N*H*W, Cin] by W as [Cin, kh*kw*Cout] (the bias tiled along), then a depth-to-space
  permutation in NHWC, so it runs
  on the GEMM microkernels instead of a scalar loop (a small U-Net: 8.9x onnxruntime's
  latency before). Any other transposed convolution (overlapping patches, padding, output
  padding, groups; dilation 1) is one ordinary convolution over the stride's phases
  followed by an interleave (`_phase_transpose_conv`).

Both need static shapes and constant weights; anything else is left as it is.
"""
from __future__ import annotations

import numpy as np

from ..ir.errors import CompilerError
from ..ir.graph import Graph, Node
from ..ir.ops import REGISTRY
from ..ir.registry import Category
from ..ir.ops.conv import transpose_geometry
from ..ir.ops.layout import TO_NCHW, TO_NHWC, channels_first_perm, channels_last_perm
from .core import PassContext, graph_pass
from .match import const_of, static_shape
from .rewriter import Rewriter, Rule, apply_rules, rule_table
from .simplify_algebra import reshape_chain


def _plain_window(node: Node) -> bool:
    return node.attrs.get("auto_pad", "NOTSET") in ("NOTSET", "", None)


def _shape_const(rw: Rewriter, dims, hint: str):
    return rw.constant(np.asarray(dims, np.int64), hint)


def _view(rw: Rewriter, v, dims, name: str):
    """v reshaped to `dims` (a node and its shape constant both called `name`)."""
    return rw.op("Reshape", v, _shape_const(rw, list(dims), name), name=name)


def _operands(node: Node, rank: int, any_window: bool = False):
    """(x, w, bias, weights, x shape, y shape) of a conv-like node with static rank-`rank`
    input and output, constant weights of that rank and explicit padding (any padding
    with `any_window`: the caller works it out); None otherwise."""
    x, w = node.inputs[0], node.inputs[1]
    weights = const_of(w)
    xs, ys = static_shape(x, rank), static_shape(node.outputs[0], rank)
    if xs is None or ys is None or weights is None or weights.ndim != rank or not (any_window or _plain_window(node)):
        return None
    return x, w, (node.inputs[2] if len(node.inputs) > 2 else None), weights, xs, ys


def _conv1d(node: Node, rw: Rewriter):
    found = _operands(node, 3)
    if found is None:
        return None
    x, w, bias, weights, xs, ys = found
    a = node.attrs
    pads = list(a.get("pads") or [0, 0])
    attrs = {"kernel_shape": [1, weights.shape[2]], "strides": [1, *(a.get("strides") or [1])],
             "pads": [0, pads[0], 0, pads[1]], "dilations": [1, *(a.get("dilations") or [1])],
             "group": a.get("group", 1)}
    x2 = _view(rw, x, [xs[0], xs[1], 1, xs[2]], f"{node.name}_as2d")
    w2 = rw.constant(weights.reshape(weights.shape[0], weights.shape[1], 1, weights.shape[2]), f"{w.name}_2d")
    y2 = rw.op("Conv", x2, w2, *([bias] if bias is not None else []), name=node.name, **attrs)
    return [_view(rw, y2, list(ys), f"{node.name}_as1d")]


def _patch_transpose_conv(node: Node, rw: Rewriter):
    found = _operands(node, 4)
    if found is None:
        return None
    x, w, bias, weights, xs, ys = found
    a = node.attrs
    kernel = list(weights.shape[2:])
    if (list(a.get("strides") or [1, 1]) != kernel or any(a.get("pads") or [0]) or any(d != 1 for d in (a.get("dilations") or [1]))
            or a.get("group", 1) != 1 or any(a.get("output_padding") or [0]) or a.get("output_shape")):
        return None
    n, cin, h, wd = xs
    cout, kh, kw = weights.shape[1], kernel[0], kernel[1]
    if ys != (n, cout, h * kh, wd * kw):
        return None
    # Columns ordered (i, j, co) and the result placed in NHWC: the depth-to-space step
    # then moves runs of kw * Cout contiguous values (patch row j of every channel), and
    # the bias is a vector along the last axis. (In the (co, i, j) order, placed in NCHW,
    # every value moved alone: the permutation took 15% of a U-Net's time.)
    pixels = rw.op("Transpose", x, perm=list(TO_NHWC), name=f"{node.name}_pixels")
    matrix = rw.constant(np.ascontiguousarray(weights.transpose(0, 2, 3, 1).reshape(cin, kh * kw * cout)),
                         f"{w.name}_matrix")
    rows = _view(rw, pixels, [n * h * wd, cin], f"{node.name}_rows")
    b = None if bias is None else const_of(bias)
    # with a constant bias, each (i, j, co) column's: a dense layer's bias, added in its epilogue
    tiled = [] if b is None else [rw.constant(np.ascontiguousarray(np.tile(np.asarray(b), kh * kw)), f"{bias.name}_tiled")]
    patches = rw.op("Gemm", rows, matrix, *tiled, name=f"{node.name}_patches")
    split = _view(rw, patches, [n, h, wd, kh, kw, cout], f"{node.name}_split")
    placed = rw.op("Transpose", split, perm=[0, 1, 3, 2, 4, 5], name=f"{node.name}_place")
    y = _view(rw, placed, [n, h * kh, wd * kw, cout], f"{node.name}_merge")
    if bias is not None and b is None:  # a run-time bias: added after
        y = rw.op("Add", y, _view(rw, bias, [1, 1, 1, cout], f"{node.name}_bias"), name=f"{node.name}_bias_add")
    return [rw.op("Transpose", y, perm=list(TO_NCHW), name=f"{node.name}_nchw")]


def _phase_transpose_conv(node: Node, rw: Rewriter):
    """A transposed convolution with overlapping (or sparse) patches as one ordinary
    convolution, then an interleave (the sub-pixel form).

    Tap t of the kernel (dilation d) lands X[i] W[t] on output row o = i*s + t*d (before
    cropping the pads). Written o = q*s + r, that is phase r = (t*d) mod s at offset
    m = (t*d) div s: phase r's rows are a correlation of X with its taps at offsets m,
    in reverse. Padded to M = (k - 1)*d div s + 1 taps with zeros (M = ceil(k / s) without
    dilation), all s*s phases are one convolution with Cout*sh*sw output channels (group,
    rh, rw, co), kernel M, stride 1, M - 1 rows of padding before and enough after for
    Q = ceil(full / s) rows; the phases then interleave into rows q*s + r (a
    Reshape-Transpose-Reshape, one copy) and the pads are cropped. Written in NHWC, between
    Transposes the layout pass cancels. The padding may come from pads, auto_pad or an
    explicit output_shape (`transpose_geometry` says where the output window starts); a
    window reaching past the full result is left to the loop-IR rule."""
    found = _operands(node, 4, any_window=True)
    if found is None:
        return None
    x, w, bias, weights, xs, ys = found
    a = REGISTRY["ConvTranspose"].resolve_attrs(node.attrs, node.describe())
    n, cin, h, wd = xs
    groups = a["group"]
    cout_g, kh, kw = weights.shape[1:]
    cout = cout_g * groups
    try:
        begins, outs, (sh, sw), (dh, dw) = transpose_geometry(a, (h, wd), (kh, kw), CompilerError)
    except CompilerError:
        return None
    extra = list(a["output_padding"] or [0, 0])
    full_h, full_w = (h - 1) * sh + (kh - 1) * dh + 1 + extra[0], (wd - 1) * sw + (kw - 1) * dw + 1 + extra[1]
    if ys != (n, cout, *outs) or min(begins) < 0 or begins[0] + outs[0] > full_h or begins[1] + outs[1] > full_w:
        return None
    mh, mw = (kh - 1) * dh // sh + 1, (kw - 1) * dw // sw + 1
    qh, qw = -(-full_h // sh), -(-full_w // sw)
    cin_g = cin // groups
    per_group = weights.reshape(groups, cin_g, cout_g, kh, kw)
    # output channels ordered (group, rh, rw, co): each group's block stays contiguous for the
    # grouped conv, and after the interleave a pixel's channels are contiguous runs
    taps = np.zeros((groups, sh, sw, cout_g, cin_g, mh, mw), weights.dtype)
    for ti in range(kh):
        mi, rh = divmod(ti * dh, sh)
        for tj in range(kw):
            mj, rw_ = divmod(tj * dw, sw)
            taps[:, rh, rw_, :, :, mh - 1 - mi, mw - 1 - mj] = per_group[:, :, :, ti, tj].transpose(0, 2, 1)
    kernel = rw.constant(np.ascontiguousarray(taps.reshape(cout * sh * sw, cin_g, mh, mw)), f"{w.name}_phases")
    b = None if bias is None else const_of(bias)
    conv_bias = [] if b is None else [rw.constant(np.ascontiguousarray(np.broadcast_to(
        np.asarray(b).reshape(groups, 1, 1, cout_g), (groups, sh, sw, cout_g)).reshape(-1)), f"{node.name}_phase_bias")]
    z = rw.op("Conv", x, kernel, *conv_bias, name=f"{node.name}_phases", kernel_shape=[mh, mw], strides=[1, 1],
              pads=[mh - 1, mw - 1, qh - h, qw - wd], group=groups)
    z = rw.op("Transpose", z, perm=list(TO_NHWC), name=f"{node.name}_phases_nhwc")
    split = _view(rw, z, [n, qh, qw, groups, sh, sw, cout_g], f"{node.name}_split")
    woven = rw.op("Transpose", split, perm=[0, 1, 4, 2, 5, 3, 6], name=f"{node.name}_weave")
    y = _view(rw, woven, [n, qh * sh, qw * sw, cout], f"{node.name}_merge")
    if (qh * sh, qw * sw) != ys[2:]:
        y = rw.op("Slice", y, _shape_const(rw, begins, f"{node.name}_crop_s"),
                  _shape_const(rw, [begins[0] + ys[2], begins[1] + ys[3]], f"{node.name}_crop_e"),
                  _shape_const(rw, [1, 2], f"{node.name}_crop_a"), name=f"{node.name}_crop")
    y = rw.op("Transpose", y, perm=list(TO_NCHW), name=f"{node.name}_nchw")
    if bias is not None and b is None:  # a run-time bias: added after
        y = rw.op("Add", y, _view(rw, bias, [1, cout, 1, 1], f"{node.name}_bias"), name=f"{node.name}_bias_add")
    return [y]


def _transpose_conv(node: Node, rw: Rewriter):
    return _patch_transpose_conv(node, rw) or _phase_transpose_conv(node, rw)


def _conv3d(node: Node, rw: Rewriter):
    """Y[:, :, od] = sum over depth taps t of the 2-D conv of input depth slice
    od*sd - pd + t*dd with W[:, :, t], computed in NDHWC: the input moved to channels-last
    and padded along depth once; each tap's depth slices (a strided Slice of whole HWC slabs)
    viewed as a batch of N*Dout NHWC images; one 2-D conv per tap between Transposes that
    the layout pass cancels; the taps summed (each Add folds into the next conv's epilogue);
    then back to NCDHW by a Transpose that sinks through the BN and activation after it and
    cancels against the next 3-D conv's move to channels-last."""
    found = _operands(node, 5)
    if found is None:
        return None
    x, w, bias, weights, xs, ys = found
    a = node.attrs
    strides, dilations = list(a.get("strides") or [1, 1, 1]), list(a.get("dilations") or [1, 1, 1])
    pads = list(a.get("pads") or [0] * 6)  # d, h, w begins then ends
    n, c, d, h, wd = xs
    m, dout = ys[1], ys[2]
    kd = weights.shape[2]
    source = rw.op("Transpose", x, perm=list(channels_last_perm(5)), name=f"{node.name}_ndhwc")
    if pads[0] or pads[3]:
        source = rw.op("Pad", source, _shape_const(rw, [0, pads[0], 0, 0, 0, 0, pads[3], 0, 0, 0], f"{node.name}_dpad"),
                       name=f"{node.name}_dpad")
    attrs2d = {"kernel_shape": list(weights.shape[3:]), "strides": strides[1:], "dilations": dilations[1:],
               "pads": [pads[1], pads[2], pads[4], pads[5]], "group": a.get("group", 1)}
    total = None
    for t in range(kd):
        start = t * dilations[0]
        taps = rw.op("Slice", source, _shape_const(rw, [start], f"{node.name}_s{t}"),
                     _shape_const(rw, [start + (dout - 1) * strides[0] + 1], f"{node.name}_e{t}"),
                     _shape_const(rw, [1], f"{node.name}_a{t}"), _shape_const(rw, [strides[0]], f"{node.name}_st{t}"),
                     name=f"{node.name}_tap{t}")
        images = _view(rw, taps, [n * dout, h, wd, c], f"{node.name}_tap{t}_2d")
        w2 = rw.constant(np.ascontiguousarray(weights[:, :, t]), f"{w.name}_tap{t}")
        extra = [bias] if bias is not None and t == 0 else []
        y2 = rw.op("Conv", rw.op("Transpose", images, perm=list(TO_NCHW), name=f"{node.name}_tap{t}_nchw"), w2,
                   *extra, name=f"{node.name}_tap{t}_conv", **attrs2d)
        y2 = rw.op("Transpose", y2, perm=list(TO_NHWC), name=f"{node.name}_tap{t}_nhwc")
        total = y2 if total is None else rw.op("Add", total, y2, name=f"{node.name}_tap{t}_sum")
    split = _view(rw, total, [n, dout, ys[3], ys[4], m], f"{node.name}_5d")
    return [rw.op("Transpose", split, perm=list(channels_first_perm(5)), name=f"{node.name}_ncdhw")]


def _pool1d(node: Node, rw: Rewriter):
    """A 1-D MaxPool / AveragePool is the 2-D one over a height of 1, like the convs around it."""
    x = node.inputs[0]
    xs, ys = static_shape(x, 3), static_shape(node.outputs[0], 3)
    a = node.attrs
    if xs is None or ys is None or not _plain_window(node) or any(v is not None for v in node.outputs[1:]) \
            or a.get("storage_order", 0):
        return None
    pads = list(a.get("pads") or [0, 0])
    attrs = {**{k: v for k, v in a.items() if k in ("ceil_mode", "count_include_pad")},
             "kernel_shape": [1, *a["kernel_shape"]], "strides": [1, *(a.get("strides") or [1])],
             "pads": [0, pads[0], 0, pads[1]]}
    if a.get("dilations"):
        attrs["dilations"] = [1, *a["dilations"]]
    x2 = _view(rw, x, [xs[0], xs[1], 1, xs[2]], f"{node.name}_as2d")
    y2 = rw.op(node.op, x2, name=node.name, **attrs)
    return [_view(rw, y2, list(ys), f"{node.name}_as1d")] + \
        [None] * (len(node.outputs) - 1)


def _squeeze_like(shape_in, shape_out) -> bool:
    """A reshape between these static shapes only adds or drops axes of size 1."""
    return [d for d in shape_in if d != 1] == [d for d in shape_out if d != 1]


def _unary_before_view(node: Node, rw: Rewriter):
    """f(Reshape(a)) -> Reshape(f(a)) for a one-input elementwise f and a reshape that only
    adds or drops size-1 axes: between the 1-D convs' 2-D forms, the activation then sits
    next to the 2-D conv (and folds into its epilogue), and the Reshapes back to 1-D and to
    2-D meet and cancel, so nothing stops the layout pass keeping the chain channels-last."""
    op = REGISTRY.get(node.op)
    if (op is None or op.category != Category.ELEMENTWISE or len(node.inputs) != 1 or "axis" in node.attrs
            or len(node.outputs) != 1):
        return None
    view = rw.producer_op(node.inputs[0], "Reshape")
    if view is None:
        return None
    a, out = view.inputs[0], node.outputs[0]
    if static_shape(a, a.type.rank or 0) is None or static_shape(out, out.type.rank or 0) is None \
            or not _squeeze_like(a.type.shape, out.type.shape):
        return None
    y = rw.emit(node.op, [a], node.attrs, name=node.name)[0]
    return [_view(rw, y, list(out.type.shape), f"{node.name}_view")]


def _conv(node: Node, rw: Rewriter):
    if static_shape(node.inputs[0], 3) is not None:
        return _conv1d(node, rw)
    if static_shape(node.inputs[0], 5) is not None:
        return _conv3d(node, rw)
    return None


RULES = rule_table([
    Rule("Conv", _conv, "a 1-D convolution is the 2-D one over a height of 1; a 3-D one a sum of 2-D ones per depth tap"),
    *[Rule(op, _pool1d, "a 1-D pool is the 2-D one over a height of 1") for op in ("MaxPool", "AveragePool")],
    Rule("*", _unary_before_view, "a one-input elementwise op commutes with a reshape that only adds or drops "
         "size-1 axes"),
    Rule("Reshape", reshape_chain, "a chain of reshapes ends at the last one's shape (the 1-D forms' way back "
         "to 1-D and on to 2-D cancel)"),
    Rule("ConvTranspose", _transpose_conv,
         "stride == kernel: patches that do not overlap, one matrix product then depth-to-space; otherwise one "
         "convolution over the stride's phases, then an interleave"),
])


@graph_pass
def conv_forms(graph: Graph, ctx: PassContext) -> Graph:
    return apply_rules(graph, ctx, RULES, "conv_forms")
