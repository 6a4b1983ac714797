"""A model's serving configuration: `REPO/<model>/config.json`, every key optional.

    {
      "max_batch_size": 16,            # largest merged batch; 0 = no batching (default: the
                                       #   largest batch an artifact of the version takes)
      "dynamic_batching": true,        # merge concurrent requests (default true)
      "preferred_batch_sizes": [4, 8], # run at once when the queue holds exactly this many
      "max_queue_delay_us": 0,         # how long the oldest request may wait for others
      "instance_count": 1,             # batches run concurrently (threads sharing the model)
      "num_threads": 0,                # threads native code runs with (0 = all cores)
      "response_cache": false,         # answer repeated inputs from the server's cache
      "priority_levels": 0,            # requests' `priority` parameter: 1 (first) .. levels
      "default_priority_level": 0,
      "queue": {"max_size": 0,         # requests waiting at most (0 = unbounded); over: 503
                "default_timeout_us": 0,        # a request waiting longer is refused (504)
                "allow_timeout_override": true},  # the request's `timeout` parameter wins
      "version_policy": "latest"       # "latest" (the newest ready), "all", or [1, 3]
    }

The keys are Triton's model configuration, flattened; a key this server does not know is
refused by name (a typo never silently changes behaviour).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RepositoryError


@dataclass(frozen=True)
class QueuePolicy:
    max_size: int = 0
    default_timeout_us: int = 0
    allow_timeout_override: bool = True


@dataclass(frozen=True)
class ModelConfig:
    max_batch_size: int | None = None  # None: from the artifacts
    dynamic_batching: bool = True
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    instance_count: int = 1
    num_threads: int = 0
    response_cache: bool = False
    priority_levels: int = 0
    default_priority_level: int = 0
    queue: QueuePolicy = field(default_factory=QueuePolicy)
    version_policy: str | tuple[int, ...] = "latest"


_INTS = {"max_batch_size": 0, "max_queue_delay_us": 0, "instance_count": 1, "num_threads": 0,
         "priority_levels": 0, "default_priority_level": 0}
_BOOLS = ("dynamic_batching", "response_cache")


def _int(where: str, key: str, v, least: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < least:
        raise RepositoryError(f"{where}: '{key}' must be an integer >= {least}, got {v!r}")
    return v


def parse_config(raw, where: str) -> ModelConfig:
    """A ModelConfig from config.json's object; RepositoryError naming the key otherwise."""
    if not isinstance(raw, dict):
        raise RepositoryError(f"{where}: the configuration must be a JSON object")
    known = set(_INTS) | set(_BOOLS) | {"preferred_batch_sizes", "queue", "version_policy"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise RepositoryError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    values: dict = {}
    for key, least in _INTS.items():
        if key in raw:
            values[key] = _int(where, key, raw[key], least)
    for key in _BOOLS:
        if key in raw:
            if not isinstance(raw[key], bool):
                raise RepositoryError(f"{where}: '{key}' must be true or false, got {raw[key]!r}")
            values[key] = raw[key]
    if "preferred_batch_sizes" in raw:
        sizes = raw["preferred_batch_sizes"]
        if not isinstance(sizes, list):
            raise RepositoryError(f"{where}: 'preferred_batch_sizes' must be a list of integers")
        values["preferred_batch_sizes"] = tuple(sorted({_int(where, "preferred_batch_sizes", s, 1) for s in sizes}))
    if "queue" in raw:
        q = raw["queue"]
        if not isinstance(q, dict) or set(q) - {"max_size", "default_timeout_us", "allow_timeout_override"}:
            raise RepositoryError(f"{where}: 'queue' must be an object of max_size, default_timeout_us, "
                                  f"allow_timeout_override")
        override = q.get("allow_timeout_override", True)
        if not isinstance(override, bool):
            raise RepositoryError(f"{where}: 'queue.allow_timeout_override' must be true or false")
        values["queue"] = QueuePolicy(_int(where, "queue.max_size", q.get("max_size", 0), 0),
                                      _int(where, "queue.default_timeout_us", q.get("default_timeout_us", 0), 0),
                                      override)
    if "version_policy" in raw:
        policy = raw["version_policy"]
        if isinstance(policy, list) and policy:
            values["version_policy"] = tuple(_int(where, "version_policy", v, 1) for v in policy)
        elif policy in ("latest", "all"):
            values["version_policy"] = policy
        else:
            raise RepositoryError(f"{where}: 'version_policy' must be \"latest\", \"all\" or a list of versions")
    config = ModelConfig(**values)
    levels = config.priority_levels
    if config.default_priority_level > levels:
        raise RepositoryError(f"{where}: 'default_priority_level' {config.default_priority_level} exceeds "
                              f"'priority_levels' {levels}")
    if config.max_batch_size is not None and any(s > config.max_batch_size for s in config.preferred_batch_sizes):
        raise RepositoryError(f"{where}: a preferred batch size exceeds max_batch_size {config.max_batch_size}")
    return config


def read_config(model_dir: Path) -> ModelConfig:
    path = model_dir / "config.json"
    if not path.exists():
        return ModelConfig()
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RepositoryError(f"{path}: not readable JSON ({e})") from None
    return parse_config(raw, str(path))
