/* Tests of GPTQ inside ggml blocks (quantize/gptq_method.c) and of
 * qk-quantize --method gptq. */
#include "qk_test.h"

#include <cJSON.h>
#include <math.h>
#include <unistd.h>

#include "quantkit/calib.h"
#include "quantkit/eval.h"
#include "quantkit/forward.h"
#include "quantkit/ggml_types.h"
#include "quantkit/gguf.h"
#include "quantkit/gptq_method.h"
#include "quantkit/metrics.h"
#include "quantkit/quantize.h"

#define G "golden/llamacpp/"
#define CALIB_TEXT "text/tinystories-valid-calib.txt"
#define EVAL_TEXT "text/tinystories-valid-eval.txt"

/* ------------------------------------------------------------ fixtures */

static uint64_t rng_state;
static double urand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}
static double nrand(void)
{
    double u = urand(), v = urand();
    return sqrt(-2 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

/* A synthetic layer: w [rows][cols] ~ N(0, 0.02^2) with a few outliers;
 * inputs X [T][cols] with correlated columns (each a mix of a few shared
 * factors plus noise) and uneven scales; h = X^T X. dead: columns zeroed. */
typedef struct {
    int64_t rows, cols, T;
    float *w;
    double *h;
} layer;

static layer make_layer(uint64_t seed, int64_t rows, int64_t cols, int64_t T, int64_t dead)
{
    layer L = {rows, cols, T, malloc(sizeof(float) * (size_t)(rows * cols)), calloc((size_t)(cols * cols), sizeof(double))};
    rng_state = seed;
    for (int64_t i = 0; i < rows * cols; i++)
        L.w[i] = (float)(0.02 * nrand() * (urand() < 0.01 ? 8 : 1));
    const int nf = 8;
    double *mix = malloc(sizeof(double) * (size_t)(nf * cols)), *scale = malloc(sizeof(double) * (size_t)cols);
    for (int64_t c = 0; c < cols; c++) {
        scale[c] = exp(nrand());
        for (int f = 0; f < nf; f++)
            mix[f * cols + c] = nrand();
    }
    double *x = malloc(sizeof(double) * (size_t)cols);
    for (int64_t t = 0; t < T; t++) {
        double z[8];
        for (int f = 0; f < nf; f++)
            z[f] = nrand();
        for (int64_t c = 0; c < cols; c++) {
            double s = 0.5 * nrand();
            for (int f = 0; f < nf; f++)
                s += z[f] * mix[f * cols + c];
            x[c] = c < dead ? 0.0 : s * scale[c];
        }
        for (int64_t a = 0; a < cols; a++)
            for (int64_t b = 0; b < cols; b++)
                L.h[a * cols + b] += x[a] * x[b];
    }
    free(mix);
    free(scale);
    free(x);
    return L;
}

static void free_layer(layer *L)
{
    free(L->w);
    free(L->h);
}

static const int k_types[] = {QK_TYPE_Q4_0, QK_TYPE_Q4_1, QK_TYPE_Q5_0, QK_TYPE_Q5_1, QK_TYPE_Q8_0, QK_TYPE_IQ4_NL,
                              QK_TYPE_IQ4_XS, QK_TYPE_Q2_K, QK_TYPE_Q3_K, QK_TYPE_Q4_K, QK_TYPE_Q5_K, QK_TYPE_Q6_K};
#define N_TYPES (int)(sizeof k_types / sizeof k_types[0])

/* Decode rows of a packed tensor. */
static float *decode_rows(int type, const void *src, int64_t rows, int64_t cols)
{
    size_t rb;
    ck_assert_int_eq(qk_type_row_bytes(type, cols, &rb), 0);
    float *out = malloc(sizeof(float) * (size_t)(rows * cols));
    for (int64_t r = 0; r < rows; r++)
        qk_type_get(type)->to_float((const uint8_t *)src + (size_t)r * rb, out + r * cols, cols);
    return out;
}

/* ------------------------------------------------------------- library */

START_TEST(test_gptq_method_beats_rtn_every_type)
{
    layer L = make_layer(42, 48, 512, 2048, 0);
    qk_pool *pool;
    ck_assert_int_eq(qk_pool_create(&pool, 2), 0);
    for (int i = 0; i < N_TYPES; i++) {
        int type = k_types[i];
        size_t rb;
        ck_assert_int_eq(qk_type_row_bytes(type, L.cols, &rb), 0);
        uint8_t *rtn = malloc(rb * (size_t)L.rows), *gq = malloc(rb * (size_t)L.rows);
        float *deq = malloc(sizeof(float) * (size_t)(L.rows * L.cols));
        ck_assert_int_eq(qk_quantize_rows(type, L.w, rtn, L.rows, L.cols, NULL, pool), 0);
        float *qr = decode_rows(type, rtn, L.rows, L.cols);
        double e_rtn = qk_gptq_layer_error(L.w, qr, L.rows, L.cols, L.h);
        for (int refine = 0; refine <= 2; refine += 2) {
            qk_gptq_opts o;
            qk_gptq_opts_default(&o, type);
            o.refine = refine;
            qk_gptq_stats st;
            ck_assert_msg(qk_gptq_quantize(&o, L.w, L.rows, L.cols, L.h, gq, deq, pool, &st) == 0, "%s: %s",
                          qk_type_name(type), qk_errmsg());
            /* valid ggml bytes: decoding gives exactly the values the algorithm chose */
            float *qg = decode_rows(type, gq, L.rows, L.cols);
            for (int64_t k = 0; k < L.rows * L.cols; k++)
                ck_assert_msg(qg[k] == deq[k], "%s: element %lld decodes to %g, chosen %g", qk_type_name(type),
                              (long long)k, qg[k], deq[k]);
            double e_gq = qk_gptq_layer_error(L.w, qg, L.rows, L.cols, L.h);
            fprintf(stderr, "%-7s refine %d: layer error RTN %.5g  GPTQ %.5g (%.3fx; after GPTQ pass %.5g)\n",
                    qk_type_name(type), refine, e_rtn, e_gq, e_gq / e_rtn, st.err_gptq);
            ck_assert_msg(e_gq < 0.9 * e_rtn, "%s: GPTQ %g not below RTN %g", qk_type_name(type), e_gq, e_rtn);
            ck_assert_msg(fabs(st.err - e_gq) <= 1e-6 * e_gq, "%s: reported error %g, measured %g", qk_type_name(type),
                          st.err, e_gq);
            if (refine)
                ck_assert_msg(st.err <= st.err_gptq, "%s: refinement raised the error", qk_type_name(type));
            ck_assert_int_eq(st.n_dead, 0);
            ck_assert_int_eq(st.n_raises, 0);
            free(qg);
        }
        free(qr);
        free(rtn);
        free(gq);
        free(deq);
    }
    qk_pool_free(pool);
    free_layer(&L);
}
END_TEST

START_TEST(test_gptq_method_layout_beats_rtn)
{
    layer L = make_layer(7, 32, 256, 1024, 0);
    for (int bits = 4; bits <= 8; bits += 4)
        for (int sym = 0; sym <= 1; sym++) {
            int64_t gs = 64, ng = L.cols / gs;
            uint8_t *q = malloc((size_t)(L.rows * L.cols));
            uint16_t *s = malloc(sizeof(uint16_t) * (size_t)(L.rows * ng)), *z = malloc(sizeof(uint16_t) * (size_t)(L.rows * ng));
            float *rq = malloc(sizeof(float) * (size_t)(L.rows * L.cols)), *deq = malloc(sizeof(float) * (size_t)(L.rows * L.cols));
            for (int64_t r = 0; r < L.rows; r++) {
                ck_assert_int_eq(qk_gptq_rtn_row(L.w + r * L.cols, L.cols, bits, gs, sym, q + r * L.cols, s + r * ng, z + r * ng), 0);
                for (int64_t c = 0; c < L.cols; c++)
                    rq[r * L.cols + c] = (float)(q[r * L.cols + c] - z[r * ng + c / gs]) * qk_fp16_to_f32(s[r * ng + c / gs]);
            }
            double e_rtn = qk_gptq_layer_error(L.w, rq, L.rows, L.cols, L.h);
            qk_gptq_opts o;
            qk_gptq_opts_default(&o, QK_GPTQ_LAYOUT);
            o.layout_bits = bits;
            o.layout_group = gs;
            o.layout_sym = sym;
            qk_gptq_stats st;
            ck_assert_msg(qk_gptq_quantize_layout(&o, L.w, L.rows, L.cols, L.h, q, s, z, deq, NULL, &st) == 0, "%s",
                          qk_errmsg());
            for (int64_t r = 0; r < L.rows; r++)
                for (int64_t c = 0; c < L.cols; c++) {
                    int zz = z[r * ng + c / gs];
                    ck_assert(q[r * L.cols + c] < (1 << bits) && zz >= 1 && zz <= (1 << bits));
                    ck_assert(deq[r * L.cols + c] ==
                              (float)(q[r * L.cols + c] - zz) * qk_fp16_to_f32(s[r * ng + c / gs]));
                }
            double e_gq = qk_gptq_layer_error(L.w, deq, L.rows, L.cols, L.h);
            fprintf(stderr, "GPTQ layout %d-bit %s: RTN %.5g GPTQ %.5g\n", bits, sym ? "sym" : "asym", e_rtn, e_gq);
            ck_assert(e_gq < 0.9 * e_rtn);
            free(q);
            free(s);
            free(z);
            free(rq);
            free(deq);
        }
    free_layer(&L);
}
END_TEST

START_TEST(test_gptq_method_singular_hessian_raises_damping)
{
    /* 32 dead columns and fewer tokens than columns: H is singular beyond
     * the dead columns; with no damping the factorization must fail and the
     * damping be raised */
    layer L = make_layer(3, 16, 256, 40, 32);
    qk_gptq_opts o;
    qk_gptq_opts_default(&o, QK_TYPE_Q4_K);
    o.damp = 0;
    size_t rb;
    qk_type_row_bytes(QK_TYPE_Q4_K, L.cols, &rb);
    uint8_t *dst = malloc(rb * (size_t)L.rows);
    float *deq = malloc(sizeof(float) * (size_t)(L.rows * L.cols));
    qk_gptq_stats st;
    ck_assert_msg(qk_gptq_quantize(&o, L.w, L.rows, L.cols, L.h, dst, deq, NULL, &st) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(st.n_dead, 32);
    ck_assert_int_gt(st.n_raises, 0);
    ck_assert(st.damp > 0);
    for (int64_t k = 0; k < L.rows * L.cols; k++) {
        ck_assert(isfinite(deq[k]));
        if (k % L.cols < 32)
            ck_assert(deq[k] == 0.0f || fabsf(deq[k]) < 1e-3f); /* dead columns are zeroed before quantization */
    }
    ck_assert(isfinite(st.err));
    /* the default damping factorizes it directly; dead columns are still reported */
    qk_gptq_opts_default(&o, QK_TYPE_IQ4_NL);
    ck_assert_int_eq(qk_gptq_quantize(&o, L.w, L.rows, L.cols, L.h, dst, deq, NULL, &st), 0);
    ck_assert_int_eq(st.n_dead, 32);
    ck_assert_int_eq(st.n_raises, 0);
    /* an all-zero Hessian (a layer never reached) is all dead columns: plain rounding */
    memset(L.h, 0, sizeof(double) * (size_t)(L.cols * L.cols));
    ck_assert_int_eq(qk_gptq_quantize(&o, L.w, L.rows, L.cols, L.h, dst, deq, NULL, &st), 0);
    ck_assert_int_eq(st.n_dead, L.cols);
    /* non-finite input is refused */
    L.h[5] = NAN;
    ck_assert_int_eq(qk_gptq_quantize(&o, L.w, L.rows, L.cols, L.h, dst, deq, NULL, &st), QK_ENONFINITE);
    L.h[5] = 0;
    L.w[7] = INFINITY;
    ck_assert_int_eq(qk_gptq_quantize(&o, L.w, L.rows, L.cols, L.h, dst, deq, NULL, &st), QK_ENONFINITE);
    /* a shape that is not a block multiple and an unsupported type */
    L.w[7] = 0;
    ck_assert_int_eq(qk_gptq_quantize(&o, L.w, L.rows, 48, L.h, dst, deq, NULL, &st), QK_EINVAL);
    qk_gptq_opts_default(&o, QK_TYPE_F16);
    ck_assert_int_eq(qk_gptq_quantize(&o, L.w, L.rows, L.cols, L.h, dst, deq, NULL, &st), QK_EINVAL);
    free(dst);
    free(deq);
    free_layer(&L);
}
END_TEST

START_TEST(test_gptq_method_deterministic_threads)
{
    layer L = make_layer(11, 70, 512, 1024, 0);
    const int types[] = {QK_TYPE_IQ4_NL, QK_TYPE_Q4_K};
    for (int i = 0; i < 2; i++)
        for (int act = 0; act <= 1; act++) {
            size_t rb;
            qk_type_row_bytes(types[i], L.cols, &rb);
            uint8_t *a = malloc(rb * (size_t)L.rows), *b = malloc(rb * (size_t)L.rows);
            qk_gptq_opts o;
            qk_gptq_opts_default(&o, types[i]);
            o.act_order = act;
            qk_pool *p1, *p2;
            ck_assert_int_eq(qk_pool_create(&p1, 1), 0);
            ck_assert_int_eq(qk_pool_create(&p2, 2), 0);
            qk_gptq_stats s1, s2;
            ck_assert_int_eq(qk_gptq_quantize(&o, L.w, L.rows, L.cols, L.h, a, NULL, p1, &s1), 0);
            ck_assert_int_eq(qk_gptq_quantize(&o, L.w, L.rows, L.cols, L.h, b, NULL, p2, &s2), 0);
            ck_assert_msg(memcmp(a, b, rb * (size_t)L.rows) == 0, "%s act_order %d: bytes differ between 1 and 2 threads",
                          qk_type_name(types[i]), act);
            /* the reported error is the GPTQ pass's own account (sum e^2 through
             * the Cholesky factor, whose every element is computed the same
             * way on any number of threads: exactly equal) */
            ck_assert_msg(s1.err == s2.err && s1.err_gptq == s2.err_gptq, "err %.17g vs %.17g", s1.err, s2.err);
            qk_pool_free(p1);
            qk_pool_free(p2);
            free(a);
            free(b);
        }
    free_layer(&L);
}
END_TEST

/* --------------------------------------------------------------- tools */

/* Mean KLD, same-top share and quantized PPL of `quant` against `base` on
 * the evaluation text (qk-eval's JSON). */
static void eval_quant(const char *base, const char *quant, const char *extra, double *kld, double *top, double *ppl)
{
    const char *text = qk_test_data(EVAL_TEXT);
    ck_assert_ptr_nonnull(text);
    const char *json = qk_test_tmp("gm-eval.json");
    char *err = NULL;
    int rc = qk_test_run(NULL, &err, "%s --base %s --quant %s --text %s --ctx 256 -q --json %s %s",
                         qk_test_tool("qk-eval"), base, quant, text, json, extra ? extra : "");
    ck_assert_msg(rc == 0, "qk-eval %s: %s", quant, err);
    free(err);
    char *js = qk_test_read_file(json, NULL);
    cJSON *j = cJSON_Parse(js);
    ck_assert_ptr_nonnull(j);
    *kld = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "kld"), "mean")->valuedouble;
    *top = cJSON_GetObjectItem(j, "same_top")->valuedouble;
    *ppl = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "perplexity"), "quant")->valuedouble;
    cJSON_Delete(j);
    free(js);
}

