/* Atomic output files and directories.
 *
 * A file is created unnamed with O_TMPFILE in the destination directory
 * (falling back to a named ".NAME.qk-tmp-XXXXXX" where the file system lacks
 * it), filled through a large buffer, fsynced, given a temporary name with
 * linkat() and renamed over the destination (large files through a writer
 * thread, with O_DIRECT where possible: see struct qk_afile). An unnamed file vanishes by
 * itself if the process dies, even by SIGKILL; named temporaries are
 * registered so the signal handler can remove them. */
#include "quantkit/common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
/* fuzz builds (make fuzz) write small files thousands of times a second, and
 * ASan poisons the shadow of each 8 MiB buffer: ~2 ms per output file */
#define AFILE_BUF (64u << 10)
#else
#define AFILE_BUF (8u << 20)
#endif
/* Written bytes left in the page cache behind the write position. Beyond
 * it, pages are written back and dropped as the file grows (see writeback). */
#define AFILE_WB_BEHIND (64u << 20)
#define N_SLOTS 64

/* Temporary paths the signal handler removes: files are unlinked, directories
 * are emptied (one level) and removed. */
static struct {
    volatile sig_atomic_t used;
    int is_dir;
    char path[PATH_MAX];
} g_slots[N_SLOTS];

static int slot_add(const char *path, int is_dir)
{
    for (int i = 0; i < N_SLOTS; i++) {
        if (!g_slots[i].used && strlen(path) < PATH_MAX) {
            snprintf(g_slots[i].path, PATH_MAX, "%s", path);
            g_slots[i].is_dir = is_dir;
            g_slots[i].used = 1;
            return i;
        }
    }
    return -1;
}

static void slot_del(int i)
{
    if (i >= 0)
        g_slots[i].used = 0;
}

/* Async-signal-safe removal of a directory's entries (one level) and itself. */
static void rm_dir_signal_safe(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        char buf[4096];
        long n;
        while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
            for (long off = 0; off < n;) {
                struct {
                    uint64_t ino;
                    int64_t off;
                    unsigned short reclen;
                    unsigned char type;
                    char name[];
                } *d = (void *)(buf + off);
                if (strcmp(d->name, ".") && strcmp(d->name, ".."))
                    unlinkat(fd, d->name, 0);
                off += d->reclen;
            }
        }
        close(fd);
    }
    rmdir(path);
}

