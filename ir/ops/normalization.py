"""Ops: normalization family (being filled in)."""
from __future__ import annotations

OPS = []
