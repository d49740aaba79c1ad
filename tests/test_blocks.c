/* Tests of the ggml block codecs (formats/ggml_blocks.c, formats/blocks_k.c):
 * decode equal to llama.cpp's on every golden file, encoders byte-equal to
 * llama-quantize's output, round-trip error limits, edge cases. */
#include "qk_test.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <zlib.h>

#include "ggml_blocks.h"
#include "quantkit/ggml_types.h"
#include "quantkit/gguf.h"

#define GOLDEN "golden/llamacpp"

/* The 12 block types with codecs. */
static const int k_types[] = {
    QK_TYPE_Q4_0, QK_TYPE_Q4_1, QK_TYPE_Q5_0, QK_TYPE_Q5_1, QK_TYPE_Q8_0, QK_TYPE_Q2_K,
    QK_TYPE_Q3_K, QK_TYPE_Q4_K, QK_TYPE_Q5_K, QK_TYPE_Q6_K, QK_TYPE_IQ4_NL, QK_TYPE_IQ4_XS,
};
#define N_TYPES ((int)(sizeof k_types / sizeof k_types[0]))

/* Round-trip limits: RMS error / RMS of the data for Gaussian input
 * (64 rows of 4096, fixed seeds), no importance. About 1.1x what the
 * reference encoders reach (Q4_0 0.0861, Q4_1 0.0783, Q5_0 0.0426,
 * Q5_1 0.0378, Q8_0 0.00535, Q2_K 0.297, Q3_K 0.151, Q4_K 0.0712,
 * Q5_K 0.0361, Q6_K 0.0178, IQ4_NL 0.0760, IQ4_XS 0.0767). */
static double rt_limit(int type)
{
    switch (type) {
    case QK_TYPE_Q8_0: return 0.0059;
    case QK_TYPE_Q6_K: return 0.0196;
    case QK_TYPE_Q5_0: return 0.047;
    case QK_TYPE_Q5_1: return 0.042;
    case QK_TYPE_Q5_K: return 0.040;
    case QK_TYPE_Q4_0: return 0.095;
    case QK_TYPE_Q4_1: return 0.086;
    case QK_TYPE_Q4_K: return 0.079;
    case QK_TYPE_IQ4_NL: return 0.084;
    case QK_TYPE_IQ4_XS: return 0.085;
    case QK_TYPE_Q3_K: return 0.166;
    case QK_TYPE_Q2_K: return 0.33;
    default: return 0;
    }
}

