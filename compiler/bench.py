"""`compile bench`: latency and throughput of a model against peers, and a per-kernel profile.

    compile bench model.onnx --target llvm [--vs onnxruntime,tvm] [--batch N] [--threads N]
                  [--runs N] [--json] [--profile trace.json] [--top N]

Each system (ours, onnxruntime, tvm, torch, torch.compile) runs in its own worker
subprocess with its thread pools sized by --threads, so pools never fight: only one worker
computes at a time. Measurement is in interleaved rounds (a few runs of each system in
turn, the order rotating each round) after a warm-up, so slow drift of the machine (turbo,
other tenants) is spread over every system instead of landing on whichever ran last.
Systems slower than the time budget get fewer runs, and the result says how many.

`--profile` builds our model once more with a timer around every kernel call compiled into
the native entry point (clock_gettime in the generated code, no Python between kernels),
and writes the per-kernel times as Chrome trace events (open in Perfetto or
chrome://tracing) plus a top-N table. The trace and the table take any list of
`KernelEvent`s, so other producers (a CUDA backend's events) can reuse them.

The benchmarks/ folder drives the same workers over the whole model zoo.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .arg_types import at_least, positive_float
from .ir.errors import CompilerError, TargetError
from .ir.registry import PRECISIONS

# --- statistics ---------------------------------------------------------------------------


def summarize(times_ns) -> dict:
    """Median, p90, mean, min and max in milliseconds of a list of run times in nanoseconds."""
    t = np.asarray(list(times_ns), dtype=np.float64) / 1e6
    if t.size == 0:
        raise ValueError("no run times to summarize")
    return {"runs": int(t.size), "median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)),
            "mean_ms": float(t.mean()), "min_ms": float(t.min()), "max_ms": float(t.max())}


class Progress:
    """A one-line progress bar on stderr (redrawn in place on a terminal, silent otherwise)."""

    def __init__(self, total: int, label: str = "", width: int = 30, stream=None, enabled: bool | None = None):
        self.total, self.done, self.label, self.width = max(1, total), 0, label, width
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled

    def render(self) -> str:
        filled = self.width * min(self.done, self.total) // self.total
        return f"\r[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} {self.label}"

    def advance(self, n: int = 1, label: str | None = None) -> None:
        self.done += n
        if label is not None:
            self.label = label
        if self.enabled:
            self.stream.write(self.render())
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


# --- the systems --------------------------------------------------------------------------


@dataclass
class ModelSpec:
    """What a worker runs: an ONNX file, its inputs (.npz, in graph-input order), and for
    models defined in torch the zoo name (`bert`, `mlp`) that torch eager/compile rebuild."""

    model: str
    inputs: str
    input_shapes: dict = field(default_factory=dict)
    torch_model: str | None = None
    seed: int = 0
    target: str = "llvm"  # what "ours" compiles for
    precision: str = "fp32"  # what "ours" computes products in (`compiler.compile(precision=...)`)
    tuned: bool = False  # "ours" runs the heuristic schedules; "ours-tuned" the tuning database's


@dataclass
class Runner:
    """A loaded system: `run()` computes the model once on the bound inputs; `outputs()` returns
    the results of the last run as numpy arrays (in output order)."""

    label: str
    run: Callable[[], object]
    outputs: Callable[[object], list]
    note: str = ""


def _load_feeds(spec: ModelSpec) -> dict[str, np.ndarray]:
    with np.load(spec.inputs, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


CALIBRATION_SAMPLES = 8


def calibration_feeds(spec: ModelSpec, n: int = CALIBRATION_SAMPLES) -> list[dict[str, np.ndarray]]:
    """The samples every int8 system calibrates on (the same for ours and onnxruntime): the
    benchmark's inputs, then n-1 seeded variations of them (float inputs plus noise of a
    tenth of their spread; integer inputs, token ids, drawn from their observed range)."""
    feeds = _load_feeds(spec)
    rng = np.random.default_rng(spec.seed + 1)
    out = [feeds]
    for _ in range(n - 1):
        sample = {}
        for name, a in feeds.items():
            if a.dtype.kind == "f":
                sample[name] = (a + 0.1 * (a.std() or 1.0) * rng.standard_normal(a.shape)).astype(a.dtype)
            elif a.dtype.kind in "iu" and a.size:
                sample[name] = rng.integers(a.min(), a.max() + 1, a.shape).astype(a.dtype)
            else:
                sample[name] = a
        out.append(sample)
    return out


def _setup_ours(spec: ModelSpec, threads: int) -> Runner:
    from .api import compile as compile_model

    feeds = _load_feeds(spec)
    note = ""
    calibration = calibration_feeds(spec) if spec.precision == "int8" else None
    try:
        cm = compile_model(spec.model, target=spec.target, input_shapes=spec.input_shapes or None,
                           num_threads=threads, precision=spec.precision, calibration=calibration, tuned=spec.tuned)
    except TargetError as e:
        # The llvm target is not in this build: the interpreter stands in, under a label that says so.
        cm = compile_model(spec.model, target="reference", input_shapes=spec.input_shapes or None)
        note = f"{spec.target} unavailable: {e}"
    from .backends import backend_for

    interpreted = backend_for(cm.target).capabilities is None  # no code generator: the IR runs as is
    tuned = ", tuned" if spec.tuned else ""
    label = ("ours (reference interpreter, not compiled)" if interpreted
             else f"ours ({cm.target}, {spec.precision}{tuned})")
    names = [s.name for s in cm.outputs]
    return Runner(label, lambda: cm.run(feeds), lambda out: [np.asarray(out[n]) for n in names], note)


def _setup_onnxruntime(spec: ModelSpec, threads: int) -> Runner:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(spec.model, opts, providers=["CPUExecutionProvider"])
    feeds = _load_feeds(spec)
    return Runner(f"onnxruntime {ort.__version__} (CPU)", lambda: sess.run(None, feeds), lambda out: list(out))


def ort_quantized_model(spec: ModelSpec) -> str:
    """The path of `spec.model` quantized by onnxruntime's own tool (`quantize_static`: QDQ format,
    per-channel int8 weights, uint8 activations, MinMax on `calibration_feeds`, after
    `quant_pre_process`), as onnxruntime's documentation tells its users to quantize. The quantized file is cached beside the model."""
    import hashlib

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    feeds = calibration_feeds(spec)
    recipe = f"pre-processed qdq per-channel u8s8 opset>=13 minmax {CALIBRATION_SAMPLES} seed {spec.seed}"  # in the key: a changed recipe requantizes
    key = hashlib.sha256(Path(spec.model).read_bytes() + recipe.encode()).hexdigest()[:12]
    quantized = Path(spec.model).with_name(f"{Path(spec.model).stem}.ort-int8-{key}.onnx")
    if not quantized.exists():
        class Reader(CalibrationDataReader):
            def __init__(self):
                self.items = iter(feeds)

            def get_next(self):
                return next(self.items, None)

        import onnx
        from onnx import version_converter

        tmp = quantized.with_suffix(".partial.onnx")
        source = onnx.load(spec.model)
        opset = next((o.version for o in source.opset_import if o.domain in ("", "ai.onnx")), 0)
        if opset < 13:  # per-channel DequantizeLinear (its `axis`) needs opset 13, as onnxruntime's docs say
            source = version_converter.convert_version(source, 13)
        onnx.save(source, str(tmp))
        # onnxruntime's documented recipe: pre-process (shape inference, BatchNorm folded
        # into the convs), then quantize
        quant_pre_process(str(tmp), str(tmp))
        quantize_static(str(tmp), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        tmp.replace(quantized)  # complete files only: an interrupted run leaves no half-written model
    return str(quantized)


def _setup_onnxruntime_int8(spec: ModelSpec, threads: int) -> Runner:
    """onnxruntime on the model its own tool quantized (`ort_quantized_model`)."""
    runner = _setup_onnxruntime(replace(spec, model=ort_quantized_model(spec)), threads)
    return replace(runner, label=runner.label.replace("(CPU)", "(CPU, int8 QDQ from quantize_static)"))


def ort_dynamic_model(spec: ModelSpec) -> str:
    """The path of `spec.model` quantized by onnxruntime's `quantize_dynamic` (its defaults:
    int8 weights, uint8 activations quantized at run time by DynamicQuantizeLinear, products
    as MatMulInteger), the int8 recipe onnxruntime documents for transformers; cached beside
    the model. No calibration: the file is the same for every system that runs it."""
    import hashlib

    from onnxruntime.quantization import QuantType, quantize_dynamic

    recipe = "quantize_dynamic qint8 weights"
    key = hashlib.sha256(Path(spec.model).read_bytes() + recipe.encode()).hexdigest()[:12]
    quantized = Path(spec.model).with_name(f"{Path(spec.model).stem}.ort-dynamic-{key}.onnx")
    if not quantized.exists():
        import shutil
        import tempfile

        # in a private folder: quantize_dynamic writes a shape-inferred copy beside its input,
        # which two systems set up at once would share; the finished file moves in whole
        with tempfile.TemporaryDirectory(dir=quantized.parent) as tmp:
            source = Path(tmp) / "model.onnx"
            shutil.copyfile(spec.model, source)
            quantize_dynamic(str(source), str(Path(tmp) / "dynamic.onnx"), weight_type=QuantType.QInt8)
            (Path(tmp) / "dynamic.onnx").replace(quantized)
    return str(quantized)


def _setup_dynamic(setup: Callable[[ModelSpec, int], Runner], spec: ModelSpec, threads: int) -> Runner:
    """`setup` (ours or onnxruntime) on the model onnxruntime's dynamic quantization wrote."""
    runner = setup(replace(spec, model=ort_dynamic_model(spec)), threads)
    return replace(runner, label=f"{runner.label} on quantize_dynamic's int8 file")


def _setup_tvm(spec: ModelSpec, threads: int) -> Runner:
    import onnx
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    feeds = _load_feeds(spec)
    mod = from_onnx(onnx.load(spec.model), shape_dict={k: v.shape for k, v in feeds.items()})
    # 0.27 refuses the old "llvm -mcpu=..." string: the dict form, with the host CPU and cores.
    target = tvm.target.Target({"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(),
                                "num-cores": threads})
    exe = tvm.compile(mod, target=target, relax_pipeline=relax.get_default_pipeline(target))
    dev = tvm.cpu()
    vm = relax.VirtualMachine(exe, dev)
    args = [tvm.runtime.tensor(v, dev) for v in feeds.values()]

    def outputs(out) -> list:
        items = out if isinstance(out, (list, tuple)) or type(out).__name__ == "Array" else [out]
        return [x.numpy() for x in items]

    return Runner(f"tvm {tvm.__version__} relax (untuned)", lambda: vm["main"](*args), outputs)


def _setup_openvino(spec: ModelSpec, threads: int, precision: str | None = None) -> Runner:
    """OpenVINO's CPU plugin with its defaults (bf16 compute on a CPU with AVX512-BF16 or AMX,
    as a user gets without asking), or `precision` ("f32") as the inference precision hint."""
    import openvino as ov

    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = ov.Core().compile_model(spec.model, "CPU", config)
    request = compiled.create_infer_request()
    feeds = _load_feeds(spec)
    used = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    label = f"openvino {ov.__version__.split('-')[0]} (CPU, {used})"
    return Runner(label, lambda: request.infer(feeds), lambda out: [np.asarray(v) for v in out.values()])


def _torch_module(spec: ModelSpec):
    from .zoo import torch_models

    makers = {"bert": torch_models.make_bert, "mlp": torch_models.make_mlp}
    if spec.torch_model not in makers:
        raise CompilerError(f"no torch definition for this model (torch systems run only {sorted(makers)})")
    return makers[spec.torch_model](spec.seed)


def _setup_torch(spec: ModelSpec, threads: int, compiled: bool = False) -> Runner:
    import torch

    torch.set_num_threads(threads)
    module = _torch_module(spec)
    args = [torch.from_numpy(a) for a in _load_feeds(spec).values()]
    fn = torch.compile(module) if compiled else module

    def run():
        with torch.inference_mode():
            return fn(*args)

    def outputs(out) -> list:
        return [t.numpy() for t in (out if isinstance(out, (tuple, list)) else [out])]

    label = f"torch {torch.__version__.split('+')[0]} " + ("compile (inductor)" if compiled else "eager")
    return Runner(label, run, outputs)


SYSTEMS: dict[str, Callable[[ModelSpec, int], Runner]] = {
    "ours": _setup_ours,
    "ours-bf16": lambda spec, threads: _setup_ours(replace(spec, precision="bf16"), threads),
    "ours-fp16": lambda spec, threads: _setup_ours(replace(spec, precision="fp16"), threads),
    "ours-int8": lambda spec, threads: _setup_ours(replace(spec, precision="int8"), threads),
    "ours-tuned": lambda spec, threads: _setup_ours(replace(spec, tuned=True), threads),
    "onnxruntime": _setup_onnxruntime,
    "onnxruntime-int8": _setup_onnxruntime_int8,
    "ours-dynamic": lambda spec, threads: _setup_dynamic(_setup_ours, spec, threads),
    "onnxruntime-dynamic": lambda spec, threads: _setup_dynamic(_setup_onnxruntime, spec, threads),
    "openvino": _setup_openvino,
    "openvino-f32": lambda spec, threads: _setup_openvino(spec, threads, precision="f32"),
    "tvm": _setup_tvm,
    "torch": _setup_torch,
    "torch.compile": lambda spec, threads: _setup_torch(spec, threads, compiled=True),
}
TORCH_SYSTEMS = ("torch", "torch.compile")


def thread_env(threads: int) -> dict[str, str]:
    """Environment for a worker: every thread pool a system may use, sized to `threads`."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "TVM_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


# --- worker subprocesses ------------------------------------------------------------------
# Protocol: one JSON object per line. The worker answers its set-up with {"ready", "label",
# "note", "setup_s"} or {"error"}; then {"cmd": "run", "n": k} -> {"times_ns": [...]},
# {"cmd": "outputs", "path": p} -> {"saved": p}, {"cmd": "quit"}.


def _worker_main(system: str, spec_json: str, threads: int) -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # library chatter (TVM, torch) goes to stderr, never into the protocol

    def say(**msg):
        proto.write(json.dumps(msg) + "\n")

    try:
        t0 = time.perf_counter()
        runner = SYSTEMS[system](ModelSpec(**json.loads(spec_json)), threads)
        runner.run()  # the first call may JIT or allocate: part of set-up, never timed
        say(ready=True, label=runner.label, note=runner.note, setup_s=time.perf_counter() - t0)
    except Exception as e:  # any failure is reported to the parent, which shows it per system
        say(error=f"{type(e).__name__}: {e}"[:2000])
        return 1
    last = None
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "run":
            times = []
            for _ in range(int(msg["n"])):
                t = time.perf_counter_ns()
                last = runner.run()
                times.append(time.perf_counter_ns() - t)
            say(times_ns=times)
        elif msg["cmd"] == "outputs":
            arrays = runner.outputs(last if last is not None else runner.run())
            np.savez(msg["path"], *arrays)
            say(saved=msg["path"])
        else:
            break
    return 0


class SystemProcess:
    """The parent's handle on one worker subprocess."""

    def __init__(self, system: str, spec: ModelSpec, threads: int, log_dir: str | None = None):
        self.system, self.threads = system, threads
        self.label, self.note, self.error, self.setup_s = system, "", None, None
        log_dir = log_dir or tempfile.mkdtemp(prefix="cm-bench-")
        self.log_path = Path(log_dir) / f"{system.replace('.', '_')}.log"
        self._log = open(self.log_path, "w")
        cmd = [sys.executable, "-m", "compiler.bench", "--worker", system, json.dumps(asdict(spec)), str(threads)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     text=True, env=thread_env(threads))

    def wait_ready(self, timeout: float) -> bool:
        msg = self._read(timeout)
        if msg is None or "error" in msg:
            self.error = (msg or {}).get("error") or self._failure("no answer to set-up")
            self.close()
            return False
        self.label, self.note, self.setup_s = msg["label"], msg.get("note", ""), msg["setup_s"]
        return True

    def run(self, n: int, timeout: float) -> list[int]:
        msg = self._ask({"cmd": "run", "n": n}, timeout)
        return msg["times_ns"]

    def save_outputs(self, path: str, timeout: float = 600) -> str:
        return self._ask({"cmd": "outputs", "path": path}, timeout)["saved"]

    def _ask(self, msg: dict, timeout: float) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        answer = self._read(timeout)
        if answer is None:
            raise CompilerError(f"{self.system}: {self._failure('no answer')}")
        return answer

    def _read(self, timeout: float) -> dict | None:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        return json.loads(line) if line.strip() else None

    def _failure(self, what: str) -> str:
        try:  # after EOF on its stdout the worker is usually dying: wait to say how it died
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        how = "still running" if code is None else f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        self._log.flush()
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-5:]
        return f"worker {what} ({how}); log {self.log_path}" + (": " + " | ".join(tail) if tail else "")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
        self._log.close()


