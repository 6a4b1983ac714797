"""compiler.autotune: schedules for the GEMM/conv microkernels chosen by measurement and
cached per device.

    device.py    the device key (CPU, features, lanes, thread count)
    problems.py  tuning problems: canonical form, cache key, name; a model's problems
    space.py     candidate schedules per problem (pruned, ordered, valid by construction)
    measure.py   compile candidates (thread pool), check results, time them
    tuner.py     the search for one problem within a budget
    cache.py     $COMPILER_CACHE_DIR/autotune/<device>.json (JSON, atomic writes)
    lookup.py    `schedule_for` (the code generator's entry) and the `tuning()` context
    model.py     tune every problem of a model (what `python -m compiler.autotune` runs)
"""
from .lookup import fingerprint, schedule_for, tuning

__all__ = ["fingerprint", "schedule_for", "tuning"]
