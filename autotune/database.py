"""The tuning database: every timing the tuner takes, per workload and device, in SQLite.

    $COMPILER_CACHE_DIR/autotune/tuning.sqlite3        (COMPILER_CACHE_DIR: ~/.cache/compiler)

Tables (the schema's version is the file's `PRAGMA user_version`):
    devices  device -> its description (CPU, ISA features, lanes, cores, threads), JSON
    timings  one row per candidate timed: workload, device, compiler, space, schedule, ms,
             whether it was the default schedule, when
    best     per (workload, device, compiler, space): the schedule builds use, its ms, the
             default's ms, how many candidates were timed

A row is ours when its device (`Device.key`), compiler (`COMPILER`: the version and a hash of
the kernel generators a schedule drives) and space (`SPACE`: a hash of the search spaces'
knobs and choices) are this process's; any other row is foreign or stale and is never read,
so a new compiler or a changed search space tunes again instead of trusting old timings. A
row whose schedule no longer validates is skipped as well.

Each tuned problem is written in one transaction (its timings with its best row), in WAL
mode with a busy timeout: concurrent tuners are safe, and a tune interrupted half-way leaves
every problem it finished. A file that is not a database of this schema (corrupt,
truncated, another program's or another schema version's) is moved aside to
`tuning.sqlite3.corrupt` with a warning, and a new database is built in its place; reading
never raises into the code generator.

`export` / `import_records` move one device's rows between machines as JSON lines (never
pickle); records of another device are refused. The JSON files of earlier versions
(`<device key>.json`) are not read: their results are dropped, and the next tune rebuilds
them here.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import warnings
from dataclasses import asdict
from pathlib import Path

from ..codegen.llvm.microkernels import DEPTHWISE_SPACE, GEMM_SPACE, DepthwiseSchedule, GemmSchedule
from ..codegen.schedule import SPACES as LOOP_SPACES
from ..codegen.schedule import HeuristicDefault
from ..codegen.schedule import Schedule as LoopSchedule
from ..ir.errors import CompilerError
from .device import Device

SCHEMA_VERSION = 1
FILE_NAME = "tuning.sqlite3"
SCHEDULE_KINDS = {"gemm": GemmSchedule, "depthwise": DepthwiseSchedule, "loop": LoopSchedule,
                  "loop-default": HeuristicDefault}
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE devices (device TEXT PRIMARY KEY, description TEXT NOT NULL);
CREATE TABLE timings (id INTEGER PRIMARY KEY, workload TEXT NOT NULL, device TEXT NOT NULL,
                      compiler TEXT NOT NULL, space TEXT NOT NULL, schedule TEXT NOT NULL,
                      ms REAL NOT NULL, is_default INTEGER NOT NULL, created REAL NOT NULL);
CREATE INDEX timings_by_workload ON timings (workload, device, compiler, space);
CREATE TABLE best (workload TEXT NOT NULL, device TEXT NOT NULL, compiler TEXT NOT NULL,
                   space TEXT NOT NULL, schedule TEXT NOT NULL, ms REAL NOT NULL,
                   default_ms REAL NOT NULL, candidates INTEGER NOT NULL, created REAL NOT NULL,
                   PRIMARY KEY (workload, device, compiler, space));
"""
_TABLES = {"devices", "timings", "best"}
_OURS = "device = ? AND compiler = ? AND space = ?"  # a row of this device, compiler and search space


class _ForeignSchema(sqlite3.DatabaseError):
    """A database, but not of this schema version."""


def _not_ours(exc: sqlite3.DatabaseError) -> bool:
    """Whether `exc` says the file is no database of ours (as opposed to busy or locked)."""
    return isinstance(exc, _ForeignSchema) or getattr(exc, "sqlite_errorname", "") in ("SQLITE_NOTADB",
                                                                                         "SQLITE_CORRUPT")


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _compiler_fingerprint() -> str:
    """The installed version and the kernel generators' sources: what a schedule's meaning
    depends on (an edit of a generator between releases makes the old timings stale too)."""
    from importlib import metadata

    from ..codegen import schedule
    from ..codegen.llvm import emitter, microkernels

    try:
        version = metadata.version("compiler")
    except metadata.PackageNotFoundError:
        version = "unreleased"
    h = hashlib.sha256(version.encode())
    sources = sorted(Path(microkernels.__file__).resolve().parent.glob("*.py"))
    sources += [Path(schedule.__file__).resolve(), Path(emitter.__file__).resolve()]  # loop-IR schedules' meaning
    for path in sources:
        h.update(path.read_bytes())
    return f"{version}+{h.hexdigest()[:12]}"


COMPILER = _compiler_fingerprint()
SPACE = _hash(json.dumps({space_name: [[k.name, list(k.choices)] for k in knobs] for space_name, knobs in
                          (("gemm", GEMM_SPACE), ("depthwise", DEPTHWISE_SPACE),
                           *((f"loop-{c}", knobs) for c, knobs in LOOP_SPACES.items()))}, sort_keys=True))


