"""The thread pool linked into every model (`codegen/llvm/csrc/thread_pool.c`): every task of
every parallel call runs exactly once, whatever the thread count; each thread runs its own
tasks call after call (cache affinity); a parallel call inside a task runs inline;
concurrent callers each get all their tasks; compiled models use it instead of libgomp."""
from __future__ import annotations

import ctypes
import os
import subprocess
import tempfile
import threading

import numpy as np
import pytest

from compiler.codegen.llvm.toolchain import THREAD_POOL_SOURCE, _c_compiler

# A driver around the pool: each task adds 1 to hits[its index] (and records the count it
# was given); `nested` tasks start a parallel call of their own.
DRIVER = r"""
#include <stdatomic.h>
void cm_parallel(void (*fn)(void *), void *data, int nthreads, unsigned flags);
int cm_task_index(void);
int cm_task_count(void);

struct job { _Atomic int *hits; _Atomic int *counts; int nested; int threads; };

static void leaf(void *p) {
    struct job *j = p;
    atomic_fetch_add(&j->hits[cm_task_index()], 1);
    atomic_store(&j->counts[cm_task_index()], cm_task_count());
}

static void outer(void *p) {
    struct job *j = p;
    leaf(p);
    if (j->nested) {
        struct job inner = { j->hits + 1024, j->counts + 1024, 0, j->threads };
        cm_parallel(leaf, &inner, j->threads, 0);
    }
}

void run(_Atomic int *hits, _Atomic int *counts, int threads, int nested, int repeat) {
    struct job j = { hits, counts, nested, threads };
    for (int r = 0; r < repeat; r++)
        cm_parallel(outer, &j, threads, 0);
}
"""


# Each task of `calls` parallel calls records whether the calling thread ran it, then works
# for 20 us (long enough that both threads take part).
AFFINITY_DRIVER = r"""
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
void cm_parallel(void (*fn)(void *), void *data, int nthreads, unsigned flags);
int cm_task_index(void);
int cm_task_count(void);

struct job { int *on_caller; int caller; int count; };

static void work(double us) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3 < us);
}

static void task(void *p) {
    struct job *j = p;
    j->count = cm_task_count();
    j->on_caller[cm_task_index()] = (int)syscall(SYS_gettid) == j->caller;
    work(20);
}

int affinity(int *on_caller, int threads, int calls) {
    int count = 0;
    for (int r = 0; r < calls; r++) {
        struct job j = { on_caller + r * 64, (int)syscall(SYS_gettid), 0 };
        cm_parallel(task, &j, threads, 0);
        count = j.count;
    }
    return count;
}
"""


# The caller pins itself to its CPU and the pool's worker to the same CPU (as the kernel's
# wake-affine placement does after an idle spell), then runs jobs whose tasks record the
# CPU they ran on (-1: the caller's own tasks).
COLOCATED_DRIVER = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
void cm_parallel(void (*fn)(void *), void *data, int nthreads, unsigned flags);
int cm_task_index(void);

struct job { int caller; int *cpu; _Atomic int worker; };

static void task(void *p) {
    struct job *j = p;
    int me = (int)syscall(SYS_gettid);
    j->cpu[cm_task_index()] = me == j->caller ? -1 : sched_getcpu();
    if (me != j->caller)
        atomic_store(&j->worker, me);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < 20000);
}

