"""The operating system's side of AMX: Linux grants a process the tile data state (8 KiB of
extra register state per thread) only when asked, with arch_prctl(ARCH_REQ_XCOMP_PERM).
Without the grant the first tile instruction raises SIGILL even on a CPU that has AMX, so
the host target (`codegen.llvm.target.cpu_target`) leaves the AMX features out unless the request
succeeds, and the loader (`compiler.runtime.native.check_host`) makes it before running
code that uses them. It lives outside `codegen.llvm` so the loader can ask without importing the code
generator (serving needs only numpy).
"""
from __future__ import annotations

import ctypes
import functools

AMX_FEATURES = ("amx-tile", "amx-bf16", "amx-int8")  # LLVM feature names

_SYS_ARCH_PRCTL = 158  # x86-64 syscall number
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18


@functools.cache
def request_amx() -> bool:
    """Ask Linux for AMX tile data state for this process (once; the grant covers every
    thread, present and future). True when granted."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(ctypes.c_long(_SYS_ARCH_PRCTL), ctypes.c_long(_ARCH_REQ_XCOMP_PERM),
                            ctypes.c_long(_XFEATURE_XTILEDATA)) == 0
    except (OSError, AttributeError):
        return False
