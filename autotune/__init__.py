"""compiler.autotune: schedules for the llvm target's GEMM/conv microkernels chosen by
measurement and cached per device. It sits above the code generator: the build gives the
code generator a `TunedSchedules`, the code generator never imports this package.

    device.py    the device key (CPU, features, lanes, thread count)
    problems.py  tuning problems: canonical form, cache key, name; a model's problems
    space.py     candidate schedules per problem (pruned, ordered, valid by construction)
    measure.py   compile candidates (thread pool), check results, time them
    tuner.py     the search for one problem within a budget
    cache.py     $COMPILER_CACHE_DIR/autotune/<device>.json (JSON, atomic writes)
    lookup.py    `TunedSchedules`: the schedule source a build hands the code generator
    model.py     tune every problem of a model (what `compile tune` runs)
"""
from .lookup import TunedSchedules, fingerprint

__all__ = ["TunedSchedules", "fingerprint"]