/* ------------------------------------------------------------- helpers */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd_u32(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 32);
}
static float rnd_uniform(void) { return ((float)rnd_u32() + 0.5f) / 4294967296.0f; }
static float rnd_gauss(void)
{
    float u = rnd_uniform(), v = rnd_uniform();
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static size_t row_bytes(int type, int64_t n)
{
    size_t b = 0;
    ck_assert_int_eq(qk_type_row_bytes(type, n, &b), 0);
    return b;
}

/* Encode n floats with the reference encoder and decode them back. */
static void round_trip(int type, const float *x, float *y, int64_t n, const float *imp)
{
    const qk_type_traits *t = qk_type_get(type);
    ck_assert(t->to_float != NULL);
    ck_assert(t->from_float_ref != NULL);
    uint8_t *q = malloc(row_bytes(type, n));
    ck_assert_ptr_nonnull(q);
    t->from_float_ref(x, q, n, imp);
    t->to_float(q, y, n);
    free(q);
}

/* gunzip src into a temp file; returns its path (static ring). */
static const char *gunzip_tmp(const char *src, const char *name)
{
    const char *dst = qk_test_tmp(name);
    gzFile in = gzopen(src, "rb");
    ck_assert_msg(in != NULL, "cannot open %s", src);
    FILE *out = fopen(dst, "wb");
    ck_assert_ptr_nonnull(out);
    static char buf[1 << 16];
    int r;
    while ((r = gzread(in, buf, sizeof buf)) > 0)
        ck_assert_uint_eq(fwrite(buf, 1, (size_t)r, out), (size_t)r);
    ck_assert_int_eq(r, 0);
    gzclose(in);
    ck_assert_int_eq(fclose(out), 0);
    return dst;
}

static qk_gguf *open_gguf(const char *path)
{
    qk_gguf *g = NULL;
    int rc = qk_gguf_open(&g, path);
    ck_assert_msg(rc == 0, "qk_gguf_open(%s): %s", path, qk_errmsg());
    return g;
}

/* ------------------------------------------------- importance matrices */

typedef struct {
    int n;
    char **names;
    int *nval;
    float **values; /* already divided by ncall, as llama-quantize does */
} imatrix;

static void imatrix_free(imatrix *im)
{
    for (int i = 0; i < im->n; i++) {
        free(im->names[i]);
        free(im->values[i]);
    }
    free(im->names);
    free(im->nval);
    free(im->values);
}

static int32_t rd_i32(const uint8_t *buf, size_t len, size_t *off)
{
    ck_assert_uint_le(*off + 4, len);
    int32_t v = (int32_t)qk_rd_u32(buf + *off);
    *off += 4;
    return v;
}

/* The legacy llama.cpp imatrix .dat (docs/FORMATS.md); test data only. */
static void imatrix_load(imatrix *im, const char *path)
{
    size_t len;
    uint8_t *buf = qk_test_read_file(path, &len);
    size_t off = 0;
    int n = rd_i32(buf, len, &off);
    ck_assert_int_gt(n, 0);
    ck_assert_int_lt(n, 100000);
    im->n = n;
    im->names = calloc((size_t)n, sizeof *im->names);
    im->nval = calloc((size_t)n, sizeof *im->nval);
    im->values = calloc((size_t)n, sizeof *im->values);
    for (int i = 0; i < n; i++) {
        int nl = rd_i32(buf, len, &off);
        ck_assert(nl > 0 && off + (size_t)nl <= len);
        im->names[i] = strndup((const char *)buf + off, (size_t)nl);
        off += (size_t)nl;
        int ncall = rd_i32(buf, len, &off);
        int nval = rd_i32(buf, len, &off);
        ck_assert(nval > 0 && off + 4 * (size_t)nval <= len);
        im->nval[i] = nval;
        im->values[i] = malloc(4 * (size_t)nval);
        for (int j = 0; j < nval; j++) {
            uint32_t u = qk_rd_u32(buf + off + 4 * (size_t)j);
            float f;
            memcpy(&f, &u, 4);
            im->values[i][j] = ncall > 0 ? f / ncall : f;
        }
        off += 4 * (size_t)nval;
    }
    free(buf);
}

static const float *imatrix_find(const imatrix *im, const char *name, int64_t n)
{
    for (int i = 0; i < im->n; i++)
        if (!strcmp(im->names[i], name)) {
            ck_assert_int_eq(im->nval[i], n);
            return im->values[i];
        }
    return NULL;
}

/* ---------------------------------------------------------- golden decode */

/* Decode every tensor of a quantized golden file and compare bit-exact with
 * llama.cpp's own dequantization. Returns the number of tensors compared. */
static int check_golden_decode(const char *qpath, const char *dqgz)
{
    const char *dqpath = gunzip_tmp(dqgz, "dequant.gguf");
    qk_gguf *q = open_gguf(qpath);
    qk_gguf *dq = open_gguf(dqpath);
    int n_cmp = 0;
    for (int64_t i = 0; i < qk_gguf_n_tensors(q); i++) {
        const qk_gguf_tensor *t = qk_gguf_tensor_at(q, i);
        const qk_gguf_tensor *r = qk_gguf_find_tensor(dq, t->name);
        ck_assert_msg(r != NULL, "%s: tensor %s missing from %s", qpath, t->name, dqgz);
        ck_assert_int_eq(r->type, QK_TYPE_F32);
        int64_t ne = 1;
        for (int d = 0; d < t->n_dims; d++) {
            ck_assert_int_eq(t->ne[d], r->ne[d]);
            ne *= t->ne[d];
        }
        ck_assert_uint_eq(r->nbytes, 4 * (uint64_t)ne);
        const qk_type_traits *tt = qk_type_get(t->type);
        ck_assert_msg(tt && tt->to_float, "%s: no decoder for %s (%s)", qpath, t->name, qk_type_name(t->type));
        float *y = malloc(4 * (size_t)ne);
        ck_assert_ptr_nonnull(y);
        tt->to_float(t->data, y, ne);
        int64_t bad = 0, first = -1;
        for (int64_t j = 0; j < ne; j++) {
            if (memcmp(y + j, r->data + 4 * j, 4)) {
                if (first < 0)
                    first = j;
                bad++;
            }
        }
        if (bad) {
            float want;
            memcpy(&want, r->data + 4 * first, 4);
            ck_abort_msg("%s: %s (%s): %lld of %lld values differ from llama.cpp; first [%lld] %.9g != %.9g", qpath,
                         t->name, tt->name, (long long)bad, (long long)ne, (long long)first, y[first], want);
        }
        free(y);
        n_cmp++;
    }
    qk_gguf_close(q);
    qk_gguf_close(dq);
    return n_cmp;
}

START_TEST(test_blocks_golden_decode_all_files)
{
    QK_REQUIRE_DATA(dir_probe, GOLDEN "/stories260K-pad192-q8_0-pure.gguf");
    (void)dir_probe;
    const char *dir = qk_test_data(GOLDEN);
    ck_assert_ptr_nonnull(dir);
    char dirbuf[4096];
    snprintf(dirbuf, sizeof dirbuf, "%s", dir);
    DIR *d = opendir(dirbuf);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    int n_files = 0, n_tensors = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".gguf") || strstr(e->d_name, "-f32.gguf"))
            continue;
        char qpath[8192], gz[8192];
        int k1 = snprintf(qpath, sizeof qpath, "%s/%s", dirbuf, e->d_name);
        int k2 = snprintf(gz, sizeof gz, "%s/%.*s.dequant-f32.gguf.gz", dirbuf, (int)(len - 5), e->d_name);
        ck_assert(k1 > 0 && (size_t)k1 < sizeof qpath && k2 > 0 && (size_t)k2 < sizeof gz);
        ck_assert_msg(qk_file_exists(gz), "no dequantized reference for %s", qpath);
        n_tensors += check_golden_decode(qpath, gz);
        n_files++;
    }
    closedir(d);
    fprintf(stderr, "golden decode: %d files, %d tensors bit-exact\n", n_files, n_tensors);
    ck_assert_int_ge(n_files, 25);
}
END_TEST

/* ---------------------------------------------------------- golden encode */

/* Encode every quantized tensor of a golden file from the F32 source with
 * the reference encoder and compare bytes. Fills the number of differing
 * blocks (and of blocks where the type's fast encoder differs), and the
 * squared errors (against the F32 source) of quantkit's and llama.cpp's
 * decode over the quantized tensors. */
typedef struct {
    int64_t blocks, bad_blocks, fast_bad_blocks;
    int tensors, bad_tensors;
    double err_ours, err_golden;
} encode_stats;