static void quantize_gptq(const char *src, const char *out, const char *type, const char *extra)
{
    const char *calib = qk_test_data(CALIB_TEXT);
    ck_assert_ptr_nonnull(calib);
    char *err = NULL;
    int rc = qk_test_run(NULL, &err, "%s %s %s %s --pure --method gptq --calib-text %s --calib-ctx 128 -q %s",
                         qk_test_tool("qk-quantize"), src, out, type, calib, extra ? extra : "");
    ck_assert_msg(rc == 0, "qk-quantize %s: exit %d: %s", type, rc, err);
    free(err);
}

/* The accuracy targets: mean KLD at most 0.7x llama.cpp's best file of the
 * same size (quant_matrix_*.tsv): pad192 4.5 bpw (IQ4_NL+imatrix 0.0873 ->
 * 0.061), pad256 Q4_K size (Q4_K 0.0762 -> 0.053), Q8_0 size (no larger
 * than llama.cpp's Q8_0, 0.000897). */
START_TEST(test_gptq_method_kld_targets_pad192)
{
    QK_REQUIRE_DATA(src, G "stories260K-pad192-f32.gguf");
    QK_REQUIRE_DATA(calib, CALIB_TEXT);
    const char *out = qk_test_tmp("gm-iq4nl.gguf");
    quantize_gptq(src, out, "IQ4_NL", NULL);
    double kld, top, ppl;
    eval_quant(src, out, NULL, &kld, &top, &ppl);
    fprintf(stderr, "pad192 GPTQ IQ4_NL: KLD %.5f same-top %.2f%% PPL %.4f (llama.cpp best 0.0873)\n", kld, 100 * top, ppl);
    ck_assert_msg(kld <= 0.061, "KLD %.5f above the 0.061 target", kld);
    ck_assert_msg(kld <= 0.055, "KLD %.5f: regression from the 0.050 reached", kld);
    /* same tensor bytes as llama.cpp's --pure IQ4_NL file */
    qk_gguf *a, *b;
    ck_assert_int_eq(qk_gguf_open(&a, out), 0);
    ck_assert_int_eq(qk_gguf_open(&b, qk_test_data(G "stories260K-pad192-iq4_nl-pure.gguf")), 0);
    uint64_t na = 0, nb = 0;
    for (int64_t i = 0; i < qk_gguf_n_tensors(a); i++)
        na += qk_gguf_tensor_at(a, i)->nbytes;
    for (int64_t i = 0; i < qk_gguf_n_tensors(b); i++)
        nb += qk_gguf_tensor_at(b, i)->nbytes;
    ck_assert_uint_eq(na, nb);
    const qk_gguf_kv *kv = qk_gguf_find_kv(a, "quantkit.method");
    ck_assert_ptr_nonnull(kv);
    ck_assert_msg(strstr(kv->v.str.s, "gptq") && strstr(kv->v.str.s, "damp=0.01"), "%s", kv->v.str.s);
    ck_assert_int_eq(qk_gguf_verify_checksums(a), 0);
    qk_gguf_close(a);
    qk_gguf_close(b);

    out = qk_test_tmp("gm-q8.gguf");
    quantize_gptq(src, out, "Q8_0", NULL);
    eval_quant(src, out, NULL, &kld, &top, &ppl);
    fprintf(stderr, "pad192 GPTQ Q8_0: KLD %.6f same-top %.2f%% (llama.cpp Q8_0 0.000897)\n", kld, 100 * top);
    ck_assert_msg(kld <= 0.000897, "Q8_0 KLD %.6f above llama.cpp's", kld);
}
END_TEST

