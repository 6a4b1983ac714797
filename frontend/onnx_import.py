"""ONNX -> IR. Loads the model, reports every unsupported op at once, orders the nodes,
and turns each ONNX node into IR nodes (typed by the registry's inference).

ONNX ops from the default domain map onto registry ops of the same name; other domains
get a prefix (`ai.onnx.ml` -> `ml.`). Ops whose meaning changed across opsets, or that
become something else in the IR, go through a converter (`onnx_converters`, `onnx_legacy`);
ops the registry lacks but ONNX (or the model) defines as functions are inlined from their
bodies (`onnx_functions`). What counts as supported is decided up front (`onnx_support`).
"""
from __future__ import annotations

from collections import ChainMap
from typing import Any, Mapping, Sequence

import numpy as np
import onnx

from ..ir import dtypes
from ..ir.builder import GraphBuilder, NameScope
from ..ir.errors import GraphError, ModelLoadError, UnsupportedOpsError
from ..ir.graph import Graph, Value
from .onnx_converters import CONVERTERS, ImportContext
from .onnx_functions import FunctionLibrary, function_opsets
from .onnx_loader import load_model_proto
from .onnx_support import find_unsupported, is_supported, node_domain, registry_name
from .onnx_types import body_input_types, decode_attribute, is_untyped, tensor_to_array, value_type
from .onnx_validate import validate_model

__all__ = ["import_onnx", "is_supported", "find_unsupported", "model_opsets", "MIN_OPSET"]

MIN_OPSET = 7


def model_opsets(proto: onnx.ModelProto) -> dict[str, int]:
    opsets = {}
    for imp in proto.opset_import:
        opsets["" if imp.domain in ("", "ai.onnx") else imp.domain] = int(imp.version)
    if "" not in opsets and proto.ir_version and proto.ir_version < 3:
        opsets[""] = 1
    return opsets


def _ops_changed_since(graph: onnx.GraphProto, opset: int) -> list[str]:
    """Default-domain ops of the graph whose definition at MIN_OPSET is newer than `opset`."""
    changed = set()
    for node in graph.node:
        if node_domain(node) != "":
            continue
        try:
            since = onnx.defs.get_schema(node.op_type, MIN_OPSET).since_version
        except onnx.defs.SchemaError:
            changed.add(node.op_type)
            continue
        if since > opset:
            changed.add(node.op_type)
    return sorted(changed)


def import_onnx(model, input_shapes: Mapping[str, Sequence] | None = None, inline: frozenset[str] = frozenset()) -> Graph:
    """Import an ONNX model (path, bytes or ModelProto) as a verified IR Graph.

    `input_shapes` overrides the declared shapes of named inputs (ints or symbol names).
    `inline` names registry ops to import as their function body where ONNX defines one
    (a target's ops without native code, `Backend.inlined_ops`).
    """
    proto = load_model_proto(model)
    opsets = model_opsets(proto)
    validate_model(proto, opsets)
    if opsets.get("", MIN_OPSET) < MIN_OPSET:
        changed = _ops_changed_since(proto.graph, opsets[""])
        if changed:
            raise ModelLoadError(f"model uses ai.onnx opset {opsets['']}; the oldest supported is {MIN_OPSET}, and "
                                 f"{', '.join(changed)} changed since (re-export the model with a newer opset)")
        # Every op it uses reads the same at opset 7: import it as an opset-7 model.
        opsets[""] = MIN_OPSET
    functions = FunctionLibrary(list(proto.functions))
    unsupported = find_unsupported(proto.graph, opsets, functions)
    if unsupported:
        raise UnsupportedOpsError(unsupported)
    importer = _GraphImporter(opsets, functions, inline)
    graph = importer.import_graph(proto.graph, outer={}, input_shapes=dict(input_shapes or {}), is_main=True)
    from ..ir.verify import verify_graph

    verify_graph(graph)
    return graph


