"""The backend registry: one `Backend` per target kind, and the parsing of target strings.

    reference            the numpy interpreter (the oracle; debugging, frontend conformance)
    llvm [-mcpu=NAME]    host CPU, or another x86-64 CPU when cross-compiling
    cuda [-arch=sm_XX] [-device=gpu|emulator]
                         NVIDIA GPU through NVRTC; the emulator runs the same build on the CPU

Everything that depends on which target a model is built for asks the backend
(`backend_for(target)`) instead of comparing names: building, loading an artifact, the
-O pipeline's layout passes, what the code generator supports, caching, profiling, tuning.
A new target is a new `Backend` subclass listed in `BACKENDS`.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from ..ir.errors import TargetError
from .base import Artifact, Backend, BuildOptions, BuildPlan
from .cuda import CUDABackend
from .llvm import LLVMBackend
from .reference import ReferenceBackend

BACKENDS: dict[str, Backend] = {b.kind: b for b in (ReferenceBackend(), LLVMBackend(), CUDABackend())}

# Target kinds users may name that have no backend in this build yet, with what they will be.
PLANNED: dict[str, str] = {}


@dataclass(frozen=True)
class Target:
    """A parsed target string: its kind and `-name=value` options."""

    kind: str
    options: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return " ".join([self.kind] + [f"-{k}={v}" for k, v in sorted(self.options.items())])

    @property
    def backend(self) -> Backend:
        return BACKENDS[self.kind]


def parse_target(text: "str | Target") -> Target:
    """`"llvm -mcpu=x86-64-v3"` -> Target("llvm", {"mcpu": "x86-64-v3"}), its options checked
    by its backend; a planned or unknown kind is refused with the list of known ones."""
    if isinstance(text, Target):
        return text
    words = shlex.split(str(text))
    known = {**{k: b.description for k, b in BACKENDS.items()}, **PLANNED}
    if not words or words[0] not in known:
        listing = ", ".join(f"{k} ({v})" for k, v in known.items())
        raise TargetError(f"unknown target {text!r}; known targets: {listing}")
    if words[0] not in BACKENDS:
        raise TargetError(f"target {words[0]!r} has no code generator in this build yet; "
                          f"available: {', '.join(BACKENDS)}")
    options = {}
    for w in words[1:]:
        if not w.startswith("-") or "=" not in w:
            raise TargetError(f"target option {w!r} in {text!r} is not of the form -name=value")
        key, value = w.lstrip("-").split("=", 1)
        options[key] = value
    return Target(words[0], BACKENDS[words[0]].parse_options(options, str(text)))


def backend_for(target: "str | Target") -> Backend:
    """The backend of a target (string or parsed)."""
    return parse_target(target).backend


__all__ = ["BACKENDS", "PLANNED", "Artifact", "Backend", "BuildOptions", "BuildPlan", "Target", "backend_for",
           "parse_target"]
