"""`CudaModel`: a CUDA artifact on an NVIDIA GPU through the driver API (`cuda.bindings.driver`).

Loading: the driver is initialised (no driver or no GPU is an ArtifactError that says so,
and points at the emulator); the GPU's compute capability picks the artifact's cubin for
its architecture, or its PTX for a newer GPU (refused when the driver is older than the
NVRTC that wrote the PTX, or the GPU older than the oldest architecture compiled for).
Then, once: the module is loaded, one device arena laid out by the memory plan, the
weights uploaded, fixed input and output buffers allocated, and every launch of the
launch table recorded into a CUDA graph on the model's stream.

A call copies the inputs into their buffers (host arrays, or device arrays exposing
`__cuda_array_interface__` or DLPack, such as torch CUDA tensors, copied device to device), replays
the graph, and copies the outputs out (to numpy, or with `device_outputs=True` into
`DeviceArray`s the caller owns). Calls from several threads are safe: they take turns on
the model's one stream and graph (a lock), so concurrent calls queue rather than overlap.
Every driver error is raised with the driver's name and description of it, and what was
being done.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..ir.errors import ArtifactError, InputError
from .calling import OpensOnce
from .gpu_program import GpuProgramModel
from .signature import check_array, check_index_guards, check_names


class CudaError(ArtifactError):
    """A CUDA driver call failed (named, with the driver's description)."""


def _driver():
    try:
        from cuda.bindings import driver
    except ImportError as e:
        raise ArtifactError(f"running a CUDA artifact needs cuda-bindings (pip install 'compiler[cuda]'): {e}") from None
    return driver


def _ok(result, what: str):
    """The values of a driver call's result tuple, or CudaError naming the call and the error."""
    cu = _driver()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cu.CUresult.CUDA_SUCCESS:
        _, name = cu.cuGetErrorName(err)
        _, text = cu.cuGetErrorString(err)
        decode = lambda b: b.decode() if isinstance(b, bytes) else str(b)  # noqa: E731
        raise CudaError(f"CUDA driver: {what} failed with {decode(name)} ({decode(text)})")
    return values[0] if len(values) == 1 else tuple(values)


def open_device(ordinal: int = 0):
    """(device, compute capability, name, driver version) of GPU `ordinal`; ArtifactError
    when there is no driver or no such GPU."""
    cu = _driver()
    try:
        result = cu.cuInit(0)
    except Exception as e:  # cuda-bindings raises when libcuda.so itself is missing
        raise ArtifactError(f"no NVIDIA driver on this machine ({type(e).__name__}: {e}); CUDA artifacts need a "
                            f"GPU, or build for the emulator: --target \"cuda -arch=sm_80 -device=emulator\"") from None
    err = result[0] if isinstance(result, tuple) else result
    if err != cu.CUresult.CUDA_SUCCESS:
        _, name = cu.cuGetErrorName(err)
        raise ArtifactError(f"the NVIDIA driver found no usable GPU (cuInit: {name}); CUDA artifacts need a GPU, or "
                            f"build for the emulator: --target \"cuda -arch=sm_80 -device=emulator\"")
    count = _ok(cu.cuDeviceGetCount(), "counting GPUs")
    if ordinal >= count:
        raise ArtifactError(f"GPU {ordinal} requested; this machine has {count}")
    dev = _ok(cu.cuDeviceGet(ordinal), f"opening GPU {ordinal}")
    attr = cu.CUdevice_attribute
    major = _ok(cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev), "reading the GPU's compute capability")
    minor = _ok(cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev), "reading the GPU's compute capability")
    name = _ok(cu.cuDeviceGetName(256, dev), "reading the GPU's name")
    name = name.split(b"\0")[0].decode() if isinstance(name, bytes) else str(name)
    version = _ok(cu.cuDriverGetVersion(), "reading the driver version")
    return dev, (int(major), int(minor)), name, int(version)


def local_driver_version() -> str | None:
    """The local NVIDIA driver's CUDA version ("13.0"), or None where there is none."""
    try:
        version = _ok(_driver().cuDriverGetVersion(), "reading the driver version")
    except Exception:  # no libcuda.so: cross-compiling
        return None
    return f"{int(version) // 1000}.{int(version) % 1000 // 10}" if int(version) else None


