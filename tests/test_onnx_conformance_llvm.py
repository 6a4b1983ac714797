"""ONNX's backend conformance suite (the node tests) compiled for the llvm target.

Each node test's model is compiled to a native library and run through the serving
runtime (`compiler.onnx_backend.backend_for("llvm")`); there is no interpreter
fallback. Tests named in `conformance_exclusions_llvm.EXCLUDED` are strict xfails with
their group's reason, so an excluded test that starts passing fails the run until its
entry is removed. Slow-marked: every test compiles and links a library.
"""
from __future__ import annotations

import warnings

import pytest

from compiler.onnx_backend import backend_for

from conformance_exclusions_llvm import EXCLUDED
from conformance_suite import node_test_class

warnings.filterwarnings("ignore", category=RuntimeWarning)

pytestmark = pytest.mark.slow

OnnxBackendNodeModelTest = node_test_class(backend_for("llvm"), __name__, EXCLUDED, "conformance_exclusions_llvm.py")
