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
 * Tasks have homes: participant p (the caller is 0, worker w is w + 1) owns tasks
 * [p * TASKS_PER_THREAD, (p + 1) * TASKS_PER_THREAD) and runs those first, so a kernel
 * called again (an RNN step's recurrent product, every run of a model) finds its slice of
 * the weights in the same core's L2; only when its own range is empty does a participant
 * steal, from the back of another's range. (With one shared counter the slices moved
 * between cores from call to call: an LSTM step's 1 MiB product, L2-resident, ran at the
 * speed of the shared L3.)
 *
 * A worker that finds itself on the caller's CPU moves off it. After an idle spell the
 * kernel wakes a sleeping worker on the waker's CPU (wake-affine placement), and the two
 * then share one core, the worker's spinning included, until the load balancer separates
 * them some milliseconds later: an LSTM's first three runs after a 0.2 s pause took
 * 1.6-2.5 ms against 0.95 steady.
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

/* The current job. `claim` holds (job number << 32): a new number announces a new job.
 * `range[p]` packs (job number << 32 | front << 16 | back), the unclaimed tasks [front,
 * back) of participant p: one atomic word per range, so a late worker can never claim a
 * task of a newer job with an older job's function (its compare-and-swap fails once the
 * job number moved on); the owner takes the front, thieves the back. */
static _Atomic uint64_t claim;
static _Atomic uint64_t range[MAX_WORKERS + 1];
static _Atomic(cm_task_fn) job_fn;
static _Atomic(void *) job_data;
static _Atomic int job_tasks;
static _Atomic int job_workers; /* workers allowed to join (nthreads - 1) */
static _Atomic int job_done;    /* tasks finished */
static uint32_t job_number;     /* written by the caller holding pool_lock only */

static _Atomic int job_cpu;     /* the CPU the caller ran on when it posted the job */
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

/* One task of participant `owner`'s range for job `job`: from the front when `own`, else
 * from the back; -1 when the range is empty or belongs to another job. */
static int take(uint32_t job, int owner, int own) {
    for (;;) {
        uint64_t cur = atomic_load(&range[owner]);
        int front = (int)((cur >> 16) & 0xffff), back = (int)(cur & 0xffff);
        if ((uint32_t)(cur >> 32) != job || front >= back)
            return -1;
        uint64_t next = own ? cur + (1u << 16) : cur - 1;
        if (atomic_compare_exchange_weak(&range[owner], &cur, next))
            return own ? front : back - 1;
    }
}

/* Run participant `me`'s own tasks of job `job`, then steal from the others until every
 * range is empty or a newer job replaced this one. */
static void run_tasks(uint32_t job, cm_task_fn fn, void *data, int count, int me, int participants) {
    for (int i = 0; i < participants; i++) {
        int owner = (me + i) % participants;
        int task;
        while ((task = take(job, owner, owner == me)) >= 0) {
            run_task(fn, data, task, count);
            atomic_fetch_add(&job_done, 1);
        }
    }
}

/* Move the calling worker off `cpu` now (its allowed set without `cpu`, then the whole
 * set again: the second call lets it move later but does not move it back). */
static void move_off(int cpu, const cpu_set_t *allowed) {
    cpu_set_t others = *allowed;
    CPU_CLR(cpu, &others);
    if (CPU_COUNT(&others) == 0 || sched_setaffinity(0, sizeof others, &others) != 0)
        return;
    sched_setaffinity(0, sizeof *allowed, allowed);
}

static void *worker_main(void *arg) {
    int id = (int)(intptr_t)arg;
    cpu_set_t allowed;
    int know_allowed = sched_getaffinity(0, sizeof allowed, &allowed) == 0;
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
        int workers = atomic_load(&job_workers);
        int caller_cpu = atomic_load(&job_cpu);
        if (id < workers && know_allowed && caller_cpu >= 0 && sched_getcpu() == caller_cpu)
            move_off(caller_cpu, &allowed);
        if (id < workers)
            run_tasks(seen, fn, data, count, id + 1, workers + 1);
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
    atomic_store(&job_cpu, sched_getcpu());
    uint32_t job = ++job_number;
    for (int p = 0; p <= workers; p++)
        atomic_store(&range[p], (uint64_t)job << 32 | (uint64_t)(p * TASKS_PER_THREAD) << 16
                                    | (uint64_t)((p + 1) * TASKS_PER_THREAD));
    atomic_store(&claim, (uint64_t)job << 32);
    if (atomic_load(&sleepers) > 0) {
        atomic_fetch_add(&wake_word, 1);
        futex_wake_all(&wake_word);
    }
    run_tasks(job, fn, data, count, 0, workers + 1);
    /* Every task is claimed; wait for the ones still running elsewhere. */
    for (int spins = 0; atomic_load(&job_done) < count; spins++) {
        if (spins < SPIN_BEFORE_YIELD)
            cpu_relax();
        else
            sched_yield(); /* the task's thread may be waiting for this core */
    }
    pthread_mutex_unlock(&pool_lock);
}