static void on_signal(int sig)
{
    for (int i = 0; i < N_SLOTS; i++) {
        if (g_slots[i].used) {
            if (g_slots[i].is_dir)
                rm_dir_signal_safe(g_slots[i].path);
            else
                unlink(g_slots[i].path);
        }
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void qk_cleanup_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    /* A file-size limit makes write() fail with EFBIG instead of killing us. */
    signal(SIGXFSZ, SIG_IGN);
}

/* Large outputs are written by a writer thread, so the producer's CPUs
 * never wait for the disk: qk_afile_write() copies into a buffer of
 * AFILE_BUF bytes; a full buffer is queued (at most AFILE_NBUF - 1 of them)
 * and the thread writes it. Full buffers keep the file offset a multiple of
 * AFILE_BUF, so they go out with O_DIRECT where the file system takes it
 * (no page-cache copy, no dirty pages to reclaim: ~1.7 GB/s here against
 * ~0.4-0.9 GB/s buffered); anything else (small files, the tail, patches)
 * is written plainly. The thread starts with the first full buffer; a file
 * that never fills one is written at commit by the caller. */
#define AFILE_NBUF 4

struct qk_afile {
    int fd;
    char *path;   /* destination */
    char *tmp;    /* named temporary (fallback) or NULL */
    int slot;
    uint8_t *buf; /* the buffer being filled: bufs[cur] */
    size_t buf_n;
    uint64_t handed;  /* bytes handed to the writer (queued or written) */
    int failed;       /* the caller saw an error: no more writes */
    /* writer */
    uint8_t *bufs[AFILE_NBUF];
    size_t lens[AFILE_NBUF];
    int cur;          /* bufs[cur] is the producer's */
    int head, count;  /* queue: bufs[head], ... (count of them) */
    int thread_on, stop;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_free;
    /* written by the writer (or by the caller when no writer runs) */
    uint64_t flushed;    /* bytes in the file */
    uint64_t wb_started; /* [0, wb_started) has been handed to writeback */
    uint64_t wb_dropped; /* [0, wb_dropped) is on disk and out of the page cache */
    int direct;          /* 1: fd has O_DIRECT on; -1: it does not work here */
    int err;             /* errno of a failed write (0: none) */
    uint64_t err_at;     /* bytes in the file when it failed */
};

static char *dir_of(const char *path)
{
    char *c = strdup(path);
    if (!c)
        return NULL;
    char *d = strdup(dirname(c));
    free(c);
    return d;
}

/* ".NAME.qk-KIND-PID-XXXXXX" beside path: KIND "tmp" for what is being
 * written, "old" for a directory being replaced. The PID lets a later run
 * recognize what a killed one left behind (sweep_stale). */
static char *tmp_name_kind(const char *path, const char *kind)
{
    char *c = strdup(path);
    if (!c)
        return NULL;
    char *base = basename(c);
    char *dir = dir_of(path);
    size_t n = strlen(path) + 64;
    char *t = malloc(n);
    if (t && dir)
        snprintf(t, n, "%s/.%s.qk-%s-%ld-XXXXXX", dir, base, kind, (long)getpid());
    free(c);
    free(dir);
    return t;
}

static char *tmp_name_for(const char *path) { return tmp_name_kind(path, "tmp"); }

static void sweep_stale(const char *path);

int qk_afile_open(qk_afile **out, const char *path)
{
    *out = NULL;
    sweep_stale(path);
    qk_afile *f = calloc(1, sizeof *f);
    if (!f)
        return qk_error(QK_ENOMEM, "%s: out of memory", path);
    f->fd = -1;
    f->slot = -1;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv_work, NULL);
    pthread_cond_init(&f->cv_free, NULL);
    f->path = strdup(path);
    char *dir = dir_of(path);
    if (posix_memalign((void **)&f->bufs[0], 4096, AFILE_BUF))
        f->bufs[0] = NULL;
    f->buf = f->bufs[0];
    if (!f->path || !dir || !f->buf) {
        free(dir);
        qk_afile_abort(f);
        return qk_error(QK_ENOMEM, "%s: out of memory", path);
    }
    if (qk_is_dir(path)) {
        free(dir);
        qk_afile_abort(f);
        return qk_error(QK_EIO, "%s: is a directory", path);
    }
    f->fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
    if (f->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        f->tmp = tmp_name_for(path);
        if (f->tmp) {
            f->fd = mkostemp(f->tmp, O_CLOEXEC);
            if (f->fd >= 0) {
                fchmod(f->fd, 0644);
                f->slot = slot_add(f->tmp, 0);
            }
        }
    }
    if (f->fd < 0) {
        int e = errno;
        qk_error(QK_EIO, "%s: cannot create output in '%s': %s", path, dir, strerror(e));
        free(dir);
        qk_afile_abort(f);
        return QK_EIO;
    }
    free(dir);
    *out = f;
    return 0;
}

/* Stream large outputs to disk instead of letting them pile up as dirty
 * page cache (plain writes only; O_DIRECT ones bypass it): start writeback
 * of what was just written, and once a range is AFILE_WB_BEHIND behind the
 * write position wait for it and drop it. A multi-GB output written plainly
 * fills memory with dirty pages whose reclaim costs more CPU than the copy
 * (4 GB: 10 s system time plainly, 1.3 s this way) and leaves fsync() a
 * long queue. Hints only: errors are ignored, and fsync() at commit still
 * makes the file durable. */