def _check_declared_type(graph: str, declared: onnx.ValueInfoProto, value: Value, shapes: bool = True) -> None:
    """A graph output's declared element type and static dims must be what the graph
    computes (a contradiction means the file or our inference is wrong: never silently)."""
    tt = declared.type.tensor_type if declared.type.HasField("tensor_type") else None
    got = value.type
    if tt is None or not hasattr(got, "dtype"):
        return
    if tt.elem_type and tt.elem_type != got.dtype.onnx:
        try:
            named = dtypes.from_onnx(tt.elem_type).name
        except (KeyError, ValueError):
            named = f"element type {tt.elem_type}"
        raise GraphError(f"graph '{graph}': output '{declared.name}' is declared {named} but computes "
                         f"{got.dtype.name} ({got})")
    if not shapes or not tt.HasField("shape") or got.shape is None:
        return
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    computed = list(got.shape)
    if len(dims) != len(computed) or any(d is not None and isinstance(c, int) and d != c
                                         for d, c in zip(dims, computed)):
        shown = [d if d is not None else "?" for d in dims]
        raise GraphError(f"graph '{graph}': output '{declared.name}' is declared with shape {shown} but computes {got}")


def _topological_order(g: onnx.GraphProto, known: set[str]) -> list[onnx.NodeProto]:
    """ONNX asks for sorted nodes, but exporters do not always comply: sort, and name any cycle."""
    nodes = list(g.node)
    producer: dict[str, int] = {}
    for idx, n in enumerate(nodes):
        for o in n.output:
            if o in producer:
                first = nodes[producer[o]]
                raise GraphError(f"graph '{g.name}': value '{o}' is produced twice, by nodes "
                                 f"'{first.name or first.op_type}' and '{n.name or n.op_type}'")
            if o:
                producer[o] = idx

    def deps(n: onnx.NodeProto) -> set[int]:
        names = set(n.input)
        for a in n.attribute:  # subgraphs may read outer values produced by other nodes
            subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            for sg in subs:
                names.update(_outer_reads(sg))
        return {producer[x] for x in names if x and x in producer}

    order, state = [], [0] * len(nodes)  # 0 new, 1 on stack, 2 done

    for start in range(len(nodes)):
        if state[start]:
            continue
        stack = [(start, iter(sorted(deps(nodes[start]))))]
        state[start] = 1
        while stack:
            idx, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                state[idx] = 2
                order.append(nodes[idx])
            elif state[nxt] == 1:
                cycle = [nodes[i].name or nodes[i].op_type for i, _ in stack[[s[0] for s in stack].index(nxt):]]
                raise GraphError(f"graph '{g.name}' has a cycle through nodes {' -> '.join(repr(c) for c in cycle)}")
            elif state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, iter(sorted(deps(nodes[nxt])))))
    return order


def _outer_reads(g: onnx.GraphProto) -> set[str]:
    defined = {i.name for i in g.input} | {t.name for t in g.initializer}
    reads = set()
    for n in g.node:
        reads.update(x for x in n.input if x and x not in defined)
        for a in n.attribute:
            subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            for sg in subs:
                reads.update(x for x in _outer_reads(sg) if x not in defined)
        defined.update(n.output)
    reads.update(o.name for o in g.output if o.name not in defined)
    return reads


