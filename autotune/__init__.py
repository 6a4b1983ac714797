"""compiler.autotune: schedules for the llvm target's GEMM/conv microkernels chosen by
measurement and kept per device in a SQLite database. It sits above the code generator: the build gives the
code generator a `TunedSchedules`, the code generator never imports this package.

    device.py    the device key (CPU, features, lanes, cores, thread count)
    problems.py  tuning problems: canonical form, cache key, name; a model's problems
    space.py     candidate schedules per problem (pruned, ordered, valid by construction)
    measure.py   compile candidates (thread pool), check results, time them
    tuner.py     the search for one problem within a budget
    database.py  $COMPILER_CACHE_DIR/autotune/tuning.sqlite3: every timing, per workload and device
    lookup.py    `TunedSchedules`: the schedule source a build hands the code generator
    model.py     tune every problem of a model (what `compile tune` runs)
"""
from .lookup import TunedSchedules, fingerprint

__all__ = ["TunedSchedules", "fingerprint"]
