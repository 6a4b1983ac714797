"""ONNX's backend conformance suite (the node tests) compiled for the llvm target.

Each node test's model is compiled to a native library and run through the serving
runtime (`compiler.codegen.onnx_backend_llvm.LLVMBackend`); there is no interpreter
fallback. Tests named in `conformance_exclusions_llvm.EXCLUDED` are strict xfails with
their group's reason, so an excluded test that starts passing fails the run until its
entry is removed. Slow-marked: every test compiles and links a library.
"""
from __future__ import annotations

import warnings

import onnx.backend.test
import pytest

from compiler.codegen.onnx_backend_llvm import LLVMBackend

from conformance_exclusions_llvm import EXCLUDED

warnings.filterwarnings("ignore", category=RuntimeWarning)

pytestmark = pytest.mark.slow


def _excluded_reasons() -> dict[str, str]:
    reasons: dict[str, str] = {}
    for reason, names in EXCLUDED.items():
        for name in names:
            if name in reasons:
                raise ValueError(f"{name} is excluded twice ({reasons[name]!r} and {reason!r})")
            reasons[name] = reason
    return reasons


def _node_test_class():
    cls = onnx.backend.test.BackendTest(LLVMBackend, __name__).test_cases["OnnxBackendNodeModelTest"]
    reasons = _excluded_reasons()
    for attr in [a for a in vars(cls) if a.startswith("test_")]:
        if not attr.endswith("_cpu"):
            delattr(cls, attr)
            continue
        name = attr[: -len("_cpu")]
        if name in reasons:
            setattr(cls, attr, pytest.mark.xfail(strict=True, reason=reasons[name])(getattr(cls, attr)))
    return cls


OnnxBackendNodeModelTest = _node_test_class()

_unknown = sorted(set(_excluded_reasons()) - {a[: -len("_cpu")] for a in vars(OnnxBackendNodeModelTest)
                                                if a.startswith("test_")})
if _unknown:
    raise ValueError(f"conformance_exclusions_llvm.py names tests the suite does not have: {_unknown}")
