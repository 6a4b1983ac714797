"""Recurrent layers (RNN, GRU, LSTM) unrolled over their static number of steps into ops
that native code has rules for: a legalization every native target runs at every -O level.

With the sequence length known at compile time, a recurrent layer is a fixed graph:
one matrix product projects the whole input sequence onto the gates at once (the
projection's bias folded into it), then each step adds the previous hidden state times
R^T and applies the cell's gates, activations and clip as elementwise ops (which fusion
merges into one kernel per step beside the step's small matrix product). That is also how
onnxruntime's CPU kernels compute it; nothing is approximated, so the result follows the
op's reference (`ir/ops/attention.py`) to rounding.

Covered: every direction and layout, initial states, biases, peepholes, coupled
input/forget gates, GRU's linear_before_reset, clip, all the activation functions ONNX
names, and sequence_lens, constant or given at run time: a finished sequence keeps its
state and outputs zeros, as a mask per step; a reverse direction with lengths runs the
forward recurrence over each sequence reversed within its length (ReverseSequence) and
reverses its outputs back. Left to the refusal that names the op: a dynamic sequence
length or batch.
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes
from ..ir.graph import Graph, Node, Value
from ..ir.ops import REGISTRY
from ..ir.ops.attention import NUM_GATES, recurrent_activations
from .core import PassContext, graph_pass
from .match import const_of, static_shape
from .rewriter import Rewriter, Rule, apply_rules, rule_table

# ONNX activation name -> how to emit it: an op with its attributes, or a composition.
_PLAIN = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "softsign": "Softsign", "softplus": "Softplus"}
_WITH_ALPHA = {"leakyrelu": "LeakyRelu", "thresholdedrelu": "ThresholdedRelu", "elu": "Elu"}


def _zero(v: Value | None) -> bool:
    """An absent initial state, or a constant one of zeros (exporters write those out):
    the first step's terms that read it vanish."""
    return v is None or (const_of(v) is not None and not np.any(const_of(v)))


def _input(node: Node, i: int) -> Value | None:
    return node.inputs[i] if i < len(node.inputs) else None


class _Layer:
    """One recurrent node being unrolled: its facts, and the emitters its steps share."""

    def __init__(self, node: Node, rw: Rewriter, attrs: dict, specs: list, steps: int, batch: int, hidden: int):
        self.node, self.rw, self.attrs, self.specs = node, rw, attrs, specs
        self.steps, self.batch, self.hidden = steps, batch, hidden
        self.dtype = node.inputs[0].type.dtype.numpy
        self.gates = NUM_GATES[node.op]

    # -- values --------------------------------------------------------------------------
    def const(self, array, hint: str) -> Value:
        return self.rw.constant(np.asarray(array, self.dtype), f"{self.node.name}_{hint}")

    def op(self, op: str, *inputs, hint: str, **attrs) -> Value:
        return self.rw.op(op, *inputs, name=f"{self.node.name}_{hint}", **attrs)

    def direction(self, v: Value, d: int, hint: str) -> Value:
        """v[d] of a per-direction input ([directions, ...])."""
        c = const_of(v)
        if c is not None:
            return self.const(c[d], f"{hint}{d}")
        return self.op("Gather", v, self.rw.constant(np.asarray(d, np.int64), f"{self.node.name}_d{d}"),
                       hint=f"{hint}{d}", axis=0)

    def columns(self, m: Value, start: int, stop: int, hint: str) -> Value:
        """m[..., start:stop]."""
        c = const_of(m)
        if c is not None:
            return self.const(c[..., start:stop], hint)
        ints = [self.rw.constant(np.asarray([x], np.int64), f"{self.node.name}_{hint}_{k}")
                for k, x in (("s", start), ("e", stop), ("a", -1))]
        return self.op("Slice", m, *ints, hint=hint)

    def transposed(self, v: Value, d: int, hint: str) -> Value:
        """v[d]^T of a per-direction matrix input (W or R: [directions, gates*H, K])."""
        c = const_of(v)
        if c is not None:
            return self.const(np.ascontiguousarray(c[d].T), f"{hint}{d}_t")
        return self.op("Transpose", self.direction(v, d, hint), hint=f"{hint}{d}_t", perm=[1, 0])

    # -- the cell's functions -----------------------------------------------------------
    def clip(self, v: Value, hint: str) -> Value:
        at = self.attrs["clip"]
        if at is None:
            return v
        return self.op("Clip", v, self.const(-at, f"{hint}_lo"), self.const(at, f"{hint}_hi"), hint=f"{hint}_clip")

    def activate(self, spec: tuple, v: Value, hint: str) -> Value:
        name, alpha, beta = spec
        if name in _PLAIN:
            return self.op(_PLAIN[name], v, hint=hint)
        if name in _WITH_ALPHA:
            return self.op(_WITH_ALPHA[name], v, hint=hint, alpha=float(alpha))
        if name == "hardsigmoid":
            return self.op("HardSigmoid", v, hint=hint, alpha=float(alpha), beta=float(beta))
        if name == "affine":
            scaled = self.op("Mul", v, self.const(alpha, f"{hint}_a"), hint=f"{hint}_scale")
            return self.op("Add", scaled, self.const(beta, f"{hint}_b"), hint=hint)
        if name == "scaledtanh":
            inner = self.op("Mul", v, self.const(beta, f"{hint}_b"), hint=f"{hint}_in")
            return self.op("Mul", self.op("Tanh", inner, hint=f"{hint}_tanh"), self.const(alpha, f"{hint}_a"), hint=hint)
        raise AssertionError(f"activation {name!r} has no emitter")  # recurrent_activations knows no other

    def gate(self, spec: tuple, v: Value, hint: str) -> Value:
        return self.activate(spec, self.clip(v, hint), hint)


