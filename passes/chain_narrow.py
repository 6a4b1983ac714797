"""Narrow chains: a product whose every reader is a product of the same reduced precision
hands them its output already narrowed, as uint8 codes (int8), bfloat16 (bf16) or float16
(fp16).

After `lower_precision` each int8 product quantizes its float32 activation as it packs it,
and each bf16 product rounds it to bfloat16. An fp16 product keeps float16 weights and reads
float32 activations; in a chain it reads float16 ones, which is fp16 as the storage type of
activations too (issue 18's "weights and activations in fp16, computed in fp32"): the
producer rounds its result to float16 once, in its epilogue, and the readers widen it as
they pack it (`GemmProblem.a_f16`). Where a product's output is read only by such
products (VGG's conv -> conv, ResNet's bottleneck 1x1 -> 3x3 -> 1x1, SqueezeNet's squeeze
conv -> both expand convs, a conv feeding the next stage's convs), all of them narrow it the
same way - int8 ranges belong to the value, bfloat16 rounding is one function - so the
producer can do it once, in its epilogue, and write a narrow tensor:

- int8: the producer gets out_scale / out_zero_point, its output becomes uint8 codes and the
  readers take the codes as they are (`ir.int8`; the kernels copy bytes instead of
  converting floats, and padding reads the zero point's code);
- bf16: the producer gets out_dtype=bfloat16, its output becomes bfloat16 and the readers
  copy the bits instead of rounding floats (zero is zero bits);
- fp16: the producer gets out_dtype=float16 and its readers take float16.

For int8 and bf16 the arithmetic is unchanged: the readers' reference narrows what it reads,
which gives the same codes or bits back. fp16 rounds the chained activations, which the
fp16 products alone would not (their precision report says so); float16's 11-bit
significand is finer than bfloat16's 8, but its range ends at 65504. What moves through
memory is a quarter (int8) or half (bf16, fp16) of the bytes.

A max pool between products (VGG's stage ends) runs on the narrow values: quantizing and
rounding are monotone, so max commutes with them, and the producer narrows for the pool's
readers. int8 only: an int8 conv that adds the value as its residual (a ResNet block's
input, read by the next block's first conv and added by its last) takes it as those codes
too, dequantized as its epilogue loads it (`residual_scale`, `residual_zero_point`), as
onnxruntime's QDQ form quantizes both inputs of the Add; its activation readers decide the
codes. A channel Concat of int8 products' results that int8 products read (Inception's
and SqueezeNet's joins) joins codes: each producer quantizes with the readers' parameters,
calibrated on the joined values, and the Concat is written in place by them as before. A
value that is a graph output, or that any other op reads (an average pool, a float Add),
stays float32.

bf16 and fp16: a value that an elementwise node computes (DenseNet's concatenated features
after BatchNorm and ReLU, a pre-activation block's ReLU) and that only bf16 products read
(directly or through max pools, by the same test as products' outputs) gets a Cast to
bfloat16 (float16) right after its producer. Fusion puts the Cast at the end of the
producer's kernel, whose stores then round (the same round-to-nearest-even the readers
would do), so that kernel writes half the bytes and the readers copy bits (DenseNet-121's
kernels: 9.6 -> 9.3 ms, 2 threads). Producers of other kinds are left alone: a Transpose or
a lone Concat has a copy kernel of its own that a Cast would turn into a slower loop (the
input transpose went 0.1 -> 0.24 ms), and after views, reductions, other products or
opaque ops the Cast could be a kernel of its own, one more pass over memory.
"""
from __future__ import annotations

import dataclasses

from ..ir import dtypes
from ..ir.builder import NameScope
from ..ir.graph import Graph, Node, Value
from ..ir.types import TensorType
from .core import PassContext, graph_pass
from .fuse import ELEMENTWISE, fusion_kind
from .match import concat_axis
from .rewriter import all_names
from .widen_products import reads_float16_cheaply

_PRODUCTS = ("ConvNhwc", "Linear")
_BF16 = ("bf16",)  # the form of a bfloat16 reader: rounding has no parameters
_FP16 = ("fp16",)  # the form of a float16 reader (float16 storage)
_FLOAT_FORMS = {_BF16: dtypes.bfloat16, _FP16: dtypes.float16}  # narrow float form -> the type it stores