static void golden_encode(encode_stats *st, const char *f32_rel, const char *q_rel, const char *imx_rel)
{
    memset(st, 0, sizeof *st);
    const char *fpath = qk_test_data(f32_rel);
    const char *qpath = qk_test_data(q_rel);
    ck_assert_ptr_nonnull(fpath);
    ck_assert_ptr_nonnull(qpath);
    imatrix im = {0};
    if (imx_rel) {
        const char *ipath = qk_test_data(imx_rel);
        ck_assert_ptr_nonnull(ipath);
        imatrix_load(&im, ipath);
    }
    qk_gguf *f = open_gguf(fpath);
    qk_gguf *q = open_gguf(qpath);
    for (int64_t i = 0; i < qk_gguf_n_tensors(q); i++) {
        const qk_gguf_tensor *t = qk_gguf_tensor_at(q, i);
        const qk_type_traits *tt = qk_type_get(t->type);
        if (!tt || !tt->is_quantized)
            continue;
        const qk_gguf_tensor *s = qk_gguf_find_tensor(f, t->name);
        ck_assert_ptr_nonnull(s);
        ck_assert_int_eq(s->type, QK_TYPE_F32);
        const int64_t n0 = t->ne[0];
        const int64_t nrows = t->ne[1] * t->ne[2] * t->ne[3];
        const size_t rb = row_bytes(t->type, n0);
        ck_assert_uint_eq(t->nbytes, rb * (uint64_t)nrows);
        const float *imp = imx_rel ? imatrix_find(&im, t->name, n0) : NULL;
        uint8_t *row = malloc(rb);
        float *xs = malloc(4 * (size_t)n0), *y = malloc(4 * (size_t)n0), *yg = malloc(4 * (size_t)n0);
        ck_assert(row && xs && y && yg);
        const int64_t bpr = n0 / tt->block_size;
        int64_t bad = 0;
        for (int64_t r = 0; r < nrows; r++) {
            memcpy(xs, s->data + 4 * (size_t)(r * n0), 4 * (size_t)n0);
            const uint8_t *want = t->data + rb * (size_t)r;
            tt->from_float_ref(xs, row, n0, imp);
            for (int64_t b = 0; b < bpr; b++)
                if (memcmp(row + b * tt->type_size, want + b * tt->type_size, tt->type_size))
                    bad++;
            if (tt->from_float) {
                uint8_t *fast = malloc(rb);
                ck_assert_ptr_nonnull(fast);
                tt->from_float(xs, fast, n0, imp);
                for (int64_t b = 0; b < bpr; b++)
                    if (memcmp(fast + b * tt->type_size, want + b * tt->type_size, tt->type_size))
                        st->fast_bad_blocks++;
                free(fast);
            }
            tt->to_float(row, y, n0);
            tt->to_float(want, yg, n0);
            for (int64_t j = 0; j < n0; j++) {
                st->err_ours += ((double)y[j] - xs[j]) * ((double)y[j] - xs[j]);
                st->err_golden += ((double)yg[j] - xs[j]) * ((double)yg[j] - xs[j]);
            }
        }
        st->blocks += bpr * nrows;
        st->bad_blocks += bad;
        st->tensors++;
        if (bad) {
            st->bad_tensors++;
            fprintf(stderr, "  %s %s: %lld of %lld blocks differ\n", q_rel, t->name, (long long)bad,
                    (long long)(bpr * nrows));
        }
        free(row);
        free(xs);
        free(y);
        free(yg);
    }
    qk_gguf_close(f);
    qk_gguf_close(q);
    if (imx_rel)
        imatrix_free(&im);
    fprintf(stderr, "golden encode %s: %d tensors, %lld/%lld blocks differ, sq.err quantkit %.9g llama.cpp %.9g\n",
            q_rel, st->tensors, (long long)st->bad_blocks, (long long)st->blocks, st->err_ours, st->err_golden);
}

/* Byte equality required. */
static void expect_bytes_equal(const char *f32_rel, const char *q_rel, const char *imx_rel)
{
    encode_stats st;
    golden_encode(&st, f32_rel, q_rel, imx_rel);
    ck_assert_int_gt(st.tensors, 0);
    ck_assert_msg(st.bad_blocks == 0, "%s: %lld of %lld blocks differ from llama.cpp's bytes", q_rel,
                  (long long)st.bad_blocks, (long long)st.blocks);
    ck_assert_msg(st.fast_bad_blocks == 0, "%s: with the fast encoders %lld of %lld blocks differ from llama.cpp's "
                  "bytes", q_rel, (long long)st.fast_bad_blocks, (long long)st.blocks);
}

#define PAD192_F32 GOLDEN "/stories260K-pad192-f32.gguf"
#define PAD256_F32 GOLDEN "/stories260K-pad256-f32.gguf"
#define IMX192 GOLDEN "/imatrix-stories260K-pad192-c128.dat"
#define IMX256 GOLDEN "/imatrix-stories260K-pad256-c128.dat"

#define GOLDEN_ENCODE_TEST(tname, f32, qfile, imx)                                                \
    START_TEST(tname)                                                                              \
    {                                                                                              \
        QK_REQUIRE_DATA(probe_f, f32);                                                             \
        QK_REQUIRE_DATA(probe_q, GOLDEN "/" qfile);                                                \
        (void)probe_f;                                                                             \
        (void)probe_q;                                                                             \
        expect_bytes_equal(f32, GOLDEN "/" qfile, imx);                                            \
    }                                                                                              \
    END_TEST

