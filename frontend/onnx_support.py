"""Which ONNX ops the importer can handle, decided before anything is imported so that every
unsupported op is reported at once: an op is supported when a converter handles it, the
registry has it, or its function body (ONNX schema or model-local) is made of supported ops.
"""
from __future__ import annotations

from typing import Mapping

import onnx

from ..ir.ops import REGISTRY
from .onnx_converters import CONVERTERS
from .onnx_functions import DYNAMIC, FunctionLibrary, function_opsets
from .onnx_legacy import CONVERTER_TARGETS

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


def converter_targets(domain: str, op_type: str) -> tuple[str, ...]:
    """Registry ops a converted node becomes (Constant becomes none: it is a value)."""
    if (domain, op_type) == ("", "Constant"):
        return ()
    return CONVERTER_TARGETS.get((domain, op_type), (op_type,))


class SupportChecker:
    """Decides, before anything is imported, which ops the importer can handle: a converter,
    a registry op, or a function body made of ops it can handle (recursively)."""

    def __init__(self, functions: FunctionLibrary):
        self.functions = functions
        self._memo: dict[tuple[str, str, int | None], bool] = {}

    def supported(self, domain: str, op_type: str, opset: int | None) -> bool:
        key = (domain, op_type, opset)
        if key not in self._memo:
            self._memo[key] = True  # a function that (indirectly) calls itself is not our problem here
            self._memo[key] = self._check(domain, op_type, opset)
        return self._memo[key]

    def _check(self, domain: str, op_type: str, opset: int | None) -> bool:
        if (domain, op_type) in CONVERTERS:  # converters emit ops in their newest form
            return all(self._native_or_body(domain if t == op_type else "", t, None)
                       for t in converter_targets(domain, op_type))
        return self._native_or_body(domain, op_type, opset)

    def _native_or_body(self, domain: str, op_type: str, opset: int | None) -> bool:
        name = registry_name(domain, op_type)
        if name is not None and name in REGISTRY:
            return True
        body = self.functions.static_body(domain, op_type, opset)
        if body is None:
            return False
        if body is DYNAMIC:
            return True
        opsets = function_opsets(body, {})
        return all(self.supported(node_domain(n), n.op_type, opsets.get(node_domain(n))) for n in body.node)


def node_domain(node: onnx.NodeProto) -> str:
    return "" if node.domain == "ai.onnx" else node.domain


def is_supported(domain: str, op_type: str, opset: int | None = None) -> bool:
    return SupportChecker(FunctionLibrary()).supported(domain, op_type, opset)


def find_unsupported(graph: onnx.GraphProto, opsets: Mapping[str, int],
                     functions: FunctionLibrary | None = None) -> dict[tuple[str, str, int], list[str]]:
    """Every unsupported (domain, op_type, opset) in the graph and its subgraphs, with node names."""
    checker = SupportChecker(functions or FunctionLibrary())
    found: dict[tuple[str, str, int], list[str]] = {}

    def walk(g: onnx.GraphProto) -> None:
        for i, node in enumerate(g.node):
            domain = node_domain(node)
            opset = opsets.get(domain, 0)
            if not checker.supported(domain, node.op_type, opset):
                found.setdefault((domain, node.op_type, opset), []).append(node.name or f"#{i} in graph '{g.name}'")
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sub in a.graphs:
                        walk(sub)

    walk(graph)
    return found