class _GraphImporter:
    def __init__(self, opsets: Mapping[str, int], functions: FunctionLibrary, inline: frozenset[str] = frozenset()):
        self.opsets = dict(opsets)
        self.functions = functions
        self.inline = inline

    def import_graph(self, g: onnx.GraphProto, outer: Mapping[str, Value], input_shapes: dict | None = None,
                     is_main: bool = False, input_hints: Sequence = ()) -> Graph:
        """One graph (the model's, or a subgraph reading `outer`). `input_hints` type the
        inputs a subgraph leaves untyped (ONNX lets Loop/Scan bodies omit them)."""
        names = NameScope()
        names.reserve([i.name for i in g.input] + [t.name for t in g.initializer]
                      + [o for n in g.node for o in n.output] + [o.name for o in g.output])
        b = GraphBuilder(g.name or "main", names)
        scope: ChainMap[str, Value] = ChainMap({}, outer)
        input_shapes = dict(input_shapes or {})
        overridden = bool(input_shapes)

        for t in g.initializer:
            scope[t.name] = b.const(tensor_to_array(t), t.name)
        for t in g.sparse_initializer:
            from .onnx_types import sparse_to_dense

            scope[t.values.name] = b.const(sparse_to_dense(t), t.values.name)
        for inp in g.input:
            if inp.name in scope.maps[0]:
                continue  # IR < 4: initializers are listed as inputs too; they stay constants
            override = input_shapes.pop(inp.name, None)
            hint = input_hints[len(b.inputs)] if len(b.inputs) < len(input_hints) else None
            if hint is not None and is_untyped(inp.type):
                vt = hint  # a loop body's carried value: its type is the loop input's
            else:
                try:
                    vt = value_type(inp.type, shape_override=override)
                except ValueError as e:
                    raise ModelLoadError(f"graph '{g.name}' input '{inp.name}': {e}") from None
            scope[inp.name] = b.input(inp.name, vt)
        if is_main and input_shapes:
            raise ModelLoadError(f"input_shapes names unknown input(s) {sorted(input_shapes)}; "
                                 f"the model's inputs are {[v.name for v in b.inputs]}")

        known = set(scope)
        for node in _topological_order(g, known):
            self._import_node(node, b, scope, self.opsets)

        outputs = []
        for o in g.output:
            if o.name not in scope:
                raise GraphError(f"graph '{g.name}': output '{o.name}' is not produced by any node")
            if is_main:  # declared shapes are stale once the caller re-shaped the inputs
                _check_declared_type(g.name, o, scope[o.name], shapes=not overridden)
            outputs.append(scope[o.name])
        names = [o.name for o in g.output]
        b.output(*self._named_outputs(b, outputs, names), names=names)
        return b.build(verify=False)

    def _named_outputs(self, b: GraphBuilder, values: list[Value], names: list[str]) -> list[Value]:
        """Graph outputs must carry the model's names; an input or constant passed straight
        through (or one value output twice) gets an Identity so each output has its own value.
        A constant holding the output's own name (a folded Shape, a Constant node) hands the
        name over to the Identity. An input cannot (the IR's values have one name each): its
        Identity's value takes a suffixed name, and the graph's `output_names` keep the
        model's name for callers."""
        result, used = [], set()
        produced = {v for n in b.nodes for v in n.outputs}
        constants = set(b.constants)
        for v, name in zip(values, names):
            if v.name == name and v not in used and v in produced:
                result.append(v)
                used.add(v)
                continue
            if v.name == name and v in constants:  # a constant output (folded Shape, Constant): it keeps the name
                b.rename_const(v, f"{name}_value")
            result.append(b.node("Identity", [v], output_names=[name], name=f"{name}_identity")[0])
            used.add(result[-1])
        return result

    def _import_node(self, node: onnx.NodeProto, b: GraphBuilder, scope: ChainMap, opsets: Mapping[str, int],
                     attrs: dict[str, Any] | None = None, name: str | None = None,
                     output_names: list[str] | None = None) -> None:
        """Convert one ONNX node, reading its inputs from `scope` and binding its outputs there.

        Function bodies pass the node's resolved `attrs`, a qualified `name` and the names
        its outputs take in the IR (the ONNX names stay the keys of `scope`).
        """
        domain = node_domain(node)
        label = name or node.name or node.op_type
        inputs: list[Value | None] = []
        for x in node.input:
            if not x:
                inputs.append(None)
            elif x in scope:
                inputs.append(scope[x])
            else:
                where = f"node '{label}' ({node.op_type})"
                raise GraphError(f"{where}: input '{x}' is not defined by any node, initializer or graph input")
        if attrs is None and domain == "" and node.op_type == "If" and inputs and inputs[0] is not None \
                and inputs[0].const is not None:
            self._inline_taken_branch(node, inputs[0].const, b, scope, opsets, label)
            return
        if attrs is None:
            hints = body_input_types(domain, node.op_type, opsets.get(domain, 1), inputs, node.attribute)
            attrs = {a.name: self._decode(a, scope, hints) for a in node.attribute}
        outs = self.convert(b, label, domain, node.op_type, opsets, inputs, attrs,
                            output_names or list(node.output))
        for onnx_name, v in zip(node.output, outs):
            if onnx_name and v is not None:
                scope[onnx_name] = v

    def _inline_taken_branch(self, node: onnx.NodeProto, cond, b: GraphBuilder, scope: ChainMap,
                             opsets: Mapping[str, int], label: str) -> None:
        """An If whose condition is known at import time is its taken branch. Exported
        models branch on ranks and shapes; the untaken branch may not even type-check
        for this model's shapes, so it is never imported."""
        taken = "then_branch" if bool(np.asarray(cond).reshape(-1)[0]) else "else_branch"
        body = next(a.g for a in node.attribute if a.name == taken)
        local: ChainMap[str, Value] = scope.new_child()
        for t in body.initializer:
            local[t.name] = b.const(tensor_to_array(t), t.name)
        for inner in _topological_order(body, set(local)):
            self._import_node(inner, b, local, opsets, name=f"{label}/{inner.name or inner.op_type}")
        for onnx_name, out in zip(node.output, body.output):
            if onnx_name:
                if out.name not in local:
                    raise GraphError(f"node '{label}' (If): its {taken} does not produce '{out.name}'")
                scope[onnx_name] = local[out.name]

    def _decode(self, a: onnx.AttributeProto, scope: Mapping[str, Value], hints: Sequence = ()):
        return decode_attribute(a, None, lambda sg: self.import_graph(sg, scope, input_hints=hints))

    def convert(self, b: GraphBuilder, node_name: str, domain: str, op_type: str, opsets: Mapping[str, int],
                inputs: list[Value | None], attrs: dict[str, Any], output_names: list[str]) -> list[Value]:
        """One ONNX op as IR nodes: its converter, the registry op of its name, or its function body."""
        opset = opsets.get(domain, 1)
        ctx = ImportContext(b, node_name, domain, op_type, opset, output_names,
                            expand=lambda *args: self._expand(opsets, *args))
        converter = CONVERTERS.get((domain, op_type))
        if converter is not None:
            return converter(ctx, inputs, attrs)
        op = registry_name(domain, op_type) or f"{domain}::{op_type}"
        fn = self.functions.body_for(domain, op_type, opset, inputs, attrs, len(output_names)) \
            if op in self.inline else None
        if fn is not None:  # built once: a context-dependent body is made per node
            names = [n if n else f"{node_name}_unused{i}" for i, n in enumerate(output_names)]
            return self._expand(opsets, ctx, op, inputs, dict(attrs), len(output_names), names, opset, fn)
        return ctx.emit_same(inputs, attrs, op=op)

    def _expand(self, opsets: Mapping[str, int], ctx: ImportContext, op: str, inputs: list[Value | None],
                attrs: dict[str, Any], num_outputs: int, names: list[str] | None, opset: int | None,
                fn: onnx.FunctionProto | None = None) -> list[Value]:
        """Inline the function body of `op` (an op the registry lacks, or one the target
        inlines; `fn` when the caller has it already) in place of the node."""
        same = op in (registry_name(ctx.domain, ctx.op_type), f"{ctx.domain}::{ctx.op_type}")
        domain, op_type = (ctx.domain, ctx.op_type) if same else ("", op)
        fn = fn or self.functions.body_for(domain, op_type, opset, inputs, attrs, num_outputs)
        if fn is None:
            raise UnsupportedOpsError({(domain, op_type, ctx.opset if opset is None else opset): [ctx.node_name]})
        body_opsets = function_opsets(fn, opsets)
        defaults = self.functions.attribute_defaults(domain, op_type, opset, fn)
        local: ChainMap[str, Value] = ChainMap({formal: v for formal, v in zip(fn.input, inputs) if v is not None})
        renamed = {formal: name for formal, name in zip(fn.output, names or []) if name}
        for i, inner in enumerate(fn.node):
            inner_attrs = {}
            inner_domain = node_domain(inner)  # a Scan/Loop body inside may leave its inputs untyped
            hints = body_input_types(inner_domain, inner.op_type, body_opsets.get(inner_domain, 1),
                                     [local.get(x) if x else None for x in inner.input], inner.attribute)
            for a in inner.attribute:
                if not a.ref_attr_name:
                    inner_attrs[a.name] = self._decode(a, local, hints)
                elif a.ref_attr_name in attrs:
                    inner_attrs[a.name] = attrs[a.ref_attr_name]
                elif a.ref_attr_name in defaults:
                    inner_attrs[a.name] = self._decode(defaults[a.ref_attr_name], local)
            self._import_node(inner, ctx.builder, local, body_opsets, attrs=inner_attrs,
                              name=f"{ctx.node_name}/{inner.name or inner.op_type + str(i)}",
                              output_names=[renamed.get(o, f"{ctx.node_name}/{o}" if o else "") for o in inner.output])
        missing = [o for o in fn.output[:num_outputs] if o not in local]
        if missing:
            raise GraphError(f"node '{ctx.node_name}' ({op_type}): its function body does not define {missing}")
        return [local[o] for o in fn.output[:num_outputs]]
