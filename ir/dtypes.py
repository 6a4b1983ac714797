"""Element types of tensors: one `DType` object per type, with its numpy and ONNX identities.

Types numpy lacks (bfloat16, the float8 family, 4-bit and 2-bit ints) come from
`ml_dtypes`, which onnx itself depends on, so the reference interpreter can hold
them in ordinary numpy arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np


@dataclass(frozen=True)
class DType:
    """One element type. `short` is the spelling used in the IR text form (`f32`)."""

    name: str
    short: str
    numpy: np.dtype
    onnx: int  # onnx.TensorProto.DataType value
    kind: str  # "float", "int", "uint", "bool", "string", "complex"
    bits: int

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_int(self) -> bool:
        return self.kind in ("int", "uint")

    @property
    def is_signed(self) -> bool:
        return self.kind in ("int", "float", "complex")

    @property
    def itemsize(self) -> int:
        """Bytes per element in memory (sub-byte types occupy one byte each unpacked)."""
        return self.numpy.itemsize

    def __repr__(self) -> str:
        return self.short

    __str__ = __repr__


def _d(name, short, np_type, onnx_id, kind, bits) -> DType:
    return DType(name, short, np.dtype(np_type), onnx_id, kind, bits)


float32 = _d("float32", "f32", np.float32, 1, "float", 32)
uint8 = _d("uint8", "u8", np.uint8, 2, "uint", 8)
int8 = _d("int8", "i8", np.int8, 3, "int", 8)
uint16 = _d("uint16", "u16", np.uint16, 4, "uint", 16)
int16 = _d("int16", "i16", np.int16, 5, "int", 16)
int32 = _d("int32", "i32", np.int32, 6, "int", 32)
int64 = _d("int64", "i64", np.int64, 7, "int", 64)
string = _d("string", "str", object, 8, "string", 0)
bool_ = _d("bool", "bool", np.bool_, 9, "bool", 8)
float16 = _d("float16", "f16", np.float16, 10, "float", 16)
float64 = _d("float64", "f64", np.float64, 11, "float", 64)
uint32 = _d("uint32", "u32", np.uint32, 12, "uint", 32)
uint64 = _d("uint64", "u64", np.uint64, 13, "uint", 64)
complex64 = _d("complex64", "c64", np.complex64, 14, "complex", 64)
complex128 = _d("complex128", "c128", np.complex128, 15, "complex", 128)
bfloat16 = _d("bfloat16", "bf16", ml_dtypes.bfloat16, 16, "float", 16)
float8e4m3fn = _d("float8e4m3fn", "f8e4m3fn", ml_dtypes.float8_e4m3fn, 17, "float", 8)
float8e4m3fnuz = _d("float8e4m3fnuz", "f8e4m3fnuz", ml_dtypes.float8_e4m3fnuz, 18, "float", 8)
float8e5m2 = _d("float8e5m2", "f8e5m2", ml_dtypes.float8_e5m2, 19, "float", 8)
float8e5m2fnuz = _d("float8e5m2fnuz", "f8e5m2fnuz", ml_dtypes.float8_e5m2fnuz, 20, "float", 8)
uint4 = _d("uint4", "u4", ml_dtypes.uint4, 21, "uint", 4)
int4 = _d("int4", "i4", ml_dtypes.int4, 22, "int", 4)
float4e2m1 = _d("float4e2m1", "f4e2m1", ml_dtypes.float4_e2m1fn, 23, "float", 4)
float8e8m0 = _d("float8e8m0", "f8e8m0", ml_dtypes.float8_e8m0fnu, 24, "float", 8)
uint2 = _d("uint2", "u2", ml_dtypes.uint2, 25, "uint", 2)
int2 = _d("int2", "i2", ml_dtypes.int2, 26, "int", 2)

ALL_DTYPES: tuple[DType, ...] = (
    float32, uint8, int8, uint16, int16, int32, int64, string, bool_, float16, float64,
    uint32, uint64, complex64, complex128, bfloat16, float8e4m3fn, float8e4m3fnuz,
    float8e5m2, float8e5m2fnuz, uint4, int4, float4e2m1, float8e8m0, uint2, int2,
)

_BY_ONNX = {d.onnx: d for d in ALL_DTYPES}
_BY_SHORT = {d.short: d for d in ALL_DTYPES}
_BY_NAME = {d.name: d for d in ALL_DTYPES}
_BY_NUMPY = {d.numpy: d for d in ALL_DTYPES if d is not string}

FLOAT_DTYPES = tuple(d for d in ALL_DTYPES if d.is_float)
INT_DTYPES = tuple(d for d in ALL_DTYPES if d.is_int)


def from_onnx(elem_type: int) -> DType:
    try:
        return _BY_ONNX[elem_type]
    except KeyError:
        raise ValueError(f"unknown ONNX tensor element type {elem_type}") from None


def from_numpy(dtype) -> DType:
    dt = np.dtype(dtype)
    if dt.kind in ("O", "U", "S"):
        return string
    try:
        return _BY_NUMPY[dt]
    except KeyError:
        raise ValueError(f"numpy dtype {dt} has no IR element type") from None


def parse(text: str) -> DType:
    """Accepts the short form (`f32`) or the long name (`float32`)."""
    if text in _BY_SHORT:
        return _BY_SHORT[text]
    if text in _BY_NAME:
        return _BY_NAME[text]
    if text == "bool_":
        return bool_
    raise ValueError(f"unknown element type {text!r}; known: {', '.join(sorted(_BY_SHORT))}")
