"""Compilation targets: parsing `--target` strings and saying which ones this build can use.

    reference            the numpy interpreter (debugging, frontend conformance)
    llvm [-mcpu=NAME]    host CPU, or another x86-64 CPU when cross-compiling
    cuda [-arch=sm_XX]   NVIDIA GPU
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from .ir.errors import TargetError

KNOWN_TARGETS = {
    "reference": "numpy reference interpreter",
    "llvm": "host CPU through LLVM (options: -mcpu=NAME)",
    "cuda": "NVIDIA GPU (options: -arch=sm_XX)",
}

# Targets whose code generator exists in this build; the others are refused by name.
AVAILABLE_TARGETS = ("reference", "llvm")


@dataclass(frozen=True)
class Target:
    kind: str
    options: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return " ".join([self.kind] + [f"-{k}={v}" for k, v in sorted(self.options.items())])


def parse_target(text: str | Target) -> Target:
    """`"llvm -mcpu=x86-64-v3"` -> Target("llvm", {"mcpu": "x86-64-v3"})."""
    if isinstance(text, Target):
        return text
    words = shlex.split(str(text))
    known = ", ".join(f"{k} ({v})" for k, v in KNOWN_TARGETS.items())
    if not words or words[0] not in KNOWN_TARGETS:
        raise TargetError(f"unknown target {text!r}; known targets: {known}")
    options = {}
    for w in words[1:]:
        if not w.startswith("-") or "=" not in w:
            raise TargetError(f"target option {w!r} in {text!r} is not of the form -name=value")
        key, value = w.lstrip("-").split("=", 1)
        options[key] = value
    target = Target(words[0], options)
    if target.kind not in AVAILABLE_TARGETS:
        raise TargetError(f"target {target.kind!r} has no code generator in this build yet; "
                          f"available: {', '.join(AVAILABLE_TARGETS)}")
    return target