static void writeback(qk_afile *f)
{
    if (f->flushed > f->wb_started) {
        sync_file_range(f->fd, (off_t)f->wb_started, (off_t)(f->flushed - f->wb_started), SYNC_FILE_RANGE_WRITE);
        f->wb_started = f->flushed;
    }
    if (f->flushed >= f->wb_dropped + 2 * (uint64_t)AFILE_WB_BEHIND) {
        uint64_t end = f->flushed - AFILE_WB_BEHIND;
        sync_file_range(f->fd, (off_t)f->wb_dropped, (off_t)(end - f->wb_dropped),
                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
        posix_fadvise(f->fd, (off_t)f->wb_dropped, (off_t)(end - f->wb_dropped), POSIX_FADV_DONTNEED);
        f->wb_dropped = end;
    }
}

/* O_DIRECT on (1) or off (0) for the writes that follow; 0 on success. */
static int set_direct(qk_afile *f, int on)
{
    int fl = fcntl(f->fd, F_GETFL);
    if (fl < 0 || fcntl(f->fd, F_SETFL, on ? fl | O_DIRECT : fl & ~O_DIRECT) != 0)
        return -1;
    f->direct = on;
    return 0;
}

/* Append n bytes to the file: by the writer thread, or by the caller when
 * none runs. A failure is left in f->err (later appends do nothing). */
static void put(qk_afile *f, const uint8_t *p, size_t n)
{
    if (f->err)
        return;
    const int aligned = n % AFILE_BUF == 0 && f->flushed % AFILE_BUF == 0 && (uintptr_t)p % 4096 == 0;
    if (aligned && f->direct == 0 && set_direct(f, 1) != 0)
        f->direct = -1;
    else if (!aligned && f->direct == 1 && set_direct(f, 0) != 0) {
        f->err = errno;
        f->err_at = f->flushed;
        return;
    }
    while (n) {
        ssize_t w = write(f->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EINVAL && f->direct == 1 && set_direct(f, 0) == 0) {
            f->direct = -1; /* fcntl took O_DIRECT, the file system does not */
            continue;
        }
        if (w <= 0) {
            f->err = w < 0 ? errno : ENOSPC;
            f->err_at = f->flushed;
            return;
        }
        p += w;
        n -= (size_t)w;
        f->flushed += (uint64_t)w;
    }
    if (f->direct != 1)
        writeback(f);
}

static int write_error(qk_afile *f)
{
    f->failed = 1;
    return qk_error(QK_EIO, "%s: write failed after %llu bytes: %s", f->path, (unsigned long long)f->err_at,
                    strerror(f->err));
}

static void *writer_main(void *arg)
{
    qk_afile *f = arg;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (!f->count && !f->stop)
            pthread_cond_wait(&f->cv_work, &f->mu);
        if (!f->count)
            break;
        const int i = f->head;
        pthread_mutex_unlock(&f->mu);
        put(f, f->bufs[i], f->lens[i]);
        pthread_mutex_lock(&f->mu);
        f->head = (f->head + 1) % AFILE_NBUF;
        f->count--;
        pthread_cond_broadcast(&f->cv_free);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

/* Start the writer with its buffers; on failure the caller writes itself. */
static void start_writer(qk_afile *f)
{
    f->thread_on = -1;
    for (int i = 1; i < AFILE_NBUF; i++)
        if (posix_memalign((void **)&f->bufs[i], 4096, AFILE_BUF))
            return;
    if (pthread_create(&f->thread, NULL, writer_main, f) == 0)
        f->thread_on = 1;
}

static void stop_writer(qk_afile *f)
{
    if (f->thread_on != 1)
        return;
    pthread_mutex_lock(&f->mu);
    f->stop = 1;
    pthread_cond_signal(&f->cv_work);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL);
    f->thread_on = 0;
}

/* Hand the filled part of the current buffer on: queued for the writer
 * (waiting while every other buffer is queued), or written now. */
static int hand(qk_afile *f)
{
    if (f->buf_n == 0)
        return 0;
    if (f->thread_on == 0 && f->buf_n == AFILE_BUF)
        start_writer(f);
    if (f->thread_on != 1) {
        put(f, f->buf, f->buf_n);
        f->handed += f->buf_n;
        f->buf_n = 0;
        return f->err ? write_error(f) : 0;
    }
    pthread_mutex_lock(&f->mu);
    f->lens[f->cur] = f->buf_n;
    f->count++;
    pthread_cond_signal(&f->cv_work);
    f->handed += f->buf_n;
    f->buf_n = 0;
    while (f->count == AFILE_NBUF)
        pthread_cond_wait(&f->cv_free, &f->mu);
    f->cur = (f->head + f->count) % AFILE_NBUF;
    const int e = f->err;
    pthread_mutex_unlock(&f->mu);
    f->buf = f->bufs[f->cur];
    return e ? write_error(f) : 0;
}

/* Everything written so far is in the file (or failed); the writer idles. */
static int drain(qk_afile *f)
{
    int rc = hand(f);
    if (f->thread_on == 1) {
        pthread_mutex_lock(&f->mu);
        while (f->count)
            pthread_cond_wait(&f->cv_free, &f->mu);
        const int e = f->err;
        pthread_mutex_unlock(&f->mu);
        if (!rc && e)
            rc = write_error(f);
    }
    return rc;
}

int qk_afile_write(qk_afile *f, const void *buf, size_t n)
{
    if (f->failed)
        return qk_error(QK_EIO, "%s: earlier write failed", f->path);
    const uint8_t *p = buf;
    while (n) {
        size_t k = AFILE_BUF - f->buf_n;
        if (k > n)
            k = n;
        memcpy(f->buf + f->buf_n, p, k);
        f->buf_n += k;
        p += k;
        n -= k;
        if (f->buf_n == AFILE_BUF) {
            int rc = hand(f);
            if (rc)
                return rc;
        }
    }
    return 0;
}

int qk_afile_write_zeros(qk_afile *f, size_t n)
{
    static const uint8_t zeros[4096];
    while (n) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        int rc = qk_afile_write(f, zeros, k);
        if (rc)
            return rc;
        n -= k;
    }
    return 0;
}

