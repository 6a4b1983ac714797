"""torch.fx -> IR: import ATen-level GraphModules (torch.export, Dynamo + AOT autograd) and
torch-level ones (symbolic_trace, Dynamo's own graphs) into an `ir.Graph`.

    graph = import_fx(gm, example_inputs)          # any fx GraphModule
    graph = import_exported_program(ep)            # a torch.export.ExportedProgram
    result = import_module(module, example_inputs) # nn.Module: export + import, with pytree specs

ATen graphs are converted node by node through `fx_aten.ATEN_CONVERTERS`. A torch-level graph
(call_module / call_method / torch.* functions) is first lowered to ATen by non-strict
torch.export with the example inputs, so one table serves every entry point.

Shapes are specialized: every dim is the example input's (or the traced FakeTensor's) size,
and SymInt inputs are the example's value. Callers that need other shapes re-import (jit keeps
one compiled variant per input signature). Parameters, buffers and lifted constants become IR
constants. Every node we cannot convert is collected and reported at once, with its fx node
name and the user source line torch recorded for it.
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.fx
from torch.utils import _pytree as pytree

from ..ir.builder import GraphBuilder
from ..ir.errors import CompilerError, UnsupportedOpsError
from ..ir.graph import Graph, Value
from ..ir.types import TensorType
from . import fx_aten
from .fx_context import FxEmitter, ir_dtype, tensor_to_numpy


class UnsupportedTorchOpsError(UnsupportedOpsError):
    """Nodes of an fx graph the importer cannot convert; `nodes` lists (node name, op, where, why)."""

    def __init__(self, nodes: list[tuple[str, str, str, str]]):
        self.nodes = nodes
        self.ops: dict[tuple[str, str, int], list[str]] = {}
        for name, op, _, _ in nodes:
            self.ops.setdefault(("torch", op, 0), []).append(name)
        lines = [f"  - node '{name}' ({op}){f' at {where}' if where else ''}: {why}" for name, op, where, why in nodes]
        CompilerError.__init__(self, f"{len(nodes)} fx node(s) cannot be imported "
                                     f"({len(self.ops)} distinct op(s)):\n" + "\n".join(lines))


class _Missing:
    """Stands for the outputs of a node that failed, so its users are skipped, not re-reported."""


MISSING = _Missing()
_SET_GRAD_REGION = getattr(torch.ops.higher_order, "wrap_with_set_grad_enabled", None)
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)')


def source_line(node: torch.fx.Node) -> str:
    """`file.py:12 (code)` of the innermost user frame torch recorded for the node, or ''."""
    trace = node.meta.get("stack_trace") or node.stack_trace or ""
    frames = _FRAME.findall(trace)
    user = [f for f in frames if "/torch/" not in f[0].replace("\\", "/")] or frames
    if not user:
        return ""
    file, line, _, code = user[-1]
    return f"{file}:{line} ({code.strip()})"


def _op_name(node: torch.fx.Node) -> str:
    t = node.target
    if isinstance(t, torch._ops.OpOverload):
        return str(t)  # aten.cumprod.default
    if node.op == "call_module":
        return f"module {t}"
    if node.op == "call_method":
        return f"Tensor.{t}"
    return getattr(t, "__qualname__", None) or str(t)


def _tensor_type(example) -> TensorType:
    """IR type of an example (real or fake) tensor; SymInt dims keep their symbol's name."""
    shape = tuple(d if isinstance(d, int) else str(d) for d in example.shape)
    return TensorType(shape, ir_dtype(example.dtype))


_ATEN_LEVEL = (torch._ops.OpOverload, torch._ops.HigherOrderOperator)


def _sizes_only(node: torch.fx.Node) -> bool:
    """A Python operator in an ATen graph does size arithmetic; in a torch-level graph (Dynamo's,
    symbolic_trace's) it may be tensor math. Only recorded non-tensor inputs prove the former."""
    for arg in node.all_input_nodes:
        val = arg.meta.get("val", arg.meta.get("example_value"))
        if val is None or isinstance(val, torch.Tensor):
            return False
    return True


def is_aten_graph(gm: torch.fx.GraphModule) -> bool:
    """True when every call is an ATen overload, a higher-order op, or Python arithmetic on sizes."""
    for n in gm.graph.nodes:
        if n.op in ("call_module", "call_method"):
            return False
        if n.op != "call_function" or isinstance(n.target, _ATEN_LEVEL):
            continue
        if fx_aten.lookup(n.target) is None or (n.target is not operator.getitem and not _sizes_only(n)):
            return False
    return True