@dataclass
class Plan:
    """How many timed runs each system gets: `runs`, or fewer (never below `min_runs`) when a
    warm-up run says `runs` would take longer than `budget_s`; `caps` limits named systems."""

    runs: int = 30
    warmup: int = 2
    rounds: int = 10
    # Untimed runs at the start of every system's turn in a round. The pause before a turn
    # (SETTLE_S) leaves the machine idle: thread pools asleep, caches and the second vCPU
    # cold, a state no model serving requests back to back is in. Measured on the small
    # unseen models (a 1-D audio CNN, an LSTM, 0.7-1.5 ms a run): the first two runs after
    # the pause took 2-5x the steady time, so with 3 runs a turn the medians showed mostly
    # that. Every system gets the same warm-up: `turn_warmup` runs, or as many as take
    # `turn_warmup_s` seconds if that is more (a 0.1 ms model: about fifty), since a few
    # runs are not enough to leave that state behind (DLRM, 0.08 ms steady, had medians of
    # 0.1-0.24 ms over 3-run turns, onnxruntime's alike).
    turn_warmup: int = 1
    turn_warmup_s: float = 0.005
    budget_s: float = 120.0
    min_runs: int = 5
    caps: dict = field(default_factory=dict)

    def runs_for(self, system: str, warm_s: float) -> int:
        n = self.runs
        if warm_s * n > self.budget_s:
            n = max(self.min_runs, int(self.budget_s / max(warm_s, 1e-9)))
        return min(n, self.caps.get(system, n))


