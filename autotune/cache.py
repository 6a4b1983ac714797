"""The per-device tuning cache: one JSON file per device key.

    $COMPILER_CACHE_DIR/autotune/<device key>.json       (COMPILER_CACHE_DIR: ~/.cache/compiler)
    {"format": 1, "device": {...},
     "entries": {problem key: {"schedule": {"kind": "gemm", ...knobs}, "ms": t, "default_ms": t0,
                               "candidates": n}}}
ms / default_ms: milliseconds per call of the tuned / default schedule (measure.Timing.score_ms).

Reading never raises: a missing, corrupt or other-format file reads as empty, and an entry
whose schedule no longer validates (a knob's choices changed, the constructor raises) is
skipped; the next tune of that problem rewrites it. Writes merge into the file as it is
on disk at that moment and replace it atomically (temp file + os.replace), so a reader
never sees half a file and concurrent tuners lose at most each other's last entry.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

from ..codegen.llvm.microkernels import DepthwiseSchedule, GemmSchedule
from ..ir.errors import CompilerError
from .device import Device

FORMAT = 1
SCHEDULE_KINDS = {"gemm": GemmSchedule, "depthwise": DepthwiseSchedule}


def cache_root() -> Path:
    """Where every device's file lives (read at each call: tests point it elsewhere)."""
    return Path(os.environ.get("COMPILER_CACHE_DIR") or Path.home() / ".cache" / "compiler") / "autotune"


def schedule_to_json(schedule) -> dict:
    kind = next(k for k, cls in SCHEDULE_KINDS.items() if isinstance(schedule, cls))
    return {"kind": kind, **asdict(schedule)}


def schedule_from_json(data) -> GemmSchedule | DepthwiseSchedule | None:
    """The schedule, or None when `data` is not one the current constructors accept."""
    if not isinstance(data, dict) or data.get("kind") not in SCHEDULE_KINDS:
        return None
    knobs = {k: v for k, v in data.items() if k != "kind"}
    try:
        return SCHEDULE_KINDS[data["kind"]](**knobs)
    except (CompilerError, TypeError, ValueError):
        return None


class TuningCache:
    """The tuning results of one device."""

    def __init__(self, device: Device, root: Path | None = None):
        self.device = device
        self.path = (root or cache_root()) / f"{device.key}.json"

    def entries(self) -> dict[str, dict]:
        """Problem key -> entry, as on disk now; {} for anything unreadable."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("device") != self.device.describe():
            return {}
        entries = data.get("entries")
        return {k: v for k, v in entries.items() if isinstance(v, dict)} if isinstance(entries, dict) else {}

    def schedule(self, problem_key: str):
        """The cached schedule for a problem, or None (missing or no longer valid)."""
        entry = self.entries().get(problem_key)
        return None if entry is None else schedule_from_json(entry.get("schedule"))

    def put(self, problem_key: str, schedule, ms: float, default_ms: float, candidates: int) -> None:
        entries = self.entries()
        entries[problem_key] = {"schedule": schedule_to_json(schedule), "ms": ms, "default_ms": default_ms,
                                "candidates": candidates}
        self._write({"format": FORMAT, "device": self.device.describe(), "entries": entries})

    def _write(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def fingerprint(self) -> str:
        """A hash of this device's entries ("" when there are none): what a compile cache
        key must include, since tuned schedules change the code a model compiles to."""
        entries = self.entries()
        if not entries:
            return ""
        return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()[:20]
