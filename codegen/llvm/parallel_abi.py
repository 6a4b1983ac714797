"""The thread-pool entry points generated code calls (implemented in `csrc/thread_pool.c`,
linked into every model library by `llvm_compile.link_shared`).

    void cm_parallel(void (*fn)(void *), void *data, int nthreads, unsigned flags)
        runs fn(data) once per task (nthreads 0 = all cores); returns when all ran
    int cm_task_index(void), int cm_task_count(void)
        inside fn: which task this is, of how many; fn computes its slice from them
"""
PARALLEL = "cm_parallel"
TASK_INDEX = "cm_task_index"
TASK_COUNT = "cm_task_count"