class _StepMasks:
    """live(t): [batch, 1] booleans, which sequences are still running at step t (t < its
    length); one per step, shared by both directions."""

    def __init__(self, layer: _Layer, lengths: Value):
        self.layer, self.lengths, self.masks = layer, lengths, {}

    def __call__(self, t: int) -> Value:
        if t not in self.masks:
            layer, rw, name = self.layer, self.layer.rw, self.layer.node.name
            step = rw.constant(np.asarray(t, self.lengths.type.dtype.numpy), f"{name}_len{t}")
            alive = layer.op("Less", step, self.lengths, hint=f"t{t}_alive")
            column = rw.constant(np.asarray([layer.batch, 1], np.int64), f"{name}_col")
            self.masks[t] = layer.op("Reshape", alive, column, hint=f"t{t}_alive_col")
        return self.masks[t]


def _cell_step(layer: _Layer, d: int, t: int, xt: Value, h: Value | None, c: Value | None,
               mats: dict) -> tuple[Value, Value | None]:
    """(h_t, c_t) of direction d at time t from the projected input xt and the state (None:
    the zero state before the first step when no initial state is given, whose terms
    vanish)."""
    op, f = layer.node.op, layer.specs[d]
    H, name = layer.hidden, f"d{d}t{t}"

    def recurrent(state, matrix, addend, hint):
        """addend + state @ matrix: one product whose epilogue adds the addend."""
        return addend if state is None else layer.op("Linear", state, matrix, addend, hint=hint)

    if op == "RNN":
        return layer.gate(f[0], recurrent(h, mats["r"], xt, f"{name}_pre"), f"{name}_h"), None
    if op == "GRU":
        zr = recurrent(h, mats["r_zr"], layer.columns(xt, 0, 2 * H, f"{name}_xzr"), f"{name}_zr")
        z = layer.gate(f[0], layer.columns(zr, 0, H, f"{name}_zpre"), f"{name}_z")
        reset = layer.gate(f[0], layer.columns(zr, H, 2 * H, f"{name}_rpre"), f"{name}_r")
        xh = layer.columns(xt, 2 * H, 3 * H, f"{name}_xh")
        if layer.attrs["linear_before_reset"]:
            hh = recurrent(h, mats["r_h"], mats["rb_h"], f"{name}_hh")
            candidate = layer.op("Add", xh, layer.op("Mul", reset, hh, hint=f"{name}_rhh"), hint=f"{name}_cpre")
        else:
            rh = None if h is None else layer.op("Mul", reset, h, hint=f"{name}_rh")
            candidate = layer.op("Add", xh, recurrent(rh, mats["r_h"], mats["rb_h"], f"{name}_rhr"), hint=f"{name}_cpre")
        candidate = layer.gate(f[1], candidate, f"{name}_cand")
        # (1 - z) * candidate + z * h  ==  candidate + z * (h - candidate)
        delta = (layer.op("Neg", candidate, hint=f"{name}_dh") if h is None
                 else layer.op("Sub", h, candidate, hint=f"{name}_dh"))
        return layer.op("Add", candidate, layer.op("Mul", z, delta, hint=f"{name}_zdh"), hint=f"{name}_h"), None
    # LSTM: gates i, o, f, c; peepholes pi, po, pf read the cell state
    pre = recurrent(h, mats["r"], xt, f"{name}_pre")
    xi, xo, xf, xc = (layer.columns(pre, k * H, (k + 1) * H, f"{name}_{g}") for k, g in enumerate("iofc"))
    peep = mats.get("p")

    def peeped(v, k, state, hint):
        if peep is None or state is None:
            return v
        return layer.op("Add", v, layer.op("Mul", peep[k], state, hint=f"{hint}_pp"), hint=f"{hint}_p")

    i = layer.gate(f[0], peeped(xi, 0, c, f"{name}_ig"), f"{name}_ig")
    fresh = layer.op("Mul", i, layer.gate(f[1], xc, f"{name}_cg"), hint=f"{name}_ic")
    if c is None:
        c_new = fresh
    else:
        if layer.attrs["input_forget"]:
            forget = layer.op("Sub", layer.const(1.0, f"{name}_one"), i, hint=f"{name}_fg")
        else:
            forget = layer.gate(f[0], peeped(xf, 2, c, f"{name}_fg"), f"{name}_fg")
        c_new = layer.op("Add", layer.op("Mul", forget, c, hint=f"{name}_fc"), fresh, hint=f"{name}_c")
    o = layer.gate(f[0], peeped(xo, 1, c_new, f"{name}_og"), f"{name}_og")
    return layer.op("Mul", o, layer.activate(f[2], c_new, f"{name}_hc"), hint=f"{name}_h"), c_new