START_TEST(test_gptq_method_kld_target_pad256_q4k)
{
    QK_REQUIRE_DATA(src, G "stories260K-pad256-f32.gguf");
    QK_REQUIRE_DATA(calib, CALIB_TEXT);
    const char *out = qk_test_tmp("gm-q4k.gguf");
    quantize_gptq(src, out, "Q4_K", NULL);
    double kld, top, ppl;
    eval_quant(src, out, NULL, &kld, &top, &ppl);
    fprintf(stderr, "pad256 GPTQ Q4_K: KLD %.5f same-top %.2f%% PPL %.4f (llama.cpp Q4_K 0.0762)\n", kld, 100 * top, ppl);
    ck_assert_msg(kld <= 0.053, "KLD %.5f above the 0.053 target", kld);
    ck_assert_msg(kld <= 0.049, "KLD %.5f: regression from the 0.046 reached", kld);
    /* the same tensor bytes as llama.cpp's --pure Q4_K file */
    qk_gguf *a, *b;
    ck_assert_int_eq(qk_gguf_open(&a, out), 0);
    uint64_t na = 0;
    for (int64_t i = 0; i < qk_gguf_n_tensors(a); i++)
        na += qk_gguf_tensor_at(a, i)->nbytes;
    qk_gguf_close(a);
    ck_assert_int_eq(qk_gguf_open(&b, qk_test_data(G "stories260K-pad256-q4_k-pure.gguf")), 0);
    uint64_t nb = 0;
    for (int64_t i = 0; i < qk_gguf_n_tensors(b); i++)
        nb += qk_gguf_tensor_at(b, i)->nbytes;
    qk_gguf_close(b);
    ck_assert_uint_eq(na, nb);
}
END_TEST

