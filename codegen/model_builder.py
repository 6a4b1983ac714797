"""A whole graph -> a `NativeProgram`: the kernels, the calls that run them in order, where
every argument of every call lives (inputs, outputs, weights, arena), and the arena's size.
A target's code generator turns the program into one entry point (`codegen.llvm.entry`):
no Python between kernels.

The kernels are the ones the graph asks for: each FusedKernel node (what the `fuse` pass
makes at -O3) is one kernel, any other node a kernel of its own. Steps: fold what is
known at compile time (nodes on constants, Shape/Size of static tensors); check every
remaining node can be lowered and report all that cannot at once; lower each kernel,
sharing identical ones; plan the arena (every buffer's lifetime in calls, placed by
`passes.plan_memory`, 64-byte aligned).

A node the target's extern lowering accepts (`OpDef.extern_lowering(target.kind)`: on the
llvm target, convolutions and matrix products on the hand-blocked microkernels) becomes an
`ExternPlan` instead of a loop-IR kernel; its fusion group is split around it ([nodes
before], [it], [nodes after]) and the rest of the group goes through the loop-IR rules. A channel Concat of such convs
can be dropped, the convs writing into their slices of its output (`concat_in_place`).
`NativeProgram.paths` records which way each node went.

Shapes must be static: symbolic input dims are refused with a message naming them
(pass input_shapes to compile). Runtime-sized kernels are the follow-up.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np

from ..ir.errors import CompilerError
from ..ir.flops import node_flops
from ..ir.graph import Graph, Node, Value
from ..ir.interpreter import Interpreter
from ..ir.ops import get_op
from ..ir.registry import PENDING_RULE
from ..ir.types import TensorType
from ..passes.plan_memory import ArenaBuffer, MemoryPlan, plan_arena
from ..passes.plan_memory import align as _align  # every weight offset is 64-byte aligned too
from . import concat_in_place
from . import loop_ir as L
from .extern import EXTERN, ExternPlan
from .kernel_builder import KernelPlan, build_kernel
from .lowering import NotLowerable
from .schedule import HEURISTIC, Schedules
from .target import CodegenTarget


class NotCompilableError(CompilerError):
    """Nodes that cannot become native code; `nodes` lists (node description, reason)."""

    def __init__(self, nodes: list[tuple[str, str]], target_kind: str):
        self.nodes = nodes
        shown = "; ".join(f"{d}: {r}" for d, r in nodes[:20])
        more = f"; and {len(nodes) - 20} more" if len(nodes) > 20 else ""
        super().__init__(f"{len(nodes)} node(s) cannot be compiled for the {target_kind} target: {shown}{more}")


@dataclass
class Storage:
    kind: str  # "input" | "output" | "weight" | "arena"
    index: int  # input/output position, or byte offset
    offset: int = 0  # bytes past an input/output's start (a value stored inside another)


LOOP_IR = "loop_ir"  # the `paths` entry of a node lowered through its op's loop-IR rule
ALIAS = "alias"  # a node whose output shares its input's storage (no kernel)
IN_PLACE = "in_place"  # a Concat whose producers write into their slices of its output (no kernel)


@dataclass
class Call:
    plan: KernelPlan | ExternPlan
    function: str  # the (possibly shared) kernel function it calls
    storages: list[Storage]
    nodes: tuple = ()  # the graph nodes this call computes (none for output copies)


@dataclass
class NativeProgram:
    """Everything a target's emitter and the artifact need."""

    calls: list[Call]
    kernels: dict[str, KernelPlan | ExternPlan]  # function name -> plan (unique kernels)
    weights: bytes
    memory: MemoryPlan
    paths: dict = field(default_factory=dict)  # Node -> EXTERN | LOOP_IR | ALIAS | IN_PLACE

    @property
    def arena_size(self) -> int:
        return self.memory.arena_bytes

    def call_listing(self) -> list[dict]:
        """Per call, in order: its kernel's name, the function it runs (calls of identical
        kernels share one), the nodes it computes (their ops and names) and their FLOPs. The
        artifact carries this listing, `compile inspect` shows it and the profiler labels its
        timings with it; copies into graph outputs compute no node."""
        return [{"kernel": c.plan.kernel.name, "function": c.function, "ops": [n.op for n in c.nodes],
                 "nodes": [n.name for n in c.nodes], "flops": sum(node_flops(n) or 0 for n in c.nodes)}
                for c in self.calls]


def kernel_listing(program: NativeProgram) -> str:
    """Every unique kernel as text: loop-IR kernels in full, extern kernels by their problem."""
    from .printer import kernel_text

    return "".join(kernel_text(p.kernel) if isinstance(p.kernel, L.Kernel) else p.kernel.listing()
                   for p in program.kernels.values())


