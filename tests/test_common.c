/* Tests of common/: errors, atomic files, pool, hashing, parsing, fp16/bf16. */
#include "qk_test.h"

#include <math.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

START_TEST(test_common_error_message_one_line)
{
    int rc = qk_error(QK_EFORMAT, "file.bin: bad\nthing %d", 7);
    ck_assert_int_eq(rc, QK_EFORMAT);
    ck_assert_str_eq(qk_errmsg(), "file.bin: bad thing 7");
    qk_error_prefix(rc, "ctx");
    ck_assert_str_eq(qk_errmsg(), "ctx: file.bin: bad thing 7");
    ck_assert_str_eq(qk_strerror(QK_ECHECKSUM), "checksum mismatch");
}
END_TEST

START_TEST(test_common_afile_commit_and_abort)
{
    const char *path = qk_test_tmp("out.bin");
    qk_afile *f;
    ck_assert_int_eq(qk_afile_open(&f, path), 0);
    /* nothing visible before commit */
    ck_assert(!qk_file_exists(path));
    uint8_t big[100000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7);
    for (int k = 0; k < 100; k++)
        ck_assert_int_eq(qk_afile_write(f, big, sizeof big), 0);
    ck_assert_uint_eq(qk_afile_tell(f), 100u * sizeof big);
    uint8_t patch[4] = {1, 2, 3, 4};
    ck_assert_int_eq(qk_afile_pwrite(f, patch, 4, 10), 0);
    ck_assert_int_ne(qk_afile_pwrite(f, patch, 4, 100u * sizeof big - 2), 0);
    ck_assert_int_eq(qk_afile_commit(f), 0);
    size_t n;
    uint8_t *got = qk_test_read_file(path, &n);
    ck_assert_uint_eq(n, 100u * sizeof big);
    ck_assert_int_eq(memcmp(got + 10, patch, 4), 0);
    ck_assert_int_eq(got[2 * 100000 + 99999], (uint8_t)(99999u * 7));
    free(got);
    ck_assert_int_eq(qk_test_count_entries(qk_test_tmpdir(), "qk-tmp"), 0);

    /* abort leaves the old file untouched and no temporary behind */
    ck_assert_int_eq(qk_afile_open(&f, path), 0);
    ck_assert_int_eq(qk_afile_write(f, "xyz", 3), 0);
    qk_afile_abort(f);
    got = qk_test_read_file(path, &n);
    ck_assert_uint_eq(n, 100u * sizeof big);
    free(got);
    ck_assert_int_eq(qk_test_count_entries(qk_test_tmpdir(), "qk-tmp"), 0);
}
END_TEST

START_TEST(test_common_afile_missing_dir)
{
    qk_afile *f = NULL;
    int rc = qk_afile_open(&f, "/nonexistent-dir-qk/x.gguf");
    ck_assert_int_eq(rc, QK_EIO);
    ck_assert_ptr_null(f);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "/nonexistent-dir-qk/x.gguf"));
}
END_TEST

START_TEST(test_common_afile_file_size_limit)
{
    /* RLIMIT_FSIZE simulates a full disk: the write fails, commit fails,
     * nothing is left at the destination. Run in a child to keep the limit local. */
    const char *path = qk_test_tmp("limited.bin");
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        qk_cleanup_install();
        struct rlimit rl = {1 << 20, 1 << 20};
        setrlimit(RLIMIT_FSIZE, &rl);
        qk_afile *f;
        if (qk_afile_open(&f, path))
            _exit(10);
        static uint8_t buf[1 << 16];
        int rc = 0;
        for (int i = 0; i < 64 && !rc; i++)
            rc = qk_afile_write(f, buf, sizeof buf);
        if (!rc)
            rc = qk_afile_commit(f);
        else
            qk_afile_abort(f);
        _exit(rc ? (strstr(qk_errmsg(), path) ? 0 : 11) : 12);
    }
    int st;
    waitpid(pid, &st, 0);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 0);
    ck_assert(!qk_file_exists(path));
    ck_assert_int_eq(qk_test_count_entries(qk_test_tmpdir(), "qk-tmp"), 0);
}
END_TEST