/* A .qkc with every Hessian of `model`, through the calibration API. */
static void make_qkc(const char *model, const char *path, int64_t max_chunks)
{
    qk_model *m;
    ck_assert_int_eq(qk_model_open(&m, model, NULL), 0);
    char *text;
    size_t tn;
    ck_assert_int_eq(qk_read_file(&text, &tn, qk_test_data(CALIB_TEXT), 1 << 26), 0);
    qk_tokenizer *tok;
    int32_t *ids, *win;
    int64_t n_ids, n_chunks;
    ck_assert_int_eq(qk_tokenizer_new(&tok, qk_model_vocab(m)), 0);
    ck_assert_int_eq(qk_tokenize_ex(tok, text, tn, QK_TOKENIZE_ADD_SPECIAL, &ids, &n_ids), 0);
    ck_assert_int_eq(qk_eval_windows(ids, n_ids, 128, max_chunks, qk_model_vocab(m)->bos_id, &win, &n_chunks), 0);
    qk_forward *f;
    qk_forward_opts fo = {.max_tokens = 128 * 16};
    ck_assert_int_eq(qk_forward_new(&f, m, &fo), 0);
    qk_calib_collector *col;
    qk_calib_opts co = {.n_ctx = 128, .hessian = 1};
    ck_assert_int_eq(qk_calib_collector_new(&col, m, &co), 0);
    qk_forward_set_hook(f, qk_calib_hook, col);
    for (int64_t s = 0; s < n_chunks; s += 16)
        ck_assert_int_eq(qk_forward_run(f, win + s * 128, n_chunks - s < 16 ? n_chunks - s : 16, 128, 128, NULL, NULL), 0);
    qk_calib *c;
    ck_assert_int_eq(qk_calib_collector_finish(col, &c), 0);
    ck_assert_msg(qk_calib_save_qkc(c, path) == 0, "%s", qk_errmsg());
    qk_calib_free(c);
    qk_calib_collector_free(col);
    qk_forward_free(f);
    free(win);
    free(ids);
    qk_tokenizer_free(tok);
    free(text);
    qk_model_close(m);
}

