"""CUDA C -> cubin and PTX in-process with NVRTC (`cuda-bindings`, `nvidia-cuda-nvrtc`):
no nvcc, no driver and no GPU needed to compile.

Every NVRTC call's status is checked, and a failed compile raises a CodegenError that
carries NVRTC's own log (the line of generated source it stopped at, and why).
"""
from __future__ import annotations

from ...ir.errors import TargetError
from ..renderer import CodegenError


def _nvrtc():
    try:
        from cuda.bindings import nvrtc
    except ImportError as e:  # the cuda extra is not installed
        raise TargetError("the cuda target compiles with NVRTC: pip install 'compiler[cuda]' "
                          f"(cuda-bindings and nvidia-cuda-nvrtc); {e}") from None
    return nvrtc


def version() -> str:
    nvrtc = _nvrtc()
    err, major, minor = nvrtc.nvrtcVersion()
    _check(nvrtc, err, "nvrtcVersion")
    return f"{major}.{minor}"


def _check(nvrtc, err, what: str, log: str = "") -> None:
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        _, text = nvrtc.nvrtcGetErrorString(err)
        raise CodegenError(f"NVRTC {what} failed: {text.decode() if isinstance(text, bytes) else text}"
                           + (f"\n{log}" if log else ""))


def compile_source(source: str, arch: str, name: str = "model.cu") -> tuple[bytes, bytes]:
    """(cubin for `arch` ("sm_90"), PTX for that architecture) of a CUDA C module: one
    compile yields both; the PTX (`.target sm_90`) is what newer GPUs' drivers JIT."""
    nvrtc = _nvrtc()
    err, prog = nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], [])
    _check(nvrtc, err, "nvrtcCreateProgram")
    try:
        opts = [f"--gpu-architecture={arch}".encode(), b"--std=c++17", b"-default-device"]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            _, size = nvrtc.nvrtcGetProgramLogSize(prog)
            log = b" " * size
            nvrtc.nvrtcGetProgramLog(prog, log)
            _check(nvrtc, err, f"compile for {arch}", log.decode(errors="replace").strip())
        err, size = nvrtc.nvrtcGetPTXSize(prog)
        _check(nvrtc, err, "nvrtcGetPTXSize")
        ptx = b" " * size
        (err,) = nvrtc.nvrtcGetPTX(prog, ptx)
        _check(nvrtc, err, "nvrtcGetPTX")
        err, size = nvrtc.nvrtcGetCUBINSize(prog)
        _check(nvrtc, err, "nvrtcGetCUBINSize")
        cubin = b" " * size
        (err,) = nvrtc.nvrtcGetCUBIN(prog, cubin)
        _check(nvrtc, err, "nvrtcGetCUBIN")
        return cubin, ptx.rstrip(b"\0") + b"\0"
    finally:
        nvrtc.nvrtcDestroyProgram(prog)