/* Returns the caller's CPU, or -1 when no worker took part to be pinned. */
int colocated(int *cpu) {
    struct job j = { (int)syscall(SYS_gettid), cpu, 0 };
    for (int r = 0; r < 50 && !atomic_load(&j.worker); r++)
        cm_parallel(task, &j, 2, 0);
    if (!atomic_load(&j.worker))
        return -1;
    int here = sched_getcpu();
    cpu_set_t one, saved;
    sched_getaffinity(0, sizeof saved, &saved);
    CPU_ZERO(&one);
    CPU_SET(here, &one);
    sched_setaffinity(0, sizeof one, &one);
    sched_setaffinity(atomic_load(&j.worker), sizeof one, &one);
    usleep(20000);
    /* Calls with pauses between them, as a model's runs: the worker gets the shared CPU
     * in a pause, sees it is the caller's, and leaves. Reported: the CPUs of the first
     * call after the tenth in which the worker took part. */
    for (int r = 0; r < 400; r++) {
        for (int i = 0; i < 64; i++)
            cpu[i] = -2;
        atomic_store(&j.worker, 0);
        cm_parallel(task, &j, 2, 0);
        if (r >= 10 && atomic_load(&j.worker))
            break;
        usleep(500);
    }
    sched_setaffinity(0, sizeof saved, &saved);
    return here;
}
"""


def _build(driver_source: str, d: str):
    driver = os.path.join(d, "driver.c")
    with open(driver, "w") as f:
        f.write(driver_source)
    so = os.path.join(d, "pool.so")
    subprocess.run([_c_compiler(), "-std=gnu11", "-O2", "-fPIC", "-shared", "-o", so, driver, str(THREAD_POOL_SOURCE),
                    "-lpthread"], check=True, capture_output=True)
    return ctypes.CDLL(so)


@pytest.fixture(scope="module")
def pool_library():
    with tempfile.TemporaryDirectory(prefix="cm-pool-test-") as d:
        lib = _build(DRIVER, d)
        lib.run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        yield lib


def _run(lib, threads, nested=0, repeat=1):
    hits = np.zeros(2048, np.int32)
    counts = np.zeros(2048, np.int32)
    lib.run(hits.ctypes.data, counts.ctypes.data, threads, nested, repeat)
    return hits, counts


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_every_task_runs_exactly_once(pool_library, threads):
    repeat = 500
    hits, counts = _run(pool_library, threads, repeat=repeat)
    ran = np.flatnonzero(hits[:1024])
    assert len(ran) >= 1
    count = int(counts[ran[0]])
    # Tasks 0..count-1 ran `repeat` times each and nothing else ran.
    assert list(ran) == list(range(count)) and (hits[:count] == repeat).all()
    assert count == 1 if threads == 1 else count >= threads


def test_each_thread_runs_its_own_tasks_call_after_call():
    """The caller owns the first half of a 2-thread call's tasks and the worker the second:
    a kernel called again finds its slice of the data in the same core's cache. (One shared
    counter, the earlier design, handed out each task to either thread about half the time.)"""
    calls = 300
    with tempfile.TemporaryDirectory(prefix="cm-pool-test-") as d:
        lib = _build(AFFINITY_DRIVER, d)
        on_caller = np.zeros(calls * 64, np.int32)
        count = lib.affinity(ctypes.c_void_p(on_caller.ctypes.data), 2, calls)
    on_caller = on_caller.reshape(calls, 64)[:, :count]
    # Stealing keeps a late thread from stalling the call, so not every call is exact.
    assert on_caller[:, :count // 2].mean() > 0.75
    assert 1 - on_caller[:, count // 2:].mean() > 0.75


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_a_worker_on_the_callers_cpu_moves_off_it():
    with tempfile.TemporaryDirectory(prefix="cm-pool-test-") as d:
        lib = _build(COLOCATED_DRIVER, d)
        cpus = np.full(64, -2, np.int32)
        here = lib.colocated(ctypes.c_void_p(cpus.ctypes.data))
    assert here >= 0, "no worker took part in 50 calls"
    worker_cpus = [int(c) for c in cpus if c >= 0]
    # Pinned to the caller's CPU, the worker would have run its tasks there (or none at all,
    # the caller stealing them while the two share the core).
    assert worker_cpus and here not in worker_cpus


def test_all_cores_by_default(pool_library):
    hits, counts = _run(pool_library, 0)
    assert int(counts[0]) >= len(os.sched_getaffinity(0)) or len(os.sched_getaffinity(0)) == 1


def test_a_parallel_call_inside_a_task_runs_inline(pool_library):
    hits, counts = _run(pool_library, 2, nested=1, repeat=50)
    outer_tasks = int(counts[0])
    # Each outer task ran the inner loop inline: one task of count 1, once per outer task.
    assert (hits[:outer_tasks] == 50).all()
    assert int(hits[1024]) == 50 * outer_tasks and int(counts[1024]) == 1 and hits[1025:].sum() == 0


def test_concurrent_callers_each_get_all_their_tasks(pool_library):
    results = []

    def caller():
        results.append(_run(pool_library, 2, repeat=300))

    threads = [threading.Thread(target=caller) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3
    for hits, counts in results:
        # Each call ran either on the pool (tasks 0..n-1 once each) or, finding the pool busy,
        # inline (task 0 of 1): task 0 ran every time, the others as often as each other.
        assert hits[0] == 300
        n = int(counts[1]) if hits[1] else 1
        assert (hits[1:n] == hits[1]).all() and hits[n:1024].sum() == 0


def test_models_link_the_pool_not_libgomp():
    from compiler.codegen.llvm.toolchain import link_shared, thread_pool_object

    obj = thread_pool_object(_c_compiler())
    assert b"cm_parallel" in obj and b"GOMP_parallel" not in obj
    with tempfile.NamedTemporaryFile(suffix=".so") as f:
        f.write(link_shared([]))
        f.flush()
        out = subprocess.run(["ldd", f.name], capture_output=True, text=True).stdout
    assert "libgomp" not in out
