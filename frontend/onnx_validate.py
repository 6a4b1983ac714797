"""What an ONNX file must satisfy before it is imported, checked up front with our own
messages (each names the model part at fault): the cases `onnx.checker` would reject that
the importer would otherwise accept silently, or fail on deep inside numpy.

- opset imports: a model with default-domain (ai.onnx) nodes must import that domain, at
  an opset this build's onnx package knows (a newer one means ops whose meaning we cannot
  know); a model of ai.onnx.ml nodes alone needs none;
- names: no two initializers, and no two graph inputs, share a name (which one a reader
  means would be ambiguous);
- initializers: no negative dim, raw data exactly as long as the shape says, and no tensor
  over the size limit;
- graph inputs: no static shape over the size limit (refused before anything allocates);
- structure: at least one output; an initializer's element type is one ONNX defines
  (nodes out of topological order are accepted and sorted by the importer, as onnxruntime
  does; a cycle is refused there);
- attributes of ai.onnx nodes: each one the op's schema (at the model's opset) declares,
  of the type it declares (`kernel_shape=3` for a Conv is refused, not guessed at).

The size limit is `COMPILER_MAX_TENSOR_BYTES` (default 64 GiB): a model declaring a 10^12-
element tensor is refused by name, not attempted.
"""
from __future__ import annotations

import math
import os

import onnx
from onnx import helper

from ..ir.errors import GraphError, ModelLoadError

DEFAULT_MAX_TENSOR_BYTES = 64 << 30


def max_tensor_bytes() -> int:
    """The size limit for one tensor (`COMPILER_MAX_TENSOR_BYTES`, bytes)."""
    text = os.environ.get("COMPILER_MAX_TENSOR_BYTES", "")
    try:
        return int(text) if text else DEFAULT_MAX_TENSOR_BYTES
    except ValueError:
        raise ModelLoadError(f"COMPILER_MAX_TENSOR_BYTES={text!r}: expected a number of bytes") from None


def validate_model(proto: onnx.ModelProto, opsets: dict[str, int]) -> None:
    """Raise ModelLoadError / GraphError for the first problem of `proto` (see module doc)."""
    _check_opsets(proto, opsets)
    _check_graph(proto.graph, max_tensor_bytes(), opsets.get(""))


def _uses_default_domain(g: onnx.GraphProto) -> bool:
    for node in g.node:
        if node.domain in ("", "ai.onnx"):
            return True
        for a in node.attribute:
            if any(_uses_default_domain(sub) for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs)):
                return True
    return False


def _check_opsets(proto: onnx.ModelProto, opsets: dict[str, int]) -> None:
    if "" not in opsets and _uses_default_domain(proto.graph):
        imported = ", ".join(f"{i.domain or 'ai.onnx'} {i.version}" for i in proto.opset_import) or "none"
        raise ModelLoadError(f"model has ai.onnx nodes but no opset import for the default ONNX domain; it imports "
                             f"{imported}. Add one (onnx.helper.make_opsetid('', version))")
    if "" not in opsets:
        return
    newest = onnx.defs.onnx_opset_version()
    if opsets[""] > newest:
        raise ModelLoadError(f"model uses ai.onnx opset {opsets['']}; this build knows opsets up to {newest} "
                             f"(onnx {onnx.__version__}): re-export the model for opset {newest} or older")


# element types narrower than a byte, packed in raw data (the names this onnx has)
_SUB_BYTE_BITS = {getattr(onnx.TensorProto, name): bits for name, bits in
                  (("INT4", 4), ("UINT4", 4), ("FLOAT4E2M1", 4), ("INT2", 2), ("UINT2", 2))
                  if hasattr(onnx.TensorProto, name)}


