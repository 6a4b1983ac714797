"""compiler.autotune: schedules for the llvm target's kernels chosen by measurement and kept
per device in a SQLite database: the GEMM/conv microkernels and every loop-IR kernel. It
sits above the code generator: the build gives the code generator a `TunedSchedules`, the
code generator never imports this package.

    device.py        the device key (CPU, features, lanes, cores, thread count)
    problems.py      microkernel tuning problems: canonical form, cache key, name; a model's problems
    space.py         candidate microkernel schedules per problem (pruned, ordered, valid by construction)
    measure.py       compile candidates (thread pool), check results, time them
    tuner.py         the search for one microkernel problem within a budget
    loop_kernels.py  the search for one loop-IR kernel over its class's space (codegen.schedule.SPACES)
    cost_model.py    the learned model (lightgbm, optional) that orders loop-kernel candidates
    database.py      $COMPILER_CACHE_DIR/autotune/tuning.sqlite3: every timing, per workload and device
    lookup.py        `TunedSchedules`: the schedule source a build hands the code generator
    model.py         tune every kernel of a model (what `compile tune` runs)
    distributed.py   the same on a Ray cluster (`compile tune --ray`)
"""
from .lookup import TunedSchedules, fingerprint

__all__ = ["TunedSchedules", "fingerprint"]