class _Importer:
    """Walks one ATen fx graph in order, mapping each node to IR Values or Python values."""

    def __init__(self, gm: torch.fx.GraphModule, name: str, parent: "_Importer | None" = None):
        self.gm = gm
        # A subgraph (the body of a higher-order op) is inlined: it builds into its parent's graph.
        self.builder = parent.builder if parent else GraphBuilder(name)
        self.cx = parent.cx if parent else FxEmitter(self.builder)
        self.failures: list[tuple[str, str, str, str]] = parent.failures if parent else []
        self.env: dict[torch.fx.Node, Any] = {}

    # Placeholders are bound by the caller: ("input", example) | ("const", tensor) | ("value", python)
    def bind_placeholders(self, bindings: Sequence[tuple[str, Any]]) -> None:
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        if len(bindings) != len(placeholders):
            raise CompilerError(f"the fx graph has {len(placeholders)} inputs, {len(bindings)} were given")
        for node, (kind, value) in zip(placeholders, bindings):
            if kind == "input":
                self.env[node] = self.builder.input(node.name, _tensor_type(value))
            elif kind == "const":
                self.env[node] = self.builder.const(tensor_to_numpy(value).copy(), node.name)
            else:
                self.env[node] = value

    def run(self):
        """Converts every node; returns what the output node returns, fx nodes replaced."""
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                continue
            if node.op == "output":
                return self._map(node.args[0])
            self.env[node] = self._convert(node)
        raise CompilerError("the fx graph has no output node")

    def run_to_leaves(self) -> list:
        """`run` for the top-level graph: the flat outputs, or every failure at once."""
        leaves = pytree.tree_leaves(self.run())
        if self.failures:
            raise UnsupportedTorchOpsError(self.failures)
        return leaves

    def _inline(self, gm: torch.fx.GraphModule, operands: Sequence):
        child = _Importer(gm, self.builder.name, parent=self)
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        child.env.update(zip(placeholders, operands))
        return child.run()

    def _map(self, a):
        return torch.fx.node.map_arg(a, lambda n: self.env[n])

    def _fail(self, node: torch.fx.Node, why: str) -> _Missing:
        self.failures.append((node.name, _op_name(node), source_line(node), why))
        return MISSING

    def _convert(self, node: torch.fx.Node):
        if node.op == "get_attr":
            return self._get_attr(node)
        if node.op != "call_function":
            return self._fail(node, f"{node.op} nodes need a torch-level import (trace to ATen first)")
        if node.target is operator.getitem and not node.users:
            return None  # an unused auxiliary output (pooling indices, saved statistics)
        if node.target is _SET_GRAD_REGION:
            # `with torch.no_grad():` inside forward: grad mode cannot change inference values.
            _, body, *operands = self._map(node.args)
            return self._inline(body, operands)
        converter = fx_aten.lookup(node.target)
        if converter is None:
            return self._fail(node, "no converter for this op")
        args, kwargs = self._map(node.args), self._map(node.kwargs)
        leaves = pytree.tree_leaves((args, kwargs))
        if any(leaf is MISSING for leaf in leaves):
            return MISSING  # an input already failed and was reported
        self.cx.node_name = node.name
        try:
            if isinstance(node.target, torch._ops.OpOverload):
                return converter(self.cx, **_bind(node.target, args, kwargs))
            return converter(self.cx, *args, **kwargs)
        except fx_aten.Unsupported as e:
            return self._fail(node, str(e))
        except CompilerError as e:  # inference refused what the converter built
            return self._fail(node, f"conversion failed: {e}")

    def _get_attr(self, node: torch.fx.Node):
        value = self.gm
        for part in node.target.split("."):
            value = getattr(value, part)
        if isinstance(value, torch.Tensor):
            return self.builder.const(tensor_to_numpy(value).copy(), node.name)
        if isinstance(value, torch.fx.GraphModule):
            return value  # the body of a higher-order op; its user inlines it
        return self._fail(node, f"attribute of type {type(value).__name__} (submodules: higher-order ops)")

_RENAMED = {"self": "x", "input": "x"}