def _itemsize(data_type: int) -> int | None:
    try:
        return helper.tensor_dtype_to_np_dtype(data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return None


def _first_repeat(names) -> str | None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def _check_graph(g: onnx.GraphProto, limit: int, opset: int | None) -> None:
    where = f"graph '{g.name}'"
    if not g.output:
        raise GraphError(f"{where} has no outputs: nothing to compute")
    for what, items in (("initializers", g.initializer), ("graph inputs", g.input)):
        twice = _first_repeat(x.name for x in items)
        if twice is not None:
            raise GraphError(f"{where}: two {what} are named '{twice}'")
    for t in g.initializer:
        _check_initializer(t, where, limit)
    for inp in g.input:
        _check_input_size(inp, where, limit)
    for node in g.node:
        if node.domain in ("", "ai.onnx") and opset is not None:
            _check_attributes(node, opset, where)
        for a in node.attribute:  # subgraphs (If, Loop, Scan bodies) follow the same rules
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                _check_graph(sub, limit, opset)


def _describe(node: onnx.NodeProto) -> str:
    return f"node '{node.name}' ({node.op_type})" if node.name else f"a {node.op_type} node"


_ATTR_TYPE_NAMES = {v: k.lower() for k, v in onnx.AttributeProto.AttributeType.items()}


def _check_attributes(node: onnx.NodeProto, opset: int, where: str) -> None:
    """Each attribute is one the op's schema declares, of the declared type (what
    onnx.checker requires); ops without a schema here are left to the importer."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, "")
    except onnx.defs.SchemaError:
        return
    for a in node.attribute:
        declared = schema.attributes.get(a.name)
        if declared is None:
            raise GraphError(f"{where}: {_describe(node)} has attribute '{a.name}', which {node.op_type} (opset "
                             f"{opset}) does not define; it defines {sorted(schema.attributes) or 'none'}")
        if a.ref_attr_name:
            continue  # a function body's reference to its caller's attribute
        if a.type != declared.type:
            raise GraphError(f"{where}: {_describe(node)}: attribute '{a.name}' is of type "
                             f"{_ATTR_TYPE_NAMES.get(a.type, a.type)}, {node.op_type} expects "
                             f"{_ATTR_TYPE_NAMES.get(declared.type, declared.type)}")


def _check_initializer(t: onnx.TensorProto, where: str, limit: int) -> None:
    if t.data_type not in onnx.TensorProto.DataType.values() or t.data_type == onnx.TensorProto.UNDEFINED:
        raise ModelLoadError(f"{where}: initializer '{t.name}' has element type {t.data_type}, which ONNX does not "
                             f"define")
    dims = list(t.dims)
    if any(d < 0 for d in dims):
        raise ModelLoadError(f"{where}: initializer '{t.name}' has a negative dim in its shape {dims}")
    count = math.prod(dims)
    size = _itemsize(t.data_type)
    if size is not None and count * size > limit:
        raise ModelLoadError(f"{where}: initializer '{t.name}' of shape {dims} takes {count * size:,} bytes, over "
                             f"the limit of {limit:,} (COMPILER_MAX_TENSOR_BYTES)")
    if t.data_location == onnx.TensorProto.EXTERNAL or not t.HasField("raw_data") or size is None:
        return
    if t.data_type in (onnx.TensorProto.STRING,):
        return
    bits = _SUB_BYTE_BITS.get(t.data_type)
    want = (count * bits + 7) // 8 if bits else count * size
    if len(t.raw_data) != want:
        raise ModelLoadError(f"{where}: initializer '{t.name}' of shape {dims} and type "
                             f"{helper.tensor_dtype_to_string(t.data_type)} needs {want:,} bytes of raw data, "
                             f"the file holds {len(t.raw_data):,}")


def _check_input_size(inp: onnx.ValueInfoProto, where: str, limit: int) -> None:
    tt = inp.type.tensor_type if inp.type.HasField("tensor_type") else None
    if tt is None or not tt.HasField("shape") or not tt.elem_type:
        return
    dims = [d.dim_value for d in tt.shape.dim]
    if any(not d.HasField("dim_value") for d in tt.shape.dim):
        return  # symbolic: checked when a size is bound
    size = _itemsize(tt.elem_type)
    if size is not None and math.prod(dims) * size > limit:
        raise ModelLoadError(f"{where}: input '{inp.name}' of shape {dims} takes {math.prod(dims) * size:,} bytes, "
                             f"over the limit of {limit:,} (COMPILER_MAX_TENSOR_BYTES)")
