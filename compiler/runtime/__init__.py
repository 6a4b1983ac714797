"""The serving runtime: loads a native artifact and runs it, with numpy and the standard
library only (no llvmlite, onnx or torch). See `native.NativeModel`."""
from __future__ import annotations

from .cpu import host_features, missing_features
from .native import NativeModel

__all__ = ["NativeModel", "host_features", "missing_features"]