def kernel_groups(graph: Graph) -> tuple[Graph, list[list[Node]] | None]:
    """The graph with each FusedKernel node's body put back in its place (its values mapped
    to the graph's), and the kernels it asks for: each body as one group, every other node
    alone. (graph, None) when there is no FusedKernel node."""
    from ..passes.rewriter import substitute_in_node

    if not any(n.op == "FusedKernel" for n in graph.nodes):
        return graph, None
    nodes, groups, constants = [], [], list(graph.constants)
    for node in graph.nodes:
        if node.op != "FusedKernel":
            nodes.append(node)
            groups.append([node])
            continue
        body = node.attrs["body"]
        outer = {**dict(zip(body.inputs, node.inputs)), **dict(zip(body.outputs, node.outputs))}
        constants += body.constants  # small constants the fusion pass copied into the body
        group = []
        for m in body.nodes:
            read = substitute_in_node(m, lambda v: outer.get(v, v))
            group.append(Node(m.op, read.inputs, [outer.get(v, v) for v in m.outputs], read.attrs, m.name))
        nodes += group
        groups.append(group)
    return Graph(list(graph.inputs), list(graph.outputs), nodes, constants, graph.name, graph.output_names), groups


def _nbytes(v: Value) -> int:
    return max(1, v.type.nbytes())


def fold_constants(graph: Graph) -> dict[Value, np.ndarray]:
    """Values known at compile time: constants, nodes over them, shapes of static tensors."""
    known = {c: c.const for c in graph.constants}
    interp = Interpreter()
    for node in graph.nodes:
        x = node.inputs[0] if node.inputs else None
        shape_query = node.op in ("Shape", "Size") and isinstance(getattr(x, "type", None), TensorType) and x.type.is_static
        reason = get_op(node.op).not_lowerable
        if node.subgraphs() or (reason and reason != PENDING_RULE):  # never native code, never folded either
            continue
        if not shape_query and not all(v is None or v in known for v in node.inputs):
            continue
        # A shape query only reads the (static) shape: a zero array of that shape stands in.
        args = [None if v is None else known.get(v, np.zeros(v.type.shape, v.type.dtype.numpy)) for v in node.inputs]
        try:
            outs = interp._run_node(node, args, {})
        except CompilerError:
            continue
        for v, a in zip(node.outputs, outs):
            if isinstance(a, np.ndarray):
                known[v] = a
    return known


def check_compilable(graph: Graph, known: dict, target: CodegenTarget) -> list[Node]:
    """The nodes that need kernels; raises one error listing every node that cannot have one."""
    problems, todo = [], []
    for v in graph.inputs:
        t = v.type
        if not isinstance(t, TensorType) or not t.is_static:
            example = [d if isinstance(d, int) else 1 for d in t.shape] if isinstance(t, TensorType) and t.shape else None
            hint = (f"; give static shapes: input_shapes={{'{v.name}': {example}}} in Python, "
                    f"--input-shape {v.name}={','.join(map(str, example))} on the command line") if example else ""
            problems.append((f"input '{v.name}'", f"type {t} is not a static-shaped tensor (native code needs static "
                                                    f"shapes){hint}"))
    if problems:  # every node downstream would repeat the same complaint
        raise NotCompilableError(problems, target.kind)
    for node in graph.nodes:
        if all(v in known for v in node.outputs):
            continue
        reason = _why_not(node, target)
        if reason:
            problems.append((node.describe(), reason))
        else:
            todo.append(node)
    if problems:
        raise NotCompilableError(problems, target.kind)
    return todo


def _why_not(node: Node, target: CodegenTarget) -> str | None:
    op = get_op(node.op)
    if op.not_lowerable:
        return op.not_lowerable
    if op.lowering is None:
        return PENDING_RULE
    for v in list(node.inputs) + list(node.outputs):
        if v is None:
            continue
        t = v.type
        if not isinstance(t, TensorType):
            return f"value '{v.name}' has type {t}, not a tensor"
        if not t.is_static:
            return f"value '{v.name}' has shape {list(t.shape) if t.shape else '*'}, not static"
        if not target.capabilities.supports_dtype(t.dtype):
            return f"value '{v.name}' has element type {t.dtype}, which native code does not support yet"
    return None