GOLDEN_ENCODE_TEST(test_blocks_golden_encode_q8_0, PAD192_F32, "stories260K-pad192-q8_0-pure.gguf", NULL)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_q4_0, PAD192_F32, "stories260K-pad192-q4_0-pure.gguf", NULL)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_q4_1, PAD192_F32, "stories260K-pad192-q4_1-pure.gguf", NULL)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_q5_0, PAD192_F32, "stories260K-pad192-q5_0-pure.gguf", NULL)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_q5_1, PAD192_F32, "stories260K-pad192-q5_1-pure.gguf", NULL)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_q8_0_pad256, PAD256_F32, "stories260K-pad256-q8_0-pure.gguf", NULL)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_q4_0_pad256, PAD256_F32, "stories260K-pad256-q4_0-pure.gguf", NULL)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_q2_k, PAD256_F32, "stories260K-pad256-q2_k-pure.gguf", NULL)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_q3_k, PAD256_F32, "stories260K-pad256-q3_k-pure.gguf", NULL)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_q4_k, PAD256_F32, "stories260K-pad256-q4_k-pure.gguf", NULL)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_q5_k, PAD256_F32, "stories260K-pad256-q5_k-pure.gguf", NULL)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_q6_k, PAD256_F32, "stories260K-pad256-q6_k-pure.gguf", NULL)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_iq4_nl, PAD192_F32, "stories260K-pad192-iq4_nl-pure.gguf", NULL)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_iq4_nl_pad256, PAD256_F32, "stories260K-pad256-iq4_nl-pure.gguf", NULL)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_iq4_xs, PAD256_F32, "stories260K-pad256-iq4_xs-pure.gguf", NULL)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_q4_k_imatrix, PAD256_F32, "stories260K-pad256-q4_k-pure-imx.gguf", IMX256)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_q5_k_imatrix, PAD256_F32, "stories260K-pad256-q5_k-pure-imx.gguf", IMX256)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_q6_k_imatrix, PAD256_F32, "stories260K-pad256-q6_k-pure-imx.gguf", IMX256)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_iq4_xs_imatrix, PAD256_F32, "stories260K-pad256-iq4_xs-pure-imx.gguf", IMX256)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_iq4_nl_imatrix, PAD192_F32, "stories260K-pad192-iq4_nl-pure-imx.gguf", IMX192)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_q4_0_imatrix, PAD192_F32, "stories260K-pad192-q4_0-pure-imx.gguf", IMX192)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_q4_1_imatrix, PAD192_F32, "stories260K-pad192-q4_1-pure-imx.gguf", IMX192)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_q5_0_imatrix, PAD192_F32, "stories260K-pad192-q5_0-pure-imx.gguf", IMX192)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_q5_1_imatrix, PAD192_F32, "stories260K-pad192-q5_1-pure-imx.gguf", IMX192)

/* The default Q4_K_M mix holds Q4_K and Q6_K tensors side by side. */
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_q4_k_m_mix, PAD256_F32, "stories260K-pad256-q4_k_m.gguf", NULL)
GOLDEN_ENCODE_TEST(test_blocks_golden_encode_q4_k_m_mix_imatrix, PAD256_F32, "stories260K-pad256-q4_k_m-imx.gguf", IMX256)

/* ------------------------------------------------------------ round trip */

START_TEST(test_blocks_round_trip_error_limits)
{
    const int64_t n = 4096, rows = 64;
    float *x = malloc(4 * (size_t)n), *y = malloc(4 * (size_t)n);
    ck_assert(x && y);
    for (int ti = 0; ti < N_TYPES; ti++) {
        const int type = k_types[ti];
        g_rng = 0x1234567u + (uint64_t)ti;
        double se = 0, sx = 0;
        for (int r = 0; r < rows; r++) {
            for (int64_t j = 0; j < n; j++)
                x[j] = 0.02f * rnd_gauss();
            round_trip(type, x, y, n, NULL);
            for (int64_t j = 0; j < n; j++) {
                ck_assert(isfinite(y[j]));
                se += ((double)y[j] - x[j]) * ((double)y[j] - x[j]);
                sx += (double)x[j] * x[j];
            }
        }
        double rel = sqrt(se / sx);
        ck_assert_msg(rel <= rt_limit(type), "%s: relative RMS error %.5f above its limit %.5f", qk_type_name(type),
                      rel, rt_limit(type));
        /* and not absurdly below: a broken decoder returning x exactly would pass */
        ck_assert_msg(rel >= rt_limit(type) / 3, "%s: relative RMS error %.6f suspiciously small", qk_type_name(type),
                      rel);
    }
    free(x);
    free(y);
}
END_TEST

/* With an importance vector, weighted error (sum w*(y-x)^2) must not get
 * worse than the plain encoder's on the same data, for types whose weighted
 * path differs from the plain one. */
START_TEST(test_blocks_importance_lowers_weighted_error)
{
    const int64_t n = 2048, rows = 32;
    float *x = malloc(4 * (size_t)n), *y = malloc(4 * (size_t)n), *w = malloc(4 * (size_t)n);
    ck_assert(x && y && w);
    const int types[] = {QK_TYPE_Q4_0, QK_TYPE_Q4_1, QK_TYPE_Q5_0, QK_TYPE_Q5_1, QK_TYPE_Q2_K, QK_TYPE_Q3_K,
                         QK_TYPE_Q4_K, QK_TYPE_Q5_K, QK_TYPE_Q6_K, QK_TYPE_IQ4_NL, QK_TYPE_IQ4_XS};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        g_rng = 0xabcdefu + ti;
        for (int64_t j = 0; j < n; j++) {
            float g = rnd_gauss();
            w[j] = (j % 7 == 0) ? 50.0f * g * g : 0.1f * g * g; /* a few heavy columns */
        }
        double e_plain = 0, e_imp = 0;
        for (int r = 0; r < rows; r++) {
            for (int64_t j = 0; j < n; j++)
                x[j] = rnd_gauss();
            round_trip(types[ti], x, y, n, NULL);
            for (int64_t j = 0; j < n; j++)
                e_plain += w[j] * ((double)y[j] - x[j]) * ((double)y[j] - x[j]);
            round_trip(types[ti], x, y, n, w);
            for (int64_t j = 0; j < n; j++) {
                ck_assert(isfinite(y[j]));
                e_imp += w[j] * ((double)y[j] - x[j]) * ((double)y[j] - x[j]);
            }
        }
        ck_assert_msg(e_imp < e_plain, "%s: weighted error with importance %.6g not below plain %.6g",
                      qk_type_name(types[ti]), e_imp, e_plain);
    }
    free(x);
    free(y);
    free(w);
}
END_TEST

/* ------------------------------------------------------------ edge cases */

/* Encode x[n] with and without an importance vector; decode must be finite
 * and within `tol` (absolute) of x where tol >= 0. */