START_TEST(test_common_afile_sigkill_leaves_nothing)
{
    const char *path = qk_test_tmp("killed.bin");
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        qk_afile *f;
        if (qk_afile_open(&f, path))
            _exit(1);
        static uint8_t buf[1 << 20];
        for (int i = 0; i < 20; i++)
            qk_afile_write(f, buf, sizeof buf);
        if (write(pfd[1], "x", 1) != 1)
            _exit(2);
        pause();
        _exit(0);
    }
    char c;
    ck_assert_int_eq(read(pfd[0], &c, 1), 1);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(pfd[0]);
    close(pfd[1]);
    ck_assert(!qk_file_exists(path));
    ck_assert_int_eq(qk_test_count_entries(qk_test_tmpdir(), "qk-tmp"), 0);
}
END_TEST

/* What a killed run leaves beside its output (a temporary directory, a
 * directory moved aside for replacement) is cleaned up by the next run
 * writing the same output; a live process's temporaries are not touched. */
START_TEST(test_common_stale_temporaries_swept)
{
    pid_t dead = fork();
    ck_assert_int_ge(dead, 0);
    if (dead == 0)
        _exit(0);
    waitpid(dead, NULL, 0); /* its pid now names no process */
    char dir[4200], p[4400];
    snprintf(dir, sizeof dir, "%s", qk_test_tmp("sweep"));
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    /* x: a stale temporary directory with a file, and a live one */
    snprintf(p, sizeof p, "%s/.x.qk-tmp-%ld-abcdef", dir, (long)dead);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/.x.qk-tmp-%ld-abcdef/part.bin", dir, (long)dead);
    qk_test_write_file(p, "1234", 4);
    snprintf(p, sizeof p, "%s/.x.qk-tmp-%ld-ghijkl", dir, (long)getpid());
    ck_assert_int_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/x", dir);
    ck_assert_int_eq(qk_write_file_atomic(p, "hi", 2, NULL), 0);
    ck_assert_int_eq(qk_test_count_entries(dir, ".x.qk-tmp-"), 1); /* the live one */
    snprintf(p, sizeof p, "%s/.x.qk-tmp-%ld-ghijkl", dir, (long)getpid());
    ck_assert(qk_is_dir(p));
    rmdir(p);
    /* y: killed between moving the old output aside and renaming the new
     * one in: the old one comes back */
    snprintf(p, sizeof p, "%s/.y.qk-old-%ld-abcdef", dir, (long)dead);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/.y.qk-old-%ld-abcdef/keep", dir, (long)dead);
    qk_test_write_file(p, "old", 3);
    snprintf(p, sizeof p, "%s/y", dir);
    qk_adir *d = NULL;
    ck_assert_int_ne(qk_adir_open(&d, p, 0), 0); /* exists again, not empty, no --force */
    snprintf(p, sizeof p, "%s/y/keep", dir);
    ck_assert(qk_file_exists(p));
    ck_assert_int_eq(qk_test_count_entries(dir, ".y.qk-"), 0);
}
END_TEST