def build_program(graph: Graph, target: CodegenTarget, schedules: Schedules = HEURISTIC) -> NativeProgram:
    """`schedules`: where kernels' schedules come from (heuristic defaults, or tuned): extern
    kernels' problems and loop-IR kernels alike."""
    graph, groups = kernel_groups(graph)
    known = fold_constants(graph)
    todo = check_compilable(graph, known, target)
    externs = _extern_plans(todo, known, target, schedules)
    slices = concat_in_place.find(graph, todo, externs)
    externs.update(slices.plans)
    needed = set(todo) - slices.dropped
    groups = [[n for n in g if n in needed] for g in groups] if groups else [[n] for n in todo if n in needed]
    groups = [g for g in groups if g]
    outputs = {v: j for j, v in enumerate(graph.outputs)}
    inputs = {v: k for k, v in enumerate(graph.inputs)}
    # Alias ops share their input's storage (no kernel) unless they produce a graph output;
    # a conv output written into its slice of a Concat lives inside the Concat's output.
    alias: dict[Value, Value] = {}
    inside: dict[Value, tuple[Value, int]] = slices.inside

    def root(v: Value) -> Value:
        while v in alias or v in inside:
            v = alias[v] if v in alias else inside[v][0]
        return v

    def offset_of(v: Value) -> int:
        """Bytes from root(v)'s start to v's."""
        off = 0
        while v in alias or v in inside:
            if v in inside:
                v, delta = inside[v]
                off += delta
            else:
                v = alias[v]
        return off

    plans: list[tuple[KernelPlan | ExternPlan, str]] = []
    problems = []
    unique: dict[str, str] = {}
    kernels: dict[str, KernelPlan | ExternPlan] = {}
    paths: dict[Node, str] = dict.fromkeys(slices.dropped, IN_PLACE)

    def add(plan, nodes) -> None:
        key = plan.key()
        if key not in unique:
            unique[key] = plan.kernel.name
            kernels[plan.kernel.name] = plan
        plans.append((plan, unique[key], tuple(nodes)))

    readers: dict[Value, int] = {}
    for n in todo:
        for v in n.inputs:
            if v is not None:
                readers[v] = readers.get(v, 0) + 1
    for gi, group in enumerate(groups):
        pieces = _split_at_externs(group, externs)
        for pi, (piece, extern) in enumerate(pieces):
            if not piece:
                continue  # its only node went into the previous extern's epilogue
            node = piece[0]
            name = f"k{gi}_{_ident(node.op)}" if len(pieces) == 1 else f"k{gi}_{pi}_{_ident(node.op)}"
            if extern is not None:
                nxt = pieces[pi + 1][0][0] if pi + 1 < len(pieces) and pieces[pi + 1][1] is None else None
                folded = _absorbed(extern, node, nxt, readers, outputs)
                if folded is not None:
                    extern, piece = folded, [node, nxt]
                    pieces[pi + 1] = (pieces[pi + 1][0][1:], None)
                    paths[nxt] = EXTERN
                add(extern.named(name), piece)
                paths[node] = EXTERN
                continue
            if len(piece) == 1 and get_op(node.op).view and node.outputs[0] not in outputs and node.inputs[0] is not None:
                alias[node.outputs[0]] = node.inputs[0]
                paths[node] = ALIAS
                continue
            escaping = set(graph.outputs) | {v for n in todo if n not in piece for v in n.inputs if v is not None}
            try:
                plan = build_kernel(name, piece, known, escaping, target, row_length=slices.row_length)
            except NotLowerable as e:
                problems.append((node.describe(), str(e)))
                continue
            plan = schedules.for_loop_kernel(plan, partial(_rebuild, name, piece, known, escaping, target,
                                                           slices.row_length), target, known)
            add(plan, piece)
            paths.update((n, LOOP_IR) for n in piece)
    # Graph outputs that are inputs, constants, aliases or repeats get a copy kernel.
    produced = {root(v) for plan, _, _ in plans for kind, v in plan.args if kind == "value"}
    seen_out: set = set()
    for v in graph.outputs:
        if v in seen_out or v in inputs or v in known or v not in produced or root(v) is not v:
            plan = _copy_plan(v, root(v) if v not in known else v, target)
            kernels.setdefault(plan.kernel.name, plan)
            plans.append((plan, plan.kernel.name, ()))
        seen_out.add(v)
    if problems:
        raise NotCompilableError(problems, target.kind)
    program = _place(graph, plans, kernels, known, inputs, outputs, root, offset_of)
    program.paths = paths
    return program


def _rebuild(name, piece, known, escaping, target, row_length, schedule) -> KernelPlan:
    """The kernel of `piece` again, under `schedule` (a tuner's candidate)."""
    return build_kernel(name, piece, known, escaping, target, {schedule.kernel_class: schedule}, row_length)


def _extern_plans(todo: list[Node], known: dict, target: CodegenTarget, schedules: Schedules) -> dict[Node, ExternPlan]:
    """The nodes the target's extern lowerings accept, with their plans (unnamed yet)."""
    externs = {}
    for node in todo:
        rule = get_op(node.op).extern_lowering(target.kind)
        plan = rule(node, known, target, schedules) if rule is not None else None
        if plan is not None:
            externs[node] = plan
    return externs


