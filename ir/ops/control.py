"""Control flow, sequences and optionals: If, Loop, Scan, SequenceMap, the Sequence* family,
SplitToSequence / ConcatFromSequence, and Optional / OptionalHasElement / OptionalGetElement.

Bodies are ir Graphs held in attributes (the importer builds them; their nodes read values
of the enclosing graph directly) and run through `ctx.run_subgraph`. At run time a
sequence is a Python list of arrays and an empty optional is None.

Inference joins types that can differ between branches or iterations with `join_types`:
a dim that disagrees becomes a fresh symbol, a rank that disagrees becomes unknown.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..registry import CONTROL_FLOW, NOT_A_TENSOR, REQUIRED, Attr, Category, InferContext, OpDef, Precision
from ..shape_utils import normalize_axis
from ..types import Dim, OptionalType, SequenceType, TensorType, ValueType, fresh_dim

_OPAQUE, _EXACT = Category.OPAQUE, Precision.EXACT
_SCALAR_BOOL = TensorType((), dtypes.bool_)
_SCALAR_I64 = TensorType((), dtypes.int64)


# ---- type helpers ----------------------------------------------------------------------

def _join_dim(a: Dim, b: Dim, hint: str) -> Dim:
    return a if a == b else fresh_dim(hint)


def join_types(a: ValueType, b: ValueType, ctx: InferContext, what: str, hint: str = "join") -> ValueType:
    """The type that covers both `a` and `b` (If branches, a loop's first and later iterations)."""
    if isinstance(a, OptionalType) or isinstance(b, OptionalType):
        inner_a = a.elem if isinstance(a, OptionalType) else a
        inner_b = b.elem if isinstance(b, OptionalType) else b
        return OptionalType(join_types(inner_a, inner_b, ctx, what, hint))
    if isinstance(a, SequenceType) and isinstance(b, SequenceType):
        return SequenceType(join_types(a.elem, b.elem, ctx, what, hint))
    if isinstance(a, TensorType) and isinstance(b, TensorType):
        if a.dtype != b.dtype:
            raise ctx.error(f"{what}: element types {a.dtype} and {b.dtype} disagree")
        if a.shape is None or b.shape is None or len(a.shape) != len(b.shape):
            return TensorType(None, a.dtype)
        return TensorType(tuple(_join_dim(x, y, hint) for x, y in zip(a.shape, b.shape)), a.dtype)
    raise ctx.error(f"{what}: types {a} and {b} are not compatible")


def _tensor(ctx: InferContext, i: int, what: str) -> TensorType:
    t = ctx.input(i)
    if not isinstance(t, TensorType):
        raise ctx.error(f"input {i} ({what}) must be a tensor, got {t}")
    return t


def _sequence(ctx: InferContext, i: int = 0) -> SequenceType:
    t = ctx.input(i)
    if not isinstance(t, SequenceType):
        raise ctx.error(f"input {i} must be a sequence, got {t}")
    return t


def _require_scalar_like(ctx: InferContext, i: int, what: str, kinds: tuple[str, ...]) -> None:
    """Trip counts, conditions and positions: a one-element tensor of the expected kind."""
    t = _tensor(ctx, i, what)
    if t.dtype.kind not in kinds:
        raise ctx.error(f"input {i} ({what}) must be {' or '.join(kinds)}, got {t.dtype}")
    if t.shape is not None and any(isinstance(d, int) and d != 1 for d in t.shape):
        raise ctx.error(f"input {i} ({what}) must hold a single element, got shape {list(t.shape)}")


def _scalar(x) -> int | bool | float:
    return np.asarray(x).reshape(-1)[0].item()


def _empty_like_type(t: ValueType) -> np.ndarray:
    """An empty scan output (zero iterations): the declared shape with unknown sizes read as 0."""
    if not isinstance(t, TensorType):
        raise ValueError(f"a scan output must be a tensor, got {t}")
    dims = (0,) if t.shape is None else tuple(d if isinstance(d, int) else 0 for d in t.shape)
    return np.zeros(dims, dtype=t.dtype.numpy)


# ---- If --------------------------------------------------------------------------------

def _if_infer(ctx: InferContext) -> list[ValueType]:
    _require_scalar_like(ctx, 0, "cond", ("bool",))
    then_b, else_b = ctx.attrs["then_branch"], ctx.attrs["else_branch"]
    if len(then_b.outputs) != len(else_b.outputs):
        raise ctx.error(f"then_branch has {len(then_b.outputs)} outputs, else_branch {len(else_b.outputs)}; "
                        "they must match")
    if len(then_b.outputs) < ctx.num_outputs:
        raise ctx.error(f"the branches give {len(then_b.outputs)} outputs, the node has {ctx.num_outputs}")
    cond = ctx.const(0)
    if cond is not None:  # a constant condition: only the taken branch's types matter
        return [v.type for v in (then_b if bool(_scalar(cond)) else else_b).outputs]
    return [join_types(t.type, e.type, ctx, f"output {i} of the branches", "if")
            for i, (t, e) in enumerate(zip(then_b.outputs, else_b.outputs))]


def _if(ctx, cond):
    branch = ctx.attrs["then_branch"] if bool(_scalar(cond)) else ctx.attrs["else_branch"]
    return tuple(ctx.run_subgraph(branch, []))


# ---- Loop ------------------------------------------------------------------------------

def _loop_infer(ctx: InferContext) -> list[ValueType]:
    body = ctx.attrs["body"]
    carried = [ctx.input(i) for i in range(2, len(ctx.inputs))]
    n = len(carried)
    if ctx.has(0):
        _require_scalar_like(ctx, 0, "M", ("int",))
    if ctx.has(1):
        _require_scalar_like(ctx, 1, "cond", ("bool",))
    if not ctx.has(0) and not ctx.has(1):
        raise ctx.error("has neither a trip count M nor a condition: the loop would never end")
    if len(body.inputs) != 2 + n:
        raise ctx.error(f"body takes {len(body.inputs)} inputs; expected 2 + {n} "
                        "(iteration number, condition, loop-carried values)")
    k = len(body.outputs) - 1 - n
    if k < 0:
        raise ctx.error(f"body gives {len(body.outputs)} outputs; expected at least 1 + {n} "
                        "(condition, loop-carried values)")
    cond_out = body.outputs[0].type
    if not isinstance(cond_out, TensorType) or cond_out.dtype != dtypes.bool_:
        raise ctx.error(f"body's first output is the loop condition and must be bool, got {cond_out}")
    finals = [join_types(init, out.type, ctx, f"loop-carried value {i}", "loop")
              for i, (init, out) in enumerate(zip(carried, body.outputs[1:1 + n]))]
    trips = ctx.const(0) if ctx.has(0) else None
    # Only a constant M with no condition input fixes the iteration count: the body's
    # condition is ignored when the node has no cond input.
    count: Dim = max(int(_scalar(trips)), 0) if trips is not None and not ctx.has(1) else fresh_dim("loop_iters")
    scans = []
    for j, out in enumerate(body.outputs[1 + n:]):
        if not isinstance(out.type, TensorType):
            raise ctx.error(f"scan output {j} must be a tensor, got {out.type}")
        shape = None if out.type.shape is None else (count, *out.type.shape)
        scans.append(TensorType(shape, out.type.dtype))
    return finals + scans


def _loop(ctx, max_trips=None, cond=None, *carried):
    body = ctx.attrs["body"]
    n = len(carried)
    limit = None if max_trips is None else int(_scalar(max_trips))
    keep_going = True if cond is None else bool(_scalar(cond))
    values = list(carried)
    scanned: list[list[np.ndarray]] = [[] for _ in body.outputs[1 + n:]]
    i = 0
    while keep_going and (limit is None or i < limit):
        outs = ctx.run_subgraph(body, [np.array(i, dtype=np.int64), np.array(keep_going), *values])
        if cond is not None:  # without a cond input the body's condition is ignored
            keep_going = bool(_scalar(outs[0]))
        values = list(outs[1:1 + n])
        for acc, v in zip(scanned, outs[1 + n:]):
            acc.append(v)
        i += 1
    stacked = [np.stack(acc) if acc else _empty_like_type(t)
               for acc, t in zip(scanned, ctx.output_types[n:])]
    return tuple(values + stacked)


# ---- Scan ------------------------------------------------------------------------------

def _scan_layout(ctx, num_inputs: int) -> tuple[int, int, list[int], list[int], list[int], list[int]]:
    """(states N, scan inputs M, input axes, input directions, output axes, output directions)."""
    body = ctx.attrs["body"]
    m = ctx.attrs["num_scan_inputs"]
    n = num_inputs - m
    k = len(body.outputs) - n
    if m < 1 or n < 0:
        raise ctx.error(f"num_scan_inputs={m} does not fit {num_inputs} inputs")
    if k < 0:
        raise ctx.error(f"body gives {len(body.outputs)} outputs; expected at least the {n} states")

    def flags(name: str, count: int) -> list[int]:
        value = ctx.attrs[name]
        if value is None or len(value) == 0:
            return [0] * count
        if len(value) != count:
            raise ctx.error(f"{name} has {len(value)} entries; expected {count}")
        return [int(x) for x in value]

    return (n, m, flags("scan_input_axes", m), flags("scan_input_directions", m),
            flags("scan_output_axes", k), flags("scan_output_directions", k))


def _scan_infer(ctx: InferContext) -> list[ValueType]:
    body = ctx.attrs["body"]
    n, m, in_axes, _, out_axes, _ = _scan_layout(ctx, len(ctx.inputs))
    if len(body.inputs) != n + m:
        raise ctx.error(f"body takes {len(body.inputs)} inputs; expected {n} states + {m} scan inputs")
    length: Dim | None = None
    for j in range(m):
        t = _tensor(ctx, n + j, f"scan input {j}")
        if t.shape is None:
            continue
        axis = normalize_axis(in_axes[j], len(t.shape), ctx)
        d = t.shape[axis]
        if length is None or (isinstance(d, int) and not isinstance(length, int)):
            length = d
        elif isinstance(d, int) and isinstance(length, int) and d != length:
            raise ctx.error(f"scan input {j} has {d} steps along axis {axis}; earlier scan inputs have {length}")
    length = fresh_dim("scan_len") if length is None else length
    states = [join_types(ctx.input(i), out.type, ctx, f"state {i}", "scan")
              for i, out in enumerate(body.outputs[:n])]
    scans = []
    for j, out in enumerate(body.outputs[n:]):
        if not isinstance(out.type, TensorType):
            raise ctx.error(f"scan output {j} must be a tensor, got {out.type}")
        if out.type.shape is None:
            scans.append(TensorType(None, out.type.dtype))
            continue
        shape = list(out.type.shape)
        shape.insert(normalize_axis(out_axes[j], len(shape) + 1, ctx), length)
        scans.append(TensorType(tuple(shape), out.type.dtype))
    return states + scans


def _scan(ctx, *inputs):
    body = ctx.attrs["body"]
    n, m, in_axes, in_dirs, out_axes, out_dirs = _scan_layout(ctx, len(inputs))
    states = list(inputs[:n])
    # Each scan input with its scanned axis moved to the front, reversed if scanned backwards.
    steps = []
    for x, axis, backwards in zip(inputs[n:], in_axes, in_dirs):
        moved = np.moveaxis(x, normalize_axis(axis, x.ndim), 0)
        steps.append(moved[::-1] if backwards else moved)
    length = steps[0].shape[0]
    if any(s.shape[0] != length for s in steps):
        raise ctx.error(f"scan inputs have different lengths {[s.shape[0] for s in steps]}")
    scanned: list[list[np.ndarray]] = [[] for _ in out_axes]
    for t in range(length):
        outs = ctx.run_subgraph(body, states + [s[t] for s in steps])
        states = list(outs[:n])
        for acc, v in zip(scanned, outs[n:]):
            acc.append(v)
    results = []
    for acc, axis, prepend, t in zip(scanned, out_axes, out_dirs, ctx.output_types[n:]):
        if not acc:
            results.append(_empty_like_type(t))
            continue
        stacked = np.stack(acc[::-1] if prepend else acc)
        results.append(np.moveaxis(stacked, 0, normalize_axis(axis, stacked.ndim)))
    return tuple(states + results)


# ---- SequenceMap -----------------------------------------------------------------------

def _sequence_map_infer(ctx: InferContext) -> list[ValueType]:
    _sequence(ctx, 0)
    body = ctx.attrs["body"]
    if len(body.inputs) != len(ctx.inputs):
        raise ctx.error(f"body takes {len(body.inputs)} inputs; the node has {len(ctx.inputs)}")
    if len(body.outputs) < ctx.num_outputs:
        raise ctx.error(f"body gives {len(body.outputs)} outputs; the node has {ctx.num_outputs}")
    outs = []
    for j, out in enumerate(body.outputs):
        if not isinstance(out.type, TensorType):
            raise ctx.error(f"body output {j} must be a tensor, got {out.type}")
        outs.append(SequenceType(out.type))
    return outs


def _sequence_map(ctx, first, *others):
    body = ctx.attrs["body"]
    for i, x in enumerate(others, start=1):
        if isinstance(x, list) and len(x) != len(first):
            raise ctx.error(f"input {i} holds {len(x)} tensors; the first sequence holds {len(first)}")
    results: list[list[np.ndarray]] = [[] for _ in body.outputs]
    for i, sample in enumerate(first):
        args = [sample] + [x[i] if isinstance(x, list) else x for x in others]
        for acc, v in zip(results, ctx.run_subgraph(body, args)):
            acc.append(v)
    return tuple(results)


# ---- sequences -------------------------------------------------------------------------

def _position(ctx, position, length: int, allow_end: bool, default: int) -> int:
    """A sequence position in [-n, n-1] (or [-n, n] for inserts) as an index from the front."""
    p = default if position is None else int(_scalar(position))
    hi = length if allow_end else length - 1
    if not -length <= p <= hi:
        raise ctx.error(f"position {p} is out of range for a sequence of {length} tensors")
    return p + length if p < 0 else p


def _check_position(ctx: InferContext, i: int) -> None:
    if ctx.has(i):
        _require_scalar_like(ctx, i, "position", ("int",))


def _sequence_construct_infer(ctx: InferContext) -> list[ValueType]:
    elem = _tensor(ctx, 0, "input 0")
    for i in range(1, len(ctx.inputs)):
        elem = join_types(elem, _tensor(ctx, i, f"input {i}"), ctx, f"input {i}", "seq")
    return [SequenceType(elem)]


def _sequence_empty_infer(ctx: InferContext) -> list[ValueType]:
    return [SequenceType(TensorType(None, ctx.attrs["dtype"]))]


def _sequence_insert_infer(ctx: InferContext) -> list[ValueType]:
    seq = _sequence(ctx, 0)
    _check_position(ctx, 2)
    return [SequenceType(join_types(seq.elem, _tensor(ctx, 1, "tensor"), ctx, "the inserted tensor", "seq"))]


def _sequence_insert(ctx, seq, tensor, position=None):
    at = _position(ctx, position, len(seq), allow_end=True, default=len(seq))
    return seq[:at] + [tensor] + seq[at:]


def _sequence_erase_infer(ctx: InferContext) -> list[ValueType]:
    _check_position(ctx, 1)
    return [_sequence(ctx, 0)]


def _sequence_erase(ctx, seq, position=None):
    at = _position(ctx, position, len(seq), allow_end=False, default=-1)
    return seq[:at] + seq[at + 1:]


def _sequence_at_infer(ctx: InferContext) -> list[ValueType]:
    _check_position(ctx, 1)
    return [_sequence(ctx, 0).elem]


def _sequence_at(ctx, seq, position):
    return seq[_position(ctx, position, len(seq), allow_end=False, default=0)]


def _sequence_length_infer(ctx: InferContext) -> list[ValueType]:
    _sequence(ctx, 0)
    return [_SCALAR_I64]


# ---- SplitToSequence / ConcatFromSequence ----------------------------------------------

def _split_to_sequence_infer(ctx: InferContext) -> list[ValueType]:
    t = _tensor(ctx, 0, "input")
    if ctx.has(1) and _tensor(ctx, 1, "split").dtype.kind != "int":
        raise ctx.error(f"split must be int32 or int64, got {ctx.input(1).dtype}")
    if t.shape is None:
        return [SequenceType(TensorType(None, t.dtype))]
    axis = normalize_axis(ctx.attrs["axis"], len(t.shape), ctx)
    shape = list(t.shape)
    if not ctx.has(1):
        if ctx.attrs["keepdims"]:
            shape[axis] = 1
        else:
            del shape[axis]
        return [SequenceType(TensorType(tuple(shape), t.dtype))]
    split = ctx.const(1)
    shape[axis] = fresh_dim("split")
    if split is not None:
        sizes = np.asarray(split).reshape(-1)
        # Every part has one size when the sizes are all equal, or when a scalar size divides the axis.
        if sizes.size and np.all(sizes == sizes[0]) and (
                np.ndim(split) == 1 or (isinstance(t.shape[axis], int) and t.shape[axis] % int(sizes[0]) == 0)):
            shape[axis] = int(sizes[0])
    return [SequenceType(TensorType(tuple(shape), t.dtype))]


def _split_to_sequence(ctx, x, split=None):
    axis = normalize_axis(ctx.attrs["axis"], x.ndim)
    length = x.shape[axis]
    if split is None:
        parts = np.split(x, length, axis=axis) if length else []
        return [np.squeeze(p, axis=axis) for p in parts] if not ctx.attrs["keepdims"] else parts
    split = np.asarray(split)
    if split.ndim == 0:
        size = int(split)
        if size <= 0:
            raise ctx.error(f"split must be positive, got {size}")
        bounds = list(range(size, length, size))
    else:
        sizes = [int(s) for s in split]
        if any(s < 0 for s in sizes) or sum(sizes) != length:
            raise ctx.error(f"split sizes {sizes} must be non-negative and add up to {length}, the size of axis {axis}")
        bounds = list(np.cumsum(sizes)[:-1])
    return np.split(x, bounds, axis=axis)


def _concat_from_sequence_infer(ctx: InferContext) -> list[ValueType]:
    elem = _sequence(ctx, 0).elem
    if elem.shape is None:
        return [TensorType(None, elem.dtype)]
    shape = list(elem.shape)
    if ctx.attrs["new_axis"]:
        axis = normalize_axis(ctx.attrs["axis"], len(shape) + 1, ctx)
        shape.insert(axis, fresh_dim("seq_len"))
    else:
        if not shape:
            raise ctx.error("cannot concatenate scalars without new_axis=1")
        axis = normalize_axis(ctx.attrs["axis"], len(shape), ctx)
        shape[axis] = fresh_dim("concat")
    return [TensorType(tuple(shape), elem.dtype)]


def _concat_from_sequence(ctx, seq):
    if not seq:
        raise ctx.error("cannot concatenate an empty sequence")
    if ctx.attrs["new_axis"]:
        return np.stack(seq, axis=normalize_axis(ctx.attrs["axis"], seq[0].ndim + 1))
    return np.concatenate(seq, axis=normalize_axis(ctx.attrs["axis"], seq[0].ndim))


# ---- optionals -------------------------------------------------------------------------

def _optional_infer(ctx: InferContext) -> list[ValueType]:
    if ctx.has(0):
        t = ctx.input(0)
        if isinstance(t, OptionalType):
            raise ctx.error(f"input must be a tensor or sequence, got {t}")
        return [OptionalType(t)]
    if ctx.attrs["type"] is None:
        raise ctx.error("an empty Optional needs the 'type' attribute")
    return [OptionalType(ctx.attrs["type"])]


def _optional_has_element_infer(ctx: InferContext) -> list[ValueType]:
    return [_SCALAR_BOOL]


def _optional_get_element_infer(ctx: InferContext) -> list[ValueType]:
    t = ctx.input(0)
    return [t.elem if isinstance(t, OptionalType) else t]


def _optional_get_element(ctx, x):
    if x is None:
        raise ctx.error("the optional input is empty")
    return x


# ---- what bodies receive ---------------------------------------------------------------

def _loop_body_inputs(input_types: list, attrs: dict) -> dict[str, list[ValueType]]:
    return {"body": [_SCALAR_I64, _SCALAR_BOOL, *input_types[2:]]}


def _scan_body_inputs(input_types: list, attrs: dict) -> dict[str, list[ValueType]]:
    n = len(input_types) - int(attrs["num_scan_inputs"])
    axes = list(attrs.get("scan_input_axes") or [0] * (len(input_types) - n))
    elems = []
    for t, axis in zip(input_types[n:], axes):
        if t.shape is None:
            elems.append(t)
        else:
            shape = list(t.shape)
            del shape[normalize_axis(int(axis), len(shape))]
            elems.append(TensorType(tuple(shape), t.dtype))
    return {"body": [*input_types[:n], *elems]}


def _sequence_map_body_inputs(input_types: list, attrs: dict) -> dict[str, list[ValueType]]:
    return {"body": [t.elem if isinstance(t, SequenceType) else t for t in input_types]}


_BODY_INPUTS = {"Loop": _loop_body_inputs, "Scan": _scan_body_inputs, "SequenceMap": _sequence_map_body_inputs}


def body_input_types(op: str, input_types: list[ValueType | None], attrs: dict) -> dict[str, list[ValueType]]:
    """The types a node's bodies receive as inputs at run time, derived from the node's own
    input types: {graph attribute: [type per body input]} (empty for ops without body inputs).

    ONNX lets a body leave its inputs untyped or under-specified (no shape, no element type);
    a frontend fills those in from here before importing the body.
    """
    fn = _BODY_INPUTS.get(op)
    return {} if fn is None else fn(list(input_types), attrs)


# ---- the table -------------------------------------------------------------------------

def _op(name, inputs, outputs, infer, reference, doc, attrs=None, **facts) -> OpDef:
    return OpDef(name=name, inputs=inputs, outputs=outputs, infer=infer, reference=reference,
                 category=_OPAQUE, precision=_EXACT, attrs=attrs or {}, doc=doc, **facts)


_SCAN_ATTRS = {
    "body": Attr("graph", REQUIRED),
    "num_scan_inputs": Attr("int", REQUIRED),
    "scan_input_axes": Attr("ints", None),
    "scan_input_directions": Attr("ints", None),
    "scan_output_axes": Attr("ints", None),
    "scan_output_directions": Attr("ints", None),
}

OPS = [
    _op("If", ("cond",), ("outputs+",), _if_infer, _if,
        "Runs then_branch or else_branch by a boolean scalar; outputs are the branch's outputs.",
        {"then_branch": Attr("graph", REQUIRED), "else_branch": Attr("graph", REQUIRED)}, not_lowerable=CONTROL_FLOW),
    _op("Loop", ("M?", "cond?", "v_initial*"), ("v_final_and_scan_outputs+",), _loop_infer, _loop,
        "Runs body while i < M and cond; returns the final loop-carried values and stacked scan outputs.",
        {"body": Attr("graph", REQUIRED)}, not_lowerable=CONTROL_FLOW),
    _op("Scan", ("initial_state_and_scan_inputs+",), ("final_state_and_scan_outputs+",), _scan_infer, _scan,
        "Runs body over slices of the scan inputs carrying states; returns final states and stacked outputs.",
        _SCAN_ATTRS, not_lowerable=CONTROL_FLOW),
    _op("SequenceMap", ("input_sequence", "additional_inputs*"), ("out_sequence+",), _sequence_map_infer,
        _sequence_map, "Runs body on each element of the input sequence(s); each output is a sequence.",
        {"body": Attr("graph", REQUIRED)}, not_lowerable=CONTROL_FLOW),
    _op("SequenceConstruct", ("inputs+",), ("output_sequence",), _sequence_construct_infer,
        lambda ctx, *xs: list(xs), "A sequence of the input tensors, in order.", not_lowerable=NOT_A_TENSOR),
    _op("SequenceEmpty", (), ("output",), _sequence_empty_infer, lambda ctx: [],
        "An empty sequence of tensors of element type `dtype`.", {"dtype": Attr("dtype", dtypes.float32)},
        not_lowerable=NOT_A_TENSOR),
    _op("SequenceInsert", ("input_sequence", "tensor", "position?"), ("output_sequence",),
        _sequence_insert_infer, _sequence_insert, "The sequence with a tensor inserted at position (default: the end).",
        not_lowerable=NOT_A_TENSOR),
    _op("SequenceErase", ("input_sequence", "position?"), ("output_sequence",), _sequence_erase_infer,
        _sequence_erase, "The sequence without the tensor at position (default: the last).",
        not_lowerable=NOT_A_TENSOR),
    _op("SequenceAt", ("input_sequence", "position"), ("tensor",), _sequence_at_infer, _sequence_at,
        "The tensor at position in the sequence (negative positions count from the back).", not_lowerable=NOT_A_TENSOR),
    _op("SequenceLength", ("input_sequence",), ("length",), _sequence_length_infer,
        lambda ctx, seq: np.array(len(seq), dtype=np.int64), "The number of tensors in the sequence, an int64 scalar.",
        not_lowerable=NOT_A_TENSOR),
    _op("SplitToSequence", ("input", "split?"), ("output_sequence",), _split_to_sequence_infer,
        _split_to_sequence, "Splits a tensor along axis into a sequence (parts of size 1, of size split, or of the given sizes).",
        {"axis": Attr("int", 0), "keepdims": Attr("int", 1)}, not_lowerable=NOT_A_TENSOR),
    _op("ConcatFromSequence", ("input_sequence",), ("concat_result",), _concat_from_sequence_infer,
        _concat_from_sequence, "Concatenates (or with new_axis=1 stacks) a sequence's tensors along axis.",
        {"axis": Attr("int", REQUIRED), "new_axis": Attr("int", 0)}, not_lowerable=NOT_A_TENSOR),
    _op("Optional", ("input?",), ("output",), _optional_infer, lambda ctx, x=None: x,
        "An optional holding the input, or an empty optional of the given `type`.", {"type": Attr("type", None)},
        not_lowerable=NOT_A_TENSOR),
    _op("OptionalHasElement", ("input?",), ("output",), _optional_has_element_infer,
        lambda ctx, x=None: np.array(x is not None), "Whether the optional input holds a value (false when missing).",
        not_lowerable=NOT_A_TENSOR),
    _op("OptionalGetElement", ("input",), ("output",), _optional_get_element_infer, _optional_get_element,
        "The value an optional holds (a plain tensor or sequence passes through).", not_lowerable=NOT_A_TENSOR),
]