def chunks(total: int, rounds: int) -> list[int]:
    """`total` runs split over `rounds` rounds as evenly as possible (empty rounds dropped)."""
    base, extra = divmod(total, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds) if base + (1 if r < extra else 0)]


def _timed_runs(p: SystemProcess, n: int, timeout: float) -> list[int] | None:
    """`n` timed runs of one worker; None (and `p.error` set) when the worker died doing them."""
    try:
        return p.run(n, timeout)
    except CompilerError as e:  # e.g. a crash in native code: that system's row says so, the others go on
        p.error = f"failed while running: {e}"
        p.close()
        return None


SETTLE_S = 0.2  # pause between two systems' turns: longer than any peer's spin-then-sleep window


def measure_interleaved(procs: list[SystemProcess], plan: Plan, progress: Progress | None = None,
                        timeout: float = 3600) -> dict[str, dict]:
    """Warm up each ready worker, then time them in rotating interleaved rounds.
    Returns system -> summarize() plus `reduced_runs` (True when the plan cut its runs);
    a worker that fails on the way gets `error` set and no entry."""
    per_round: dict[str, list[int]] = {}
    turn_warmup: dict[str, int] = {}
    for p in procs:
        warm = _timed_runs(p, max(1, plan.warmup), timeout) if p.error is None else None
        if warm is not None:  # the warm-up's fastest run decides how many runs fit the budget
            per_round[p.system] = chunks(plan.runs_for(p.system, min(warm) / 1e9), plan.rounds)
            runs_in_s = math.ceil(plan.turn_warmup_s / max(min(warm) / 1e9, 1e-9))
            turn_warmup[p.system] = max(plan.turn_warmup, runs_in_s) if plan.turn_warmup else 0
    if progress is not None:
        progress.total = max(1, sum(sum(c) for c in per_round.values()))
    times: dict[str, list[int]] = {s: [] for s in per_round}
    for r in range(plan.rounds):
        live = [p for p in procs if p.error is None and p.system in per_round]
        order = live[r % len(live):] + live[:r % len(live)] if live else []
        for p in order:
            sizes = per_round[p.system]
            # Thread pools (onnxruntime's, ours) keep their workers spinning for a while after
            # a run; the next system's first runs would share the cores with them. Let them
            # go idle first, so only one system computes at any moment.
            time.sleep(SETTLE_S)
            if r < len(sizes) and turn_warmup[p.system] and _timed_runs(p, turn_warmup[p.system], timeout) is None:
                continue
            got = _timed_runs(p, sizes[r], timeout) if r < len(sizes) else []
            if got is None:
                continue
            times[p.system] += got
            if progress is not None and got:
                progress.advance(len(got), label=p.system)
    results = {}
    for p in procs:
        if p.error is None and times.get(p.system):
            stats = summarize(times[p.system])
            stats["reduced_runs"] = stats["runs"] < plan.runs
            results[p.system] = stats
    return results