def _form(node: Node) -> tuple | None:
    """How a reduced-precision product narrows its activation: ("int8", scale, zero point),
    ("bf16",) or ("fp16",); None for any other node."""
    compute = node.attrs.get("compute")
    if node.op not in _PRODUCTS or compute is None:
        return None
    if compute.name == "int8":
        return ("int8", node.attrs["act_scale"], node.attrs["act_zero_point"])
    return {"bfloat16": _BF16, "float16": _FP16}.get(compute.name)


def _reader_form(v: Value, users: dict, outputs: set, through: list, concats: dict | None = None) -> tuple | None:
    """The one form every reader of float32 `v` narrows it with, when all of them are
    reduced-precision products reading it as their activation, or max pools whose outputs
    are read that way (collected in `through`: narrowing commutes with max, so the pool can
    run on the narrow values); None otherwise."""
    readers = users.get(v, [])
    if v in outputs or not readers or not isinstance(v.type, TensorType) or v.type.dtype is not dtypes.float32:
        return None
    forms = set()
    residual = False
    for reader in readers:
        if reader.op == "MaxPoolNhwc" and len(reader.outputs) == 1:
            inner = _reader_form(reader.outputs[0], users, outputs, through, concats)
            if inner is None:
                return None
            through.append(reader)
            forms.add(inner)
        elif _form(reader) is not None and not any(u is v for u in reader.inputs[1:]):
            if _form(reader) == _FP16 and not reads_float16_cheaply(reader):
                return None  # it would widen float16 once per tap: slower than reading float32
            forms.add(_form(reader))
        elif _adds_as_residual(reader, v):
            residual = True
        elif concats and id(reader) in concats:  # a Concat of int8 products' codes (`_code_concats`)
            forms.add(concats[id(reader)][0])
        else:
            return None
    if len(forms) != 1 or residual and next(iter(forms))[0] != "int8":
        return None  # a residual reader takes the codes its activation readers agree on, and only int8 ones
    return forms.pop()


def _adds_as_residual(reader: Node, v: Value) -> bool:
    """Whether `reader` is an int8 conv adding `v` as its residual (and reading it no other way):
    it can take v as the chain's uint8 codes, dequantized in its epilogue."""
    form = _form(reader)
    ins = reader.inputs
    return (reader.op == "ConvNhwc" and form is not None and form[0] == "int8" and len(ins) > 3 and ins[3] is v
            and not any(u is v for u in ins[:3]))


def _narrowed(node: Node, form: tuple | None) -> tuple[dict, object]:
    """(attrs, output dtype) of a node whose output leaves in `form` (None: a max pool,
    which keeps its attributes)."""
    if form is None:
        return node.attrs, None
    if form[0] == "int8":
        return {**node.attrs, "out_scale": form[1], "out_zero_point": form[2]}, dtypes.uint8
    dtype = _FLOAT_FORMS[form]
    return {**node.attrs, "out_dtype": dtype}, dtype


def _code_concats(graph: Graph, users: dict, outputs: set) -> dict:
    """id(Concat) -> (form, max pools after it) for the channel Concats that can join uint8
    codes: every input a float32 result of an int8 product that nothing else reads, and the
    output read (directly or through max pools) by int8 products as their activation. Each
    input's producer then quantizes with the readers' parameters, so the codes join as they
    are (the readers' range was calibrated on the joined values)."""
    made_by = {v: n for n in graph.nodes for v in n.outputs}
    found = {}
    for node in graph.nodes:
        z = node.outputs[0] if node.op == "Concat" and node.outputs else None
        if z is None or z.type.rank != 4 or concat_axis(node) != 3 or z in outputs:
            continue
        through: list[Node] = []
        form = _reader_form(z, users, outputs, through)
        if form is None or form[0] != "int8" or len(set(node.inputs)) != len(node.inputs):
            continue
        if all(v is not None and v not in outputs and v.type.dtype is dtypes.float32 and users.get(v) == [node]
               and v in made_by and (_form(made_by[v]) or ("",))[0] == "int8" and not made_by[v].attrs.get("out_scale")
               for v in node.inputs):
            found[id(node)] = (form, through)
    return found


