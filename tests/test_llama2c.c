/* Tests of formats/llama2c.c: the real stories260K checkpoint, synthetic
 * checkpoints (shared and unshared classifier), and one test per rejection
 * branch (short header, version-1 magic, non-positive dims, divisibility,
 * odd head dim, size overflow, truncated, extra bytes). */
#include "qk_test.h"

#include "quantkit/llama2c.h"

#define STORIES "models/stories260K/stories260K.bin"

/* Header + zero-filled arrays of the size the header implies, plus `extra`
 * bytes (negative: fewer). */
static const char *synth(const char *name, const int32_t h[7], int64_t extra)
{
    int64_t D = h[0], F = h[1], L = h[2], H = h[3], KV = h[4], V = h[5] < 0 ? -h[5] : h[5], S = h[6];
    int64_t hd = D / H, kvd = hd * KV;
    int64_t n = V * D + L * D + L * D * D + 2 * L * kvd * D + L * D * D + L * D + 3 * L * F * D + D + S * hd +
                (h[5] < 0 ? V * D : 0);
    size_t bytes = (size_t)(QK_LLAMA2C_HEADER_BYTES + 4 * n + extra);
    uint8_t *b = calloc(1, bytes > 28 ? bytes : 28);
    ck_assert_ptr_nonnull(b);
    for (int i = 0; i < 7; i++)
        qk_wr_u32(b + 4 * i, (uint32_t)h[i]);
    const char *path = qk_test_tmp(name);
    qk_test_write_file(path, b, bytes);
    free(b);
    return path;
}

/* A file holding just a 28-byte header (for the header checks). */
static const char *header_only(const char *name, const int32_t h[7])
{
    uint8_t b[28];
    for (int i = 0; i < 7; i++)
        qk_wr_u32(b + 4 * i, (uint32_t)h[i]);
    const char *path = qk_test_tmp(name);
    qk_test_write_file(path, b, sizeof b);
    return path;
}

static void expect_reject(const char *path, int code, const char *needle)
{
    qk_llama2c *m = (qk_llama2c *)&m;
    qk_error_clear();
    int rc = qk_llama2c_open(&m, path);
    ck_assert_msg(rc < 0, "%s: accepted (expected '%s')", path, needle);
    ck_assert_ptr_null(m);
    ck_assert_msg(rc == code, "%s: code %d, expected %d (%s)", path, rc, code, qk_errmsg());
    ck_assert_msg(!strncmp(qk_errmsg(), path, strlen(path)), "message '%s' does not start with %s", qk_errmsg(),
                  path);
    ck_assert_msg(strstr(qk_errmsg(), needle) != NULL, "message '%s' lacks '%s'", qk_errmsg(), needle);
}

START_TEST(test_llama2c_open_stories260K)
{
    QK_REQUIRE_DATA(path, STORIES);
    qk_llama2c *m = NULL;
    ck_assert_msg(qk_llama2c_open(&m, path) == 0, "%s", qk_errmsg());
    const qk_llama2c_config *c = &m->cfg;
    ck_assert_int_eq(c->dim, 64);
    ck_assert_int_eq(c->hidden_dim, 172);
    ck_assert_int_eq(c->n_layers, 5);
    ck_assert_int_eq(c->n_heads, 8);
    ck_assert_int_eq(c->n_kv_heads, 4);
    ck_assert_int_eq(c->vocab_size, 512);
    ck_assert_int_eq(c->seq_len, 512);
    ck_assert_int_eq(c->shared_classifier, 1);
    ck_assert_uint_eq(m->map->size, 1056540);
    /* kvD = 64 * 4 / 8 = 32, hd = 8 */
    ck_assert_uint_eq(m->tok_emb.offset, 28);
    ck_assert_uint_eq(m->tok_emb.n_elems, 512 * 64);
    ck_assert_uint_eq(m->rms_att.offset, 28 + 4 * 512 * 64);
    ck_assert_uint_eq(m->rms_att.n_elems, 5 * 64);
    ck_assert_uint_eq(m->wq.n_elems, 5 * 64 * 64);
    ck_assert_uint_eq(m->wk.n_elems, 5 * 32 * 64);
    ck_assert_uint_eq(m->wv.n_elems, 5 * 32 * 64);
    ck_assert_uint_eq(m->wo.n_elems, 5 * 64 * 64);
    ck_assert_uint_eq(m->w1.n_elems, 5 * 172 * 64);
    ck_assert_uint_eq(m->w2.n_elems, 5 * 64 * 172);
    ck_assert_uint_eq(m->w3.n_elems, 5 * 172 * 64);
    ck_assert_uint_eq(m->rms_final.n_elems, 64);
    ck_assert_uint_eq(m->freq_cis_real.n_elems, 512 * 4);
    ck_assert_uint_eq(m->freq_cis_imag.n_elems, 512 * 4);
    ck_assert_uint_eq(m->wcls.n_elems, 0);
    /* arrays are contiguous, in order, ending at the file size */
    const qk_llama2c_array *seq[] = {&m->tok_emb, &m->rms_att, &m->wq,        &m->wk,           &m->wv,
                                     &m->wo,      &m->rms_ffn, &m->w1,        &m->w2,           &m->w3,
                                     &m->rms_final, &m->freq_cis_real, &m->freq_cis_imag};
    for (size_t i = 1; i < sizeof seq / sizeof *seq; i++)
        ck_assert_uint_eq(seq[i]->offset, seq[i - 1]->offset + 4 * seq[i - 1]->n_elems);
    ck_assert_uint_eq(m->freq_cis_imag.offset + 4 * m->freq_cis_imag.n_elems, m->map->size);
    /* RMSNorm weights of a trained model are not all zero; first rms_att weight is finite */
    float w;
    memcpy(&w, m->map->data + m->rms_att.offset, 4);
    ck_assert(w == w && w != 0.0f);
    qk_llama2c_close(m);
}
END_TEST