int qk_afile_pwrite(qk_afile *f, const void *buf, size_t n, uint64_t off)
{
    uint64_t end;
    if (qk_add_u64(off, n, &end) || end > qk_afile_tell(f))
        return qk_error(QK_EINVAL, "%s: patch [%llu, +%zu) beyond the %llu bytes written", f->path,
                        (unsigned long long)off, n, (unsigned long long)qk_afile_tell(f));
    if (f->failed)
        return qk_error(QK_EIO, "%s: earlier write failed", f->path);
    int rc = drain(f);
    if (rc)
        return rc;
    /* patches are small and unaligned: plain writes from here on (the
     * writer is idle, so f->direct is ours) */
    if (f->direct == 1 && set_direct(f, 0) != 0) {
        f->failed = 1;
        return qk_error(QK_EIO, "%s: fcntl: %s", f->path, strerror(errno));
    }
    f->direct = -1;
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = pwrite(f->fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            f->failed = 1;
            return qk_error(QK_EIO, "%s: write failed: %s", f->path, strerror(w < 0 ? errno : ENOSPC));
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

uint64_t qk_afile_tell(const qk_afile *f) { return f->handed + f->buf_n; }

const char *qk_afile_path(const qk_afile *f) { return f->path; }

int qk_afile_commit(qk_afile *f)
{
    int rc = f->failed ? qk_error(QK_EIO, "%s: earlier write failed", f->path) : drain(f);
    stop_writer(f);
    if (!rc && fsync(f->fd) != 0)
        rc = qk_error(QK_EIO, "%s: fsync: %s", f->path, strerror(errno));
    int linked = 0; /* the unnamed file was linked at its destination directly */
    if (!rc && !f->tmp) {
        /* A new destination: link the unnamed file there, atomically, with
         * no temporary name a kill could leave behind. */
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", f->fd);
        linked = linkat(AT_FDCWD, proc, AT_FDCWD, f->path, AT_SYMLINK_FOLLOW) == 0;
    }
    if (!rc && !f->tmp && !linked) {
        /* An existing destination (or no /proc): give the unnamed file a
         * temporary name, then rename it over the destination. */
        f->tmp = tmp_name_for(f->path);
        if (!f->tmp)
            rc = qk_error(QK_ENOMEM, "%s: out of memory", f->path);
        for (int attempt = 0; !rc; attempt++) {
            char *x = strstr(f->tmp, "XXXXXX");
            if (x == NULL) {
                rc = qk_error(QK_EIO, "%s: bad temporary name", f->path);
                break;
            }
            snprintf(x, 7, "%06x", (unsigned)((getpid() * 2654435761u + (unsigned)attempt * 40503u) & 0xffffff));
            char proc[64];
            snprintf(proc, sizeof proc, "/proc/self/fd/%d", f->fd);
            f->slot = slot_add(f->tmp, 0);
            if (linkat(AT_FDCWD, proc, AT_FDCWD, f->tmp, AT_SYMLINK_FOLLOW) == 0)
                break;
            int e = errno;
            slot_del(f->slot);
            f->slot = -1;
            if (e == EEXIST && attempt < 100) {
                memcpy(x, "XXXXXX", 6);
                continue;
            }
            rc = qk_error(QK_EIO, "%s: cannot name the output: %s", f->path, strerror(e));
            free(f->tmp);
            f->tmp = NULL;
            break;
        }
    }
    if (!rc && !linked && rename(f->tmp, f->path) != 0)
        rc = qk_error(QK_EIO, "%s: rename: %s", f->path, strerror(errno));
    if (!rc) {
        /* Make the rename durable. */
        char *dir = dir_of(f->path);
        int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dir);
        slot_del(f->slot);
        f->slot = -1;
        free(f->tmp);
        f->tmp = NULL;
    }
    qk_afile_abort(f);
    return rc;
}

int qk_write_file_atomic(const char *path, const void *data, size_t n, const char *tail)
{
    qk_afile *f = NULL;
    int rc = qk_afile_open(&f, path);
    if (!rc)
        rc = qk_afile_write(f, data, n);
    if (!rc && tail)
        rc = qk_afile_write(f, tail, strlen(tail));
    if (rc) {
        qk_afile_abort(f);
        return rc;
    }
    return qk_afile_commit(f);
}

void qk_afile_abort(qk_afile *f)
{
    if (!f)
        return;
    if (f->thread_on == 1) { /* nothing more to write: the queue drains without writing */
        pthread_mutex_lock(&f->mu);
        if (!f->err)
            f->err = ECANCELED;
        pthread_mutex_unlock(&f->mu);
        stop_writer(f);
    }
    if (f->fd >= 0)
        close(f->fd);
    if (f->tmp)
        unlink(f->tmp);
    slot_del(f->slot);
    free(f->tmp);
    free(f->path);
    for (int i = 0; i < AFILE_NBUF; i++)
        free(f->bufs[i]);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv_work);
    pthread_cond_destroy(&f->cv_free);
    free(f);
}

