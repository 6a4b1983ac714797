"""ONNX's backend conformance suite (the node tests) compiled for the cuda target and run
on the GPU emulator: every op's GPU launches, compiled by NVRTC for sm_80 and checked
launch by launch (bounds, barriers, races) against ONNX's expected outputs.

The cuda target lowers every op through its loop-IR rule (it has no extern kernels), so
its exclusions are the llvm target's (`conformance_exclusions_llvm`: ops with no rule,
run-time shapes, element types) plus `conformance_exclusions_cuda.EXCLUDED`. Slow-marked.
"""
from __future__ import annotations

import warnings

import pytest

from compiler.onnx_backend import backend_for

from conformance_exclusions_cuda import EXCLUDED
from conformance_suite import node_test_class

warnings.filterwarnings("ignore", category=RuntimeWarning)

pytestmark = pytest.mark.slow

OnnxBackendNodeModelTest = node_test_class(backend_for("cuda -arch=sm_80 -device=emulator"), __name__, EXCLUDED,
                                           "conformance_exclusions_cuda.py")
