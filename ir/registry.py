"""The op registry's vocabulary: what one op definition (`OpDef`) holds, and the contexts
its type inference and numpy reference receive.

One op, one entry, holding every fact about the op:
    declared here, by the op's module      attribute schema, arity, type and shape inference,
                                           the numpy reference that defines its semantics,
                                           fusion category, precision policy, kernel class
                                           (which schedule space), shape inputs, whether it
                                           is a view, its FLOP counter, and why it has no
                                           native code when it cannot have any
    registered against it by later layers  the loop-IR lowering rule (`codegen.lowering`)
                                           and each target's extern lowering (a target's own
                                           kernels, e.g. `codegen.llvm.extern_lowering`),
                                           through `OpDef.register`, from explicit module
                                           lists that `tests/test_registry.py` checks
Ops carry the semantics of the newest ONNX opset; the ONNX frontend rewrites older
opsets into this form. The explicit list of op modules lives in `ir/ops/__init__.py`.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .errors import ShapeInferenceError
from .types import TensorType, ValueType


class Category(enum.Enum):
    """How an op fuses with its neighbours."""

    ELEMENTWISE = "elementwise"  # out[i] = f(in[i]); all operands one shape
    BROADCAST = "broadcast"  # elementwise under numpy broadcasting
    INJECTIVE = "injective"  # each output element copies one input element (reshape, transpose, slice, gather)
    REDUCTION = "reduction"  # reduces along axes (sum, max, softmax, norms)
    OUT_FUSABLE = "out_fusable"  # heavy compute (conv, matmul) whose epilogue fuses into the output tile
    OPAQUE = "opaque"  # everything else: sorts, control flow, data-dependent shapes


class Precision(enum.Enum):
    """What the precision pass may do with an op when lowering to fp16/bf16."""

    FOLLOW = "follow"  # computes in its input type; fine in fp16/bf16
    FP32 = "fp32"  # keep in fp32: range or rounding sensitive (exp, log, pow, norms' statistics)
    ACCUMULATE_FP32 = "accumulate_fp32"  # low-precision operands, fp32 accumulator (matmul, conv, sums)
    EXACT = "exact"  # integer, bool, index or pure data movement: not a precision question


# What a build may lower products to (`compiler.compile(precision=...)`, carried out by
# `passes.lower_precision` under the policies above); "fp32" lowers nothing.
PRECISIONS = ("fp32", "bf16", "fp16", "int8")


# The schedule spaces a kernel can fall in (`codegen.schedule.SPACES` declares each one's
# knobs); an op without a declared class takes its category's.
KERNEL_CLASSES = ("elementwise", "injective", "reduction", "matmul", "conv", "pool")
_KERNEL_CLASS_OF_CATEGORY = {Category.ELEMENTWISE: "elementwise", Category.BROADCAST: "elementwise",
                             Category.INJECTIVE: "injective", Category.REDUCTION: "reduction",
                             Category.OUT_FUSABLE: "matmul", Category.OPAQUE: "injective"}

# Why an op cannot become native code (`OpDef.not_lowerable`), one reason per kind of op.
CONTROL_FLOW = "control flow runs subgraphs chosen at run time; not lowered to one native entry"
NOT_A_TENSOR = "sequences and optionals are not tensors of a fixed shape"
STRINGS = "string tensors have no native representation"
VALUE_DEPENDENT_SHAPE = "the output shape depends on the input values"
RANDOM = "random number generation is not lowered (no seeded native RNG)"
TRAINING = "training-only op"
# Lowerable in principle, its rule not written yet: a rule registered for such an op makes
# the registry test fail until the marker goes (the list never shrinks or grows silently).
PENDING_RULE = "no lowering rule for this op yet"

REQUIRED = object()

# Every op by name: filled once by `ir.ops` from its explicit module list (that package
# exports it as REGISTRY). Code the op modules themselves use (the FLOP counters) looks ops
# up here, so it never imports the op modules.
TABLE: dict[str, "OpDef"] = {}

ATTR_KINDS = ("int", "float", "string", "ints", "floats", "strings", "tensor", "tensors", "graph", "graphs", "dtype", "type")


@dataclass(frozen=True)
class Attr:
    """An attribute's kind (one of ATTR_KINDS) and default (`REQUIRED` when it has none).

    `dtype` attributes hold a `DType` (ONNX stores them as ints); `type` holds a ValueType;
    `tensor` holds a numpy array; `graph` holds an ir Graph.
    """

    kind: str
    default: Any = REQUIRED

    def __post_init__(self):
        if self.kind not in ATTR_KINDS:
            raise ValueError(f"unknown attribute kind {self.kind!r}")


def _parse_arity(specs: Sequence[str]) -> tuple[int, int | None]:
    """("X", "W", "B?") -> (2, 3); ("inputs+",) -> (1, None); ("inputs*",) -> (0, None)."""
    lo, hi = 0, 0
    for s in specs:
        if s.endswith("+"):
            return lo + 1, None
        if s.endswith("*"):
            return lo, None
        hi += 1
        if not s.endswith("?"):
            lo = hi
    return lo, hi


class InferContext:
    """What an op's type inference sees of one node."""

    def __init__(self, op: str, node_name: str, inputs: list[ValueType | None], attrs: dict,
                 consts: list[np.ndarray | None], num_outputs: int, shape_values: list | None = None):
        self.op = op
        self.node_name = node_name
        self.inputs = inputs
        self.attrs = attrs
        self.consts = consts
        self.num_outputs = num_outputs
        self.shape_values = shape_values or [None] * len(inputs)

    def has(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] is not None

    def input(self, i: int) -> TensorType:
        if not self.has(i):
            raise self.error(f"input {i} is required")
        t = self.inputs[i]
        return t

    def const(self, i: int) -> np.ndarray | None:
        """The compile-time value of input i when it is a constant, else None."""
        return self.consts[i] if i < len(self.consts) else None

    def shape_value(self, i: int) -> tuple | None:
        """What small integer input i holds, as a tuple of dims (ints or symbols), when known.

        Known means a constant 0-D/1-D integer tensor, or a value whose producer propagated
        its contents (Shape, Gather/Concat/Slice of shapes...). A 0-D value gives a 1-tuple.
        """
        if not self.has(i):
            return None
        c = self.const(i)
        if c is not None:
            if c.ndim <= 1 and c.dtype.kind in "iub":
                return tuple(int(x) for x in c.reshape(-1))
            return None
        return self.shape_values[i] if i < len(self.shape_values) else None

    def error(self, message: str) -> ShapeInferenceError:
        where = f"node '{self.node_name}' ({self.op})" if self.node_name else f"node ({self.op})"
        return ShapeInferenceError(f"{where}: {message}")


