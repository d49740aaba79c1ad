/* XXH3-64 helpers over libxxhash. */
#include "quantkit/common.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

/* A libxxhash built with DISPATCH=1 (Debian's; upstream's Makefile default)
 * also exports *_dispatch variants that pick SSE2, AVX2 or AVX-512 at run
 * time, while the plain functions are built for the baseline ISA: same
 * hashes, 2-3x faster here, and these hashes read every byte of a model.
 * Weak references, so a library without them still links (they are then
 * NULL and the plain functions run). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(XXH_NAMESPACE)
XXH64_hash_t XXH3_64bits_dispatch(const void *input, size_t len) __attribute__((weak));
XXH_errorcode XXH3_64bits_update_dispatch(XXH3_state_t *state, const void *input, size_t len) __attribute__((weak));
#define HASH64(p, n) (XXH3_64bits_dispatch ? XXH3_64bits_dispatch(p, n) : XXH3_64bits(p, n))
#define HASH64_UPDATE(st, p, n) \
    (XXH3_64bits_update_dispatch ? XXH3_64bits_update_dispatch(st, p, n) : XXH3_64bits_update(st, p, n))
#else
#define HASH64(p, n) XXH3_64bits(p, n)
#define HASH64_UPDATE(st, p, n) XXH3_64bits_update(st, p, n)
#endif

uint64_t qk_hash64(const void *data, size_t n) { return (uint64_t)HASH64(data, n); }

static uint64_t g_table_seed;
static pthread_once_t g_table_seed_once = PTHREAD_ONCE_INIT;

static void table_seed_init(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s) {
        /* no entropy yet (early boot): time, pid and ASLR still differ per run */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 17) ^ (uint64_t)(uintptr_t)&s;
    }
    g_table_seed = s;
}

uint64_t qk_hash64_table(const void *data, size_t n)
{
    pthread_once(&g_table_seed_once, table_seed_init);
    return (uint64_t)XXH3_64bits_withSeed(data, n, g_table_seed);
}

struct qk_hasher {
    XXH3_state_t *st;
};

int qk_hasher_new(qk_hasher **out)
{
    *out = NULL;
    qk_hasher *h = malloc(sizeof *h);
    if (!h)
        return qk_error(QK_ENOMEM, "out of memory");
    h->st = XXH3_createState();
    if (!h->st) {
        free(h);
        return qk_error(QK_ENOMEM, "out of memory");
    }
    XXH3_64bits_reset(h->st);
    *out = h;
    return 0;
}

void qk_hasher_update(qk_hasher *h, const void *data, size_t n)
{
    if (n)
        HASH64_UPDATE(h->st, data, n);
}

uint64_t qk_hasher_digest(const qk_hasher *h) { return (uint64_t)XXH3_64bits_digest(h->st); }

void qk_hasher_reset(qk_hasher *h) { XXH3_64bits_reset(h->st); }

void qk_hasher_free(qk_hasher *h)
{
    if (!h)
        return;
    XXH3_freeState(h->st);
    free(h);
}

void qk_hash_hex(uint64_t h, char buf[17]) { snprintf(buf, 17, "%016llx", (unsigned long long)h); }

int qk_hash_file(uint64_t *out, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qk_error(errno == ENOENT ? QK_ENOTFOUND : QK_EIO, "%s: %s", path, strerror(errno));
    qk_hasher *h = NULL;
    size_t cap = 4u << 20;
    uint8_t *buf = malloc(cap);
    int rc = buf ? qk_hasher_new(&h) : qk_error(QK_ENOMEM, "out of memory");
    while (!rc) {
        ssize_t r = read(fd, buf, cap);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rc = qk_error(QK_EIO, "%s: read: %s", path, strerror(errno));
        if (r <= 0)
            break;
        qk_hasher_update(h, buf, (size_t)r);
    }
    if (!rc)
        *out = qk_hasher_digest(h);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    qk_hasher_free(h);
    free(buf);
    return rc;
}
