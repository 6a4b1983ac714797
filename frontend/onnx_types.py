"""Translating ONNX types, tensors and attributes into the IR's."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import onnx
from onnx import numpy_helper

from ..ir import dtypes
from ..ir.registry import Attr
from ..ir.types import OptionalType, SequenceType, TensorType, fresh_dim


def tensor_to_array(t: onnx.TensorProto) -> np.ndarray:
    arr = numpy_helper.to_array(t)
    if t.data_type == onnx.TensorProto.STRING:
        arr = arr.astype(object)
    return arr


def value_type(tp: onnx.TypeProto, shape_override=None):
    """TypeProto -> TensorType/SequenceType/OptionalType; unnamed unknown dims get fresh symbols."""
    which = tp.WhichOneof("value")
    if which == "tensor_type":
        tt = tp.tensor_type
        dtype = dtypes.from_onnx(tt.elem_type) if tt.elem_type else dtypes.float32
        if shape_override is not None:
            return TensorType(tuple(shape_override), dtype)
        if not tt.HasField("shape"):
            return TensorType(None, dtype)
        dims = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param") and d.dim_param:
                dims.append(d.dim_param)
            else:
                dims.append(fresh_dim("unk"))
        return TensorType(tuple(dims), dtype)
    if which == "sequence_type":
        return SequenceType(value_type(tp.sequence_type.elem_type))
    if which == "optional_type":
        return OptionalType(value_type(tp.optional_type.elem_type))
    raise ValueError(f"unsupported ONNX value type {which!r}")


def decode_attribute(a: onnx.AttributeProto, spec: Attr | None, import_subgraph: Callable) -> Any:
    """An AttributeProto as a plain Python value, shaped by the op's attribute spec."""
    A = onnx.AttributeProto
    if a.type == A.INT:
        v: Any = int(a.i)
    elif a.type == A.FLOAT:
        v = float(np.float32(a.f))
    elif a.type == A.STRING:
        v = a.s.decode("utf-8", "surrogateescape")
    elif a.type == A.INTS:
        v = [int(x) for x in a.ints]
    elif a.type == A.FLOATS:
        v = [float(np.float32(x)) for x in a.floats]
    elif a.type == A.STRINGS:
        v = [s.decode("utf-8", "surrogateescape") for s in a.strings]
    elif a.type == A.TENSOR:
        v = tensor_to_array(a.t)
    elif a.type == A.TENSORS:
        v = [tensor_to_array(t) for t in a.tensors]
    elif a.type == A.GRAPH:
        v = import_subgraph(a.g)
    elif a.type == A.GRAPHS:
        v = [import_subgraph(g) for g in a.graphs]
    elif a.type == A.TYPE_PROTO:
        v = value_type(a.tp)
    elif a.type == A.SPARSE_TENSOR:
        v = sparse_to_dense(a.sparse_tensor)
    else:
        raise ValueError(f"attribute '{a.name}' has unsupported type {a.type}")
    if spec is not None and spec.kind == "dtype" and isinstance(v, int):
        v = dtypes.from_onnx(v)
    if spec is not None and spec.kind == "float" and isinstance(v, int):
        v = float(v)
    if spec is not None and spec.kind == "floats" and isinstance(v, list):
        v = [float(x) for x in v]
    return v


def sparse_to_dense(sp: onnx.SparseTensorProto) -> np.ndarray:
    values = tensor_to_array(sp.values)
    indices = tensor_to_array(sp.indices).astype(np.int64)
    shape = tuple(sp.dims)
    dense = np.zeros(int(np.prod(shape)) if shape else 1, dtype=values.dtype)
    if indices.ndim == 2:  # coordinate form: [nnz, rank]
        flat = np.ravel_multi_index(indices.T, shape)
    else:
        flat = indices
    dense[flat] = values
    return dense.reshape(shape)