def database_root() -> Path:
    """The folder of the database (read at each call: tests point it elsewhere)."""
    return Path(os.environ.get("COMPILER_CACHE_DIR") or Path.home() / ".cache" / "compiler") / "autotune"


def schedule_to_json(schedule) -> dict:
    kind = next(k for k, cls in SCHEDULE_KINDS.items() if isinstance(schedule, cls))
    return {"kind": kind, **asdict(schedule)}


def schedule_from_json(data) -> GemmSchedule | DepthwiseSchedule | LoopSchedule | HeuristicDefault | None:
    """The schedule, or None when `data` is not one the current constructors accept."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    if not isinstance(data, dict) or data.get("kind") not in SCHEDULE_KINDS:
        return None
    knobs = {k: v for k, v in data.items() if k != "kind"}
    try:
        return SCHEDULE_KINDS[data["kind"]](**knobs)
    except (CompilerError, TypeError, ValueError):
        return None


class TuningDatabase:
    """The tuning results of one device, in the database file under `root`."""

    def __init__(self, device: Device, root: Path | None = None):
        self.device = device
        self.path = (root or database_root()) / FILE_NAME
        self._ours = (device.key, COMPILER, SPACE)

    # ---- connection ----------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        """A connection to a database of this schema: created when missing, rebuilt (the
        old file moved aside with a warning) when it is not one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if not _not_ours(exc):
                raise
            self._move_aside(exc)
            return self._connect()

    def _move_aside(self, exc: Exception) -> None:
        aside = self.path.with_name(self.path.name + ".corrupt")
        warnings.warn(f"autotune: {self.path} is not a tuning database ({exc}); moved to {aside.name}, "
                      "starting a new one", RuntimeWarning, stacklevel=4)
        for suffix in ("-wal", "-shm"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
        os.replace(self.path, aside)

    @staticmethod
    def _wal(conn: sqlite3.Connection) -> None:
        """WAL mode (kept in the file, so set once). Switching takes a lock the busy timeout
        does not wait for: a tuner that loses that race to another retries."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            try:
                conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            self._wal(conn)
            # one read snapshot: a tuner creating the schema meanwhile is seen whole or not at all
            # (read apart, its commit could fall between the two reads: version 0 with every
            # table there, taken for a foreign database and moved aside with its rows)
            conn.execute("BEGIN")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            conn.execute("COMMIT")
            if version == 0 and not tables:
                conn.execute("BEGIN IMMEDIATE")
                if not conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:  # nobody beat us to it
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            elif version != SCHEMA_VERSION or not _TABLES <= tables:
                raise _ForeignSchema(f"schema version {version} with tables {sorted(tables)}, "
                                     f"expected version {SCHEMA_VERSION}")
            return conn
        except BaseException:
            conn.close()
            raise

    def _write(self, rows_of) -> None:
        """Run `rows_of(conn)` in one transaction; a file found corrupt on the way is moved
        aside and the write done again on a new database."""
        for attempt in (0, 1):
            conn = self._open()
            try:
                conn.execute("BEGIN IMMEDIATE")
                rows_of(conn)
                conn.execute("COMMIT")
                return
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if attempt or not (isinstance(exc, sqlite3.DatabaseError) and _not_ours(exc)):
                    raise
                corrupt = exc
            finally:
                conn.close()
            self._move_aside(corrupt)

    def _read(self, query: str, args: tuple = ()) -> list[tuple]:
        """Rows of a query on our rows; [] (with a warning) when the file cannot be read.
        Reading creates nothing: a machine that never tuned has no file."""
        if not self.path.exists():
            return []
        try:
            conn = self._open()
        except (OSError, sqlite3.Error) as exc:
            warnings.warn(f"autotune: cannot read {self.path}: {exc}", RuntimeWarning, stacklevel=3)
            return []
        try:
            return conn.execute(query, args).fetchall()
        except sqlite3.Error as exc:
            warnings.warn(f"autotune: cannot read {self.path}: {exc}", RuntimeWarning, stacklevel=3)
            return []
        finally:
            conn.close()

    # ---- reading -------------------------------------------------------------------------

    def entries(self) -> dict[str, dict]:
        """Workload -> {"schedule", "ms", "default_ms", "candidates"} of our valid rows."""
        rows = self._read("SELECT workload, schedule, ms, default_ms, candidates FROM best "
                          f"WHERE {_OURS} ORDER BY workload", self._ours)
        found = {}
        for workload, text, ms, default_ms, candidates in rows:
            schedule = schedule_from_json(text)
            if schedule is not None:
                found[workload] = {"schedule": schedule, "ms": ms, "default_ms": default_ms, "candidates": candidates}
        return found

    def schedule(self, workload: str):
        """The best schedule recorded for `workload`, or None (missing, stale or invalid)."""
        rows = self._read(f"SELECT schedule FROM best WHERE workload = ? AND {_OURS}",
                          (workload, *self._ours))
        return schedule_from_json(rows[0][0]) if rows else None

    def timings(self, workload: str) -> list[tuple[object, float, bool]]:
        """Every (schedule, ms, is default) timed for `workload` on this device, oldest first."""
        rows = self._read(f"SELECT schedule, ms, is_default FROM timings WHERE workload = ? AND {_OURS} ORDER BY id",
                          (workload, *self._ours))
        return [(s, ms, bool(d)) for text, ms, d in rows if (s := schedule_from_json(text)) is not None]

    def fingerprint(self) -> str:
        """A hash of the best schedules builds would use ("" when there are none): what a
        compile cache key must include, since tuned schedules change the compiled code."""
        entries = self.entries()
        if not entries:
            return ""
        text = json.dumps({k: schedule_to_json(e["schedule"]) for k, e in entries.items()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    # ---- writing -------------------------------------------------------------------------

    def put(self, workload: str, schedule, ms: float, default_ms: float, candidates: int,
            timings: list[tuple[object, float]] = ()) -> None:
        """Record one tuned problem: its best schedule and every candidate's timing (the
        default first), in one transaction."""
        now = time.time()
        timed = [(workload, s, float(t), i == 0) for i, (s, t) in enumerate(timings)]
        self._write(lambda conn: self._insert(conn, [(workload, schedule, float(ms), float(default_ms),
                                                      int(candidates))], timed, now))

    def _insert(self, conn: sqlite3.Connection, best: list[tuple], timed: list[tuple], now: float) -> None:
        conn.execute("INSERT OR REPLACE INTO devices VALUES (?, ?)",
                     (self.device.key, json.dumps(self.device.describe(), sort_keys=True)))
        conn.executemany("INSERT INTO timings (workload, device, compiler, space, schedule, ms, is_default, created)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         [(w, *self._ours, json.dumps(schedule_to_json(s), sort_keys=True), ms, int(d), now)
                          for w, s, ms, d in timed])
        conn.executemany("INSERT OR REPLACE INTO best VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [(w, *self._ours, json.dumps(schedule_to_json(s), sort_keys=True), ms, d, c, now)
                          for w, s, ms, d, c in best])

    # ---- moving records between machines ------------------------------------------------

    def export(self, path: Path) -> int:
        """Write this device's rows (best and timings) to `path` as JSON lines; how many rows."""
        head = {"format": "compiler-tuning", "schema": SCHEMA_VERSION, "device": self.device.describe(),
                "device_key": self.device.key, "compiler": COMPILER, "space": SPACE}
        best = self._read("SELECT workload, schedule, ms, default_ms, candidates FROM best "
                          f"WHERE {_OURS}", self._ours)
        timed = self._read("SELECT workload, schedule, ms, is_default FROM timings "
                           f"WHERE {_OURS} ORDER BY id", self._ours)
        with open(path, "w") as f:
            f.write(json.dumps(head, sort_keys=True) + "\n")
            for w, s, ms, d, c in best:
                f.write(json.dumps({"best": w, "schedule": json.loads(s), "ms": ms, "default_ms": d,
                                    "candidates": c}) + "\n")
            for w, s, ms, d in timed:
                f.write(json.dumps({"timing": w, "schedule": json.loads(s), "ms": ms, "is_default": bool(d)}) + "\n")
        return len(best) + len(timed)

    def import_records(self, path: Path) -> int:
        """Add the rows of an `export` file made on a machine with this device fingerprint,
        compiler and search space; refuses (CompilerError) any other file. How many rows."""
        try:
            lines = Path(path).read_text().splitlines()
            head = json.loads(lines[0]) if lines else None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise CompilerError(f"autotune import: cannot read {path}: {exc}") from None
        if not isinstance(head, dict) or head.get("format") != "compiler-tuning":
            raise CompilerError(f"autotune import: {path} is not a tuning export (its first line is no header)")
        for field, ours in (("device_key", self.device.key), ("compiler", COMPILER), ("space", SPACE)):
            if head.get(field) != ours:
                raise CompilerError(f"autotune import: {path} was tuned for {field} {head.get(field)!r}, this "
                                    f"machine has {ours!r}" + (f" ({self.device.describe()})" if field == "device_key"
                                                               else ""))
        best, timed = [], []
        for number, line in enumerate(lines[1:], start=2):
            try:
                row = json.loads(line)
                schedule = schedule_from_json(row["schedule"])
                if schedule is None:
                    raise ValueError(f"schedule {row['schedule']} is not valid here")
                if "best" in row:
                    best.append((row["best"], schedule, float(row["ms"]), float(row["default_ms"]),
                                 int(row["candidates"])))
                else:
                    timed.append((row["timing"], schedule, float(row["ms"]), bool(row["is_default"])))
            except (ValueError, KeyError, TypeError) as exc:
                raise CompilerError(f"autotune import: {path} line {number}: {exc}") from None
        self._write(lambda conn: self._insert(conn, best, timed, time.time()))
        return len(best) + len(timed)
