"""ONNX -> IR. Loads the model, reports every unsupported op at once, orders the nodes,
and turns each ONNX node into IR nodes (typed by the registry's inference).

ONNX ops from the default domain map onto registry ops of the same name; other domains
get a prefix (`ai.onnx.ml` -> `ml.`). Ops whose meaning changed across opsets, or that
become something else in the IR, go through a converter from `onnx_converters`.
"""
from __future__ import annotations

from collections import ChainMap
from typing import Mapping, Sequence

import onnx

from ..ir.builder import GraphBuilder, NameScope
from ..ir.errors import GraphError, ModelLoadError, UnsupportedOpsError
from ..ir.graph import Graph, Value
from ..ir.ops import REGISTRY
from .onnx_converters import CONVERTERS, ImportContext
from .onnx_loader import load_model_proto
from .onnx_types import decode_attribute, tensor_to_array, value_type

MIN_OPSET = 7

DOMAIN_PREFIX = {
    "": "",
    "ai.onnx": "",
    "ai.onnx.ml": "ml.",
    "ai.onnx.preview": "preview.",
    "ai.onnx.preview.training": "training.",
}


def registry_name(domain: str, op_type: str) -> str | None:
    prefix = DOMAIN_PREFIX.get(domain)
    return None if prefix is None else prefix + op_type


def is_supported(domain: str, op_type: str) -> bool:
    name = registry_name(domain, op_type)
    return (domain or "", op_type) in CONVERTERS or (name is not None and name in REGISTRY)


def find_unsupported(graph: onnx.GraphProto, opsets: Mapping[str, int]) -> dict[tuple[str, str, int], list[str]]:
    """Every unsupported (domain, op_type, opset) in the graph and its subgraphs, with node names."""
    found: dict[tuple[str, str, int], list[str]] = {}

    def walk(g: onnx.GraphProto) -> None:
        for i, node in enumerate(g.node):
            domain = "" if node.domain == "ai.onnx" else node.domain
            if not is_supported(domain, node.op_type):
                key = (domain, node.op_type, opsets.get(domain, 0))
                found.setdefault(key, []).append(node.name or f"#{i} in graph '{g.name}'")
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sub in a.graphs:
                        walk(sub)

    walk(graph)
    return found


def model_opsets(proto: onnx.ModelProto) -> dict[str, int]:
    opsets = {}
    for imp in proto.opset_import:
        opsets["" if imp.domain in ("", "ai.onnx") else imp.domain] = int(imp.version)
    if "" not in opsets and proto.ir_version and proto.ir_version < 3:
        opsets[""] = 1
    return opsets


def import_onnx(model, input_shapes: Mapping[str, Sequence] | None = None) -> Graph:
    """Import an ONNX model (path, bytes or ModelProto) as a verified IR Graph.

    `input_shapes` overrides the declared shapes of named inputs (ints or symbol names).
    """
    proto = load_model_proto(model)
    opsets = model_opsets(proto)
    if opsets.get("", MIN_OPSET) < MIN_OPSET:
        raise ModelLoadError(f"model uses ai.onnx opset {opsets['']}; the oldest supported is {MIN_OPSET}")
    unsupported = find_unsupported(proto.graph, opsets)
    if unsupported:
        raise UnsupportedOpsError(unsupported)
    importer = _GraphImporter(opsets)
    graph = importer.import_graph(proto.graph, outer={}, input_shapes=dict(input_shapes or {}), is_main=True)
    from ..ir.verify import verify_graph

    verify_graph(graph)
    return graph


def _topological_order(g: onnx.GraphProto, known: set[str]) -> list[onnx.NodeProto]:
    """ONNX asks for sorted nodes, but exporters do not always comply: sort, and name any cycle."""
    nodes = list(g.node)
    producer = {}
    for idx, n in enumerate(nodes):
        for o in n.output:
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
    def __init__(self, opsets: Mapping[str, int]):
        self.opsets = opsets

    def import_graph(self, g: onnx.GraphProto, outer: Mapping[str, Value], input_shapes: dict | None = None,
                     is_main: bool = False) -> Graph:
        names = NameScope()
        names.reserve([i.name for i in g.input] + [t.name for t in g.initializer]
                      + [o for n in g.node for o in n.output] + [o.name for o in g.output])
        b = GraphBuilder(g.name or "main", names)
        scope: ChainMap[str, Value] = ChainMap({}, outer)
        input_shapes = dict(input_shapes or {})

        for t in g.initializer:
            scope[t.name] = b.const(tensor_to_array(t), t.name)
        for t in g.sparse_initializer:
            from .onnx_types import sparse_to_dense

            scope[t.values.name] = b.const(sparse_to_dense(t), t.values.name)
        for inp in g.input:
            if inp.name in scope.maps[0]:
                continue  # IR < 4: initializers are listed as inputs too; they stay constants
            override = input_shapes.pop(inp.name, None)
            try:
                vt = value_type(inp.type, shape_override=override)
            except ValueError as e:
                raise ModelLoadError(f"graph input '{inp.name}': {e}") from None
            scope[inp.name] = b.input(inp.name, vt)
        if is_main and input_shapes:
            raise ModelLoadError(f"--input-shape names unknown input(s) {sorted(input_shapes)}; "
                                 f"the model's inputs are {[v.name for v in b.inputs]}")

        known = set(scope)
        for node in _topological_order(g, known):
            self._import_node(node, b, scope)

        outputs = []
        for o in g.output:
            if o.name not in scope:
                raise GraphError(f"graph '{g.name}': output '{o.name}' is not produced by any node")
            outputs.append(scope[o.name])
        b.output(*self._named_outputs(b, outputs, [o.name for o in g.output]))
        return b.build(verify=False)

    def _named_outputs(self, b: GraphBuilder, values: list[Value], names: list[str]) -> list[Value]:
        """Graph outputs must carry the model's names; an input or constant passed straight
        through (or one value output twice) gets an Identity so each output has its own value."""
        result, used = [], set()
        produced = {v for n in b.nodes for v in n.outputs}
        for v, name in zip(values, names):
            if v.name == name and v not in used and v in produced:
                result.append(v)
            else:
                result.append(b.node("Identity", [v], output_names=[name], name=f"{name}_identity")[0])
            used.add(result[-1])
        return result

    def _import_node(self, node: onnx.NodeProto, b: GraphBuilder, scope: ChainMap) -> None:
        domain = "" if node.domain == "ai.onnx" else node.domain
        where = f"node '{node.name}' ({node.op_type})" if node.name else f"node ({node.op_type})"
        inputs: list[Value | None] = []
        for x in node.input:
            if not x:
                inputs.append(None)
            elif x in scope:
                inputs.append(scope[x])
            else:
                raise GraphError(f"{where}: input '{x}' is not defined by any node, initializer or graph input")
        raw_attrs = {a.name: decode_attribute(a, None, lambda sg: self.import_graph(sg, scope))
                     for a in node.attribute}
        ctx = ImportContext(b, node.name or node.op_type, domain, node.op_type, self.opsets.get(domain, 1),
                            list(node.output))
        converter = CONVERTERS.get((domain, node.op_type))
        if converter is not None:
            outs = converter(ctx, inputs, raw_attrs)
        else:
            outs = ctx.emit(registry_name(domain, node.op_type), inputs, raw_attrs,
                            num_outputs=len(node.output), output_names=list(node.output))
        for name, v in zip(node.output, outs):
            if name and v is not None:
                scope[name] = v