def _absorbed(plan: ExternPlan, node: Node, nxt: Node | None, readers: dict, outputs: dict) -> ExternPlan | None:
    """`plan` with `nxt` folded into its epilogue (the target's `plan.absorb`), when `nxt`
    comes right after in the fusion group and is the only reader of the node's output."""
    if plan.absorb is None or nxt is None or len(node.outputs) != 1:
        return None
    y = node.outputs[0]
    if not nxt.inputs or nxt.inputs[0] is not y or readers.get(y) != 1 or y in outputs:
        return None
    return plan.absorb(nxt)


def _split_at_externs(group: list[Node], externs: dict) -> list[tuple[list[Node], ExternPlan | None]]:
    """The group as pieces in order: each node an extern lowering accepted (`externs`:
    Node -> plan) alone, the runs of nodes between them together (plan None: loop IR)."""
    pieces: list[tuple[list[Node], ExternPlan | None]] = []
    run: list[Node] = []
    for node in group:
        plan = externs.get(node)
        if plan is None:
            run.append(node)
            continue
        if run:
            pieces.append((run, None))
            run = []
        pieces.append(([node], plan))
    if run:
        pieces.append((run, None))
    return pieces


def _ident(op: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in op).lower()


def _copy_plan(dst: Value, src: Value, target: CodegenTarget) -> KernelPlan:
    from .te import Compute, Tensor, numel

    shape = dst.type.shape
    n = max(1, numel(shape))
    a = L.Buffer("p0", dst.type.dtype, n)
    b = L.Buffer("p1", dst.type.dtype, n)
    flat = Tensor(a, (n,))
    stage = Compute((numel(shape),), dst.type.dtype, lambda idx: flat[idx])
    body = target.lower_stage(stage, Tensor(b, (numel(shape),)), "injective")
    kernel = L.Kernel(f"copy_{dst.type.dtype.name}_{n}", (a, b), body, "injective")
    return KernelPlan(kernel, [("value", src), ("copy_out", dst)])


def _place(graph, plans, kernels, known, inputs, outputs, root, offset_of=lambda v: 0) -> NativeProgram:
    """Storage for every kernel argument: inputs, outputs, packed weights, and the arena."""
    weights = bytearray()
    weight_at: dict[int, int] = {}
    # Equal bytes are stored once, whichever calls packed them: a recurrent layer unrolled
    # over 50 steps packs its R for every step's product, and 50 copies of a 1 MiB matrix
    # stream from memory where one stays in L2 (an LSTM step's product: 70 -> 16 us).
    stored: dict[tuple, list[tuple[np.ndarray, int]]] = {}

    def add_weight(key: int, array: np.ndarray) -> int:
        if key not in weight_at:
            data = np.ascontiguousarray(array)
            data = data.astype(data.dtype.newbyteorder("<"), copy=False)
            same = stored.setdefault((data.dtype.str, data.shape), [])
            at = next((at for other, at in same if np.array_equal(other.view(np.uint8), data.view(np.uint8))), None)
            if at is None:
                weights.extend(b"\0" * (_align(len(weights)) - len(weights)))
                at = len(weights)
                weights.extend(data.tobytes() or b"\0")
                same.append((data, at))
            weight_at[key] = at
        return weight_at[key]

    def in_arena(r: Value) -> bool:
        return r not in inputs and r not in known and r not in outputs

    # Every arena buffer and the calls it lives across: a value from the first call that
    # touches it to the last, a kernel's scratch for its own call.
    buffers: dict = {}
    for i, (plan, fname, _) in enumerate(plans):
        for j, (kind, v) in enumerate(plan.args):
            if kind == "temp":
                buffers[(i, j)] = ArenaBuffer(f"{fname}:scratch{j}@{i}", v, i, i)
            elif kind == "value" and in_arena(root(v)):
                r = root(v)
                buffers.setdefault(r, ArenaBuffer(r.name, _nbytes(r), i, i)).end = i
    memory = plan_arena(list(buffers.values()))
    calls = []
    for i, (plan, fname, nodes) in enumerate(plans):
        storages = []
        for j, (kind, v) in enumerate(plan.args):
            if kind == "packed":
                storages.append(Storage("weight", add_weight(id(v), v)))
            elif kind == "temp":
                storages.append(Storage("arena", buffers[(i, j)].offset))
            else:
                r = v if kind == "copy_out" else root(v)
                off = 0 if kind == "copy_out" else offset_of(v)
                if kind == "copy_out" or (r in outputs and r not in inputs and r not in known):
                    storages.append(Storage("output", outputs[r], off))
                elif r in inputs:
                    storages.append(Storage("input", inputs[r], off))
                elif r in known:
                    storages.append(Storage("weight", add_weight(id(r), known[r]) + off))
                else:
                    storages.append(Storage("arena", buffers[r].offset + off))
        calls.append(Call(plan, fname, storages, nodes))
    return NativeProgram(calls, kernels, bytes(weights), memory)