START_TEST(test_common_adir_commit_replace)
{
    const char *dir = qk_test_tmp("outdir");
    qk_adir *d;
    ck_assert_int_eq(qk_adir_open(&d, dir, 0), 0);
    char *p = qk_path_join(qk_adir_tmp_path(d), "a.txt");
    qk_test_write_file(p, "hello", 5);
    free(p);
    ck_assert(!qk_file_exists(dir));
    ck_assert_int_eq(qk_adir_commit(d), 0);
    ck_assert(qk_is_dir(dir));
    /* non-empty destination is refused without replace */
    ck_assert_int_eq(qk_adir_open(&d, dir, 0), QK_EIO);
    ck_assert_int_eq(qk_adir_open(&d, dir, 1), 0);
    p = qk_path_join(qk_adir_tmp_path(d), "b.txt");
    qk_test_write_file(p, "x", 1);
    free(p);
    ck_assert_int_eq(qk_adir_commit(d), 0);
    ck_assert_int_eq(qk_test_count_entries(dir, "b.txt"), 1);
    ck_assert_int_eq(qk_test_count_entries(dir, "a.txt"), 0);
    ck_assert_int_eq(qk_test_count_entries(qk_test_tmpdir(), "qk-tmp"), 0);
    /* abort removes the temporary tree */
    ck_assert_int_eq(qk_adir_open(&d, dir, 1), 0);
    p = qk_path_join(qk_adir_tmp_path(d), "c.txt");
    qk_test_write_file(p, "x", 1);
    free(p);
    qk_adir_abort(d);
    ck_assert_int_eq(qk_test_count_entries(qk_test_tmpdir(), "qk-tmp"), 0);
    ck_assert_int_eq(qk_test_count_entries(dir, "b.txt"), 1);
}
END_TEST

typedef struct {
    int64_t *hits;
    int64_t *sum_by_thread;
} pool_ctx;

static void pool_fn(void *ctx, int64_t i, int thread)
{
    pool_ctx *c = ctx;
    __atomic_add_fetch(&c->hits[i], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&c->sum_by_thread[thread], i, __ATOMIC_RELAXED);
}

START_TEST(test_common_pool_runs_each_index_once)
{
    for (int nt = 1; nt <= 4; nt++) {
        qk_pool *p;
        ck_assert_int_eq(qk_pool_create(&p, nt), 0);
        ck_assert_int_eq(qk_pool_size(p), nt);
        for (int rep = 0; rep < 20; rep++) {
            int64_t n = 1000 + rep;
            int64_t hits[1100] = {0}, sums[8] = {0};
            pool_ctx c = {hits, sums};
            qk_pool_run(p, n, rep % 3, pool_fn, &c);
            int64_t total = 0;
            for (int64_t i = 0; i < n; i++)
                ck_assert_int_eq(hits[i], 1);
            for (int t = 0; t < 8; t++)
                total += sums[t];
            ck_assert_int_eq(total, n * (n - 1) / 2);
        }
        qk_pool_free(p);
    }
}
END_TEST

START_TEST(test_common_hash_stream_equals_oneshot)
{
    uint8_t buf[10000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 31 + 7);
    qk_hasher *h;
    ck_assert_int_eq(qk_hasher_new(&h), 0);
    qk_hasher_update(h, buf, 1234);
    qk_hasher_update(h, buf + 1234, sizeof buf - 1234);
    ck_assert_uint_eq(qk_hasher_digest(h), qk_hash64(buf, sizeof buf));
    qk_hasher_free(h);
    /* XXH3-64 of the empty input is a published constant */
    ck_assert_uint_eq(qk_hash64("", 0), 0x2D06800538D394C2ull);
    char hex[17];
    qk_hash_hex(0x2D06800538D394C2ull, hex);
    ck_assert_str_eq(hex, "2d06800538d394c2");
    const char *path = qk_test_tmp("h.bin");
    qk_test_write_file(path, buf, sizeof buf);
    uint64_t fh;
    ck_assert_int_eq(qk_hash_file(&fh, path), 0);
    ck_assert_uint_eq(fh, qk_hash64(buf, sizeof buf));
}
END_TEST