def _direction(layer: _Layer, d: int, reverse: bool, x: Value, inputs: dict, live) -> tuple[dict, Value, Value | None]:
    """({time: h_t output}, final h, final c) of direction d."""
    node, H, G = layer.node, layer.hidden, layer.gates
    w, r, b = inputs["W"], inputs["R"], inputs["B"]
    projected = layer.op("MatMul", x, layer.transposed(w, d, "w"), hint=f"d{d}_xw")
    mats: dict = {}
    if node.op == "GRU":
        r_t = layer.transposed(r, d, "r")
        mats["r_zr"], mats["r_h"] = layer.columns(r_t, 0, 2 * H, f"d{d}_rzr"), layer.columns(r_t, 2 * H, 3 * H, f"d{d}_rh")
    else:
        mats["r"] = layer.transposed(r, d, "r")
    zeros_h = layer.const(np.zeros(H), f"d{d}_zero")
    if b is not None:
        bias = layer.direction(b, d, "b")
        wb, rb = layer.columns(bias, 0, G * H, f"d{d}_wb"), layer.columns(bias, G * H, 2 * G * H, f"d{d}_rb")
        if node.op == "GRU":  # R's z and r biases join the projection; its h bias stays inside the reset
            mats["rb_h"] = layer.columns(rb, 2 * H, 3 * H, f"d{d}_rbh")
            rb = layer.op("Concat", layer.columns(rb, 0, 2 * H, f"d{d}_rbzr"), zeros_h, hint=f"d{d}_rbx", axis=0)
        projected = layer.op("Add", projected, layer.op("Add", wb, rb, hint=f"d{d}_bias"), hint=f"d{d}_xwb")
    elif node.op == "GRU":
        mats["rb_h"] = zeros_h
    if inputs["P"] is not None:
        p = layer.direction(inputs["P"], d, "p")
        mats["p"] = [layer.columns(p, k * H, (k + 1) * H, f"d{d}_p{k}") for k in range(3)]
    zeros = layer.const(np.zeros((layer.batch, H)), f"d{d}_state0")
    h = None if _zero(inputs["initial_h"]) else layer.direction(inputs["initial_h"], d, "h0_")
    c = None if _zero(inputs["initial_c"]) or node.op != "LSTM" else layer.direction(inputs["initial_c"], d, "c0_")
    outputs = {}
    for t in (reversed(range(layer.steps)) if reverse else range(layer.steps)):
        xt = layer.op("Gather", projected, layer.rw.constant(np.asarray(t, np.int64), f"{node.name}_t{t}"),
                      hint=f"d{d}t{t}_x", axis=0)
        h_new, c_new = _cell_step(layer, d, t, xt, h, c, mats)
        if live is None:
            h, c, outputs[t] = h_new, c_new, h_new
        else:  # a finished sequence keeps its state and outputs zeros
            alive = live(t)
            h = layer.op("Where", alive, h_new, zeros if h is None else h, hint=f"d{d}t{t}_hkeep")
            if c_new is not None:
                c = layer.op("Where", alive, c_new, zeros if c is None else c, hint=f"d{d}t{t}_ckeep")
            outputs[t] = layer.op("Where", alive, h_new, zeros, hint=f"d{d}t{t}_y")
    return outputs, (zeros if h is None else h), c


