/* Shared helpers for the Check tests (see qk_test.h). */
#include "qk_test.h"

#include <dirent.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef QK_SOURCE_DIR
#define QK_SOURCE_DIR "."
#endif

static char g_ring[64][4096];
static int g_ring_i;

static char *ring(void)
{
    char *b = g_ring[g_ring_i];
    g_ring_i = (g_ring_i + 1) % 64;
    return b;
}

const char *qk_test_data_dir(void)
{
    static char dir[4096];
    const char *env = getenv("QK_TEST_DATA");
    if (env && *env && qk_is_dir(env)) {
        snprintf(dir, sizeof dir, "%s", env);
        return dir;
    }
    snprintf(dir, sizeof dir, "%s/../shared/data", QK_SOURCE_DIR);
    return qk_is_dir(dir) ? dir : NULL;
}

const char *qk_test_data(const char *rel)
{
    const char *d = qk_test_data_dir();
    if (!d)
        return NULL;
    char *b = ring();
    snprintf(b, 4096, "%s/%s", d, rel);
    return qk_file_exists(b) ? b : NULL;
}

static char g_tmpdir[4096];
static pid_t g_tmp_owner;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

static void rm_tmpdir(void)
{
    if (g_tmpdir[0] && g_tmp_owner == getpid())
        nftw(g_tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *qk_test_tmpdir(void)
{
    /* Check forks each test: a test process makes its own directory. */
    if (!g_tmpdir[0] || g_tmp_owner != getpid()) {
        const char *base = getenv("TMPDIR");
        snprintf(g_tmpdir, sizeof g_tmpdir, "%s/qk-test-XXXXXX", base && *base ? base : "/tmp");
        ck_assert_ptr_nonnull(mkdtemp(g_tmpdir));
        g_tmp_owner = getpid();
        atexit(rm_tmpdir);
    }
    return g_tmpdir;
}

const char *qk_test_tmp(const char *name)
{
    char *b = ring();
    snprintf(b, 4096, "%s/%s", qk_test_tmpdir(), name);
    return b;
}

const char *qk_test_tool(const char *name)
{
    char *b = ring();
    const char *env = getenv("QK_BIN_DIR");
    if (env && *env)
        snprintf(b, 4096, "%s/%s", env, name);
    else
        snprintf(b, 4096, "%s/bin/%s", QK_SOURCE_DIR, name);
    return b;
}

static char *slurp_fd(FILE *f)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
    }
    buf[n] = 0;
    return buf;
}

int qk_test_run(char **out_stdout, char **out_stderr, const char *fmt, ...)
{
    char cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char so[4200], se[4200];
    snprintf(so, sizeof so, "%s/.run-stdout", qk_test_tmpdir());
    snprintf(se, sizeof se, "%s/.run-stderr", qk_test_tmpdir());
    char full[16384 + 9000];
    snprintf(full, sizeof full, "( %s ) >'%s' 2>'%s' </dev/null", cmd, so, se);
    int st = system(full);
    int rc = st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    FILE *f;
    if (out_stdout) {
        f = fopen(so, "rb");
        ck_assert_ptr_nonnull(f);
        *out_stdout = slurp_fd(f);
        fclose(f);
    }
    if (out_stderr) {
        f = fopen(se, "rb");
        ck_assert_ptr_nonnull(f);
        *out_stderr = slurp_fd(f);
        fclose(f);
    }
    unlink(so);
    unlink(se);
    return rc;
}

void qk_test_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    if (n)
        ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

void *qk_test_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long sz = ftell(f);
    ck_assert_int_ge(sz, 0);
    rewind(f);
    void *buf = malloc((size_t)sz + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)sz, f), (size_t)sz);
    ((char *)buf)[sz] = 0;
    fclose(f);
    if (n)
        *n = (size_t)sz;
    return buf;
}

int qk_test_count_entries(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strstr(e->d_name, needle))
            n++;
    closedir(d);
    return n;
}