# --- per-kernel profile -------------------------------------------------------------------


@dataclass
class KernelEvent:
    """One kernel call in one run: the interface between a profiling build and the trace/table."""

    name: str  # the kernel function
    ops: list[str]  # the graph nodes it computes, e.g. ["Conv(conv1)", "Relu(relu1)"]
    start_ns: int
    dur_ns: int
    flops: int = 0
    run: int = 0


def chrome_trace(events: list[KernelEvent], metadata: dict | None = None) -> dict:
    """Chrome trace-event JSON (complete events, microseconds) for Perfetto / chrome://tracing.
    Each run is one track, starting at zero, so runs line up for comparison."""
    starts: dict[int, int] = {}
    for e in events:
        starts[e.run] = min(starts.get(e.run, e.start_ns), e.start_ns)
    trace = [{"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "compiled model"}}]
    for run in sorted(starts):
        trace.append({"name": "thread_name", "ph": "M", "pid": 1, "tid": run, "args": {"name": f"run {run}"}})
    for e in events:
        gflops = e.flops / e.dur_ns if e.dur_ns else 0.0
        trace.append({"name": e.name, "cat": "kernel", "ph": "X", "pid": 1, "tid": e.run,
                      "ts": (e.start_ns - starts[e.run]) / 1e3, "dur": e.dur_ns / 1e3,
                      "args": {"ops": " + ".join(e.ops), "flops": e.flops, "gflops_per_s": round(gflops, 3)}})
    return {"traceEvents": trace, "displayTimeUnit": "ms", "otherData": metadata or {}}


def write_chrome_trace(events: list[KernelEvent], path, metadata: dict | None = None) -> None:
    Path(path).write_text(json.dumps(chrome_trace(events, metadata)))


def top_kernels(events: list[KernelEvent], n: int = 20) -> list[dict]:
    """Per kernel call site (name + ops), the median time over runs, its share of the total,
    FLOPs and GFLOP/s; the `n` most expensive first."""
    by_site: dict[tuple, list[KernelEvent]] = {}
    for e in events:
        by_site.setdefault((e.name, tuple(e.ops)), []).append(e)
    rows = []
    for (name, ops), evs in by_site.items():
        med = float(np.median([e.dur_ns for e in evs]))
        flops = evs[0].flops
        rows.append({"name": name, "ops": list(ops), "median_ns": med, "flops": flops,
                     "gflops_per_s": flops / med if med else 0.0})
    total = sum(r["median_ns"] for r in rows) or 1.0
    for r in rows:
        r["share"] = r["median_ns"] / total
    rows.sort(key=lambda r: -r["median_ns"])
    return rows[:n]


def format_top_table(rows: list[dict], total_ns: float | None = None) -> str:
    lines = [f"{'kernel':<28} {'time ms':>9} {'share':>6} {'MFLOP':>9} {'GFLOP/s':>8}  ops"]
    for r in rows:
        ops = " + ".join(r["ops"])
        lines.append(f"{r['name'][:28]:<28} {r['median_ns'] / 1e6:>9.3f} {100 * r['share']:>5.1f}% "
                     f"{r['flops'] / 1e6:>9.1f} {r['gflops_per_s']:>8.2f}  {ops[:80]}")
    if total_ns is not None:
        lines.append(f"{'total (all kernels)':<28} {total_ns / 1e6:>9.3f}")
    return "\n".join(lines)


def profile_native(model, input_shapes: dict | None, feeds: dict, runs: int = 10, threads: int = 0,
                   target: str = "llvm", opt_level: int | None = None, precision: str = "fp32") -> list[KernelEvent]:
    """Compile `model` for `target` as `compiler.compile` does at `opt_level`, with a timer
    around every kernel call compiled into the entry (a profiling build: the target's
    backend must support one), run it `runs` times on `feeds`, and return every call of
    every run as a KernelEvent. int8 calibrates on `feeds` (minmax)."""
    from .api import import_model
    from .backends import BuildOptions, parse_target
    from .passes.int8_ranges import Calibration

    tgt = parse_target(target)
    if not tgt.backend.profiling:
        raise TargetError(f"--profile needs a target whose kernels run natively with compiled-in timers; "
                          f"{tgt.kind!r} has none")
    calibration = Calibration((feeds,)) if precision == "int8" else None
    options = BuildOptions(opt_level=opt_level, num_threads=threads, profile=True, precision=precision,
                           calibration=calibration)
    compiled = tgt.backend.compile_model(import_model(model, input_shapes, tgt.backend.inlined_ops()), tgt, options,
                                         "profiling build")
    compiled.run(feeds)  # warm-up: first-touch of the arena and the weights
    sites = call_sites(compiled.calls)
    events = []
    for run in range(runs):
        compiled.run(feeds)
        for (name, ops, flops), (start, dur) in zip(sites, compiled.kernel_times()):
            events.append(KernelEvent(name, ops, start, dur, flops, run))
    return events


def call_sites(calls: list[dict]) -> list[tuple[str, list[str], int]]:
    """Per kernel call (the artifact's listing): its name, the nodes it computes and their
    FLOPs. Copies into graph outputs compute no node and show their own name."""
    sites = []
    for call in calls:
        ops = [f"{op}({name})" if name else op for op, name in zip(call["ops"], call["nodes"])] or [call["kernel"]]
        sites.append((call["kernel"], ops, call["flops"]))
    return sites


# --- the command --------------------------------------------------------------------------


def random_feeds(model_path: str, batch: int | None = None, seed: int = 0,
                 shapes: dict | None = None) -> tuple[dict[str, np.ndarray], dict[str, list]]:
    """Seeded random inputs for an ONNX model's graph inputs, and the static shapes used.

    Symbolic dims become `batch` (or 1) for the first dim, 1 elsewhere; `shapes` overrides
    whole inputs. Integer inputs (token ids, masks) are drawn in [0, 2) so they index any table."""
    import onnx

    from .ir import dtypes

    model = onnx.load(model_path, load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    rng = np.random.default_rng(seed)
    feeds, used = {}, {}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        tt = inp.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if batch is not None and dims:
            dims[0] = batch
        dims = [int(d) if d is not None else (batch or 1) if i == 0 else 1 for i, d in enumerate(dims)]
        if shapes and inp.name in shapes:
            dims = [int(d) for d in shapes[inp.name]]
        dt = dtypes.from_onnx(tt.elem_type).numpy
        if np.issubdtype(dt, np.floating):
            arr = rng.standard_normal(dims).astype(dt)
        else:
            arr = rng.integers(0, 2, dims).astype(dt)
        feeds[inp.name], used[inp.name] = arr, dims
    return feeds, used


def with_static_shapes(model_path: str, shapes: dict[str, list], directory) -> str:
    """`model_path` itself when its declared input shapes admit `shapes`; otherwise a copy in
    `directory` whose inputs (and the leading dim of its outputs, which follows the batch)
    declare them, so every peer accepts the inputs (onnxruntime rejects a static-dim mismatch)."""
    import onnx

    model = onnx.load(model_path)
    changed = False
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        want = shapes.get(inp.name)
        if want is None or len(dims) != len(want):
            continue
        for d, n in zip(dims, want):
            if d.HasField("dim_value") and d.dim_value != n:
                d.dim_value, changed = n, True
    if not changed:
        return model_path
    batch = next(iter(shapes.values()))[0]
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value"):
            dims[0].dim_value = batch
    path = Path(directory) / Path(model_path).name
    onnx.save(model, str(path))
    return str(path)


def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="compile bench", description="Latency and throughput of a model, against peers.")
    p.add_argument("model", help="ONNX model file")
    p.add_argument("--target", default="llvm", help="our target (default llvm; reference = the interpreter)")
    p.add_argument("--vs", default="", help=f"comma-separated peers: {', '.join(s for s in SYSTEMS if s != 'ours')}")
    p.add_argument("--batch", type=at_least(1), help="batch size (the first dim of every input)")
    p.add_argument("--input-shape", action="append", metavar="NAME=DIMS", help="an input's whole shape (repeatable)")
    p.add_argument("--threads", type=at_least(1), default=os.cpu_count(),
                   help="threads for every system (default: all cores)")
    p.add_argument("--runs", type=at_least(1), default=30, help="timed runs per system (default 30)")
    p.add_argument("--warmup", type=at_least(0), default=2, help="untimed runs per system first (default 2)")
    p.add_argument("--budget", type=positive_float, default=120.0,
                   help="seconds of timed runs per system; slower systems get fewer runs (at least 5)")
    p.add_argument("--json", action="store_true", help="print the results as JSON only")
    p.add_argument("--profile", metavar="TRACE.json", help="also profile our kernels into a Chrome trace")
    p.add_argument("--top", type=int, default=15, help="kernels in the profile table (default 15)")
    p.add_argument("--torch-model", choices=("bert", "mlp"),
                   help="the zoo's torch definition of MODEL, for --vs torch / torch.compile")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="what our convolutions and matrix products compute in (compare with --vs openvino: bf16 "
                        "is its default on CPUs with AVX512-BF16)")
    return p.parse_args(argv)


def _bench(args, feeds: dict, used: dict) -> dict:
    systems = ["ours"] + [s.strip() for s in args.vs.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise CompilerError(f"--vs: unknown system(s) {unknown}; known: {', '.join(SYSTEMS)}")
    work = tempfile.mkdtemp(prefix="cm-bench-")
    np.savez(Path(work) / "inputs.npz", **feeds)
    model = with_static_shapes(str(Path(args.model).resolve()), used, work)
    spec = ModelSpec(model, str(Path(work) / "inputs.npz"), used,
                     torch_model=args.torch_model, seed=args.seed, target=args.target, precision=args.precision)
    plan = Plan(runs=args.runs, warmup=args.warmup, rounds=min(10, args.runs), budget_s=args.budget)
    procs = [SystemProcess(s, spec, args.threads, work) for s in systems]
    try:
        for p in procs:  # set-up (compiles) runs in parallel; nothing is timed yet
            p.wait_ready(timeout=3600)
            if not args.json:
                state = f"failed: {p.error}" if p.error else f"ready in {p.setup_s:.1f} s"
                print(f"{p.system}: {state}", file=sys.stderr, flush=True)
        progress = Progress(1, "measuring", enabled=None if not args.json else False)
        results = measure_interleaved(procs, plan, progress)
        progress.close()
    finally:
        for p in procs:
            p.close()
    first = next(iter(used.values()), [])
    batch = first[0] if first else 1  # throughput counts items of the first input's leading dim
    rows = []
    for p in procs:
        row = {"system": p.system, "label": p.label, "note": p.note, "error": p.error, "setup_s": p.setup_s}
        if p.system in results:
            r = results[p.system]
            row.update(r, throughput_per_s=batch / (r["median_ms"] / 1e3))
        rows.append(row)
    return {"model": args.model, "input_shapes": used, "batch": batch, "threads": args.threads,
            "plan": asdict(plan), "results": rows}


def _print_bench(report: dict) -> None:
    print(f"{report['model']}  inputs {report['input_shapes']}  threads {report['threads']}  "
          f"(interleaved rounds after {report['plan']['warmup']} warm-up runs)")
    print(f"{'system':<44} {'median ms':>10} {'p90 ms':>10} {'items/s':>10} {'runs':>5}")
    for r in report["results"]:
        if r.get("error"):
            print(f"{r['label']:<44} failed: {r['error']}")
            continue
        reduced = "*" if r.get("reduced_runs") else ""
        print(f"{r['label']:<44} {r['median_ms']:>10.3f} {r['p90_ms']:>10.3f} "
              f"{r['throughput_per_s']:>10.1f} {r['runs']:>4}{reduced}")
        if r.get("note"):
            print(f"    note: {r['note']}")
    if any(r.get("reduced_runs") for r in report["results"]):
        print(f"* fewer runs: {report['plan']['runs']} would exceed the {report['plan']['budget_s']:.0f} s budget")


def cmd_bench(argv: list[str]) -> int:
    from .shape_args import shape_override

    from .frontend.onnx_loader import load_model_proto

    args = _parse_args(argv)
    if not Path(args.model).is_file():
        raise CompilerError(f"{args.model}: no such model file")
    load_model_proto(args.model)  # a file that is not an ONNX model is refused by name, before any peer starts
    shapes = dict(shape_override(s) for s in (args.input_shape or []))
    feeds, used = random_feeds(args.model, args.batch, args.seed, shapes)
    report = _bench(args, feeds, used)
    if args.profile:
        events = profile_native(args.model, report["input_shapes"], feeds, runs=max(1, min(args.runs, 20)),
                                threads=args.threads, target=args.target, precision=args.precision)
        write_chrome_trace(events, args.profile, {"model": args.model, "threads": args.threads})
        runs = max(e.run for e in events) + 1
        rows = top_kernels(events, n=10**9)
        report["profile"] = {"trace": args.profile, "runs": runs, "kernels": rows[:args.top],
                             "total_kernel_ms": sum(r["median_ns"] for r in rows) / 1e6}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _print_bench(report)
    if args.profile:
        prof = report["profile"]
        print(f"\nper-kernel profile (median of {prof['runs']} runs, timers compiled into the native code); "
              f"trace: {prof['trace']} (open in https://ui.perfetto.dev)")
        print(format_top_table(prof["kernels"], prof["total_kernel_ms"] * 1e6))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    sys.exit(cmd_bench(sys.argv[1:]))