def choose_image(manifest: dict, sections: dict, capability: tuple[int, int], driver_version: int, where: str):
    """(image bytes, what it is) this GPU runs: the cubin of its architecture, else the PTX."""
    major, minor = capability
    need = tuple(manifest.get("min_compute_capability", (8, 0)))
    if (major, minor) < need:
        raise ArtifactError(f"{where}: compiled for compute capability {need[0]}.{need[1]} and newer "
                            f"({', '.join(manifest.get('archs', []))}); this GPU has {major}.{minor}")
    for arch in sorted(manifest.get("archs", []), reverse=True):
        a_major, a_minor = int(arch[3:-1]), int(arch[-1])
        if a_major == major and a_minor <= minor and f"{arch}.cubin" in sections:
            return sections[f"{arch}.cubin"], f"cubin {arch}"
    # PTX loads on drivers of the CUDA version that wrote it and newer (older artifacts: NVRTC's)
    written = str(manifest.get("ptx_min_driver", manifest.get("nvrtc_version", "0.0"))).split(".")
    needed = int(written[0]) * 1000 + int(written[1]) * 10
    if driver_version < needed:
        raise ArtifactError(f"{where}: this GPU ({major}.{minor}) needs the artifact's PTX, written by NVRTC "
                            f"{manifest.get('nvrtc_version')}, and the driver (CUDA {driver_version // 1000}."
                            f"{driver_version % 1000 // 10}) is older; update the driver or compile for "
                            f"-arch=sm_{major}{minor}")
    if "model.ptx" not in sections:
        raise ArtifactError(f"{where}: no cubin for compute capability {major}.{minor} and no PTX")
    return sections["model.ptx"], "ptx"


class DeviceArray:
    """A device buffer the caller owns (an output with `device_outputs=True`): exposes
    `__cuda_array_interface__` (torch.as_tensor(x, device="cuda") reads it without a copy)
    and `numpy()` copies it to the host."""

    def __init__(self, ptr: int, shape: tuple, dtype: np.dtype, owner):
        self.ptr, self.shape, self.dtype, self._owner = ptr, tuple(shape), np.dtype(dtype), owner

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False), "version": 3,
                "strides": None}

    def numpy(self) -> np.ndarray:
        out = np.empty(self.shape, self.dtype)
        if out.nbytes:
            _ok(_driver().cuMemcpyDtoH(out.ctypes.data, self.ptr, out.nbytes), "copying an output to the host")
        return out

    def __del__(self):
        try:
            _driver().cuMemFree(self.ptr)
        except Exception:  # the interpreter is shutting down; the context goes with it
            pass


