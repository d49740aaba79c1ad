/* A small thread pool running parallel-for loops. Workers sleep on a
 * condition variable between jobs; indices are handed out in chunks through
 * an atomic counter, so uneven rows balance themselves. */
#include "quantkit/common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct qk_pool {
    int n;              /* total threads including the caller */
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t cv_job, cv_done;
    uint64_t gen;       /* job generation */
    int active;         /* workers still inside the current job */
    int stop;
    /* the current job */
    qk_pool_fn fn;
    void *ctx;
    int64_t total, chunk;
    atomic_llong next;
};

typedef struct {
    qk_pool *p;
    int index;
} worker_arg;

static void run_chunks(qk_pool *p, int thread)
{
    for (;;) {
        int64_t start = atomic_fetch_add(&p->next, p->chunk);
        if (start >= p->total)
            break;
        int64_t end = start + p->chunk < p->total ? start + p->chunk : p->total;
        for (int64_t i = start; i < end; i++)
            p->fn(p->ctx, i, thread);
    }
}

static void *worker(void *arg)
{
    worker_arg *wa = arg;
    qk_pool *p = wa->p;
    int index = wa->index;
    free(wa);
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->gen == seen)
            pthread_cond_wait(&p->cv_job, &p->mu);
        if (p->stop)
            break;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        run_chunks(p, index);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0)
            pthread_cond_signal(&p->cv_done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int qk_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int qk_pool_create(qk_pool **out, int n_threads)
{
    *out = NULL;
    if (n_threads <= 0)
        n_threads = qk_cpu_count();
    if (n_threads > 1024)
        return qk_error(QK_EINVAL, "thread count %d is too large (limit 1024)", n_threads);
    qk_pool *p = calloc(1, sizeof *p);
    if (!p)
        return qk_error(QK_ENOMEM, "out of memory creating thread pool");
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_job, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    if (n_threads > 1) {
        p->th = calloc((size_t)n_threads - 1, sizeof *p->th);
        if (!p->th) {
            qk_pool_free(p);
            return qk_error(QK_ENOMEM, "out of memory creating thread pool");
        }
        for (int i = 0; i < n_threads - 1; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (!wa || pthread_create(&p->th[i], NULL, worker, wa ? (wa->p = p, wa->index = i + 1, wa) : NULL)) {
                free(wa);
                p->n = i + 1;
                qk_pool_free(p);
                return qk_error(QK_EIO, "cannot start thread %d", i + 1);
            }
        }
    }
    *out = p;
    return 0;
}

void qk_pool_free(qk_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv_job);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; p->th && i < p->n - 1; i++)
        pthread_join(p->th[i], NULL);
    free(p->th);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_job);
    pthread_cond_destroy(&p->cv_done);
    free(p);
}

int qk_pool_size(const qk_pool *p) { return p ? p->n : 1; }

void qk_pool_run(qk_pool *p, int64_t n, int64_t chunk, qk_pool_fn fn, void *ctx)
{
    if (n <= 0)
        return;
    if (!p || p->n == 1 || n == 1) {
        for (int64_t i = 0; i < n; i++)
            fn(ctx, i, 0);
        return;
    }
    if (chunk <= 0) {
        chunk = n / ((int64_t)p->n * 8);
        if (chunk < 1)
            chunk = 1;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->total = n;
    p->chunk = chunk;
    atomic_store(&p->next, 0);
    p->active = p->n - 1;
    p->gen++;
    pthread_cond_broadcast(&p->cv_job);
    pthread_mutex_unlock(&p->mu);
    run_chunks(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->active > 0)
        pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
