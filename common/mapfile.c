/* Read-only file mappings, small-file reads and path helpers. */
#include "quantkit/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int qk_mmap_open(qk_mmap **out, const char *path)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qk_error(errno == ENOENT ? QK_ENOTFOUND : QK_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return qk_error(QK_EIO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return qk_error(QK_EIO, "%s: not a regular file", path);
    }
    qk_mmap *m = calloc(1, sizeof *m);
    char *p = strdup(path);
    if (!m || !p) {
        free(m);
        free(p);
        close(fd);
        return qk_error(QK_ENOMEM, "%s: out of memory", path);
    }
    m->path = p;
    m->fd = fd;
    m->size = (uint64_t)st.st_size;
    if (m->size > 0) {
        void *d = mmap(NULL, (size_t)m->size, PROT_READ, MAP_SHARED, fd, 0);
        if (d == MAP_FAILED) {
            int e = errno;
            qk_mmap_close(m);
            return qk_error(QK_EIO, "%s: mmap: %s", path, strerror(e));
        }
        m->data = d;
    }
    *out = m;
    return 0;
}

void qk_mmap_close(qk_mmap *m)
{
    if (!m)
        return;
    if (m->data)
        munmap((void *)m->data, (size_t)m->size);
    if (m->fd >= 0)
        close(m->fd);
    free(m->path);
    free(m);
}

static void page_range(const qk_mmap *m, uint64_t off, uint64_t len, uint8_t **start, size_t *n)
{
    *start = NULL;
    *n = 0;
    if (!m || !m->data || off >= m->size || len == 0)
        return;
    if (len > m->size - off)
        len = m->size - off;
    uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t a = off / pg * pg, b = off + len;
    *start = (uint8_t *)m->data + a;
    *n = (size_t)(b - a);
}

void qk_mmap_release(const qk_mmap *m, uint64_t off, uint64_t len)
{
    uint8_t *s;
    size_t n;
    page_range(m, off, len, &s, &n);
    if (n)
        madvise(s, n, MADV_DONTNEED);
    /* The page cache keeps the data; dropping it too keeps a huge input
     * from evicting everything else. */
    if (m && n)
        posix_fadvise(m->fd, (off_t)(s - m->data), (off_t)n, POSIX_FADV_DONTNEED);
}

void qk_mmap_willneed(const qk_mmap *m, uint64_t off, uint64_t len)
{
    uint8_t *s;
    size_t n;
    page_range(m, off, len, &s, &n);
    if (n)
        madvise(s, n, MADV_WILLNEED);
}

int qk_read_file(char **out, size_t *out_len, const char *path, size_t max_bytes)
{
    *out = NULL;
    if (out_len)
        *out_len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qk_error(errno == ENOENT ? QK_ENOTFOUND : QK_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return qk_error(QK_EIO, "%s: not a readable regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return qk_error(QK_ELIMIT, "%s: %lld bytes, more than the limit of %zu", path, (long long)st.st_size,
                        max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return qk_error(QK_ENOMEM, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            free(buf);
            close(fd);
            return qk_error(QK_EIO, "%s: read: %s", path, strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *out = buf;
    if (out_len)
        *out_len = n;
    return 0;
}

int qk_file_exists(const char *path)
{
    struct stat st;
    return path && stat(path, &st) == 0;
}

int qk_is_dir(const char *path)
{
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *qk_path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (!s)
        return NULL;
    memcpy(s, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/')
        s[k++] = '/';
    memcpy(s + k, name, b + 1);
    return s;
}
