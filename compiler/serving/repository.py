"""The model repository, laid out like Triton's, and the versions it serves.

    REPO/<model>/config.json            optional (`config.py`)
    REPO/<model>/<version>/*.cmod       one artifact, or one per batch size

Artifacts are static-shaped, so batching works by buckets: a version may hold several
artifacts of the same model that differ only in the leading (batch) dim of every input and
output (`compile model.onnx --batch-sizes 1,4,16 -o REPO/<model>/1`); a merged batch runs
on the smallest that fits, padded with copies of its last sample, and the padding is
counted in the statistics.

`Repository.poll()` rescans: a model directory whose files changed is reloaded beside the
running one and swapped in when ready; versions whose files did not change keep their
queue, and a replaced version drains its queue before it goes, so no request in flight is
dropped. A model or version that fails to load is reported with its reason (repository
index, readiness) and the others keep serving.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .batcher import DynamicBatcher, Pending
from .config import ModelConfig, read_config
from .errors import RepositoryError, ServingError
from .protocol import InferRequest, protocol_type
from .stats import ModelStats


def _batch_dim(model) -> int | None:
    """The artifact's batch size: the leading dim every input and output shares, or None."""
    specs = list(model.inputs) + list(model.outputs)
    leading = {s.shape[0] if s.shape else None for s in specs}
    if len(leading) != 1:
        return None
    (b,) = leading
    return b if isinstance(b, int) and b >= 1 else None


def _per_sample(model) -> tuple:
    return tuple((s.name, s.dtype, tuple(s.shape[1:])) for s in list(model.inputs) + list(model.outputs))