class RefContext:
    """What an op's numpy reference sees of one node while the interpreter runs it."""

    def __init__(self, op: str, node_name: str, attrs: dict, output_types: list[ValueType],
                 run_subgraph: Callable[[Any, list], list]):
        self.op = op
        self.node_name = node_name
        self.attrs = attrs
        self.output_types = output_types
        self.num_outputs = len(output_types)
        self._run_subgraph = run_subgraph

    def run_subgraph(self, graph, inputs: list) -> list:
        """Run a body graph (If/Loop/Scan) with the given inputs; it sees the enclosing values."""
        return self._run_subgraph(graph, inputs)

    def error(self, message: str) -> ShapeInferenceError:
        return ShapeInferenceError(f"node '{self.node_name}' ({self.op}): {message}")


InferFn = Callable[[InferContext], list]
ReferenceFn = Callable[..., Any]


def _operand_name(spec: str) -> str:
    return spec.rstrip("?+*")


@dataclass(frozen=True)
class OpDef:
    """Everything the compiler knows about one op.

    `inputs`/`outputs` name the operands; a trailing `?` marks an optional one, a trailing
    `+` (one or more) or `*` (zero or more) a variadic tail.
    `infer(ctx)` returns the output types; `reference(ctx, *arrays)` returns the outputs and
    is the definition of the op's semantics: for one output the value itself (an array, or
    a list of arrays for a sequence, or None for an empty optional), for several a tuple.
    Missing optional inputs arrive as None.
    """

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    infer: InferFn
    reference: ReferenceFn
    category: Category
    precision: Precision
    attrs: dict[str, Attr] = field(default_factory=dict)
    doc: str = ""
    # For ops that move sizes around (Shape, Gather, Concat...): the dims each output holds,
    # given the same context as `infer`; None where unknown. See Value.shape_value.
    shape_value: Callable[[InferContext], list] | None = None
    # Folding it at graph-build time would be wrong (random ops): never fold.
    deterministic: bool = True
    # Which schedule space its kernels use (one of KERNEL_CLASSES); None: its category's.
    kernel_class: str | None = None
    # Inputs (by name) whose values fix the output shape or the loop structure (axes, shapes,
    # pads, repeats): native code with static shapes needs them as compile-time constants.
    shape_inputs: tuple[str, ...] = ()
    # The output is input 0 reinterpreted (same elements, same order, another shape): it
    # costs nothing inside a fused kernel and can share its input's storage.
    view: bool = False
    # FLOPs of one node (None when its shapes are not static); None: its category's default
    # (`ir.flops.counter_of`).
    flops: Callable | None = None
    # Why this op cannot become native code ("" when it can); see the reasons above.
    not_lowerable: str = ""
    # Whether fusion may fold a data-moving producer (transpose, slice, gather: an injective
    # chain) into its kernel. False for a reduction whose kernel reads its whole input in
    # several passes (DynamicQuantizeLinear: min, max, then quantize), where the moved data
    # would be gathered again in every pass instead of once by its own kernel.
    injective_prologue: bool = True
    # What later layers register against this op (see `register`): not part of its identity.
    registered: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.kernel_class is None:
            object.__setattr__(self, "kernel_class", _KERNEL_CLASS_OF_CATEGORY[self.category])
        if self.kernel_class not in KERNEL_CLASSES:
            raise ValueError(f"op {self.name}: kernel class {self.kernel_class!r} is not one of {KERNEL_CLASSES}")
        names = [_operand_name(s) for s in self.inputs]
        unknown = [n for n in self.shape_inputs if n not in names]
        if unknown:
            raise ValueError(f"op {self.name}: shape inputs {unknown} are not among its inputs {names}")

    def register(self, what: str, value) -> None:
        """Attach what a later layer knows about this op: `lowering` (codegen's loop-IR rule)
        or `extern:<target kind>` (that target's own kernel for the op). Registering a
        different value twice is an error: one op, one rule per concern."""
        held = self.registered.get(what)
        if held is not None and held is not value:
            raise RuntimeError(f"op {self.name}: {what} is registered twice")
        self.registered[what] = value

    @property
    def lowering(self) -> Callable | None:
        """The loop-IR lowering rule (registered by `codegen.lowering`), or None."""
        return self.registered.get("lowering")

    def extern_lowering(self, target_kind: str) -> Callable | None:
        """The rule sending this op to `target_kind`'s own kernels, or None."""
        return self.registered.get(f"extern:{target_kind}")

    @property
    def shape_input_slots(self) -> tuple[int, ...]:
        """The positions of `shape_inputs` among the inputs."""
        names = [_operand_name(s) for s in self.inputs]
        return tuple(names.index(n) for n in self.shape_inputs)

    @property
    def input_arity(self) -> tuple[int, int | None]:
        return _parse_arity(self.inputs)

    @property
    def output_arity(self) -> tuple[int, int | None]:
        return _parse_arity(self.outputs)

    def resolve_attrs(self, attrs: dict, where: str = "") -> dict:
        """The node's attributes with defaults filled in; unknown or missing ones are errors."""
        unknown = set(attrs) - set(self.attrs)
        if unknown:
            raise ShapeInferenceError(
                f"{where or self.name}: unknown attribute(s) {sorted(unknown)}; {self.name} takes {sorted(self.attrs) or 'none'}")
        full = {}
        for key, spec in self.attrs.items():
            if key in attrs:
                full[key] = attrs[key]
            elif spec.default is REQUIRED:
                raise ShapeInferenceError(f"{where or self.name}: required attribute '{key}' is missing")
            else:
                full[key] = spec.default
        return full
