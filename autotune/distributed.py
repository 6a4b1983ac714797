"""Distributed tuning on Ray: candidates are built as Ray tasks anywhere in the cluster and
timed on one Ray actor per device, writing into the same tuning database as a local run.
(Loop-IR kernels' candidates are built on Ray tasks too, sent as loop_ir_json data, and
timed by the driver on its own device: their rebuild reaches into the model's graph.)

    compile tune model.onnx --ray local      # a Ray cluster of this machine alone
    compile tune model.onnx --ray auto       # the cluster `ray start` set up on this machine
    compile tune model.onnx --ray HOST:PORT  # a remote cluster

The measuring actor needs the custom resource `compiler_device_<device key>` (one unit
per device), so only a node of the same device fingerprint (CPU, ISA features, cores,
threads: `device.Device`) measures, and only one timing runs per device at a time. A
`local` cluster declares it for this machine; on a real cluster, start the measuring node
with `ray start --resources '{"compiler_device_<key>": 1}'` (the error names the key).

The search itself is `tuner.tune_problem`, run inside the actor: the same candidates in the
same order as a local run, each checked against the default's output before it is timed;
only where the candidates compile differs (Ray tasks instead of the local thread pool, the
shared library's bytes shipped back). Builds finish before a batch is timed, as locally, so
compilation never competes with a measurement.
"""
from __future__ import annotations

from ..ir.errors import CompilerError
from .database import schedule_from_json, schedule_to_json
from .device import Device, device_of

NEEDS_RAY = "distributed tuning needs the 'ray' extra: pip install \"compiler[ray]\""


def device_resource(device: Device) -> str:
    return f"compiler_device_{device.key}"


def _ray():
    try:
        import ray
    except ImportError:
        raise CompilerError(NEEDS_RAY) from None
    return ray


def connect(address: str, device: Device) -> None:
    """Join (or start, for "local") the cluster and check a node can measure on `device`."""
    ray = _ray()
    resource = device_resource(device)
    if not ray.is_initialized():
        if address == "local":
            ray.init(resources={resource: 1}, include_dashboard=False, log_to_driver=False)
        else:
            try:
                ray.init(address=address, log_to_driver=False)
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise CompilerError(f"--ray {address}: cannot join the Ray cluster: {e}") from None
    if ray.cluster_resources().get(resource, 0) < 1:
        raise CompilerError(f"no node of the Ray cluster offers {resource!r}, the device these schedules are for "
                            f"({device.cpu}, {device.threads} threads); start the measuring node with "
                            f"`ray start --resources '{{\"{resource}\": 1}}'`, or use --ray local")


def _build(problem, schedule_json: dict, target):
    """Ray task body: the candidate's shared library as bytes, or why it did not build."""
    from ..codegen.llvm.microkernels import ConvProblem, emit_conv, emit_gemm
    from ..codegen.llvm.microkernels.build import new_module
    from ..codegen.llvm.toolchain import emit_object, link_shared
    from .measure import KERNEL

    schedule = schedule_from_json(schedule_json)
    try:
        module = new_module(f"tune_{schedule.__class__.__name__}")
        if isinstance(problem, ConvProblem):
            emit_conv(module, KERNEL, problem, target, schedule)
        else:
            emit_gemm(module, KERNEL, problem, schedule)
        return link_shared(emit_object(str(module), target))
    except Exception as e:  # reported per candidate, as a local build failure is
        return f"{type(e).__name__}: {e}"


class RayBuilder:
    """`measure.compile_all`'s contract on Ray tasks: Libraries (or exceptions) in order."""

    def __init__(self):
        ray = _ray()
        self._ray = ray
        self._task = ray.remote(num_cpus=1)(_build)

    def __call__(self, problem, schedules: list, target, pool=None) -> list:
        from ..codegen.llvm.microkernels.build import Library

        refs = [self._task.remote(problem, schedule_to_json(s), target) for s in schedules]
        out = []
        for built in self._ray.get(refs):
            out.append(Library(built) if isinstance(built, bytes) else CompilerError(built))
        return out


def _build_loop(kernels_json: list[dict], target):
    """Ray task body: one shared library of loop-IR kernels (sent as loop_ir_json data, never
    pickled code), as bytes, or why it did not build."""
    from ..codegen.loop_ir_json import decode_kernel
    from ..codegen.llvm.emitter import ModuleBuilder
    from ..codegen.llvm.toolchain import emit_object, link_shared

    try:
        mb = ModuleBuilder("tune_loop", runtime=True, internal=False)
        for k in kernels_json:
            mb.add_kernel(decode_kernel(k))
        return link_shared(emit_object(str(mb.module), target))
    except Exception as e:  # reported per candidate, as a local build failure is
        return f"{type(e).__name__}: {e}"


def loop_ray_builder():
    """`loop_kernels.build_local`'s contract on a Ray task: (kernels, target) -> Library."""
    from ..codegen.loop_ir_json import encode_kernel
    from ..codegen.llvm.microkernels.build import Library

    ray = _ray()
    task = ray.remote(num_cpus=1)(_build_loop)

    def build(kernels: list, target):
        built = ray.get(task.remote([encode_kernel(k) for k in kernels], target))
        if isinstance(built, str):
            raise CompilerError(built)
        return Library(built)

    return build


class DeviceTuner:
    """The measuring actor's body: one per device; searches one problem at a time."""

    def __init__(self, device_json: dict):
        self.device = device_json
        self.builder = RayBuilder()

    def tune(self, problem, target, threads: int, budget_s: float) -> dict:
        from .tuner import tune_problem

        here = device_of(target, threads).describe()
        if here != self.device:
            raise CompilerError(f"this Ray node's device {here} is not the one being tuned {self.device}")
        r = tune_problem(problem, target, threads, budget_s, builder=self.builder)
        return {"key": r.key, "name": r.name, "schedule": schedule_to_json(r.schedule), "ms": r.ms,
                "default_ms": r.default_ms, "candidates": r.candidates, "rejected": list(r.rejected),
                "timings": [[schedule_to_json(s), ms] for s, ms in r.timings]}


def device_tuner(device: Device):
    """The device's measuring actor (holds the device's resource for its lifetime)."""
    ray = _ray()
    actor = ray.remote(DeviceTuner).options(num_cpus=0, resources={device_resource(device): 1}, max_concurrency=1)
    return actor.remote(device.describe())


def tune_on(actor, problem, target, threads: int, budget_s: float):
    """One problem's search on the actor, as a tuner.TuneResult."""
    from .tuner import TuneResult

    ray = _ray()
    d = ray.get(actor.tune.remote(problem, target, threads, budget_s))
    return TuneResult(d["key"], d["name"], schedule_from_json(d["schedule"]), d["ms"], d["default_ms"],
                      d["candidates"], d["rejected"], [(schedule_from_json(s), ms) for s, ms in d["timings"]])