class ModelVersion:
    """One served version: its artifacts by batch size, its queue and its statistics."""

    def __init__(self, name: str, version: int, directory: Path, config: ModelConfig, num_threads: int | None):
        from ..model import load

        self.name, self.version, self.config = name, version, config
        self.label = f"'{name}' version {version}"
        files = sorted(directory.glob("*.cmod"))
        if not files:
            raise RepositoryError(f"{directory}: no artifact (*.cmod) in the version directory")
        threads = config.num_threads or num_threads
        models = {f: load(f, num_threads=threads) for f in files}
        first = models[files[0]]
        self.inputs, self.outputs, self.target = list(first.inputs), list(first.outputs), first.target
        batches = {f: _batch_dim(m) for f, m in models.items()}
        batchable = all(b is not None for b in batches.values())
        if config.max_batch_size == 0 or (config.max_batch_size is None and not batchable):
            if len(files) > 1:
                raise RepositoryError(f"{directory}: {len(files)} artifacts but no batching (max_batch_size 0 or "
                                      f"no common leading dim); a version without batching holds one artifact")
            self.max_batch_size = 0
            self.variants = {0: first}
        else:
            if not batchable:
                f = next(f for f, b in batches.items() if b is None)
                raise RepositoryError(f"{f}: max_batch_size {config.max_batch_size} needs every input and output to "
                                      f"lead with the same batch dim; this artifact's do not")
            self.variants = {}
            for f, m in models.items():
                if _per_sample(m) != _per_sample(first):
                    raise RepositoryError(f"{directory}: {f.name} and {files[0].name} differ in more than the batch dim")
                if batches[f] in self.variants:
                    raise RepositoryError(f"{directory}: two artifacts take batch {batches[f]}")
                self.variants[batches[f]] = m
            largest = max(self.variants)
            self.max_batch_size = config.max_batch_size or largest
            if self.max_batch_size > largest:
                raise RepositoryError(f"{directory}: max_batch_size {self.max_batch_size} but the largest artifact "
                                      f"takes batch {largest}")
        self.sizes = sorted(self.variants)
        self.stats = ModelStats()
        self._staging = threading.local()  # per worker: merged-batch input buffers, reused run to run
        self.run_ms: dict[int, float] = {}
        preferred = config.preferred_batch_sizes
        if not preferred and self.max_batch_size and config.dynamic_batching:
            self.run_ms = self._time_variants()
            preferred = efficient_sizes({s: ms for s, ms in self.run_ms.items() if s <= self.max_batch_size})
        self.preferred = preferred
        self.batcher = DynamicBatcher(self, max_batch_size=self.max_batch_size, merge=config.dynamic_batching,
                                      preferred=self.preferred, delay_us=config.max_queue_delay_us,
                                      instances=config.instance_count, levels=config.priority_levels,
                                      max_queue=config.queue.max_size)

    def _time_variants(self, budget_s: float = 3.0) -> dict[int, float]:
        """Each artifact's run time on zeros (the fastest of up to 5 runs after a warm-up,
        within `budget_s` for all: the fastest, as other work on the machine only ever adds
        time): what `efficient_sizes` chooses the batches to form from."""
        times = {}
        share = budget_s / len(self.sizes)
        for size, model in self.variants.items():
            feeds = {s.name: np.zeros(s.shape, _numpy(s.dtype)) for s in model.inputs}
            start = time.perf_counter()
            model.run(feeds)
            samples = []
            while len(samples) < 5 and time.perf_counter() - start < share:
                t = time.perf_counter()
                model.run(feeds)
                samples.append(time.perf_counter() - t)
            times[size] = 1e3 * float(min(samples) if samples else time.perf_counter() - start)
        return times

    # ---- what clients see ----
    def shape_of(self, spec) -> list:
        """A spec's shape as the protocol shows it: -1 for the batch dim and symbolic dims."""
        dims = [d if isinstance(d, int) else -1 for d in spec.shape]
        return [-1] + dims[1:] if self.max_batch_size else dims

    def metadata(self) -> dict:
        def tensors(specs):
            return [{"name": s.name, "datatype": protocol_type(s.dtype), "shape": self.shape_of(s)} for s in specs]
        return {"name": self.name, "versions": [str(self.version)], "platform": f"compiler_{self.target.split()[0]}",
                "inputs": tensors(self.inputs), "outputs": tensors(self.outputs)}

    def model_config(self) -> dict:
        """Triton's model configuration, as JSON (the model configuration extension)."""
        def tensors(specs):
            return [{"name": s.name, "data_type": f"TYPE_{protocol_type(s.dtype)}",
                     "dims": self.shape_of(s)[1:] if self.max_batch_size else self.shape_of(s)} for s in specs]
        c = self.config
        out = {"name": self.name, "platform": f"compiler_{self.target.split()[0]}", "backend": "compiler",
               "max_batch_size": self.max_batch_size, "input": tensors(self.inputs), "output": tensors(self.outputs),
               "instance_group": [{"count": c.instance_count, "kind": "KIND_CPU" if "cuda" not in self.target else "KIND_GPU"}],
               "response_cache": {"enable": c.response_cache},
               "version_policy": {"all": {}} if c.version_policy == "all" else
                                 {"latest": {"num_versions": 1}} if c.version_policy == "latest" else
                                 {"specific": {"versions": list(c.version_policy)}},
               "artifact_batch_sizes": [s for s in self.sizes if s],
               "artifact_run_ms": {str(s): round(ms, 3) for s, ms in self.run_ms.items()}}
        if self.max_batch_size and c.dynamic_batching:
            out["dynamic_batching"] = {
                "preferred_batch_size": list(self.preferred),
                "preferred_batch_size_from": "config" if c.preferred_batch_sizes else "measured artifact throughput",
                "max_queue_delay_microseconds": c.max_queue_delay_us,
                "priority_levels": c.priority_levels, "default_priority_level": c.default_priority_level,
                "default_queue_policy": {"max_queue_size": c.queue.max_size,
                                         "default_timeout_microseconds": c.queue.default_timeout_us,
                                         "allow_timeout_override": c.queue.allow_timeout_override}}
        return out

    # ---- requests ----
    def check_request(self, request: InferRequest) -> Pending:
        """The request as a queue entry, after checking its inputs and outputs against the
        model's (400 naming the input and what was expected)."""
        names = [s.name for s in self.inputs]
        unknown = sorted(set(request.inputs) - set(names))
        missing = [n for n in names if n not in request.inputs]
        if unknown or missing:
            parts = ([f"unknown input(s) {unknown}"] if unknown else []) + ([f"missing input(s) {missing}"] if missing else [])
            raise ServingError(400, f"model {self.label}: " + "; ".join(parts) + f"; the model takes {names}")
        if request.outputs is not None:
            known = [s.name for s in self.outputs]
            bad = [n for n in request.outputs if n not in known]
            if bad:
                raise ServingError(400, f"model {self.label}: unknown output(s) {bad}; the model has {known}")
        batch = None
        for spec in self.inputs:
            a = request.inputs[spec.name]
            expected_type = protocol_type(spec.dtype)
            if a.dtype != np.dtype(_numpy(spec.dtype)):
                raise ServingError(400, f"model {self.label}: input '{spec.name}': expected datatype {expected_type}, "
                                        f"got {protocol_type(_name(a.dtype))}")
            expected = self.shape_of(spec)
            shape = list(a.shape)
            fits = len(shape) == len(expected) and all(e == -1 or e == d for e, d in zip(expected, shape))
            if not fits:
                raise ServingError(400, f"model {self.label}: input '{spec.name}': expected shape {expected}, got {shape}")
            if self.max_batch_size:
                if not 1 <= shape[0] <= self.max_batch_size:
                    raise ServingError(400, f"model {self.label}: input '{spec.name}': batch size {shape[0]} is outside "
                                            f"1..{self.max_batch_size} (max_batch_size)")
                if batch is not None and shape[0] != batch:
                    raise ServingError(400, f"model {self.label}: input '{spec.name}' has batch size {shape[0]}, "
                                            f"the others {batch}")
                batch = shape[0]
        key = tuple((n, a.dtype.str, a.shape[1:] if self.max_batch_size else a.shape) for n, a in sorted(request.inputs.items()))
        levels = self.config.priority_levels
        priority = request.priority or self.config.default_priority_level or (levels if levels else 1)
        if priority > max(1, levels):
            raise ServingError(400, f"model {self.label}: priority {priority} is outside 1..{max(1, levels)}")
        timeout_us = self.config.queue.default_timeout_us
        if request.timeout_us and self.config.queue.allow_timeout_override:
            timeout_us = request.timeout_us
        now = time.perf_counter_ns()
        return Pending(request.inputs, batch or 1, key, priority - 1,
                       now + timeout_us * 1000 if timeout_us else None, arrived_ns=now)

    def run_group(self, group: list[Pending]) -> None:
        """Run one merged batch (a batcher worker calls this) and answer each request."""
        t0 = time.perf_counter_ns()
        try:
            total = sum(p.batch for p in group)
            size = next(s for s in self.sizes if s >= total) if self.max_batch_size else 0
            feeds = self._merge(group, total, size)
            t1 = time.perf_counter_ns()
            outputs = self.variants[size].run(feeds)
            t2 = time.perf_counter_ns()
            answers = self._split(group, outputs)
            t3 = time.perf_counter_ns()
        except Exception as e:  # a failure inside the model answers its batch, never kills the worker
            error = ServingError(500, f"model {self.label}: the run failed: {e}")
            for p in group:
                p.future.set_exception(error)
            return
        self.stats.executed(size or total, total, max(0, size - total), t1 - t0, t2 - t1, t3 - t2)
        for p, answer in zip(group, answers):
            self.stats.add("queue", t0 - p.arrived_ns)
            p.future.set_result(answer)

    def _merge(self, group: list[Pending], total: int, size: int) -> dict[str, np.ndarray]:
        """The group's inputs stacked into this worker's buffers for the artifact of `size`
        (fresh megabyte arrays per batch would cost page faults on every run)."""
        if len(group) == 1 and total == size or not self.max_batch_size:
            return group[0].inputs
        buffers = getattr(self._staging, "buffers", None)
        if buffers is None:
            buffers = self._staging.buffers = {}
        feeds = {}
        for spec in self.inputs:
            first = group[0].inputs[spec.name]
            buf = buffers.get((size, spec.name))
            if buf is None:
                buf = buffers[(size, spec.name)] = np.empty((size,) + first.shape[1:], first.dtype)
            # one call for the whole copy: each numpy call gives up the GIL and waits to get it
            # back from the event loop, so a loop over the requests would pay that per request
            np.concatenate([p.inputs[spec.name] for p in group], axis=0, out=buf[:total])
            if size > total:  # padding: copies of the last sample (real data: no NaN or zero-division surprises)
                buf[total:] = buf[total - 1]
            feeds[spec.name] = buf
        return feeds

    def _split(self, group: list[Pending], outputs: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        if not self.max_batch_size:
            return [outputs]
        answers, start = [], 0
        for p in group:
            answers.append({k: v[start:start + p.batch] for k, v in outputs.items()})
            start += p.batch
        return answers

    def close(self) -> None:
        self.batcher.close()


def efficient_sizes(run_ms: dict[int, float], tolerance: float = 0.85) -> tuple[int, ...]:
    """The batch sizes worth forming: those whose throughput (samples per ms) is within
    `tolerance` of the best smaller size's. On a CPU a bigger batch is not always faster
    per sample, and a batcher that fills a clearly slower artifact gives throughput away;
    requests that come bigger still run on it. The tolerance is loose on purpose: a flat
    profile measured on a busy machine must not lose its big batches to noise."""
    chosen, best = [], 0.0
    for size in sorted(run_ms):
        throughput = size / max(run_ms[size], 1e-9)
        if throughput >= tolerance * best:
            chosen.append(size)
        best = max(best, throughput)
    return tuple(chosen)


def _numpy(dtype: str):
    from .protocol import NUMPY

    return NUMPY.get(dtype, np.dtype(dtype))


def _name(dt: np.dtype) -> str:
    from .protocol import NUMPY

    return "bfloat16" if dt == NUMPY["bfloat16"] else dt.name


@dataclass
class ModelEntry:
    """One model directory: its served versions and what failed to load."""

    name: str
    fingerprint: tuple = ()
    config: ModelConfig | None = None
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # version (or "config") -> reason
    version_prints: dict[int, tuple] = field(default_factory=dict)

    def latest(self) -> ModelVersion | None:
        return self.versions[max(self.versions)] if self.versions else None


def _fingerprint(paths) -> tuple:
    out = []
    for p in paths:
        try:
            st = p.stat()
            out.append((str(p), st.st_size, st.st_mtime_ns))
        except OSError:
            pass
    return tuple(sorted(out))


class Repository:
    """The served models of one repository directory."""

    def __init__(self, root: str | Path, num_threads: int | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise RepositoryError(f"{self.root}: the model repository is not a directory")
        self.num_threads = num_threads
        self.models: dict[str, ModelEntry] = {}
        self._lock = threading.Lock()  # one poll at a time
        self.poll()

    def poll(self) -> None:
        """Load what is new or changed, swap it in, retire what went away."""
        with self._lock:
            seen = {d.name: d for d in sorted(self.root.iterdir()) if d.is_dir() and not d.name.startswith(".")}
            for name in list(self.models):
                if name not in seen:
                    gone = self.models.pop(name)
                    for v in gone.versions.values():
                        v.close()
            for name, directory in seen.items():
                old = self.models.get(name)
                files = [directory / "config.json", *directory.glob("*/*.cmod")]
                fingerprint = _fingerprint(files)
                if old is None or old.fingerprint != fingerprint:
                    self.models[name], retired = self._load_entry(name, directory, fingerprint, old)
                    for v in retired:  # after the swap: a request they turn away finds the new version
                        v.close()  # drains its queue: requests already taken are answered

    def _load_entry(self, name: str, directory: Path, fingerprint: tuple,
                    old: ModelEntry | None) -> tuple[ModelEntry, list[ModelVersion]]:
        """The model's new entry, and the running versions it no longer serves."""
        entry = ModelEntry(name, fingerprint)
        retired = list(old.versions.values()) if old else []
        try:
            entry.config = read_config(directory)
        except RepositoryError as e:
            entry.errors["config"] = str(e)
            if old is not None:  # a broken config.json keeps the running versions serving
                return ModelEntry(name, fingerprint, old.config, old.versions, {"config": str(e)}, old.version_prints), []
            return entry, retired
        dirs = {int(d.name): d for d in directory.iterdir() if d.is_dir() and d.name.isdigit() and int(d.name) > 0}
        policy = entry.config.version_policy
        wanted = sorted(dirs) if policy in ("latest", "all") else [v for v in sorted(dirs) if v in policy]
        for v in sorted(wanted, reverse=True):
            prints = _fingerprint(dirs[v].glob("*.cmod"))
            kept = old.versions.get(v) if old and old.config == entry.config else None
            if kept is not None and old.version_prints.get(v) == prints:
                entry.versions[v] = kept
                retired.remove(kept)
            else:
                try:
                    entry.versions[v] = ModelVersion(name, v, dirs[v], entry.config, self.num_threads)
                except Exception as e:  # any artifact that does not load: reported, never fatal
                    entry.errors[str(v)] = str(e)
                    continue
            entry.version_prints[v] = prints
            if policy == "latest":  # the newest version that loads; older ones are not served
                break
        return entry, retired

    def resolve(self, name: str, version: str | None) -> ModelVersion:
        """The version a request names (or the newest ready one); 404 unknown, 503 not ready."""
        entry = self.models.get(name)
        if entry is None:
            raise ServingError(404, f"unknown model '{name}'; this server has {sorted(self.models)}")
        if version in (None, ""):
            found = entry.latest()
            if found is None:
                raise ServingError(503, f"model '{name}' has no ready version: {entry.errors or 'no version directory'}")
            return found
        if not version.isdigit() or int(version) not in entry.versions:
            reason = entry.errors.get(version)
            if reason:
                raise ServingError(503, f"model '{name}' version {version} is not ready: {reason}")
            raise ServingError(404, f"model '{name}' has no version {version!r}; ready: {sorted(entry.versions)}")
        return entry.versions[int(version)]

    def index(self) -> list[dict]:
        """The repository extension's index: every model version and its state."""
        rows = []
        for name, entry in sorted(self.models.items()):
            for v in sorted(entry.versions):
                rows.append({"name": name, "version": str(v), "state": "READY"})
            for v, reason in sorted(entry.errors.items()):
                rows.append({"name": name, "version": "" if v == "config" else v, "state": "UNAVAILABLE", "reason": reason})
            if not entry.versions and not entry.errors:
                rows.append({"name": name, "version": "", "state": "UNAVAILABLE", "reason": "no version directory"})
        return rows

    def versions(self):
        for entry in list(self.models.values()):
            yield from list(entry.versions.values())

    def close(self) -> None:
        with self._lock:
            for entry in self.models.values():
                for v in entry.versions.values():
                    v.close()