START_TEST(test_llama2c_unshared_classifier)
{
    const int32_t h[7] = {16, 24, 2, 4, 2, -10, 8};
    const char *path = synth("unshared.bin", h, 0);
    qk_llama2c *m = NULL;
    ck_assert_msg(qk_llama2c_open(&m, path) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(m->cfg.vocab_size, -10);
    ck_assert_int_eq(m->cfg.shared_classifier, 0);
    ck_assert_uint_eq(m->tok_emb.n_elems, 10 * 16);
    ck_assert_uint_eq(m->wk.n_elems, 2 * 8 * 16); /* kvD = 16*2/4 = 8 */
    ck_assert_uint_eq(m->freq_cis_real.n_elems, 8 * 2);
    ck_assert_uint_eq(m->wcls.n_elems, 10 * 16);
    ck_assert_uint_eq(m->wcls.offset, m->freq_cis_imag.offset + 4 * m->freq_cis_imag.n_elems);
    ck_assert_uint_eq(m->wcls.offset + 4 * m->wcls.n_elems, m->map->size);
    qk_llama2c_close(m);

    /* the same header with the classifier missing is 10*16 floats short */
    const char *shorter = synth("unshared-short.bin", h, -4 * 10 * 16);
    expect_reject(shorter, QK_EFORMAT, "truncated");
}
END_TEST

START_TEST(test_llama2c_synthetic_mha)
{
    const int32_t h[7] = {8, 12, 1, 2, 2, 5, 4};
    const char *path = synth("mha.bin", h, 0);
    qk_llama2c *m = NULL;
    ck_assert_msg(qk_llama2c_open(&m, path) == 0, "%s", qk_errmsg());
    ck_assert_uint_eq(m->wk.n_elems, 8 * 8);
    ck_assert_uint_eq(m->wcls.n_elems, 0);
    qk_llama2c_close(m);
}
END_TEST

START_TEST(test_llama2c_rejects_truncated)
{
    QK_REQUIRE_DATA(src, STORIES);
    size_t n;
    uint8_t *b = qk_test_read_file(src, &n);
    const char *path = qk_test_tmp("trunc.bin");
    /* every cut inside the header, then a spread of cuts through the arrays */
    for (size_t cut = 0; cut < n; cut += cut < 64 ? 1 : 4099) {
        qk_test_write_file(path, b, cut);
        expect_reject(path, QK_EFORMAT, cut < 28 ? "shorter than the 28-byte" : "truncated");
    }
    qk_test_write_file(path, b, n - 4);
    expect_reject(path, QK_EFORMAT, "1056540 bytes");
    free(b);
}
END_TEST

START_TEST(test_llama2c_rejects_extra_bytes)
{
    QK_REQUIRE_DATA(src, STORIES);
    size_t n;
    uint8_t *b = qk_test_read_file(src, &n);
    uint8_t *b2 = malloc(n + 1);
    ck_assert_ptr_nonnull(b2);
    memcpy(b2, b, n);
    b2[n] = 0;
    const char *path = qk_test_tmp("extra.bin");
    qk_test_write_file(path, b2, n + 1);
    expect_reject(path, QK_EFORMAT, "extra bytes");
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "file is 1056541 bytes"));
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "implies 1056540 bytes"));
    free(b);
    free(b2);
}
END_TEST

