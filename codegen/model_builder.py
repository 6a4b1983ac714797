"""A whole graph -> one native library with a single entry point.

    int cm_entry(void **inputs, void **outputs, void *weights, void *arena)

Steps: fold what is known at compile time (nodes on constants, Shape/Size of static
tensors); check every remaining node can be lowered and report all that cannot at once;
lower each node or fused group to a kernel, sharing identical kernels; plan the arena
(liveness, first fit, 64-byte aligned); emit the entry that calls the kernels in order
with pointers into inputs, outputs, weights and arena: no Python between kernels.

A node an extern lowering accepts (`extern_lowering.LOWERINGS`: convolutions and matrix
products on the hand-blocked microkernels) becomes an `ExternPlan` instead of a loop-IR
kernel; its fusion group is split around it ([nodes before], [it], [nodes after]) and
the rest of the group goes through the loop-IR rules. A channel Concat of such convs
can be dropped, the convs writing into their slices of its output (`concat_in_place`).
`NativeProgram.paths` records which way each node went.

Shapes must be static: symbolic input dims are refused with a message naming them
(pass input_shapes to compile). Runtime-sized kernels are the follow-up.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..ir.errors import CompilerError
from ..ir.graph import Graph, Node, Value
from ..ir.interpreter import Interpreter
from ..ir.ops import get_op
from ..ir.registry import PENDING_RULE
from ..ir.types import TensorType
from . import loop_ir as L
from . import concat_in_place
from .extern import MICROKERNEL, ExternPlan
from . import extern_lowering  # noqa: F401 - registers the microkernels' extern lowerings
from .kernel_builder import KernelPlan, build_kernel
from .llvm_target import CPUTarget
from .lowering import NotLowerable

ALIGN = 64


class NotCompilableError(CompilerError):
    """Nodes that cannot become native code; `nodes` lists (node description, reason)."""

    def __init__(self, nodes: list[tuple[str, str]]):
        self.nodes = nodes
        shown = "; ".join(f"{d}: {r}" for d, r in nodes[:20])
        more = f"; and {len(nodes) - 20} more" if len(nodes) > 20 else ""
        super().__init__(f"{len(nodes)} node(s) cannot be compiled for the llvm target: {shown}{more}")


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
    """Everything the LLVM emitter and the artifact need."""

    calls: list[Call]
    kernels: dict[str, KernelPlan | ExternPlan]  # function name -> plan (unique kernels)
    weights: bytes
    arena_size: int
    folded: dict = field(default_factory=dict)
    paths: dict = field(default_factory=dict)  # Node -> MICROKERNEL | LOOP_IR | ALIAS | IN_PLACE


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


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


def check_compilable(graph: Graph, known: dict) -> list[Node]:
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
        raise NotCompilableError(problems)
    for node in graph.nodes:
        if all(v in known for v in node.outputs):
            continue
        reason = _why_not(node)
        if reason:
            problems.append((node.describe(), reason))
        else:
            todo.append(node)
    if problems:
        raise NotCompilableError(problems)
    return todo


def _why_not(node: Node) -> str | None:
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
        if t.dtype.kind in ("string", "complex") or (t.dtype.is_float and t.dtype.name not in ("float16", "bfloat16", "float32", "float64")) \
                or (t.dtype.is_int and t.dtype.bits < 8):
            return f"value '{v.name}' has element type {t.dtype}, which native code does not support yet"
    return None


def build_program(graph: Graph, target: CPUTarget, groups: list[list[Node]] | None = None) -> NativeProgram:
    known = fold_constants(graph)
    todo = check_compilable(graph, known)
    externs = _extern_plans(todo, known, target)
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

    for gi, group in enumerate(groups):
        pieces = _split_at_externs(group, externs)
        for pi, (piece, extern) in enumerate(pieces):
            node = piece[0]
            name = f"k{gi}_{_ident(node.op)}" if len(pieces) == 1 else f"k{gi}_{pi}_{_ident(node.op)}"
            if extern is not None:
                add(extern.named(name), piece)
                paths[node] = MICROKERNEL
                continue
            if len(piece) == 1 and get_op(node.op).view and node.outputs[0] not in outputs and node.inputs[0] is not None:
                alias[node.outputs[0]] = node.inputs[0]
                paths[node] = ALIAS
                continue
            escaping = set(graph.outputs) | {v for n in todo if n not in piece for v in n.inputs if v is not None}
            try:
                plan = build_kernel(name, piece, known, escaping, target.vector_bits)
            except NotLowerable as e:
                problems.append((node.describe(), str(e)))
                continue
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
        raise NotCompilableError(problems)
    program = _place(graph, plans, kernels, known, inputs, outputs, root, offset_of)
    program.paths = paths
    return program


def _extern_plans(todo: list[Node], known: dict, target: CPUTarget) -> dict[Node, ExternPlan]:
    """The nodes an extern lowering accepts, with their plans (unnamed yet)."""
    externs = {}
    for node in todo:
        rule = get_op(node.op).extern_lowering(target.kind)
        plan = rule(node, known, target) if rule is not None else None
        if plan is not None:
            externs[node] = plan
    return externs


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


def _copy_plan(dst: Value, src: Value, target: CPUTarget) -> KernelPlan:
    from .te import Compute, Tensor, numel

    shape = dst.type.shape
    n = max(1, numel(shape))
    a = L.Buffer("p0", dst.type.dtype, n)
    b = L.Buffer("p1", dst.type.dtype, n)
    from .schedule import default_schedule, lower_stage

    flat = Tensor(a, (n,))
    stage = Compute((numel(shape),), dst.type.dtype, lambda idx: flat[idx])
    body = lower_stage(stage, Tensor(b, (numel(shape),)), default_schedule("injective", target.vector_bits))
    kernel = L.Kernel(f"copy_{dst.type.dtype.name}_{n}", (a, b), body, "injective")
    return KernelPlan(kernel, [("value", src), ("copy_out", dst)])


def _place(graph, plans, kernels, known, inputs, outputs, root, offset_of=lambda v: 0) -> NativeProgram:
    """Storage for every kernel argument: inputs, outputs, packed weights, and the arena."""
    weights = bytearray()
    weight_at: dict[int, int] = {}

    def add_weight(key: int, array: np.ndarray) -> int:
        if key not in weight_at:
            weights.extend(b"\0" * (_align(len(weights)) - len(weights)))
            weight_at[key] = len(weights)
            data = np.ascontiguousarray(array)
            weights.extend(data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes() or b"\0")
        return weight_at[key]

    # Liveness of arena values, in call order.
    first, last = {}, {}
    for i, (plan, _, _) in enumerate(plans):
        for kind, v in plan.args:
            if kind in ("value", "copy_out"):
                r = root(v)
                first.setdefault(r, i)
                last[r] = i
    arena = _Arena()
    offsets: dict[Value, int] = {}
    calls = []
    for i, (plan, fname, nodes) in enumerate(plans):
        storages, temps = [], []
        for kind, v in plan.args:
            if kind == "packed":
                storages.append(Storage("weight", add_weight(id(v), v)))
            elif kind == "temp":
                off = arena.alloc(v)
                temps.append((off, v))
                storages.append(Storage("arena", off))
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
                    if r not in offsets:
                        offsets[r] = arena.alloc(_nbytes(r))
                    storages.append(Storage("arena", offsets[r] + off))
        for off, size in temps:
            arena.free(off, size)
        for kind, v in plan.args:  # values whose last reader was this call give their space back
            r = root(v) if kind == "value" else None
            if r is not None and r in offsets and last.get(r) == i and r not in outputs:
                arena.free(offsets.pop(r), _nbytes(r))
        calls.append(Call(plan, fname, storages, nodes))
    return NativeProgram(calls, kernels, bytes(weights), arena.size)


class _Arena:
    """First-fit allocation of 64-byte aligned blocks; `size` is the high-water mark."""

    def __init__(self):
        self.free_blocks: list[tuple[int, int]] = []  # (offset, size), sorted by offset
        self.size = 0

    def alloc(self, nbytes: int) -> int:
        n = _align(nbytes)
        for k, (off, size) in enumerate(self.free_blocks):
            if size >= n:
                if size == n:
                    self.free_blocks.pop(k)
                else:
                    self.free_blocks[k] = (off + n, size - n)
                return off
        off = self.size
        self.size += n
        return off

    def free(self, off: int, nbytes: int) -> None:
        self.free_blocks.append((off, _align(nbytes)))
        self.free_blocks.sort()
        merged: list[tuple[int, int]] = []
        for o, s in self.free_blocks:
            if merged and merged[-1][0] + merged[-1][1] == o:
                merged[-1] = (merged[-1][0], merged[-1][1] + s)
            else:
                merged.append((o, s))
        self.free_blocks = merged

