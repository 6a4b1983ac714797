"""The reference interpreter: runs any Graph with the ops' numpy references.

It is the definition of semantics: constant folding calls it and every differential
test compares against it. With `check_types=True` it also checks each node's run-time
outputs against the types inference declared, which is how the conformance suite
tests the inference rules as well as the references.
"""
from __future__ import annotations

from collections import ChainMap
from typing import Any, Mapping

import numpy as np

from .errors import CompilerError, InputError, ShapeInferenceError
from .graph import Graph, Node, Value
from .ops import REGISTRY
from .registry import RefContext
from .types import OptionalType, SequenceType, TensorType, dims_match


def validate_inputs(graph: Graph, feeds: Mapping[str, Any]) -> dict[str, Any]:
    """Check names, dtypes and shapes of run-time inputs; returns them keyed by name."""
    expected = {v.name: v for v in graph.inputs}
    unknown = sorted(set(feeds) - set(expected))
    missing = [n for n in expected if n not in feeds]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"unknown input(s) {unknown}")
        if missing:
            parts.append(f"missing input(s) {missing}")
        raise InputError("; ".join(parts) + f"; the model takes {list(expected)}")
    bindings: dict[str, int] = {}
    out = {}
    for name, v in expected.items():
        arr = feeds[name]
        if isinstance(v.type, TensorType):
            arr = np.asarray(arr)
            want = v.type
            if want.dtype.numpy != arr.dtype and not (want.dtype.kind == "string" and arr.dtype.kind in "OUS"):
                raise InputError(f"input '{name}': expected element type {want.dtype.name}, got {arr.dtype}")
            if want.shape is not None:
                if arr.ndim != len(want.shape) or not all(
                        dims_match(d, s, bindings) for d, s in zip(want.shape, arr.shape)):
                    raise InputError(f"input '{name}': expected shape {_shape_text(want.shape)}, got {list(arr.shape)}")
            if want.dtype.kind == "string" and arr.dtype != object:
                arr = arr.astype(object)
        out[name] = arr
    return out


def _shape_text(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _check_output(node: Node, v: Value, arr, bindings: dict[str, int]) -> None:
    t = v.type
    if isinstance(t, OptionalType):
        if arr is None:
            return
        t = t.elem
    if isinstance(t, SequenceType):
        if not isinstance(arr, list):
            raise ShapeInferenceError(f"{node.describe()}: output %{v.name} should be a sequence, got {type(arr).__name__}")
        for item in arr:
            if item.dtype != t.elem.dtype.numpy and t.elem.dtype.kind != "string":
                raise ShapeInferenceError(
                    f"{node.describe()}: sequence output %{v.name} holds {item.dtype}, inference said {t.elem.dtype}")
        return
    if not isinstance(arr, np.ndarray):
        raise ShapeInferenceError(f"{node.describe()}: output %{v.name} is a {type(arr).__name__}, not an array")
    if t.dtype.kind == "string":
        ok_dtype = arr.dtype.kind in "OUS"
    else:
        ok_dtype = arr.dtype == t.dtype.numpy
    if not ok_dtype:
        raise ShapeInferenceError(f"{node.describe()}: output %{v.name} is {arr.dtype} at run time, inference said {t.dtype}")
    if t.shape is not None:
        if arr.ndim != len(t.shape) or not all(dims_match(d, s, bindings) for d, s in zip(t.shape, arr.shape)):
            raise ShapeInferenceError(f"{node.describe()}: output %{v.name} has shape {list(arr.shape)} at run time, "
                                      f"inference said {_shape_text(t.shape)}")


def _last_uses(graph: Graph) -> dict[Value, int]:
    """For freeing intermediates early: the index of the last node reading each value."""
    last: dict[Value, int] = {}
    users = graph.users()
    index = {n: i for i, n in enumerate(graph.nodes)}
    for v, nodes in users.items():
        last[v] = max(index[n] for n in nodes if n in index) if any(n in index for n in nodes) else -1
    return last


class Interpreter:
    def __init__(self, check_types: bool = False):
        self.check_types = check_types

    def run(self, graph: Graph, feeds: Mapping[str, Any], validate: bool = True) -> dict[str, Any]:
        values = validate_inputs(graph, feeds) if validate else dict(feeds)
        env: dict[Value, Any] = {v: values[v.name] for v in graph.inputs}
        results = self._run_scope(graph, env, outer={})
        return dict(zip(graph.output_name_list(), results))

    def _run_scope(self, graph: Graph, env: dict[Value, Any], outer: Mapping[Value, Any]) -> list[Any]:
        for c in graph.constants:
            env[c] = c.const
        last = _last_uses(graph)
        keep = set(graph.outputs)
        bindings: dict[str, int] = {}

        def lookup(v: Value):
            if v in env:
                return env[v]
            if v in outer:
                return outer[v]
            if v.const is not None:
                return v.const
            raise CompilerError(f"value %{v.name} has no value at this point")

        for i, node in enumerate(graph.nodes):
            args = [None if v is None else lookup(v) for v in node.inputs]
            outs = self._run_node(node, args, ChainMap(env, outer))
            for v, arr in zip(node.outputs, outs):
                if self.check_types:
                    _check_output(node, v, arr, bindings)
                env[v] = arr
            for v in node.inputs:
                if v is not None and v in env and v not in keep and last.get(v, -1) <= i and v not in graph.inputs:
                    del env[v]
        return [lookup(v) for v in graph.outputs]

    def run_node(self, node: Node, args: list) -> list:
        """Evaluate one node on arrays (constant folding uses this); checks outputs in check_types mode."""
        outs = self._run_node(node, list(args), {})
        if self.check_types:
            bindings: dict[str, int] = {}
            for v, arr in zip(node.outputs, outs):
                _check_output(node, v, arr, bindings)
        return outs

    def _run_node(self, node: Node, args: list, scope: Mapping[Value, Any]) -> list:
        opdef = REGISTRY[node.op]
        attrs = opdef.resolve_attrs(node.attrs, node.describe())

        def run_subgraph(sub: Graph, sub_inputs: list) -> list:
            sub_env = {v: a for v, a in zip(sub.inputs, sub_inputs)}
            return self._run_scope(sub, sub_env, scope)

        ctx = RefContext(node.op, node.name, attrs, [v.type for v in node.outputs], run_subgraph)
        while args and args[-1] is None and len(args) > len(node.inputs):
            args.pop()
        try:
            result = opdef.reference(ctx, *args)
        except CompilerError:
            raise
        except Exception as e:  # a reference failing on bad data is the user's input, named
            raise CompilerError(f"{node.describe()}: reference evaluation failed: {type(e).__name__}: {e}") from e
        # One output: the value itself (a list for a sequence); several: a tuple of them.
        outs = [result] if len(node.outputs) == 1 and not isinstance(result, tuple) else list(result)
        # numpy hands back scalars (np.float32) for 0-d results; the IR's values are arrays.
        outs = [np.asarray(o) if isinstance(o, np.generic) else o for o in outs]
        if len(outs) < len(node.outputs):
            raise CompilerError(f"{node.describe()}: reference returned {len(outs)} outputs, node has {len(node.outputs)}")
        return outs[: len(node.outputs)]


def run_graph(graph: Graph, feeds: Mapping[str, Any], check_types: bool = False) -> dict[str, Any]:
    """Run `graph` on numpy inputs with the reference interpreter; returns {output name: array}."""
    return Interpreter(check_types=check_types).run(graph, feeds)