START_TEST(test_gptq_method_tool_calib_file_and_errors)
{
    QK_REQUIRE_DATA(src, G "stories260K-pad192-f32.gguf");
    QK_REQUIRE_DATA(src256, G "stories260K-pad256-f32.gguf");
    QK_REQUIRE_DATA(calib, CALIB_TEXT);
    const char *tool = qk_test_tool("qk-quantize");
    const char *qkc = qk_test_tmp("gm-pad192.qkc");
    make_qkc(src, qkc, 16);
    /* Hessians from the file give the same bytes as the ones collected on
     * the fly (the output projection aside: the text adds its per-row
     * weighting) */
    const char *a = qk_test_tmp("gm-file.gguf"), *b = qk_test_tmp("gm-text.gguf");
    char *out = NULL, *err = NULL;
    int rc = qk_test_run(&out, &err, "%s %s %s IQ4_NL --pure --method gptq --calib %s --json", tool, src, a, qkc);
    ck_assert_msg(rc == 0, "%s", err);
    cJSON *j = cJSON_Parse(out);
    ck_assert_ptr_nonnull(j);
    ck_assert_ptr_nonnull(strstr(cJSON_GetObjectItem(j, "method")->valuestring, "gptq"));
    int n_gptq = 0, n_dead = 0;
    cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(j, "tensors"))
    {
        cJSON *g = cJSON_GetObjectItem(t, "gptq");
        if (!g)
            continue;
        n_gptq++;
        ck_assert(cJSON_GetObjectItem(g, "damp")->valuedouble == 0.01);
        if (strstr(cJSON_GetObjectItem(t, "name")->valuestring, "ffn_down"))
            n_dead += cJSON_GetObjectItem(g, "dead_columns")->valuedouble == 20; /* 172 -> 192 padding */
    }
    ck_assert_int_eq(n_gptq, 37);
    ck_assert_int_eq(n_dead, 5);
    cJSON_Delete(j);
    free(out);
    free(err);
    quantize_gptq(src, b, "IQ4_NL", "--calib-chunks 16");
    qk_gguf *ga, *gb;
    ck_assert_int_eq(qk_gguf_open(&ga, a), 0);
    ck_assert_int_eq(qk_gguf_open(&gb, b), 0);
    for (int64_t i = 0; i < qk_gguf_n_tensors(ga); i++) {
        const qk_gguf_tensor *ta = qk_gguf_tensor_at(ga, i), *tb = qk_gguf_find_tensor(gb, ta->name);
        ck_assert_ptr_nonnull(tb);
        ck_assert_uint_eq(ta->nbytes, tb->nbytes);
        if (strcmp(ta->name, "output.weight"))
            ck_assert_msg(memcmp(ta->data, tb->data, ta->nbytes) == 0, "%s differs between --calib and --calib-text",
                          ta->name);
    }
    qk_gguf_close(ga);
    qk_gguf_close(gb);

    /* a Hessian whose size does not match the tensor: a clear error, no output */
    const char *c = qk_test_tmp("gm-mismatch.gguf");
    rc = qk_test_run(NULL, &err, "%s %s %s Q4_K --pure --method gptq --calib %s", tool, src256, c, qkc);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "input columns") != NULL, "%s", err);
    ck_assert(access(c, F_OK) != 0);
    free(err);
    /* usage errors */
    rc = qk_test_run(NULL, &err, "%s %s %s IQ4_NL --method gptq", tool, src, c);
    ck_assert_int_eq(rc, 2);
    ck_assert_ptr_nonnull(strstr(err, "--calib"));
    free(err);
    rc = qk_test_run(NULL, &err, "%s %s %s IQ4_NL --damp 0.1", tool, src, c);
    ck_assert_int_eq(rc, 2);
    ck_assert_ptr_nonnull(strstr(err, "--method gptq"));
    free(err);
    rc = qk_test_run(NULL, &err, "%s %s %s IQ4_NL --method gptq --calib %s --sequential", tool, src, c, qkc);
    ck_assert_int_eq(rc, 2);
    free(err);
    rc = qk_test_run(NULL, &err, "%s %s %s IQ4_NL --method magic", tool, src, c);
    ck_assert_int_eq(rc, 2);
    free(err);
}
END_TEST

