"""Ops: attention family (being filled in)."""
from __future__ import annotations

OPS = []