static void edge_check(int type, const float *x, int64_t n, double tol, const char *what)
{
    float *y = malloc(4 * (size_t)n), *w = malloc(4 * (size_t)n);
    ck_assert(y && w);
    for (int64_t j = 0; j < n; j++)
        w[j] = 1.0f;
    for (int pass = 0; pass < 2; pass++) {
        round_trip(type, x, y, n, pass ? w : NULL);
        for (int64_t j = 0; j < n; j++) {
            ck_assert_msg(isfinite(y[j]), "%s %s%s: element %lld decodes to %g", qk_type_name(type), what,
                          pass ? " (importance)" : "", (long long)j, y[j]);
            if (tol >= 0)
                ck_assert_msg(fabs((double)y[j] - x[j]) <= tol, "%s %s%s: element %lld: %.9g -> %.9g (tol %g)",
                              qk_type_name(type), what, pass ? " (importance)" : "", (long long)j, x[j], y[j], tol);
        }
    }
    free(y);
    free(w);
}

START_TEST(test_blocks_all_zeros_decode_to_zero)
{
    const int64_t n = 512;
    float x[512] = {0};
    for (int ti = 0; ti < N_TYPES; ti++)
        edge_check(k_types[ti], x, n, 0.0, "all zeros");
}
END_TEST

START_TEST(test_blocks_huge_outlier_stays_finite)
{
    const int64_t n = 512;
    float x[512];
    for (int ti = 0; ti < N_TYPES; ti++) {
        g_rng = 77 + (uint64_t)ti;
        for (int64_t j = 0; j < n; j++)
            x[j] = 0.01f * rnd_gauss();
        x[37] = 30000.0f;
        x[300] = -30000.0f;
        edge_check(k_types[ti], x, n, -1, "outlier");
        /* the outlier itself is kept to within its block's step */
        float y[512];
        round_trip(k_types[ti], x, y, n, NULL);
        ck_assert_msg(fabsf(y[37] - 30000.0f) < 0.35f * 30000.0f, "%s: outlier 30000 decodes to %g",
                      qk_type_name(k_types[ti]), y[37]);
        ck_assert_msg(fabsf(y[300] + 30000.0f) < 0.35f * 30000.0f, "%s: outlier -30000 decodes to %g",
                      qk_type_name(k_types[ti]), y[300]);
    }
}
END_TEST

START_TEST(test_blocks_denormals_stay_finite)
{
    const int64_t n = 512;
    float x[512];
    for (int ti = 0; ti < N_TYPES; ti++) {
        /* float denormals alone, then mixed with one normal value */
        for (int64_t j = 0; j < n; j++)
            x[j] = (j % 3 ? 1 : -1) * 1e-41f * (float)(j % 17);
        edge_check(k_types[ti], x, n, 1e-30, "denormals");
        x[5] = 1e-38f; /* the smallest normals: 1/d overflows for d = max/-8 etc. */
        edge_check(k_types[ti], x, n, 1e-30, "denormals + 1e-38");
        x[5] = 1.0f;
        edge_check(k_types[ti], x, n, 1.0, "denormals + 1");
    }
}
END_TEST

START_TEST(test_blocks_fp16_extremes_stay_finite)
{
    const int64_t n = 512;
    float x[512];
    for (int ti = 0; ti < N_TYPES; ti++) {
        for (int64_t j = 0; j < n; j++)
            x[j] = (j % 2) ? 65504.0f : -65504.0f;
        edge_check(k_types[ti], x, n, -1, "+-65504");
        for (int64_t j = 0; j < n; j++)
            x[j] = 65504.0f;
        edge_check(k_types[ti], x, n, -1, "all 65504");
        g_rng = 5 + (uint64_t)ti;
        for (int64_t j = 0; j < n; j++)
            x[j] = 65504.0f * (2 * rnd_uniform() - 1);
        edge_check(k_types[ti], x, n, -1, "uniform in +-65504");
    }
}
END_TEST

/* A constant positive block is reproduced to 2% by every type. */
START_TEST(test_blocks_constant_block)
{
    const int64_t n = 256;
    float x[256], y[256];
    for (int64_t j = 0; j < n; j++)
        x[j] = 0.75f;
    for (int ti = 0; ti < N_TYPES; ti++) {
        round_trip(k_types[ti], x, y, n, NULL);
        for (int64_t j = 0; j < n; j++)
            ck_assert_msg(fabsf(y[j] - 0.75f) <= 0.75f * 0.02f, "%s: constant 0.75 decodes to %g at %lld",
                          qk_type_name(k_types[ti]), y[j], (long long)j);
    }
}
END_TEST

/* ------------------------------------------------- hand-made block layouts */

/* Decoders on hand-built blocks pin the bit layouts independently of the
 * golden files. */