START_TEST(test_gptq_method_tool_sequential_and_export)
{
    QK_REQUIRE_DATA(src, G "stories260K-pad192-f32.gguf");
    QK_REQUIRE_DATA(calib, CALIB_TEXT);
    /* sequential: completes and lands near the one-pass result */
    const char *out = qk_test_tmp("gm-seq.gguf");
    quantize_gptq(src, out, "IQ4_NL", "--sequential --act-order -t 2 --calib-chunks 24");
    double kld, top, ppl;
    eval_quant(src, out, NULL, &kld, &top, &ppl);
    fprintf(stderr, "pad192 GPTQ IQ4_NL --sequential --act-order: KLD %.5f\n", kld);
    ck_assert(kld <= 0.061);
    /* the layer-major path is no worse than re-running every pass from the
     * embeddings was (KLD 0.04854 with the same options) */
    ck_assert_msg(kld <= 0.04854 * 1.01, "sequential KLD %.5f", kld);
    /* the GPTQ safetensors export with GPTQ codes beats its RTN export */
    const char *d1 = qk_test_tmp("gm-rtn-dir"), *d2 = qk_test_tmp("gm-gptq-dir");
    const char *tool = qk_test_tool("qk-quantize");
    char *err = NULL;
    int rc = qk_test_run(NULL, &err, "%s %s -o %s --format gptq --group-size 32 -q", tool, src, d1);
    ck_assert_msg(rc == 0, "%s", err);
    free(err);
    rc = qk_test_run(NULL, &err, "%s %s -o %s --format gptq --group-size 32 --method gptq --calib-text %s "
                     "--calib-chunks 24 -q", tool, src, d2, calib);
    ck_assert_msg(rc == 0, "%s", err);
    free(err);
    char vocab[512];
    snprintf(vocab, sizeof vocab, "--vocab %s --chunks 20", qk_test_data("models/stories260K/tok512.bin"));
    double k1, k2;
    eval_quant(src, d1, vocab, &k1, &top, &ppl);
    eval_quant(src, d2, vocab, &k2, &top, &ppl);
    fprintf(stderr, "GPTQ4 g32 export: RTN KLD %.5f, GPTQ KLD %.5f\n", k1, k2);
    ck_assert_msg(k2 < 0.7 * k1, "GPTQ export %.5f vs RTN %.5f", k2, k1);
}
END_TEST

/* qk_gptq_quantize_inplace works on the caller's Hessian and puts it back
 * bit for bit (dead columns and raised damping included), with the same
 * bytes as qk_gptq_quantize. */
START_TEST(test_gptq_method_inplace_restores_hessian)
{
    for (int variant = 0; variant < 3; variant++) {
        /* 0: full rank; 1: 32 dead columns; 2: singular beyond them, damping 0 (raised) */
        layer L = make_layer(11 + variant, 24, 256, variant == 2 ? 40 : 600, variant ? 32 : 0);
        qk_gptq_opts o;
        qk_gptq_opts_default(&o, variant == 1 ? QK_TYPE_IQ4_NL : QK_TYPE_Q4_K);
        o.act_order = variant == 1;
        if (variant == 2)
            o.damp = 0;
        size_t rb, nn = (size_t)(L.cols * L.cols);
        qk_type_row_bytes(o.type, L.cols, &rb);
        uint8_t *d1 = malloc(rb * (size_t)L.rows), *d2 = malloc(rb * (size_t)L.rows);
        float *q1 = malloc(sizeof(float) * (size_t)(L.rows * L.cols)), *q2 = malloc(sizeof(float) * (size_t)(L.rows * L.cols));
        double *h = malloc(nn * sizeof(double));
        memcpy(h, L.h, nn * sizeof(double));
        qk_gptq_stats s1, s2;
        ck_assert_int_eq(qk_gptq_quantize(&o, L.w, L.rows, L.cols, L.h, d1, q1, NULL, &s1), 0);
        ck_assert_int_eq(qk_gptq_quantize_inplace(&o, L.w, L.rows, L.cols, h, d2, q2, NULL, &s2), 0);
        ck_assert_msg(!memcmp(h, L.h, nn * sizeof(double)), "variant %d: the Hessian was not restored", variant);
        ck_assert_msg(!memcmp(d1, d2, rb * (size_t)L.rows), "variant %d: in-place bytes differ", variant);
        ck_assert(s1.err == s2.err && s1.n_raises == s2.n_raises && s1.n_dead == s2.n_dead);
        ck_assert_int_eq(s2.n_dead, variant ? 32 : 0);
        if (variant == 2)
            ck_assert_int_gt(s2.n_raises, 0);
        /* restored after a failure too */
        L.w[3] = NAN;
        ck_assert_int_eq(qk_gptq_quantize_inplace(&o, L.w, L.rows, L.cols, h, d2, q2, NULL, &s2), QK_ENONFINITE);
        ck_assert(!memcmp(h, L.h, nn * sizeof(double)));
        free(d1);
        free(d2);
        free(q1);
        free(q2);
        free(h);
        free_layer(&L);
    }
}
END_TEST