class CudaModel(OpensOnce, GpuProgramModel):
    device_arrays = True  # run() takes device arrays and can leave its outputs on the GPU

    def __init__(self, manifest: dict, sections: dict[str, bytes], where: str = "artifact", device: int = 0,
                 lazy: bool = False):
        """`lazy`: open the GPU at the first run (a cross-compiled model can still be saved)."""
        super().__init__(manifest, sections, where)
        self._device_ordinal = device
        self._start(lazy)

    def _setup(self) -> None:
        """Check the GPU and driver can run the artifact, then set everything up once."""
        cu = _driver()
        self._dev, self.capability, self.gpu_name, driver_version = open_device(self._device_ordinal)
        image, self.image_kind = choose_image(self.manifest, self._sections, self.capability, driver_version,
                                              self.where)
        self._ctx = _ok(cu.cuDevicePrimaryCtxRetain(self._dev), "retaining the GPU's primary context")
        self._set_context()
        self._module = _ok(cu.cuModuleLoadData(image), f"loading the module ({self.image_kind})")
        self._buffers = []
        self._arena = self._alloc(self.arena_size, "the arena")
        weights = self._sections["weights.bin"]
        self._weights = self._alloc(len(weights), "the weights")
        if weights:
            _ok(cu.cuMemcpyHtoD(self._weights, weights, len(weights)), "uploading the weights")
        self._in = [self._alloc(max(1, int(np.prod(s.shape)) * dt.itemsize), f"input '{s.name}'")
                    for s, dt in zip(self.inputs, self._in_dtypes)]
        self._out = [self._alloc(max(1, int(np.prod(s.shape)) * dt.itemsize), f"output '{s.name}'")
                     for s, dt in zip(self.outputs, self._out_dtypes)]
        self._stream = _ok(cu.cuStreamCreate(cu.CUstream_flags.CU_STREAM_NON_BLOCKING.value), "creating a stream")
        self._graph_exec = self._record()

    def _set_context(self) -> None:
        _ok(_driver().cuCtxSetCurrent(self._ctx), "making the GPU's context current")

    def _alloc(self, nbytes: int, what: str) -> int:
        ptr = int(_ok(_driver().cuMemAlloc(max(1, nbytes)), f"allocating {nbytes} bytes of GPU memory for {what}"))
        self._buffers.append(ptr)
        return ptr

    def _pointer(self, kind: str, index: int, offset: int) -> int:
        if kind == "input":
            return self._in[index] + offset
        if kind == "output":
            return self._out[index] + offset
        return (self._weights if kind == "weight" else self._arena) + index + offset

    def _record(self):
        """Every launch of the table, captured once into a CUDA graph on the model's stream."""
        cu = _driver()
        functions = {}
        self._params = []  # argument blocks stay alive as long as the graph
        _ok(cu.cuStreamBeginCapture(self._stream, cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
            "starting to record the model's launches")
        try:
            for call in self.launches:
                values = np.array([self._pointer(*arg) for arg in call["args"]] or [0], np.uint64)
                slots = np.array([values.ctypes.data + 8 * i for i in range(values.size)], np.uint64)
                self._params += [values, slots]
                for launch in call["launches"]:
                    name = launch["function"]
                    if name not in functions:
                        functions[name] = _ok(cu.cuModuleGetFunction(self._module, name.encode()),
                                              f"finding kernel {name} in the module")
                    # shared buffers are static (__shared__ arrays): no dynamic shared memory
                    _ok(cu.cuLaunchKernel(functions[name], launch["grid"], 1, 1, launch["block"], 1, 1,
                                          0, self._stream, slots.ctypes.data, 0),
                        f"launching {name} ({launch['grid']} blocks of {launch['block']} threads)")
        finally:
            graph = _ok(cu.cuStreamEndCapture(self._stream), "finishing the recording of the model's launches")
        self._graph = graph
        return _ok(cu.cuGraphInstantiate(graph, 0), "instantiating the model's CUDA graph")

    def _guarded_on_host(self, cu, guards: list, host: dict) -> dict:
        """The inputs the index guards read, as host arrays: device ones copied back."""
        arrays, guarded = {}, {g["input"] for g in guards}
        for spec, dt in zip(self.inputs, self._in_dtypes):
            x = host.get(spec.name)
            if spec.name not in guarded or x is None:
                continue
            if isinstance(x, np.ndarray):
                arrays[spec.name] = x
                continue
            a = np.empty(spec.shape, dt)
            if a.nbytes:
                _ok(cu.cuMemcpyDtoH(a.ctypes.data, x, a.nbytes), f"reading device input '{spec.name}' to check its indices")
            arrays[spec.name] = a
        return arrays

    def run(self, feeds: Mapping[str, Any], device_outputs: bool = False) -> dict:
        """Like every model's run(); inputs may also be device arrays (`__cuda_array_interface__`),
        and with `device_outputs` the outputs come back as `DeviceArray`s on the GPU."""
        self._open()
        check_names(self.inputs, feeds)
        host, keep = {}, []
        for spec, dt in zip(self.inputs, self._in_dtypes):
            x = feeds[spec.name]
            cai = getattr(x, "__cuda_array_interface__", None)
            dl = _dlpack_on_gpu(x, spec.name) if cai is None else None
            if dl is not None:
                if not dl.contiguous:
                    raise InputError(f"input '{spec.name}': a strided device tensor; pass a contiguous one")
                if dl.dtype != spec.dtype:
                    raise InputError(f"input '{spec.name}': expected element type {spec.dtype}, got {dl.dtype}")
                check_array(spec, spec.dtype, dl.shape)
                host[spec.name] = dl.ptr
                keep.append(dl)  # its capsule keeps the producer's memory alive until the copy is done
            elif cai is None:
                a = np.ascontiguousarray(np.asarray(x))
                if a.dtype != dt:
                    raise InputError(f"input '{spec.name}': expected element type {spec.dtype}, got {a.dtype}")
                check_array(spec, spec.dtype, a.shape)
                host[spec.name] = a
            else:
                if cai.get("strides") not in (None, ()) and not _contiguous(cai):
                    raise InputError(f"input '{spec.name}': a strided device array; pass a contiguous one")
                if np.dtype(cai["typestr"]) != dt:
                    raise InputError(f"input '{spec.name}': expected element type {spec.dtype}, got {np.dtype(cai['typestr'])}")
                check_array(spec, spec.dtype, cai["shape"])
                host[spec.name] = int(cai["data"][0])
        guards = self.manifest.get("index_guards")
        cu = _driver()
        with self._lock:
            self._set_context()
            if guards:  # indices on the GPU are read back (index tensors are small) and checked like host ones
                check_index_guards(guards, self._guarded_on_host(cu, guards, host))
            for k, (spec, dt) in enumerate(zip(self.inputs, self._in_dtypes)):
                x = host[spec.name]
                n = int(np.prod(spec.shape)) * dt.itemsize
                if not n:
                    continue
                if isinstance(x, np.ndarray):
                    _ok(cu.cuMemcpyHtoDAsync(self._in[k], x.ctypes.data, n, self._stream), f"copying input '{spec.name}' to the GPU")
                else:
                    _ok(cu.cuMemcpyDtoDAsync(self._in[k], x, n, self._stream), f"copying device input '{spec.name}'")
            _ok(cu.cuGraphLaunch(self._graph_exec, self._stream), "running the model's CUDA graph")
            result = {}
            for k, (spec, dt) in enumerate(zip(self.outputs, self._out_dtypes)):
                n = int(np.prod(spec.shape)) * dt.itemsize
                if device_outputs:
                    ptr = int(_ok(cu.cuMemAlloc(max(1, n)), f"allocating output '{spec.name}'"))
                    if n:
                        _ok(cu.cuMemcpyDtoDAsync(ptr, self._out[k], n, self._stream), f"copying output '{spec.name}'")
                    result[spec.name] = DeviceArray(ptr, spec.shape, dt, self)
                else:
                    out = np.empty(spec.shape, dt)
                    if n:
                        _ok(cu.cuMemcpyDtoHAsync(out.ctypes.data, self._out[k], n, self._stream),
                            f"copying output '{spec.name}' to the host")
                    result[spec.name] = out
            _ok(cu.cuStreamSynchronize(self._stream), "waiting for the model to finish")
        return result

    def execute(self, inputs, outputs) -> None:  # run() above does both halves on the GPU
        result = self.run({s.name: a for s, a in zip(self.inputs, inputs)})
        for spec, out in zip(self.outputs, outputs):
            out[...] = result[spec.name]

    def __del__(self):
        try:
            cu = _driver()
            self._set_context()
            for ptr in getattr(self, "_buffers", []):
                cu.cuMemFree(ptr)
            cu.cuDevicePrimaryCtxRelease(self._dev)
        except Exception:  # the interpreter is shutting down
            pass


def _dlpack_on_gpu(x, name: str):
    """The DLPack view of a GPU tensor that offers only `__dlpack__` (JAX, CuPy, torch), or
    None for anything else (host arrays go through numpy)."""
    device = getattr(x, "__dlpack_device__", None)
    if device is None or isinstance(x, np.ndarray):
        return None
    from .dlpack import GPU_READABLE, DLPackError, view

    try:
        if int(device()[0]) not in GPU_READABLE:
            return None
        return view(x)
    except DLPackError as e:
        raise InputError(f"input '{name}': {e}") from None


def _contiguous(cai: dict) -> bool:
    shape, strides = cai["shape"], cai["strides"]
    expected, step = [], np.dtype(cai["typestr"]).itemsize
    for d in reversed(shape):
        expected.insert(0, step)
        step *= d
    return tuple(strides) == tuple(expected)
