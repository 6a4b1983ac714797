"""Compile microkernel modules to a shared library and call them through ctypes.

Used by the tests and the benchmark; the code generator links the same functions into
the model library instead (they are ordinary functions of an llvmlite module).
"""
from __future__ import annotations

import ctypes
import os
import tempfile

import llvmlite.ir as ir

from ..toolchain import emit_assembly, emit_object, link_shared
from .gemm import PARAMS


class Library:
    """A linked .so kept alive with its kernels; `call(name, arrays..., nthreads)`."""

    def __init__(self, so_bytes: bytes):
        fd, self.path = tempfile.mkstemp(prefix="cm-uk-", suffix=".so")
        with os.fdopen(fd, "wb") as f:
            f.write(so_bytes)
        self.lib = ctypes.CDLL(self.path)

    def __del__(self):
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def function(self, name: str, params: tuple[str, ...] = PARAMS):
        fn = getattr(self.lib, name)
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p] * len(params) + [ctypes.c_int]
        return fn

    def call(self, name: str, arrays: dict, nthreads: int = 1, params: tuple[str, ...] = PARAMS) -> None:
        """arrays: `params` name -> C-contiguous numpy array (missing = NULL): float32, or
        for narrow chains' activations and outputs uint8 codes or bfloat16."""
        ptrs = []
        for p in params:
            a = arrays.get(p)
            if a is not None:
                assert a.dtype.name in ("float32", "uint8", "bfloat16") and a.flags.c_contiguous, p
            ptrs.append(None if a is None else a.ctypes.data)
        self.function(name, params)(*ptrs, nthreads)


def new_module(name: str = "microkernels") -> ir.Module:
    return ir.Module(name=name)


def compile_module(module: ir.Module, target) -> Library:
    return Library(link_shared(emit_object(str(module), target)))


def assembly(module: ir.Module, target) -> str:
    return emit_assembly(str(module), target)