/* One factorization for tensors that share an input (q/k/v, gate/up):
 * qk_gptq_quantize_prepared gives, tensor by tensor, the bytes, values and
 * stats of a separate qk_gptq_quantize (factorized with the same number of
 * threads), whatever the pool the rows then run on; the Hessian
 * is restored when the handle is freed, and options it was not made for are
 * refused. */
START_TEST(test_gptq_method_prepared_matches_separate)
{
    for (int variant = 0; variant < 3; variant++) {
        /* 0: Q4_K, refine 2, 32 dead columns; 1: IQ4_NL act order, refine 1; 2: Q6_K, refine 0 */
        static const int types[3] = {QK_TYPE_Q4_K, QK_TYPE_IQ4_NL, QK_TYPE_Q6_K};
        layer L = make_layer(31 + variant, 80, 512, 900, variant == 0 ? 32 : 0);
        qk_gptq_opts o;
        qk_gptq_opts_default(&o, types[variant]);
        o.refine = 2 - variant;
        o.act_order = variant == 1;
        const int64_t part[3] = {48, 16, 16}; /* rows of the "q", "k" and "v" sharing L.h */
        size_t rb, nn = (size_t)(L.cols * L.cols);
        qk_type_row_bytes(o.type, L.cols, &rb);
        double *h = malloc(nn * sizeof(double));
        memcpy(h, L.h, nn * sizeof(double));
        qk_pool *pool = NULL;
        ck_assert_int_eq(qk_pool_create(&pool, 2), 0);
        qk_gptq_prepared *p = NULL;
        ck_assert_int_eq(qk_gptq_prepare(&p, &o, h, L.cols, pool), 0);
        ck_assert(qk_gptq_prepared_fits(p, &o, L.cols));
        int64_t r0 = 0;
        for (int k = 0; k < 3; k++) {
            const float *w = L.w + r0 * L.cols;
            const size_t nv = (size_t)(part[k] * L.cols);
            uint8_t *d1 = malloc(rb * (size_t)part[k]), *d2 = malloc(rb * (size_t)part[k]);
            float *q1 = malloc(sizeof(float) * nv), *q2 = malloc(sizeof(float) * nv);
            qk_gptq_stats s1, s2;
            ck_assert_int_eq(qk_gptq_quantize(&o, w, part[k], L.cols, L.h, d1, q1, pool, &s1), 0);
            ck_assert_int_eq(qk_gptq_quantize_prepared(&o, p, w, part[k], d2, q2, k == 1 ? NULL : pool, &s2), 0);
            ck_assert_msg(!memcmp(d1, d2, rb * (size_t)part[k]), "variant %d tensor %d: bytes differ", variant, k);
            ck_assert_msg(!memcmp(q1, q2, nv * sizeof(float)), "variant %d tensor %d: values differ", variant, k);
            ck_assert_msg(s1.err == s2.err && s1.err_gptq == s2.err_gptq && s1.damp == s2.damp &&
                          s1.n_raises == s2.n_raises && s1.n_dead == s2.n_dead, "variant %d tensor %d: err %.17g %.17g gptq %.17g %.17g damp %g %g", variant, k, s1.err, s2.err, s1.err_gptq, s2.err_gptq, s1.damp, s2.damp);
            r0 += part[k];
            free(d1);
            free(d2);
            free(q1);
            free(q2);
        }
        /* other damping, or act order with another block size: not this factorization */
        qk_gptq_opts o2 = o;
        o2.damp = o.damp * 2;
        ck_assert(!qk_gptq_prepared_fits(p, &o2, L.cols));
        ck_assert(!qk_gptq_prepared_fits(p, &o, L.cols + 256));
        uint8_t *d = malloc(rb * 8);
        ck_assert_int_eq(qk_gptq_quantize_prepared(&o2, p, L.w, 8, d, NULL, pool, NULL), QK_EINVAL);
        free(d);
        qk_gptq_prepared_free(p);
        ck_assert_msg(!memcmp(h, L.h, nn * sizeof(double)), "variant %d: the Hessian was not restored", variant);
        qk_pool_free(pool);
        free(h);
        free_layer(&L);
    }
}
END_TEST

/* Sequential GPTQ runs layer by layer on the carried hidden states: its
 * forward work is O(layers) (at most 6 sweeps of one layer or block per
 * layer; re-running every pass from the embeddings took 4 passes of up to
 * n_layer layers per layer), and q/k/v share one collection. Keeping the
 * inputs of attn_output and ffn_down for the advance gives the bytes of
 * recomputing those parts. */
