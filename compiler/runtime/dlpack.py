"""Reading a DLPack tensor (`__dlpack__`, the array-exchange protocol torch, JAX, CuPy and
numpy share) without copying it: where its memory is, on which device, with what shape,
strides and element type. The GPU runtime uses it to take device tensors that do not
offer `__cuda_array_interface__`.

DLPack hands over a PyCapsule named "dltensor" holding a `DLManagedTensor` (C structs
laid out below, from the DLPack header's documented ABI). We read it and leave the
capsule unconsumed: when the capsule is released, the producer's deleter runs, so the
memory stays valid exactly as long as the `DLPackView` (which holds the capsule) lives.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

DEVICE_CPU, DEVICE_CUDA, DEVICE_CUDA_HOST, DEVICE_CUDA_MANAGED = 1, 2, 3, 13
GPU_READABLE = (DEVICE_CUDA, DEVICE_CUDA_HOST, DEVICE_CUDA_MANAGED)  # addresses a kernel or cuMemcpy can use

_CODES = {0: "int", 1: "uint", 2: "float", 4: "bfloat", 6: "bool"}


class _Device(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _Device), ("ndim", ctypes.c_int32), ("dtype", _DataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class _ManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", _Tensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_pointer.restype = ctypes.c_void_p
_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


class DLPackError(ValueError):
    """The object's DLPack export is unusable (say why)."""


@dataclass
class DLPackView:
    """One DLPack tensor: its first element's address, device, shape, element type (our
    dtype names) and whether it is contiguous row-major; holds the capsule alive."""

    ptr: int
    device_type: int
    device_id: int
    shape: tuple
    dtype: str
    contiguous: bool
    capsule: object

    @property
    def on_gpu(self) -> bool:
        return self.device_type in GPU_READABLE


def view(obj) -> DLPackView:
    """Read `obj.__dlpack__()`; DLPackError when it has none or describes something odd."""
    export = getattr(obj, "__dlpack__", None)
    if export is None:
        raise DLPackError(f"{type(obj).__name__} does not export DLPack (__dlpack__)")
    try:
        capsule = export()
        address = _get_pointer(capsule, b"dltensor")
    except Exception as e:  # the producer refused, or handed something that is not a DLPack capsule
        raise DLPackError(f"{type(obj).__name__}.__dlpack__() failed: {e}") from None
    t = _ManagedTensor.from_address(address).dl_tensor
    ndim = int(t.ndim)
    shape = tuple(int(t.shape[i]) for i in range(ndim))
    code, bits, lanes = int(t.dtype.code), int(t.dtype.bits), int(t.dtype.lanes)
    kind = _CODES.get(code)
    if kind is None or lanes != 1:
        raise DLPackError(f"DLPack element type code {code} ({bits} bits, {lanes} lanes) is not a tensor type we take")
    dtype = "bool" if kind == "bool" else ("bfloat16" if kind == "bfloat" else f"{kind}{bits}")
    contiguous = True
    if t.strides:  # NULL strides mean row-major contiguous
        step = 1
        for i in range(ndim - 1, -1, -1):
            if shape[i] != 1 and int(t.strides[i]) != step:
                contiguous = False
            step *= shape[i]
    return DLPackView(int(t.data or 0) + int(t.byte_offset), int(t.device.device_type), int(t.device.device_id),
                      shape, dtype, contiguous, capsule)