/* ------------------------------------------------------------ directories */

struct qk_adir {
    char *path;
    char *tmp;
    int slot;
    int replace;
};

static int rm_tree_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static void rm_tree(const char *path) { nftw(path, rm_tree_entry, 16, FTW_DEPTH | FTW_PHYS); }

static int dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return 0;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            empty = 0;
    closedir(d);
    return empty;
}

/* What killed runs left beside path: temporaries ".NAME.qk-tmp-PID-*" and
 * replaced directories ".NAME.qk-old-PID-*" whose process no longer exists.
 * A replaced directory whose replacement never arrived (killed between the
 * two renames) is put back; everything else is removed. Live processes'
 * entries (another run writing the same output) are left alone. */
static void sweep_stale(const char *path)
{
    char *c = strdup(path), *dir = dir_of(path);
    DIR *d = c && dir ? opendir(dir) : NULL;
    if (d) {
        size_t n = strlen(path) + 16;
        char *tmp_pre = malloc(n), *old_pre = malloc(n);
        const char *base = basename(c);
        if (tmp_pre && old_pre) {
            snprintf(tmp_pre, n, ".%s.qk-tmp-", base);
            snprintf(old_pre, n, ".%s.qk-old-", base);
            const size_t pre_n = strlen(tmp_pre);
            struct dirent *e;
            while ((e = readdir(d))) {
                const int is_old = !strncmp(e->d_name, old_pre, pre_n);
                if (!is_old && strncmp(e->d_name, tmp_pre, pre_n))
                    continue;
                char *end;
                long pid = strtol(e->d_name + pre_n, &end, 10);
                if (pid <= 0 || *end != '-' || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
                    continue; /* not ours, or its process still runs (or is not ours to ask) */
                size_t m = strlen(dir) + strlen(e->d_name) + 2;
                char *full = malloc(m);
                if (!full)
                    break;
                snprintf(full, m, "%s/%s", dir, e->d_name);
                if (!(is_old && !qk_file_exists(path) && rename(full, path) == 0))
                    rm_tree(full);
                free(full);
            }
        }
        free(tmp_pre);
        free(old_pre);
        closedir(d);
    }
    free(c);
    free(dir);
}

int qk_adir_open(qk_adir **out, const char *path, int replace)
{
    *out = NULL;
    sweep_stale(path);
    if (qk_file_exists(path) && !qk_is_dir(path))
        return qk_error(QK_EIO, "%s: exists and is not a directory", path);
    if (qk_is_dir(path) && !dir_is_empty(path) && !replace)
        return qk_error(QK_EIO, "%s: directory exists and is not empty (use --force to replace it)", path);
    qk_adir *d = calloc(1, sizeof *d);
    if (!d)
        return qk_error(QK_ENOMEM, "%s: out of memory", path);
    d->slot = -1;
    d->replace = replace;
    d->path = strdup(path);
    /* strip trailing slashes so dirname/basename behave */
    if (d->path)
        for (size_t n = strlen(d->path); n > 1 && d->path[n - 1] == '/'; n--)
            d->path[n - 1] = 0;
    d->tmp = d->path ? tmp_name_for(d->path) : NULL;
    if (!d->path || !d->tmp) {
        qk_adir_abort(d);
        return qk_error(QK_ENOMEM, "%s: out of memory", path);
    }
    if (!mkdtemp(d->tmp)) {
        int e = errno;
        free(d->tmp);
        d->tmp = NULL;
        qk_adir_abort(d);
        return qk_error(QK_EIO, "%s: cannot create a directory beside it: %s", path, strerror(e));
    }
    chmod(d->tmp, 0755);
    d->slot = slot_add(d->tmp, 1);
    *out = d;
    return 0;
}

const char *qk_adir_tmp_path(const qk_adir *d) { return d->tmp; }

int qk_adir_commit(qk_adir *d)
{
    int rc = 0;
    char *old = NULL;
    int dfd = open(d->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    if (qk_is_dir(d->path)) {
        if (dir_is_empty(d->path)) {
            rmdir(d->path);
        } else if (d->replace) {
            old = tmp_name_kind(d->path, "old");
            if (!old || !mkdtemp(old) || rmdir(old) != 0 || rename(d->path, old) != 0) {
                rc = qk_error(QK_EIO, "%s: cannot move the old directory aside: %s", d->path, strerror(errno));
                free(old);
                old = NULL;
            }
        }
    }
    if (!rc && rename(d->tmp, d->path) != 0)
        rc = qk_error(QK_EIO, "%s: rename: %s", d->path, strerror(errno));
    if (!rc) {
        slot_del(d->slot);
        d->slot = -1;
        free(d->tmp);
        d->tmp = NULL;
    } else if (old) {
        rename(old, d->path);
        free(old);
        old = NULL;
    }
    if (old) {
        rm_tree(old);
        free(old);
    }
    qk_adir_abort(d);
    return rc;
}

void qk_adir_abort(qk_adir *d)
{
    if (!d)
        return;
    if (d->tmp)
        rm_tree(d->tmp);
    slot_del(d->slot);
    free(d->tmp);
    free(d->path);
    free(d);
}