def _unroll(node: Node, rw: Rewriter):
    x = node.inputs[0]
    xs = static_shape(x, 3)
    w_shape, r_shape = static_shape(_input(node, 1), 3), static_shape(_input(node, 2), 3)
    if xs is None or w_shape is None or r_shape is None or x.type.dtype.numpy not in (np.float32, np.float64):
        return None
    attrs = REGISTRY[node.op].resolve_attrs(node.attrs, node.describe())
    directions = 2 if attrs["direction"] == "bidirectional" else 1
    try:
        specs = recurrent_activations(node.op, attrs, directions)
    except ValueError:
        return None  # shape inference already refused it by name
    layout = attrs["layout"]
    steps, batch = (xs[1], xs[0]) if layout else (xs[0], xs[1])
    hidden = r_shape[2]
    if steps < 1:
        return None
    names = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")
    inputs = {k: _input(node, i) for i, k in enumerate(names)}
    layer = _Layer(node, rw, attrs, specs, steps, batch, hidden)
    lengths = inputs["sequence_lens"]
    known = None if lengths is None else const_of(lengths)
    live = None  # every sequence runs every step
    if lengths is not None and (known is None or not np.all(known == steps)):
        if static_shape(lengths, 1) != (batch,):
            return None
        live = _StepMasks(layer, lengths)
    if layout:  # batch-major in and out; the computation is time-major
        x = layer.op("Transpose", x, hint="x_tm", perm=[1, 0, 2])
        for k in ("initial_h", "initial_c"):
            if inputs[k] is not None:
                inputs[k] = layer.op("Transpose", inputs[k], hint=f"{k}_dm", perm=[1, 0, 2])

    def each_reversed(v: Value, hint: str) -> Value:
        """v (time-major) with each sequence's first len_b steps in reverse order."""
        lengths64 = lengths if lengths.type.dtype == dtypes.int64 else layer.op("Cast", lengths, hint="len64",
                                                                                to=dtypes.int64)
        return layer.op("ReverseSequence", v, lengths64, hint=hint, time_axis=0, batch_axis=1)

    per_time, finals_h, finals_c = [], [], []
    for d in range(directions):
        reverse = attrs["direction"] == "reverse" or d == 1
        if reverse and live is not None:
            # Each sequence runs from its own end: the forward recurrence, with the same
            # masks, over every sequence reversed within its length, outputs reversed back.
            outputs, h, c = _direction(layer, d, False, each_reversed(x, f"d{d}_xrev"), inputs, live)
        else:
            outputs, h, c = _direction(layer, d, reverse, x, inputs, live)
        # stacked on the leading axis, so each step's kernel writes its slab in place
        stacked = layer.op("Concat", *(outputs[t] for t in range(steps)), hint=f"d{d}_ys", axis=0)
        if reverse and live is not None:
            by_time = layer.op("Reshape", stacked, rw.constant(np.asarray([steps, batch, hidden], np.int64),
                                                               f"{node.name}_d{d}_tbh"), hint=f"d{d}_yrev")
            stacked = each_reversed(by_time, f"d{d}_yfwd")
        seq_shape = rw.constant(np.asarray([steps, 1, batch, hidden], np.int64), f"{node.name}_seq")
        per_time.append(layer.op("Reshape", stacked, seq_shape, hint=f"d{d}_y"))
        state_shape = rw.constant(np.asarray([1, batch, hidden], np.int64), f"{node.name}_state")
        finals_h.append(layer.op("Reshape", h, state_shape, hint=f"d{d}_yh"))
        if c is not None:
            finals_c.append(layer.op("Reshape", c, state_shape, hint=f"d{d}_yc"))

    def joined(parts, axis, hint):
        return parts[0] if len(parts) == 1 else layer.op("Concat", *parts, hint=hint, axis=axis)

    y, y_h = joined(per_time, 1, "y"), joined(finals_h, 0, "yh")
    y_c = joined(finals_c, 0, "yc") if finals_c else None
    if layout:
        y = layer.op("Transpose", y, hint="y_bm", perm=[2, 0, 1, 3])
        y_h = layer.op("Transpose", y_h, hint="yh_bm", perm=[1, 0, 2])
        y_c = None if y_c is None else layer.op("Transpose", y_c, hint="yc_bm", perm=[1, 0, 2])
    results = [y, y_h, y_c]
    return [None if v is None else results[k] for k, v in enumerate(node.outputs)]


RULES = rule_table([
    Rule(op, _unroll, "a recurrent layer over a static number of steps is one input projection and one cell per step")
    for op in ("RNN", "GRU", "LSTM")
])


@graph_pass
def unroll_recurrent(graph: Graph, ctx: PassContext) -> Graph:
    return apply_rules(graph, ctx, RULES, "unroll_recurrent")