START_TEST(test_blocks_decode_hand_built)
{
    float y[256];
    /* Q4_0: d = 0.5, element j = (j%16) - 8 in low nibbles, high = 15 - that */
    qk_block_q4_0 q40;
    qk_wr_u16(q40.d, qk_f32_to_fp16(0.5f));
    for (int j = 0; j < 16; j++)
        q40.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    qk_blocks_q4_0_to_float(&q40, y, 32);
    for (int j = 0; j < 16; j++) {
        ck_assert_float_eq(y[j], 0.5f * (j - 8));
        ck_assert_float_eq(y[j + 16], 0.5f * (7 - j));
    }
    /* Q5_0: qh bit 3 sets the 5th bit of element 3, bit 20 of element 20 */
    qk_block_q5_0 q50;
    memset(&q50, 0, sizeof q50);
    qk_wr_u16(q50.d, qk_f32_to_fp16(1.0f));
    qk_wr_u32(q50.qh, (1u << 3) | (1u << 20));
    qk_blocks_q5_0_to_float(&q50, y, 32);
    for (int j = 0; j < 32; j++)
        ck_assert_float_eq(y[j], (j == 3 || j == 20) ? 0.0f : -16.0f);
    /* Q6_K: only element 200 (half 1, l = 8, third quarter -> ql[64+8] hi,
     * qh[32+8] bits 4-5) gets q = 63; scale index for 200 is 12 */
    qk_block_q6_k q6;
    memset(&q6, 0, sizeof q6);
    for (int s = 0; s < 16; s++)
        q6.scales[s] = (int8_t)(s + 1);
    qk_wr_u16(q6.d, qk_f32_to_fp16(0.25f));
    for (int j = 0; j < 128; j++)
        q6.ql[j] = 0x00;
    q6.ql[64 + 8] = 0xF0;
    q6.qh[32 + 8] = 0x30;
    qk_blocks_q6_k_to_float(&q6, y, 256);
    for (int j = 0; j < 256; j++) {
        float want = 0.25f * (j / 16 + 1) * (j == 200 ? 31 : -32);
        ck_assert_msg(y[j] == want, "Q6_K element %d: %g != %g", j, y[j], want);
    }
    /* IQ4_XS: sub-block 5 scale ls = 0x2A (low 0xA in the high nibble of
     * scales_l[2], high 2 bits = 2 at bits 10-11 of scales_h), others 32 */
    qk_block_iq4_xs xs;
    memset(&xs, 0, sizeof xs);
    qk_wr_u16(xs.d, qk_f32_to_fp16(2.0f));
    uint16_t sh = 0;
    for (int ib = 0; ib < 8; ib++)
        sh |= (uint16_t)(2 << (2 * ib));
    qk_wr_u16(xs.scales_h, sh);
    xs.scales_l[2] = 0xA0;
    memset(xs.qs, 0xFF, sizeof xs.qs);
    qk_blocks_iq4_xs_to_float(&xs, y, 256);
    for (int j = 0; j < 256; j++) {
        int ls = (j / 32 == 5) ? 0x2A : 0x20;
        ck_assert_float_eq(y[j], 2.0f * (ls - 32) * 113);
    }
}
END_TEST

/* Encoders write whole blocks: two encodes into buffers pre-filled with
 * different garbage give identical bytes (no field left unwritten). */
START_TEST(test_blocks_encoders_write_every_byte)
{
    const int64_t n = 512;
    float x[512];
    g_rng = 99;
    for (int64_t j = 0; j < n; j++)
        x[j] = rnd_gauss();
    x[3] = 0;
    for (int64_t j = 256; j < 288; j++)
        x[j] = 0; /* one zero sub-block */
    for (int ti = 0; ti < N_TYPES; ti++) {
        const qk_type_traits *t = qk_type_get(k_types[ti]);
        size_t rb = row_bytes(k_types[ti], n);
        uint8_t *a = malloc(rb), *b = malloc(rb);
        memset(a, 0x00, rb);
        memset(b, 0xA5, rb);
        t->from_float_ref(x, a, n, NULL);
        t->from_float_ref(x, b, n, NULL);
        ck_assert_msg(!memcmp(a, b, rb), "%s encoder leaves bytes unwritten", t->name);
        free(a);
        free(b);
    }
}
END_TEST

/* Encoders are block-local: one call over a row gives the same bytes as
 * one call per block, with and without importance -- except the weighted
 * paths of Q4_0/Q4_1/Q5_0/Q5_1, whose sigma2 spans the row (llama.cpp's
 * n_per_row): for them a split must change the bytes. */
START_TEST(test_blocks_encoders_block_local)
{
    const int64_t n = 1024;
    float x[1024], w[1024];
    g_rng = 4242;
    for (int64_t j = 0; j < n; j++) {
        x[j] = rnd_gauss();
        w[j] = rnd_uniform();
    }
    for (int ti = 0; ti < N_TYPES; ti++) {
        const qk_type_traits *t = qk_type_get(k_types[ti]);
        size_t rb = row_bytes(k_types[ti], n);
        uint8_t *a = malloc(rb), *b = malloc(rb);
        ck_assert(a && b);
        for (int pass = 0; pass < 2; pass++) {
            const float *imp = pass ? w : NULL;
            t->from_float_ref(x, a, n, imp);
            for (int64_t k = 0; k < n / t->block_size; k++)
                t->from_float_ref(x + k * t->block_size, b + (size_t)k * t->type_size, t->block_size,
                                  imp ? imp + k * t->block_size : NULL);
            const int row_sigma = pass && (k_types[ti] == QK_TYPE_Q4_0 || k_types[ti] == QK_TYPE_Q4_1 ||
                                           k_types[ti] == QK_TYPE_Q5_0 || k_types[ti] == QK_TYPE_Q5_1);
            if (row_sigma)
                ck_assert_msg(memcmp(a, b, rb) != 0, "%s (importance): per-block encode equals the row encode, "
                              "so sigma2 is not the row's", t->name);
            else
                ck_assert_msg(!memcmp(a, b, rb), "%s%s: row encode differs from per-block encode", t->name,
                              pass ? " (importance)" : "");
        }
        free(a);
        free(b);
    }
}
END_TEST

/* The types with a fast encoder (formats/blocks_avx2.c). */
static int has_fast(int type)
{
    return type == QK_TYPE_Q8_0 || type == QK_TYPE_Q4_0 || type == QK_TYPE_Q4_K || type == QK_TYPE_Q5_K ||
           type == QK_TYPE_Q6_K;
}

START_TEST(test_blocks_traits_rows_filled)
{
    for (int ti = 0; ti < N_TYPES; ti++) {
        const qk_type_traits *t = qk_type_get(k_types[ti]);
        ck_assert_ptr_nonnull(t);
        ck_assert(t->to_float != NULL);
        ck_assert(t->from_float_ref != NULL);
        ck_assert_msg((t->from_float != NULL) == has_fast(k_types[ti]), "%s: fast encoder %s", t->name,
                      t->from_float ? "unexpected" : "missing");
        ck_assert(t->is_quantized);
    }
}
END_TEST

/* ------------------------------------------------ fast == reference bytes */

