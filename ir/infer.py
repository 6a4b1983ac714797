"""Type inference for one node: resolves attributes, checks arity, calls the op's rule."""
from __future__ import annotations

from typing import Any

from .errors import GraphError, ShapeInferenceError
from .graph import Value
from .ops import REGISTRY
from .registry import InferContext
from .types import ValueType


def default_num_outputs(op: str) -> int:
    lo, hi = REGISTRY[op].output_arity
    return lo if hi is None else max(lo, 1)


def infer_node_types(op: str, inputs: list[Value | None], attrs: dict[str, Any],
                     num_outputs: int | None = None, name: str = "") -> list[ValueType]:
    """Output types of `op` applied to `inputs`; raises a ShapeInferenceError naming the node."""
    return infer_node(op, inputs, attrs, num_outputs, name)[0]


def infer_node(op: str, inputs: list[Value | None], attrs: dict[str, Any],
               num_outputs: int | None = None, name: str = "") -> tuple[list[ValueType], list]:
    """(output types, output shape values) of `op` applied to `inputs`; see Value.shape_value."""
    where = f"node '{name}' ({op})" if name else f"node ({op})"
    opdef = REGISTRY.get(op)
    if opdef is None:
        raise GraphError(f"{where}: op {op!r} is not registered")
    lo, hi = opdef.input_arity
    while inputs and inputs[-1] is None and len(inputs) > lo:  # trailing missing optionals are no inputs
        inputs = inputs[:-1]
    if len(inputs) < lo or (hi is not None and len(inputs) > hi):
        want = f"{lo}" if lo == hi else f"{lo} to {'any number' if hi is None else hi}"
        raise ShapeInferenceError(f"{where}: takes {want} inputs, got {len(inputs)}")
    for i, spec in enumerate(opdef.inputs[: len(inputs)]):
        if inputs[i] is None and not (spec.endswith("?") or spec.endswith("*")):
            raise ShapeInferenceError(f"{where}: required input {i} ({spec.rstrip('?+*')}) is missing")
    if num_outputs is None:
        num_outputs = default_num_outputs(op)
    olo, ohi = opdef.output_arity
    if num_outputs < olo or (ohi is not None and num_outputs > ohi):
        raise ShapeInferenceError(f"{where}: cannot produce {num_outputs} outputs")
    full_attrs = opdef.resolve_attrs(attrs, where)
    ctx = InferContext(op, name, [None if v is None else v.type for v in inputs], full_attrs,
                       [None if v is None else v.const for v in inputs], num_outputs,
                       [None if v is None else v.shape_value for v in inputs])
    try:
        types = list(opdef.infer(ctx))
    except ShapeInferenceError:
        raise
    except (ValueError, IndexError, TypeError, KeyError) as e:
        raise ShapeInferenceError(f"{where}: {e}") from e
    if len(types) < num_outputs:
        raise ShapeInferenceError(f"{where}: inference gave {len(types)} output types for {num_outputs} outputs")
    values = [None] * num_outputs
    if opdef.shape_value is not None:
        try:
            values = (list(opdef.shape_value(ctx)) + values)[:num_outputs]
        except (ValueError, IndexError, TypeError, KeyError):
            pass  # shape values are a refinement; inference above already gave sound types
    return types[:num_outputs], values
