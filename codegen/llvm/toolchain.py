"""From an llvmlite module to a shared library: verify, O3 (new pass manager), object code, link.

The object is linked with the system C compiler (`cc -shared`) together with our thread
pool (`csrc/thread_pool.c`, compiled once per process: the runtime of parallel loops,
`cm_parallel`) and libm (scalar math). Serving needs only the resulting .so and ctypes,
no compiler.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

from ...ir.errors import CompilerError
from .target import CPUTarget, _llvm, target_machine


def optimize(module_text: str, target: CPUTarget):
    """Parse (which verifies) the textual module produced by llvmlite.ir and run O3 on it."""
    llvm = _llvm()
    try:
        # A context per module: LLVM contexts are not thread-safe, and parts compile in parallel.
        mod = llvm.parse_assembly(module_text, context=llvm.create_context())
        mod.verify()
    except RuntimeError as e:
        raise CompilerError(f"generated LLVM IR does not verify (a compiler bug): {e}") from None
    tm = target_machine(target)
    mod.triple = target.triple
    mod.data_layout = str(tm.target_data)
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    # Loops arrive already vectorized and unrolled by our schedules; LLVM's own loop
    # vectorizer, interleaver and unroller would only re-do that work (4x the compile time).
    pto.loop_vectorization = False
    pto.loop_interleaving = False
    pto.loop_unrolling = False
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    return mod, tm


def emit_object(module_text: str, target: CPUTarget) -> bytes:
    mod, tm = optimize(module_text, target)
    return tm.emit_object(mod)


def emit_assembly(module_text: str, target: CPUTarget) -> str:
    mod, tm = optimize(module_text, target)
    return tm.emit_assembly(mod)


THREAD_POOL_SOURCE = Path(__file__).resolve().parent / "csrc" / "thread_pool.c"


def _c_compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise CompilerError("the llvm target links with the system C compiler, and none was found (set CC)")
    return cc


@lru_cache(maxsize=None)
def thread_pool_object(cc: str) -> bytes:
    """The thread pool compiled for the x86-64 baseline (no CPU features beyond it)."""
    with tempfile.TemporaryDirectory(prefix="cm-pool-") as d:
        obj = os.path.join(d, "thread_pool.o")
        proc = subprocess.run([cc, "-std=gnu11", "-O2", "-fPIC", "-c", str(THREAD_POOL_SOURCE), "-o", obj],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise CompilerError(f"compiling the thread pool ({THREAD_POOL_SOURCE}) failed: {proc.stderr.strip()}")
        with open(obj, "rb") as f:
            return f.read()


def link_shared(objects: list[bytes] | bytes) -> bytes:
    """Object code (one or several objects) -> shared library bytes (with the thread pool and libm)."""
    if isinstance(objects, bytes):
        objects = [objects]
    cc = _c_compiler()
    objects = list(objects) + [thread_pool_object(cc)]
    with tempfile.TemporaryDirectory(prefix="cm-link-") as d:
        paths = []
        for i, obj in enumerate(objects):
            paths.append(os.path.join(d, f"part{i}.o"))
            with open(paths[-1], "wb") as f:
                f.write(obj)
        so = os.path.join(d, "model.so")
        proc = subprocess.run([cc, "-shared", "-o", so, *paths, "-lpthread", "-lm"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise CompilerError(f"linking the model library failed: {proc.stderr.strip()}")
        with open(so, "rb") as f:
            return f.read()
