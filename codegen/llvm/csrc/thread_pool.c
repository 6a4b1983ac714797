/* The thread pool behind every parallel loop of a compiled model.
 *
 *   void cm_parallel(void (*fn)(void *), void *data, int nthreads, unsigned flags);
 *   int  cm_task_index(void);   // inside fn: which task this call is
 *   int  cm_task_count(void);   // inside fn: how many tasks the loop was cut into
 *
 * Generated code outlines a parallel loop into fn, which computes its slice of the
 * iteration space from (cm_task_index, cm_task_count), exactly as it would from an
 * OpenMP thread number. The difference from libgomp's static teams, and the reason this
 * file exists: the loop is cut into more tasks than threads, tasks are claimed from one
 * atomic counter, and the caller only waits for tasks that somebody claimed. On a busy
 * machine a worker the OS has not scheduled yet simply claims nothing, and the caller
 * finishes the loop alone; with libgomp every parallel region waited for every team
 * thread, which cost a scheduler tick (4 ms) per kernel as soon as another process
 * competed for a core (measured: Inception v2 at 2 threads, 52 ms alone -> 290 ms).
 *
 * Workers spin briefly between jobs (consecutive kernels of one model run follow each
 * other within microseconds), then sleep on a futex, so an idle model costs no CPU.
 * Only one caller uses the pool at a time; a concurrent caller (another Python thread
 * running the same model) or a parallel loop inside a task runs its loop inline.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef void (*cm_task_fn)(void *);

enum {
    MAX_WORKERS = 255,
    TASKS_PER_THREAD = 4,  /* enough slack to rebalance when a thread is late */
    SPIN_BEFORE_SLEEP = 1 << 16,
    SPIN_BEFORE_YIELD = 1 << 10,
};

/* The current job. `claim` packs (job number << 32 | next unclaimed task): one atomic
 * word, so a late worker can never claim a task of a newer job with an older job's
 * function (its compare-and-swap fails once the job number moved on). */
static _Atomic uint64_t claim;
static _Atomic(cm_task_fn) job_fn;
static _Atomic(void *) job_data;
static _Atomic int job_tasks;
static _Atomic int job_workers; /* workers allowed to join (nthreads - 1) */
static _Atomic int job_done;    /* tasks finished */
static uint32_t job_number;     /* written by the caller holding pool_lock only */

static _Atomic uint32_t wake_word; /* futex word: bumped to wake sleeping workers */
static _Atomic int sleepers;
static int workers_started;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;

static _Thread_local int task_index = 0;
static _Thread_local int task_count = 1;
static _Thread_local int inside_task = 0;

int cm_task_index(void) { return task_index; }
int cm_task_count(void) { return task_count; }

static inline void cpu_relax(void) { __builtin_ia32_pause(); }

static void futex_wait(_Atomic uint32_t *word, uint32_t expected) {
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *word) {
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static void run_task(cm_task_fn fn, void *data, int index, int count) {
    int saved_index = task_index, saved_count = task_count, saved_inside = inside_task;
    task_index = index;
    task_count = count;
    inside_task = 1;
    fn(data);
    task_index = saved_index;
    task_count = saved_count;
    inside_task = saved_inside;
}

/* Claim and run tasks of job `job` until none is left or a newer job replaced it. */
static void run_tasks(uint32_t job, cm_task_fn fn, void *data, int count) {
    for (;;) {
        uint64_t cur = atomic_load(&claim);
        if ((uint32_t)(cur >> 32) != job || (int)(uint32_t)cur >= count)
            return;
        if (!atomic_compare_exchange_weak(&claim, &cur, cur + 1))
            continue;
        run_task(fn, data, (int)(uint32_t)cur, count);
        atomic_fetch_add(&job_done, 1);
    }
}

static void *worker_main(void *arg) {
    int id = (int)(intptr_t)arg;
    uint32_t seen = (uint32_t)(atomic_load(&claim) >> 32);
    for (;;) {
        uint64_t cur;
        int spins = 0;
        while ((uint32_t)((cur = atomic_load(&claim)) >> 32) == seen) {
            if (++spins < SPIN_BEFORE_SLEEP) {
                cpu_relax();
                continue;
            }
            uint32_t word = atomic_load(&wake_word);
            atomic_fetch_add(&sleepers, 1);
            if ((uint32_t)(atomic_load(&claim) >> 32) == seen)
                futex_wait(&wake_word, word);
            atomic_fetch_sub(&sleepers, 1);
            spins = 0;
        }
        seen = (uint32_t)(cur >> 32);
        /* Possibly a newer job's fields already: then run_tasks' job check refuses them. */
        cm_task_fn fn = atomic_load(&job_fn);
        void *data = atomic_load(&job_data);
        int count = atomic_load(&job_tasks);
        if (id < atomic_load(&job_workers))
            run_tasks(seen, fn, data, count);
    }
    return NULL;
}

static int default_threads(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Start workers up to `wanted` (called with pool_lock held); returns how many run. */
static int start_workers(int wanted) {
    if (wanted > MAX_WORKERS)
        wanted = MAX_WORKERS;
    while (workers_started < wanted) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&thread, &attr, worker_main, (void *)(intptr_t)workers_started);
        pthread_attr_destroy(&attr);
        if (failed)
            break; /* run with the workers we have */
        workers_started++;
    }
    return workers_started < wanted ? workers_started : wanted;
}

void cm_parallel(cm_task_fn fn, void *data, int nthreads, unsigned flags) {
    (void)flags;
    int threads = nthreads > 0 ? nthreads : default_threads();
    if (threads <= 1 || inside_task || pthread_mutex_trylock(&pool_lock) != 0) {
        run_task(fn, data, 0, 1);
        return;
    }
    int workers = start_workers(threads - 1);
    int count = (workers + 1) * TASKS_PER_THREAD;
    atomic_store(&job_fn, fn);
    atomic_store(&job_data, data);
    atomic_store(&job_tasks, count);
    atomic_store(&job_workers, workers);
    atomic_store(&job_done, 0);
    uint32_t job = ++job_number;
    atomic_store(&claim, (uint64_t)job << 32);
    if (atomic_load(&sleepers) > 0) {
        atomic_fetch_add(&wake_word, 1);
        futex_wake_all(&wake_word);
    }
    run_tasks(job, fn, data, count);
    /* Every task is claimed; wait for the ones still running elsewhere. */
    for (int spins = 0; atomic_load(&job_done) < count; spins++) {
        if (spins < SPIN_BEFORE_YIELD)
            cpu_relax();
        else
            sched_yield(); /* the task's thread may be waiting for this core */
    }
    pthread_mutex_unlock(&pool_lock);
}