START_TEST(test_llama2c_rejects_nonpositive_dims)
{
    static const char *const names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size",
                                         "seq_len"};
    for (int i = 0; i < 7; i++) {
        for (int v = 0; v < 2; v++) {
            int32_t h[7] = {64, 172, 5, 8, 4, 512, 512};
            h[i] = v == 0 ? 0 : -3;
            if (i == 5 && v == 1)
                continue; /* a negative vocab_size is valid (unshared classifier) */
            char name[64], needle[64];
            snprintf(name, sizeof name, "dim%d-%d.bin", i, v);
            snprintf(needle, sizeof needle, "%s = %d", names[i], (int)h[i]);
            expect_reject(header_only(name, h), QK_EFORMAT, needle);
        }
    }
    const int32_t hv[7] = {64, 172, 5, 8, 4, INT32_MIN, 512};
    expect_reject(header_only("vocab-min.bin", hv), QK_EFORMAT, "vocab_size = -2147483648");
}
END_TEST

START_TEST(test_llama2c_rejects_bad_head_layout)
{
    const int32_t h1[7] = {64, 172, 5, 7, 7, 512, 512};
    expect_reject(header_only("heads.bin", h1), QK_EFORMAT, "dim 64 is not a multiple of n_heads 7");
    const int32_t h2[7] = {64, 172, 5, 8, 3, 512, 512};
    expect_reject(header_only("kvheads.bin", h2), QK_EFORMAT, "n_heads 8 is not a multiple of n_kv_heads 3");
    const int32_t h3[7] = {24, 172, 5, 8, 4, 512, 512};
    expect_reject(header_only("oddhd.bin", h3), QK_EFORMAT, "head dimension 3");
}
END_TEST

START_TEST(test_llama2c_rejects_overflowing_dims)
{
    /* L*D*D = 2^31 * 2^31 * 2^31 overflows uint64 */
    const int32_t h1[7] = {INT32_MAX - 1, 172, INT32_MAX, 1, 1, 512, 512};
    expect_reject(header_only("ovf1.bin", h1), QK_EFORMAT, "beyond 2^64");
    /* each product fits but the running offset overflows */
    const int32_t h2[7] = {1 << 30, 1 << 30, 1 << 3, 2, 1, 1 << 30, 2};
    expect_reject(header_only("ovf2.bin", h2), QK_EFORMAT, "beyond 2^64");
    /* large but representable: a size mismatch, not an overflow */
    const int32_t h3[7] = {1 << 20, 1 << 20, 4, 2, 1, 1 << 20, 2};
    expect_reject(header_only("big.bin", h3), QK_EFORMAT, "truncated");
}
END_TEST

START_TEST(test_llama2c_rejects_v1_magic)
{
    const int32_t h[7] = {0x616b3432, 1, 64, 172, 5, 8, 4};
    expect_reject(header_only("v1.bin", h), QK_EUNSUPPORTED, "version 1/2");
}
END_TEST

START_TEST(test_llama2c_rejects_missing_file)
{
    qk_llama2c *m = (qk_llama2c *)&m;
    const char *path = qk_test_tmp("absent.bin");
    ck_assert_int_lt(qk_llama2c_open(&m, path), 0);
    ck_assert_ptr_null(m);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), path));
    qk_llama2c_close(NULL);
}
END_TEST

Suite *qk_test_suite_llama2c(void)
{
    Suite *s = suite_create("llama2c");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_llama2c_open_stories260K);
    tcase_add_test(tc, test_llama2c_unshared_classifier);
    tcase_add_test(tc, test_llama2c_synthetic_mha);
    tcase_add_test(tc, test_llama2c_rejects_truncated);
    tcase_add_test(tc, test_llama2c_rejects_extra_bytes);
    tcase_add_test(tc, test_llama2c_rejects_nonpositive_dims);
    tcase_add_test(tc, test_llama2c_rejects_bad_head_layout);
    tcase_add_test(tc, test_llama2c_rejects_overflowing_dims);
    tcase_add_test(tc, test_llama2c_rejects_v1_magic);
    tcase_add_test(tc, test_llama2c_rejects_missing_file);
    suite_add_tcase(s, tc);
    return s;
}