START_TEST(test_gptq_method_sequential_sweeps_are_linear)
{
    QK_REQUIRE_DATA(src, G "stories260K-pad192-f32.gguf");
    QK_REQUIRE_DATA(text, CALIB_TEXT);
    qk_model *m = NULL;
    ck_assert_int_eq(qk_model_open(&m, src, NULL), 0);
    const int64_t L = qk_model_cfg(m)->n_layer;
    uint64_t digest[2] = {0, 0};
    for (int recompute = 0; recompute < 2; recompute++) {
        qk_gptq_calib *gc = NULL;
        qk_gptq_calib_opts co = {.text_path = text, .n_ctx = 128, .max_chunks = 24, .sequential = 1, .n_threads = 2,
                                 .recompute_parts = recompute};
        ck_assert_int_eq(qk_gptq_calib_new(&gc, m, &co), 0);
        qk_gptq_opts o;
        qk_gptq_opts_default(&o, QK_TYPE_IQ4_NL);
        int64_t passes = 0, after_q = -1, after_v = -1;
        double secs;
        for (int64_t i = 0; i < qk_model_n_tensors(m); i++) {
            const qk_model_tensor *t = qk_model_tensor_at(m, i);
            if (t->n_dims < 2 || !strncmp(t->name, "token_embd", 10) || !strncmp(t->name, "output", 6))
                continue;
            const int64_t rows = qk_model_tensor_rows(t), cols = t->ne[0];
            size_t rb;
            qk_type_row_bytes(o.type, cols, &rb);
            float *w = malloc(sizeof(float) * (size_t)(rows * cols));
            float *deq = malloc(sizeof(float) * (size_t)(rows * cols));
            uint8_t *q = malloc(rb * (size_t)rows);
            ck_assert_int_eq(qk_model_rows_f32(m, t, 0, rows, w), 0);
            qk_gptq_stats st;
            ck_assert_msg(qk_gptq_calib_tensor(gc, t, &o, w, q, deq, NULL, &st) == 0, "%s", qk_errmsg());
            ck_assert_int_eq(qk_gptq_calib_quantized(gc, t, deq), 0);
            for (size_t b = 0; b < rb * (size_t)rows; b++) /* FNV-1a over every tensor's bytes */
                digest[recompute] = (digest[recompute] ^ q[b]) * 1099511628211ull + (digest[recompute] == 0);
            qk_gptq_calib_counts(gc, &passes, &secs);
            if (!strcmp(t->name, "blk.1.attn_q.weight"))
                after_q = passes;
            if (!strcmp(t->name, "blk.1.attn_v.weight"))
                after_v = passes;
            free(w);
            free(deq);
            free(q);
        }
        fprintf(stderr, "sequential GPTQ on %lld layers: %lld layer sweeps (recompute parts %d)\n", (long long)L,
                (long long)passes, recompute);
        ck_assert_int_eq(after_q, after_v);
        ck_assert_msg(passes <= 6 * L, "%lld sweeps for %lld layers", (long long)passes, (long long)L);
        /* the layers behind the state dropped their quantized weights (memory
         * holds one layer's, not the model's): going back is refused */
        const qk_model_tensor *t0 = qk_model_find(m, "blk.0.attn_q.weight");
        const int64_t rows0 = qk_model_tensor_rows(t0);
        size_t rb0;
        qk_type_row_bytes(o.type, t0->ne[0], &rb0);
        float *w0 = malloc(sizeof(float) * (size_t)(rows0 * t0->ne[0]));
        uint8_t *q0 = malloc(rb0 * (size_t)rows0);
        ck_assert_int_eq(qk_model_rows_f32(m, t0, 0, rows0, w0), 0);
        qk_gptq_stats st0;
        ck_assert_int_eq(qk_gptq_calib_tensor(gc, t0, &o, w0, q0, NULL, NULL, &st0), QK_EINVAL);
        ck_assert_ptr_nonnull(strstr(qk_errmsg(), "canonical order"));
        free(w0);
        free(q0);
        qk_gptq_calib_free(gc);
    }
    ck_assert_msg(digest[0] == digest[1], "kept layer inputs change the bytes (%016llx vs %016llx)",
                  (unsigned long long)digest[0], (unsigned long long)digest[1]);
    qk_model_close(m);
}
END_TEST

Suite *qk_test_suite_gptq_method(void)
{
    Suite *s = suite_create("gptq_method");
    TCase *tc = tcase_create("library");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_gptq_method_beats_rtn_every_type);
    tcase_add_test(tc, test_gptq_method_layout_beats_rtn);
    tcase_add_test(tc, test_gptq_method_singular_hessian_raises_damping);
    tcase_add_test(tc, test_gptq_method_deterministic_threads);
    tcase_add_test(tc, test_gptq_method_inplace_restores_hessian);
    tcase_add_test(tc, test_gptq_method_prepared_matches_separate);
    suite_add_tcase(s, tc);
    TCase *tt = tcase_create("tools");
    tcase_set_timeout(tt, 300);
    tcase_add_test(tt, test_gptq_method_kld_targets_pad192);
    tcase_add_test(tt, test_gptq_method_kld_target_pad256_q4k);
    tcase_add_test(tt, test_gptq_method_tool_calib_file_and_errors);
    tcase_add_test(tt, test_gptq_method_tool_sequential_and_export);
    tcase_add_test(tt, test_gptq_method_sequential_sweeps_are_linear);
    suite_add_tcase(s, tt);
    return s;
}
