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
        if not tt.elem_type:
            raise ValueError("has no element type")
        dtype = dtypes.from_onnx(tt.elem_type)
        if shape_override is not None:
            return TensorType(_override_dims(shape_override), dtype)
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
    if which is None:
        raise ValueError("has no type")
    raise ValueError(f"unsupported ONNX value type {which!r}")


def _override_dims(shape) -> tuple:
    """A user's shape: ints (numpy's too) and symbol names; anything else is refused."""
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise ValueError(f"shape override {shape!r} is not a list of dims")
    dims = []
    for d in shape:
        if isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0:
            dims.append(int(d))
        elif isinstance(d, str) and d:
            dims.append(d)
        else:
            raise ValueError(f"shape override {list(shape)} has dim {d!r}; expected a size >= 0 or a symbol name")
    return tuple(dims)


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


def is_untyped(tp: onnx.TypeProto) -> bool:
    """No type, or a tensor type without an element type: ONNX allows this for subgraph inputs."""
    which = tp.WhichOneof("value")
    return which is None or (which == "tensor_type" and not tp.tensor_type.elem_type)


def body_input_types(domain: str, op_type: str, opset: int, inputs: list, attributes) -> list:
    """The types of a Loop/Scan body's inputs, from the node's inputs (for bodies that omit them)."""
    if domain != "":
        return []
    if op_type == "Loop":
        scalar = [TensorType((), dtypes.int64), TensorType((), dtypes.bool_)]
        return scalar + [None if v is None else v.type for v in inputs[2:]]
    if op_type == "Scan":
        ints = {a.name: list(a.ints) for a in attributes}
        n_scan = next((a.i for a in attributes if a.name == "num_scan_inputs"), 0)
        if opset < 9:  # Scan-8: sequence_lens first, then batched values (scan axis 1)
            states, scanned = inputs[1: len(inputs) - n_scan], inputs[len(inputs) - n_scan:]
            return ([_drop_axis(v.type, 0) for v in states]
                    + [_drop_axis(_drop_axis(v.type, 0), 0) for v in scanned])
        states, scanned = inputs[: len(inputs) - n_scan], inputs[len(inputs) - n_scan:]
        axes = ints.get("scan_input_axes") or [0] * len(scanned)
        return [v.type for v in states] + [_drop_axis(v.type, ax) for v, ax in zip(scanned, axes)]
    return []


def _drop_axis(t, axis: int):
    if not isinstance(t, TensorType) or t.shape is None:
        return t
    axis %= max(len(t.shape), 1)
    return t.with_shape(t.shape[:axis] + t.shape[axis + 1:])