def _bind(op: torch._ops.OpOverload, args: tuple, kwargs: dict) -> dict:
    """An ATen call's arguments by schema name, defaults filled (`self`/`input` become `x`)."""
    bound = {}
    schema_args = op._schema.arguments
    for i, arg in enumerate(schema_args):
        if i < len(args) and not arg.kwarg_only:
            value = args[i]
        elif arg.name in kwargs:
            value = kwargs[arg.name]
        elif arg.has_default_value():
            value = arg.default_value
        else:
            continue
        bound[_RENAMED.get(arg.name, arg.name)] = value
    return bound


@dataclass
class ImportedGraph:
    """An fx graph in IR, and how to rebuild the torch-side result from the IR outputs."""

    graph: Graph
    out_spec: Any  # pytree spec of the outputs (tuple, dict, ...)
    fixed_outputs: dict[int, Any] = field(default_factory=dict)  # flat position -> Python value (sizes)

    def unflatten(self, outputs: list) -> Any:
        """The graph's outputs, in order, merged with the fixed ones into the original structure."""
        it = iter(outputs)
        total = len(self.graph.outputs) + len(self.fixed_outputs)
        leaves = [self.fixed_outputs[i] if i in self.fixed_outputs else next(it) for i in range(total)]
        return pytree.tree_unflatten(leaves, self.out_spec)


def _finish(importer: _Importer, leaves: list, out_spec) -> ImportedGraph:
    b = importer.builder
    seen: set[int] = set()
    fixed = {}
    for i, leaf in enumerate(leaves):
        if not isinstance(leaf, Value):
            if leaf is not None and not isinstance(leaf, (bool, int, float)):
                raise UnsupportedTorchOpsError([("output", "output", "", f"output of type {type(leaf).__name__}")])
            fixed[i] = leaf  # a size Dynamo returns across a graph break: known once shapes are
            continue
        # Graph outputs must be node results, each listed once: pass inputs, constants and repeats through.
        if leaf.const is not None or leaf in b.inputs or id(leaf) in seen:
            leaf = b.node("Identity", [leaf], name="output")[0]
        seen.add(id(leaf))
        b.output(leaf)
    return ImportedGraph(b.build(), out_spec, fixed)


def import_fx(gm: torch.fx.GraphModule, example_inputs: Sequence | None = None, *,
              frozen: Sequence[int] = (), name: str = "torch") -> Graph:
    """Import an fx GraphModule. `example_inputs` (tensors, real or fake, and ints) fix the input
    types; without them each placeholder's `meta['val']` does. Placeholders listed in `frozen`
    (positions) take their example's value as a constant: lifted parameters and buffers."""
    return import_fx_full(gm, example_inputs, frozen=frozen, name=name).graph


def import_fx_full(gm: torch.fx.GraphModule, example_inputs: Sequence | None = None, *,
                   frozen: Sequence[int] = (), name: str = "torch") -> ImportedGraph:
    """`import_fx`, with what it takes to rebuild the torch-side outputs."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if example_inputs is None:
        missing = [n.name for n in placeholders if "val" not in n.meta]
        if missing:
            raise CompilerError(f"fx graph inputs {missing} have no recorded types; pass example_inputs")
        example_inputs = [n.meta["val"] for n in placeholders]
    example_inputs = list(example_inputs)
    if not is_aten_graph(gm):
        ep = export_to_aten(gm, example_inputs)
        return import_exported_program_full(ep, frozen_user_inputs={i: example_inputs[i] for i in frozen}, name=name)
    bindings = []
    for i, ex in enumerate(example_inputs):
        if not isinstance(ex, torch.Tensor):
            bindings.append(("value", ex))
        else:
            bindings.append(("const" if i in frozen else "input", ex))
    importer = _Importer(gm, name)
    importer.bind_placeholders(bindings)
    leaves = importer.run_to_leaves()
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    return _finish(importer, leaves, pytree.tree_structure(out_node.args[0]))


def export_to_aten(module: torch.nn.Module, example_inputs: Sequence, kwargs: dict | None = None):
    """torch.export (non-strict, shapes specialized to the examples) -> ExportedProgram at ATen level."""
    if not isinstance(module, torch.nn.Module):
        module = _FunctionModule(module)
    with torch.no_grad():
        ep = torch.export.export(module, tuple(example_inputs), kwargs=kwargs or None, strict=False)
        if _has_mutations(ep.graph_module):
            # export keeps in-place ops (ReLU(inplace=True), x.add_()); functionalizing rewrites them
            # as pure ops and turns writes to inputs and buffers into outputs we can refuse by name.
            ep = ep.run_decompositions({})
    return ep


def _has_mutations(gm: torch.fx.GraphModule) -> bool:
    return any(n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload) and n.target._schema.is_mutable
               for n in gm.graph.nodes)


class _FunctionModule(torch.nn.Module):
    """Lets torch.export take a plain function."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