START_TEST(test_common_parse_size_percent)
{
    uint64_t v;
    ck_assert_int_eq(qk_parse_size("4GB", &v), 0);
    ck_assert_uint_eq(v, 4000000000ull);
    ck_assert_int_eq(qk_parse_size("3.8GiB", &v), 0);
    ck_assert_uint_eq(v, (uint64_t)llround(3.8 * 1073741824.0));
    ck_assert_int_eq(qk_parse_size("1234", &v), 0);
    ck_assert_uint_eq(v, 1234);
    ck_assert_int_eq(qk_parse_size("12 parsecs", &v), QK_EINVAL);
    ck_assert_int_eq(qk_parse_size("-1GB", &v), QK_EINVAL);
    double d;
    ck_assert_int_eq(qk_parse_percent("2%", &d), 0);
    ck_assert_double_eq_tol(d, 0.02, 1e-15);
    ck_assert_int_eq(qk_parse_percent("0.5", &d), 0);
    ck_assert_double_eq_tol(d, 0.5, 1e-15);
    ck_assert_int_eq(qk_parse_percent("2%x", &d), QK_EINVAL);
}
END_TEST

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Round-to-nearest-even reference through double arithmetic. */
static uint16_t fp16_ref(float f)
{
    if (isnan(f))
        return 0x7e00;
    double a = fabs((double)f);
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    if (a == 0)
        return sign;
    int e;
    frexp(a, &e); /* a = m * 2^e, m in [0.5,1) */
    int exp16 = e - 1 + 15;
    double unit = exp16 >= 1 ? ldexp(1.0, e - 1 - 10) : ldexp(1.0, -24);
    double q = nearbyint(a / unit); /* default rounding mode: to nearest even */
    double v = q * unit;
    if (v >= 65520.0 || v > 65504.0)
        return sign | 0x7c00;
    /* re-encode v */
    if (v < ldexp(1.0, -14))
        return sign | (uint16_t)(v / ldexp(1.0, -24));
    frexp(v, &e);
    exp16 = e - 1 + 15;
    uint16_t man = (uint16_t)(v / ldexp(1.0, e - 1 - 10)) - 1024;
    return sign | (uint16_t)(exp16 << 10) | man;
}

START_TEST(test_half_fp16_all_halves_round_trip)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = qk_fp16_to_f32((uint16_t)h);
        uint16_t back = qk_f32_to_fp16(f);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
            ck_assert(isnan(f) && (back & 0x7c00) == 0x7c00 && (back & 0x3ff));
        else
            ck_assert_uint_eq(back, h);
    }
}
END_TEST

START_TEST(test_half_fp16_rounding_matches_reference)
{
    uint32_t x = 12345;
    for (int i = 0; i < 2000000; i++) {
        x = x * 1664525u + 1013904223u;
        uint32_t u = (x & 0x8fffffffu) | ((x >> 3) & 0x30000000u); /* bias to |exp| around half range */
        float f;
        memcpy(&f, &u, 4);
        if (!isfinite(f))
            continue;
        ck_assert_msg(qk_f32_to_fp16(f) == fp16_ref(f), "f=%a got %04x want %04x", f, qk_f32_to_fp16(f),
                      fp16_ref(f));
    }
    /* ties: 1 + 2^-11 is exactly halfway between 1 and 1+2^-10 -> even (1) */
    ck_assert_uint_eq(qk_f32_to_fp16(1.0f + 0x1p-11f), 0x3c00);
    ck_assert_uint_eq(qk_f32_to_fp16(1.0f + 3 * 0x1p-11f), 0x3c02);
    ck_assert_uint_eq(qk_f32_to_fp16(65504.0f), 0x7bff);
    ck_assert_uint_eq(qk_f32_to_fp16(65519.99f), 0x7bff);
    ck_assert_uint_eq(qk_f32_to_fp16(65520.0f), 0x7c00);
    ck_assert_uint_eq(qk_f32_to_fp16(-INFINITY), 0xfc00);
    ck_assert_uint_eq(qk_f32_to_fp16(0x1p-25f), 0x0000);          /* tie to even zero */
    ck_assert_uint_eq(qk_f32_to_fp16(0x1.000002p-25f), 0x0001);
    ck_assert_uint_eq(qk_f32_to_fp16(-0.0f), 0x8000);
    ck_assert(isnan(qk_fp16_to_f32(qk_f32_to_fp16(NAN))));
}
END_TEST