@graph_pass
def chain_narrow(graph: Graph, ctx: PassContext) -> Graph:
    users = graph.users()
    outputs = set(graph.outputs)
    concats = _code_concats(graph, users, outputs)
    narrow: dict[Value, Value] = {}  # float32 value -> the narrow value that replaces it
    chained: dict[int, tuple] = {}  # id(product) -> the form its output leaves in
    pools: dict[int, object] = {}  # id(max pool) running on narrow values -> their dtype
    rounded: dict[int, tuple] = {}  # id(elementwise producer) -> (its output, the type a Cast after it rounds to)
    for node in graph.nodes:
        form = _form(node)
        through: list[Node] = []
        if form is not None and not node.attrs.get("out_scale") and node.attrs.get("out_dtype") is None:
            readers = _reader_form(node.outputs[0], users, outputs, through, concats)
            if readers is not None and readers[0] == form[0]:  # int8 feeds int8, bf16 bf16, fp16 fp16
                chained[id(node)] = readers
                pools.update((id(p), _narrowed(node, readers)[1]) for p in through)
        elif form is None and len(node.outputs) == 1 and fusion_kind(node) == ELEMENTWISE:
            form = _reader_form(node.outputs[0], users, outputs, through)
            if form in _FLOAT_FORMS:
                rounded[id(node)] = (node.outputs[0], _FLOAT_FORMS[form])
                pools.update((id(p), _FLOAT_FORMS[form]) for p in through)
    for form, through in concats.values():
        pools.update((id(p), dtypes.uint8) for p in through)
    if not chained and not rounded:
        return graph
    values, node_names = all_names(graph)
    names, node_scope = NameScope(values), NameScope(node_names)
    nodes = []
    codes: dict[Value, tuple] = {}  # uint8 value -> (scale, zero point) of its codes
    for node in graph.nodes:
        inputs = [narrow.get(v, v) for v in node.inputs]
        produced = id(node)
        attrs = node.attrs
        if len(inputs) > 3 and inputs[3] in codes and node.op == "ConvNhwc":  # an int8 chain's residual
            attrs = {**attrs, "residual_scale": codes[inputs[3]][0], "residual_zero_point": codes[inputs[3]][1]}
        if id(node) in concats:  # its inputs arrive as codes of its readers' form: it joins codes
            form = concats[id(node)][0]
            y = node.outputs[0]
            out = Value(y.name, TensorType(y.type.shape, dtypes.uint8))
            narrow[y] = out
            codes[out] = (form[1], form[2])
            node = dataclasses.replace(node, inputs=inputs, outputs=[out], attrs=attrs)
        elif id(node) in chained or id(node) in pools:
            attrs, dtype = _narrowed(dataclasses.replace(node, attrs=attrs), chained.get(id(node)))
            y = node.outputs[0]
            out = Value(y.name, TensorType(y.type.shape, dtype or pools[id(node)]))
            narrow[y] = out
            if out.type.dtype is dtypes.uint8:
                codes[out] = ((attrs["out_scale"], attrs["out_zero_point"]) if id(node) in chained
                              else codes[inputs[0]])  # a max pool keeps its input's codes
            node = dataclasses.replace(node, inputs=inputs, outputs=[out], attrs=attrs)
        elif inputs != node.inputs or attrs is not node.attrs:
            node = dataclasses.replace(node, inputs=inputs, attrs=attrs)
        nodes.append(node)
        if produced in rounded:  # the Cast that fusion appends to this producer's kernel
            y, dtype = rounded[produced]
            suffix = "_bf16" if dtype is dtypes.bfloat16 else "_fp16"
            out = Value(names.unique(f"{y.name}{suffix}"), TensorType(y.type.shape, dtype))
            nodes.append(Node("Cast", [y], [out], {"to": dtype}, node_scope.unique(f"{node.name}{suffix}")))
            narrow[y] = out
    ctx.analyses["int8_chains"] = sorted(v.name for v in narrow.values() if v.type.dtype is dtypes.uint8)
    ctx.analyses["bf16_chains"] = sorted(v.name for v in narrow.values() if v.type.dtype is dtypes.bfloat16)
    ctx.analyses["fp16_chains"] = sorted(v.name for v in narrow.values() if v.type.dtype is dtypes.float16)
    return dataclasses.replace(graph, nodes=nodes)
