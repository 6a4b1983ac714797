"""The host CPU's ISA features, for the loader's compatibility check.

Features use LLVM's names (avx2, avx512f, sse4.2). They come from /proc/cpuinfo; the
environment variable COMPILER_HOST_CPU_FEATURES (comma-separated LLVM names) replaces
them, which is how tests fake an older CPU without needing one.
"""
from __future__ import annotations

import os

FAKE_ENV = "COMPILER_HOST_CPU_FEATURES"

# LLVM feature name -> /proc/cpuinfo flag, where they differ. Every feature the loader
# checks (`codegen.llvm_target.CHECKED_FEATURES`) must be readable here; a test asserts it.
# (The kernel spells the AVX-512 extensions with an underscore: avx512_vnni, LLVM avx512vnni.)
CPUINFO_NAME = {
    "sse3": "pni", "sse4.1": "sse4_1", "sse4.2": "sse4_2", "lzcnt": "abm", "pclmul": "pclmulqdq", "bmi": "bmi1",
    "avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16", "avx512fp16": "avx512_fp16", "avxvnni": "avx_vnni",
    "amx-tile": "amx_tile", "amx-bf16": "amx_bf16", "amx-int8": "amx_int8",
}


def features_from_cpuinfo_flags(flags: set[str]) -> set[str]:
    """The cpuinfo `flags` line's words plus the LLVM names of the features they denote."""
    return set(flags) | {llvm for llvm, flag in CPUINFO_NAME.items() if flag in flags}


def host_features() -> set[str] | None:
    """LLVM-named features of this CPU; None when they cannot be determined."""
    fake = os.environ.get(FAKE_ENV)
    if fake is not None:
        return {f.strip().lstrip("+") for f in fake.split(",") if f.strip()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
            else:
                return None
    except OSError:
        return None
    return features_from_cpuinfo_flags(flags)


def missing_features(required) -> list[str]:
    """The required features this host lacks (empty when it has them all, or cannot tell)."""
    have = host_features()
    if have is None:
        return []
    return [f for f in required if f not in have]