static float f_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Fill x[n] (n a multiple of 256) with test pattern `kind`; returns its
 * name, NULL past the last one. Every pattern is deterministic. */
static const char *fast_pattern(int kind, float *x, int64_t n)
{
    g_rng = 1000 + (uint64_t)kind;
    switch (kind) {
    case 0:
        for (int64_t j = 0; j < n; j++)
            x[j] = 0.02f * rnd_gauss();
        return "gaussian 0.02";
    case 1: /* a different scale per 16 elements: sub-blocks of every size */
        for (int64_t j = 0; j < n; j++)
            x[j] = rnd_gauss() * ldexpf(1.0f, (int)((j / 16 * 7919) % 60) - 40);
        return "gaussian, scale 2^-40..2^19 per 16";
    case 2:
        memset(x, 0, (size_t)n * sizeof *x);
        return "all zeros";
    case 3:
        for (int64_t j = 0; j < n; j++)
            x[j] = (j / 8) % 3 == 0 ? -0.0f : (j / 8) % 3 == 1 ? 0.0f : (j % 2 ? -0.0f : 0.0f);
        return "+0 / -0";
    case 4:
        for (int64_t j = 0; j < n; j++)
            x[j] = 0.01f * rnd_gauss();
        for (int64_t j = 37; j < n; j += 1000)
            x[j] = (j / 1000) % 2 ? -65504.0f : 30000.0f;
        return "one huge outlier per 1000";
    case 5:
        for (int64_t j = 0; j < n; j++)
            x[j] = (j % 3 ? 1 : -1) * 1e-41f * (float)(j % 17);
        return "denormals";
    case 6:
        for (int64_t j = 0; j < n; j++)
            x[j] = (j % 3 ? 1 : -1) * 1e-41f * (float)(j % 17);
        for (int64_t j = 5; j < n; j += 64)
            x[j] = (j / 64) % 2 ? 1e-38f : 1.0f;
        return "denormals + 1e-38 / 1";
    case 7:
        for (int64_t j = 0; j < n; j++)
            x[j] = (j % 2) ? 65504.0f : -65504.0f;
        return "+-65504 alternating";
    case 8:
        for (int64_t j = 0; j < n; j++)
            x[j] = (j / 32) % 2 ? 65504.0f : -65504.0f;
        return "blocks of 65504 and of -65504";
    case 9:
        for (int64_t j = 0; j < n; j++)
            x[j] = 65504.0f * (2 * rnd_uniform() - 1);
        return "uniform in +-65504";
    case 10:
        for (int64_t j = 0; j < n; j++)
            x[j] = (j / 256) % 2 ? 0.75f : -0.75f;
        return "constant super-blocks";
    case 11: /* halves: ties of roundf and of nearest_int */
        for (int64_t j = 0; j < n; j++)
            x[j] = (float)((int)(rnd_u32() % 509) - 254) * 0.5f;
        for (int64_t j = 0; j < n; j += 32)
            x[j] = 127.0f; /* Q8_0 scale 1: x*id is x itself */
        return "multiples of 0.5";
    case 12: /* finite floats of every exponent */
        for (int64_t j = 0; j < n; j++) {
            uint32_t u;
            do
                u = rnd_u32();
            while ((u & 0x7f800000u) == 0x7f800000u);
            x[j] = f_from_bits(u);
        }
        return "random finite bit patterns";
    case 13: /* one nonzero per 16, all-positive and all-negative sub-blocks */
        for (int64_t j = 0; j < n; j++) {
            int64_t sb = j / 16;
            x[j] = sb % 3 == 0 ? (j % 16 == 7 ? rnd_gauss() : 0.0f) : sb % 3 == 1 ? fabsf(rnd_gauss()) + 0.5f
                                                                                  : -fabsf(rnd_gauss()) - 0.5f;
        }
        return "sparse / one-signed sub-blocks";
    case 14:
        for (int64_t j = 0; j < n; j++)
            x[j] = 1e-17f * rnd_gauss() + ((j / 256) % 2 ? 0.0f : 1e-15f);
        return "around GROUP_MAX_EPS";
    case 15: /* equal magnitudes of both signs: the first one decides Q4_0's scale */
        for (int64_t j = 0; j < n; j++)
            x[j] = (rnd_u32() % 4 == 0 ? 2.0f : 1.0f) * (rnd_u32() % 2 ? 1.0f : -1.0f);
        return "ties of |x|";
    case 16:
        for (int64_t j = 0; j < n; j++)
            x[j] = rnd_gauss();
        for (int64_t j = 3; j < n; j += 300)
            x[j] = (j / 300) % 3 == 0 ? NAN : (j / 300) % 3 == 1 ? INFINITY : -INFINITY;
        return "NaN and +-Inf";
    default:
        return NULL;
    }
}

/* For every type with a fast encoder: from_float writes exactly
 * from_float_ref's bytes on random and adversarial data, whole rows and
 * single blocks, without importance (the SIMD path) and with it. */