def import_exported_program(ep, name: str = "torch") -> Graph:
    """Import a torch.export.ExportedProgram; parameters, buffers and constants become IR constants."""
    return import_exported_program_full(ep, name=name).graph


def import_exported_program_full(ep, frozen_user_inputs: dict[int, Any] | None = None,
                                 name: str = "torch") -> ImportedGraph:
    """`import_exported_program` with the output structure. `frozen_user_inputs` maps a
    user-input position to the value it is frozen to (Dynamo passes lifted parameters as inputs)."""
    _refuse_mutations(ep)
    importer = _Importer(ep.graph_module, name)
    importer.bind_placeholders(_export_bindings(ep, frozen_user_inputs or {}))
    leaves = importer.run_to_leaves()
    return _finish(importer, leaves, ep.module_call_graph[0].signature.out_spec)


def _export_bindings(ep, frozen_user_inputs: dict[int, Any]) -> list[tuple[str, Any]]:
    """What each placeholder of an exported program is: a run-time input, a constant or a Python value."""
    from torch.export.graph_signature import InputKind

    placeholders = [n for n in ep.graph_module.graph.nodes if n.op == "placeholder"]
    bindings, user_index = [], 0
    for node, spec in zip(placeholders, ep.graph_signature.input_specs):
        if spec.kind == InputKind.USER_INPUT:
            value = frozen_user_inputs.get(user_index, node.meta.get("val"))
            kind = "const" if user_index in frozen_user_inputs else "input"
            bindings.append((kind, value) if isinstance(value, torch.Tensor) else ("value", value))
            user_index += 1
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            value = ep.state_dict[spec.target] if spec.target in ep.state_dict else ep.constants[spec.target]
            bindings.append(("const", value))
        elif spec.kind in (InputKind.CONSTANT_TENSOR, InputKind.CUSTOM_OBJ):
            bindings.append(("const", ep.constants[spec.target]))
        else:
            raise CompilerError(f"exported input {node.name} of kind {spec.kind.name} is not supported")
    return bindings


def _refuse_mutations(ep) -> None:
    """A compiled model is a pure function: state written by forward (a KV cache, training-mode
    BatchNorm statistics, `x.add_()` on an input) would be silently lost, so it is refused."""
    from torch.export.graph_signature import OutputKind

    writes = [spec for spec in ep.graph_signature.output_specs if spec.kind != OutputKind.USER_OUTPUT]
    if writes:
        raise UnsupportedTorchOpsError([(spec.arg.name, spec.kind.name.lower(), "",
                                         f"forward writes {spec.target or 'state'}; compiled models are pure functions")
                                        for spec in writes])


@dataclass
class TorchImport(ImportedGraph):
    """A module imported for given example inputs: also which call arguments feed the graph."""

    tensor_positions: list[int] = field(default_factory=list)  # flat (args, kwargs) positions of graph inputs


def import_module(module, example_inputs: Sequence, kwargs: dict | None = None, name: str = "torch") -> TorchImport:
    """nn.Module / fx GraphModule / function + example inputs -> IR graph with pytree specs."""
    ep = export_to_aten(module, example_inputs, kwargs)
    imported = import_exported_program_full(ep, name=name)
    flat = pytree.tree_leaves((tuple(example_inputs), dict(kwargs or {})))
    tensors = [i for i, v in enumerate(flat) if isinstance(v, torch.Tensor)]
    if len(tensors) != len(imported.graph.inputs):
        raise CompilerError(f"exported graph takes {len(imported.graph.inputs)} tensors, the call passes {len(tensors)}")
    return TorchImport(imported.graph, imported.out_spec, imported.fixed_outputs, tensors)


__all__ = ["import_fx", "import_fx_full", "import_exported_program", "import_exported_program_full", "import_module",
           "export_to_aten", "is_aten_graph", "ImportedGraph", "TorchImport", "UnsupportedTorchOpsError", "source_line"]