/* The row converters (F16C paths on CPUs that have it) equal the scalar
 * ones bit for bit: every half, NaN payloads included, at every offset of
 * an 8-wide group; floats around every half and the special values. */
START_TEST(test_half_fp16_rows_match_scalar)
{
    enum { N = 65536 + 7 };
    uint16_t *h = malloc(N * sizeof *h);
    float *f = malloc(N * sizeof *f);
    ck_assert(h && f);
    for (int shift = 0; shift < 8; shift++) {
        for (uint32_t i = 0; i < N; i++)
            h[i] = (uint16_t)(i + (uint32_t)shift * 0x2471u);
        qk_fp16_to_f32_row(h + shift, f, N - 7);
        for (uint32_t i = 0; i < N - 7; i++) {
            float want = qk_fp16_to_f32(h[i + (uint32_t)shift]);
            ck_assert_msg(!memcmp(&want, f + i, 4), "half %04x: row gives %08x, scalar %08x", h[i + (uint32_t)shift],
                          f2u(f[i]), f2u(want));
        }
    }
    uint32_t x = 777;
    for (uint32_t i = 0; i < N; i++) {
        x = x * 1664525u + 1013904223u;
        uint32_t u = i < 65536 ? f2u(qk_fp16_to_f32((uint16_t)i)) + (x % 5) - 2 : x; /* near every half, then any */
        memcpy(f + i, &u, 4);
    }
    qk_f32_to_fp16_row(f + 1, h, N - 1);
    for (uint32_t i = 0; i < N - 1; i++)
        ck_assert_msg(h[i] == qk_f32_to_fp16(f[i + 1]), "float %08x: row gives %04x, scalar %04x", f2u(f[i + 1]),
                      h[i], qk_f32_to_fp16(f[i + 1]));
    free(h);
    free(f);
}
END_TEST

START_TEST(test_half_bf16_rounding)
{
    ck_assert_uint_eq(qk_f32_to_bf16(1.0f), 0x3f80);
    /* 1 + 2^-8 is a tie between 1 and 1+2^-7 -> even (1.0) */
    ck_assert_uint_eq(qk_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    ck_assert_uint_eq(qk_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
    ck_assert(isnan(qk_bf16_to_f32(qk_f32_to_bf16(NAN))));
    ck_assert_uint_eq(qk_f32_to_bf16(INFINITY), 0x7f80);
    for (uint32_t h = 0; h < 65536; h++) {
        float f = qk_bf16_to_f32((uint16_t)h);
        ck_assert_uint_eq(f2u(f) >> 16, h);
        if (!isnan(f))
            ck_assert_uint_eq(qk_f32_to_bf16(f), h);
    }
}
END_TEST

Suite *qk_test_suite_common(void)
{
    Suite *s = suite_create("common");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_common_error_message_one_line);
    tcase_add_test(tc, test_common_afile_commit_and_abort);
    tcase_add_test(tc, test_common_afile_missing_dir);
    tcase_add_test(tc, test_common_afile_file_size_limit);
    tcase_add_test(tc, test_common_afile_sigkill_leaves_nothing);
    tcase_add_test(tc, test_common_stale_temporaries_swept);
    tcase_add_test(tc, test_common_adir_commit_replace);
    tcase_add_test(tc, test_common_pool_runs_each_index_once);
    tcase_add_test(tc, test_common_hash_stream_equals_oneshot);
    tcase_add_test(tc, test_common_parse_size_percent);
    suite_add_tcase(s, tc);
    return s;
}

Suite *qk_test_suite_half(void)
{
    Suite *s = suite_create("half");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_half_fp16_all_halves_round_trip);
    tcase_add_test(tc, test_half_fp16_rounding_matches_reference);
    tcase_add_test(tc, test_half_fp16_rows_match_scalar);
    tcase_add_test(tc, test_half_bf16_rounding);
    suite_add_tcase(s, tc);
    return s;
}