static void fast_equals_reference(void)
{
    const int64_t n = 4096;
    float *x = malloc((size_t)n * sizeof *x), *w = malloc((size_t)n * sizeof *w);
    ck_assert(x && w);
    g_rng = 31337;
    for (int64_t j = 0; j < n; j++)
        w[j] = rnd_uniform();
    int n_checked = 0;
    for (int ti = 0; ti < N_TYPES; ti++) {
        const qk_type_traits *t = qk_type_get(k_types[ti]);
        if (!t->from_float)
            continue;
        size_t rb = row_bytes(k_types[ti], n);
        uint8_t *a = malloc(rb), *b = malloc(rb);
        ck_assert(a && b);
        const char *what;
        for (int kind = 0; (what = fast_pattern(kind, x, n)); kind++) {
            for (int pass = 0; pass < 2; pass++) {
                const float *imp = pass ? w : NULL;
                memset(a, 0x00, rb);
                memset(b, 0xA5, rb);
                t->from_float_ref(x, a, n, imp);
                t->from_float(x, b, n, imp);
                for (size_t k = 0; k < rb; k++)
                    if (a[k] != b[k])
                        ck_abort_msg("%s, %s%s: fast encoder byte %zu (block %zu) is 0x%02x, reference 0x%02x",
                                     t->name, what, pass ? " (importance)" : "", k, k / t->type_size, b[k], a[k]);
                /* one block per call, as a short row */
                if (!pass) {
                    memset(b, 0x5A, rb);
                    for (int64_t k = 0; k < n / t->block_size; k++)
                        t->from_float(x + k * t->block_size, b + (size_t)k * t->type_size, t->block_size, NULL);
                    ck_assert_msg(!memcmp(a, b, rb), "%s, %s: fast encoder per block differs from the reference",
                                  t->name, what);
                }
            }
        }
        /* many Gaussian rows: rare rounding cases of the scale searches */
        for (int r = 0; r < 256; r++) {
            g_rng = 5000 + (uint64_t)r;
            for (int64_t j = 0; j < n; j++)
                x[j] = rnd_gauss() * (r % 2 ? 1.0f : 0.013f);
            t->from_float_ref(x, a, n, NULL);
            t->from_float(x, b, n, NULL);
            ck_assert_msg(!memcmp(a, b, rb), "%s, Gaussian row %d: fast encoder differs from the reference", t->name, r);
            /* importance spanning decades, as GPTQ's column weights 1/U_jj^2 do */
            for (int64_t j = 0; j < n; j++)
                w[j] = expf(2.0f * rnd_gauss());
            t->from_float_ref(x, a, n, w);
            t->from_float(x, b, n, w);
            ck_assert_msg(!memcmp(a, b, rb), "%s, Gaussian row %d (importance): fast encoder differs from the "
                          "reference", t->name, r);
        }
        n_checked++;
        free(a);
        free(b);
    }
    ck_assert_int_eq(n_checked, 5);
    free(x);
    free(w);
}

/* ... for each instruction set the CPU has: AVX-512 and AVX2 (the K-quant
 * searches have both). */
START_TEST(test_blocks_fast_equals_reference)
{
    for (int level = 2; level >= 1; level--) {
        if (qk_blocks_set_simd(level) != level) {
            printf("fast encoders: this CPU has no %s, that path is not tested here\n", level == 2 ? "AVX-512" : "AVX2");
            continue;
        }
        fast_equals_reference();
    }
    qk_blocks_set_simd(2);
}
END_TEST

Suite *qk_test_suite_blocks(void)
{
    Suite *s = suite_create("blocks");
    TCase *tc = tcase_create("codecs");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_blocks_traits_rows_filled);
    tcase_add_test(tc, test_blocks_fast_equals_reference);
    tcase_add_test(tc, test_blocks_decode_hand_built);
    tcase_add_test(tc, test_blocks_encoders_write_every_byte);
    tcase_add_test(tc, test_blocks_encoders_block_local);
    tcase_add_test(tc, test_blocks_round_trip_error_limits);
    tcase_add_test(tc, test_blocks_importance_lowers_weighted_error);
    tcase_add_test(tc, test_blocks_all_zeros_decode_to_zero);
    tcase_add_test(tc, test_blocks_huge_outlier_stays_finite);
    tcase_add_test(tc, test_blocks_denormals_stay_finite);
    tcase_add_test(tc, test_blocks_fp16_extremes_stay_finite);
    tcase_add_test(tc, test_blocks_constant_block);
    suite_add_tcase(s, tc);

    TCase *g = tcase_create("golden");
    tcase_set_timeout(g, 1200);
    tcase_add_test(g, test_blocks_golden_decode_all_files);
    tcase_add_test(g, test_blocks_golden_encode_q8_0);
    tcase_add_test(g, test_blocks_golden_encode_q4_0);
    tcase_add_test(g, test_blocks_golden_encode_q4_1);
    tcase_add_test(g, test_blocks_golden_encode_q5_0);
    tcase_add_test(g, test_blocks_golden_encode_q5_1);
    tcase_add_test(g, test_blocks_golden_encode_q8_0_pad256);
    tcase_add_test(g, test_blocks_golden_encode_q4_0_pad256);
    tcase_add_test(g, test_blocks_golden_encode_q2_k);
    tcase_add_test(g, test_blocks_golden_encode_q3_k);
    tcase_add_test(g, test_blocks_golden_encode_q4_k);
    tcase_add_test(g, test_blocks_golden_encode_q5_k);
    tcase_add_test(g, test_blocks_golden_encode_q6_k);
    tcase_add_test(g, test_blocks_golden_encode_iq4_nl);
    tcase_add_test(g, test_blocks_golden_encode_iq4_nl_pad256);
    tcase_add_test(g, test_blocks_golden_encode_iq4_xs);
    tcase_add_test(g, test_blocks_golden_encode_q4_k_imatrix);
    tcase_add_test(g, test_blocks_golden_encode_q5_k_imatrix);
    tcase_add_test(g, test_blocks_golden_encode_q6_k_imatrix);
    tcase_add_test(g, test_blocks_golden_encode_iq4_xs_imatrix);
    tcase_add_test(g, test_blocks_golden_encode_iq4_nl_imatrix);
    tcase_add_test(g, test_blocks_golden_encode_q4_0_imatrix);
    tcase_add_test(g, test_blocks_golden_encode_q4_1_imatrix);
    tcase_add_test(g, test_blocks_golden_encode_q5_0_imatrix);
    tcase_add_test(g, test_blocks_golden_encode_q5_1_imatrix);
    tcase_add_test(g, test_blocks_golden_encode_q4_k_m_mix);
    tcase_add_test(g, test_blocks_golden_encode_q4_k_m_mix_imatrix);
    suite_add_tcase(s, g);
    return s;
}
