/* Tests of eval/forward.c: the reference forward pass against llama.cpp's
 * golden logits, across every source layout, padding, batching, threads,
 * hooks and weight overrides. */
#include "qk_test.h"

#include <math.h>
#include <zlib.h>

#include "../eval/forward_ops.h"
#include "quantkit/eval.h"
#include "quantkit/forward.h"
#include "quantkit/model.h"

#define GOLD_NLL "golden/llamacpp/stories260K-fox.nll.txt"
#define GOLD_LOGITS "golden/llamacpp/stories260K-fox.logits.f32"
#define BIN "models/stories260K/stories260K.bin"
#define GGUF "models/stories260K/stories260K.gguf"
#define NV 512
#define NTOK 35
/* The FP32/FP64 reference total NLL of the 34 predicted tokens (llama.cpp,
 * with its F16 KV cache, gives 54.402925; llama2.c run.c 54.404121). */
#define REF_NLL 54.4041
/* llama.cpp's golden logits come from its F16 KV cache (q, k, v and the
 * attention probabilities rounded to half): they differ from an FP32 pass by
 * up to ~0.019 at later positions (1.3e-3 at position 0, where only v's
 * rounding acts). Emulating that rounding brings position 0 within 3e-6,
 * so the gap is the cache, not the model; the exact FP32 check is
 * test_forward_matches_double_reference. */
#define LOGIT_TOL_F32 0.025

/* --------------------------------------------------------------- helpers */

typedef struct golden {
    int32_t ids[NTOK];
    double nll[NTOK - 1];
    float *logits; /* [NTOK][NV] */
} golden;

static void golden_load(golden *g, const char *nll_path, const char *logits_path)
{
    size_t n;
    char *txt = qk_test_read_file(nll_path, &n);
    const char *p = strstr(txt, "tokens:");
    ck_assert_ptr_nonnull(p);
    p += 7;
    for (int i = 0; i < NTOK; i++) {
        char *end;
        long v = strtol(p, &end, 10);
        ck_assert_msg(end != p, "token %d missing in %s", i, nll_path);
        g->ids[i] = (int32_t)v;
        p = end;
    }
    for (int i = 0; i < NTOK - 1; i++) {
        int pos, next;
        double nll;
        p = strstr(p, "pos");
        ck_assert_ptr_nonnull(p);
        ck_assert_int_eq(sscanf(p, "pos %d next %d nll %lf", &pos, &next, &nll), 3);
        ck_assert_int_eq(pos, i);
        ck_assert_int_eq(next, g->ids[i + 1]);
        g->nll[i] = nll;
        p += 3;
    }
    free(txt);
    g->logits = qk_test_read_file(logits_path, &n);
    ck_assert_uint_eq(n, (size_t)NTOK * NV * sizeof(float));
}

/* Collects logits [n_seq][n_ctx][n_vocab] (positions never reported stay NaN). */
typedef struct collect {
    float *buf;
    int64_t n_ctx, n_vocab, calls;
} collect;

static int collect_fn(void *ctx, int64_t seq, int64_t pos, const float *logits)
{
    collect *c = ctx;
    memcpy(c->buf + (seq * c->n_ctx + pos) * c->n_vocab, logits, (size_t)c->n_vocab * sizeof(float));
    c->calls++;
    return 0;
}

static float *nan_buf(int64_t n)
{
    float *b = malloc((size_t)n * sizeof(float));
    ck_assert_ptr_nonnull(b);
    for (int64_t i = 0; i < n; i++)
        b[i] = NAN;
    return b;
}

/* Run tokens [n_seq][n_ctx]; returns heap logits [n_seq][n_ctx][n_vocab]. */
static float *run_f(qk_forward *f, const int32_t *tok, int64_t n_seq, int64_t n_ctx, int64_t first, int64_t nv)
{
    collect c = {nan_buf(n_seq * n_ctx * nv), n_ctx, nv, 0};
    int rc = qk_forward_run(f, tok, n_seq, n_ctx, first, collect_fn, &c);
    ck_assert_msg(rc == 0, "qk_forward_run: %s", qk_errmsg());
    ck_assert_int_eq(c.calls, n_seq * (n_ctx - first));
    return c.buf;
}

static qk_model *open_model(const char *path)
{
    qk_model *m;
    qk_model_opts o = {.no_vocab = 1};
    int rc = qk_model_open(&m, path, &o);
    ck_assert_msg(rc == 0, "%s: %s", path, qk_errmsg());
    return m;
}

static qk_forward *new_f(const qk_model *m, int threads, int64_t max_tokens, int64_t cache_bytes)
{
    qk_forward *f;
    qk_forward_opts o = {.n_threads = threads, .max_tokens = max_tokens, .cache_bytes = cache_bytes};
    int rc = qk_forward_new(&f, m, &o);
    ck_assert_msg(rc == 0, "qk_forward_new: %s", qk_errmsg());
    return f;
}

/* Logits of the fox sentence from a model file. */
static float *fox_logits(const char *path, const golden *g, int threads, int64_t cache_bytes)
{
    qk_model *m = open_model(path);
    ck_assert_int_eq(qk_model_cfg(m)->n_vocab, NV);
    qk_forward *f = new_f(m, threads, NTOK, cache_bytes);
    float *l = run_f(f, g->ids, 1, NTOK, 0, NV);
    qk_forward_free(f);
    qk_model_close(m);
    return l;
}

/* NLL of ids[i+1] under logits row i (log-softmax in double). */
static double nll_at(const float *logits, int32_t next)
{
    double mx = -INFINITY, sum = 0;
    for (int v = 0; v < NV; v++)
        mx = logits[v] > mx ? logits[v] : mx;
    for (int v = 0; v < NV; v++)
        sum += exp(logits[v] - mx);
    return -((double)logits[next] - mx - log(sum));
}

static double total_nll(const float *logits, const int32_t *ids, double *per_pos)
{
    double t = 0;
    for (int i = 0; i < NTOK - 1; i++) {
        double v = nll_at(logits + (size_t)i * NV, ids[i + 1]);
        if (per_pos)
            per_pos[i] = v;
        t += v;
    }
    return t;
}

static double max_abs_diff(const float *a, const float *b, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m))
            m = d; /* NaN propagates as a failure */
    }
    return m;
}

/* The fox sentence from one source: total NLL near the reference, per
 * position within nll_tol of llama.cpp's, logits within logit_tol. */
static void check_fox(const char *path, double nll_tol, double pos_tol, double logit_tol)
{
    QK_REQUIRE_DATA(nllp, GOLD_NLL);
    QK_REQUIRE_DATA(lp, GOLD_LOGITS);
    golden g;
    golden_load(&g, nllp, lp);
    float *l = fox_logits(path, &g, 2, 0);
    double per[NTOK - 1];
    double tot = total_nll(l, g.ids, per);
    double err = max_abs_diff(l, g.logits, (int64_t)NTOK * NV);
    double pos_err = 0;
    for (int i = 0; i < NTOK - 1; i++)
        pos_err = fmax(pos_err, fabs(per[i] - g.nll[i]));
    fprintf(stderr, "forward %s: total NLL %.6f (ref %.4f), max |logit err| %.3g, max |pos NLL err| %.3g\n",
            path, tot, REF_NLL, err, pos_err);
    ck_assert_msg(fabs(tot - REF_NLL) <= nll_tol, "%s: total NLL %.6f, expected %.4f +- %g", path, tot, REF_NLL,
                  nll_tol);
    ck_assert_msg(err <= logit_tol, "%s: logits differ from llama.cpp's by %g (limit %g)", path, err, logit_tol);
    ck_assert_msg(pos_err <= pos_tol, "%s: a position's NLL differs from llama.cpp's by %g", path, pos_err);
    free(l);
    free(g.logits);
}

/* With llama.cpp emulation (F16 KV cache, ggml's RoPE table, its vector
 * expf in softmax and SiLU, its F32/F16 matmul summation order: the AVX2
 * code paths of build b4748) the logits come within 7.9e-4 of llama.cpp's
 * own output (plain FP32: 1.9e-2; with the F16 rounding alone and
 * OpenBLAS's sums: 3.3e-3 or 6.0e-3, by OpenBLAS's kernels) and
 * the total NLL within 4e-5 of its 54.402925. What remains is float-level
 * (position 0, where attention is trivial, is within 3e-6), flipping an
 * occasional F16 rounding of q, k or p later on; see docs/TOOLS.md. */
START_TEST(test_forward_fox_emulating_llamacpp)
{
    QK_REQUIRE_DATA(nllp, GOLD_NLL);
    QK_REQUIRE_DATA(lp, GOLD_LOGITS);
    QK_REQUIRE_DATA(p, "models/stories260K/stories260K.gguf");
    QK_REQUIRE_DATA(pb, BIN);
    QK_REQUIRE_DATA(ph, "models/stories260K-hf/float32");
    golden g;
    golden_load(&g, nllp, lp);
    /* the same weights in all three layouts (F32): the same answer */
    const char *paths[] = {p, pb, ph};
    for (int k = 0; k < 3; k++) {
        qk_model *m = open_model(paths[k]);
        qk_forward *f;
        qk_forward_opts o = {.n_threads = 2, .max_tokens = NTOK, .emulate_llamacpp = 1};
        ck_assert_int_eq(qk_forward_new(&f, m, &o), 0);
        float *l = run_f(f, g.ids, 1, NTOK, 0, NV);
        double per[NTOK - 1];
        double tot = total_nll(l, g.ids, per);
        double err = max_abs_diff(l, g.logits, (int64_t)NTOK * NV);
        fprintf(stderr, "forward emulating llama.cpp (%s): total NLL %.6f (llama.cpp 54.402925), max |logit err| %.3g\n",
                paths[k], tot, err);
        ck_assert_msg(err <= 1e-3, "%s: logits differ from llama.cpp's by %g", paths[k], err);
        ck_assert_msg(fabs(tot - 54.402925) <= 1e-4, "%s: total NLL %.6f", paths[k], tot);
        double err0 = max_abs_diff(l, g.logits, NV); /* position 0: attention over one key */
        ck_assert_msg(err0 <= 1e-5, "%s: position 0 differs from llama.cpp's by %g", paths[k], err0);
        free(l);
        qk_forward_free(f);
        qk_model_close(m);
    }
    free(g.logits);
}
END_TEST

/* ------------------------------------------------- double-precision model */

/* Tensor `name` of m as doubles [rows][ne0] (heap). */
static double *tensor_f64(const qk_model *m, const char *name)
{
    const qk_model_tensor *t = qk_model_find(m, name);
    ck_assert_msg(t != NULL, "no tensor %s", name);
    int64_t n = qk_model_tensor_nelem(t);
    float *f = malloc((size_t)n * sizeof(float));
    double *d = malloc((size_t)n * sizeof(double));
    ck_assert(f && d);
    ck_assert_int_eq(qk_model_rows_f32(m, t, 0, qk_model_tensor_rows(t), f), 0);
    for (int64_t i = 0; i < n; i++)
        d[i] = f[i];
    free(f);
    return d;
}

/* y[t][o] = sum_i x[t][i] w[o][i] */
static void matmul_f64(double *y, const double *x, const double *w, int n, int64_t n_in, int64_t n_out)
{
    for (int t = 0; t < n; t++)
        for (int64_t o = 0; o < n_out; o++) {
            double s = 0;
            for (int64_t i = 0; i < n_in; i++)
                s += x[t * n_in + i] * w[o * n_in + i];
            y[t * n_out + o] = s;
        }
}

static void rmsnorm_f64(double *y, const double *x, const double *w, int n, int64_t d, double eps)
{
    for (int t = 0; t < n; t++) {
        double ss = 0;
        for (int64_t i = 0; i < d; i++)
            ss += x[t * d + i] * x[t * d + i];
        double sc = 1 / sqrt(ss / (double)d + eps);
        for (int64_t i = 0; i < d; i++)
            y[t * d + i] = x[t * d + i] * sc * w[i];
    }
}

/* The llama forward pass written plainly in double, one sequence of n
 * tokens: logits [n][n_vocab] (heap). */
static double *naive_forward(const qk_model *m, const int32_t *ids, int n)
{
    const qk_model_config *c = qk_model_cfg(m);
    const int64_t D = c->n_embd, hd = c->head_dim, H = c->n_head, HKV = c->n_head_kv, F = c->n_ff;
    const int64_t V = c->n_vocab, QD = H * hd, KVD = HKV * hd;
    double *emb = tensor_f64(m, "token_embd.weight");
    double *x = calloc((size_t)(n * D), sizeof(double)), *xn = calloc((size_t)(n * D), sizeof(double));
    double *q = calloc((size_t)(n * QD), sizeof(double)), *k = calloc((size_t)(n * KVD), sizeof(double));
    double *v = calloc((size_t)(n * KVD), sizeof(double)), *att = calloc((size_t)(n * QD), sizeof(double));
    double *tmp = calloc((size_t)(n * D), sizeof(double)), *g = calloc((size_t)(n * F), sizeof(double));
    double *u = calloc((size_t)(n * F), sizeof(double)), *sc = calloc((size_t)n, sizeof(double));
    for (int t = 0; t < n; t++)
        memcpy(x + t * D, emb + ids[t] * D, (size_t)D * sizeof(double));
    for (int64_t l = 0; l < c->n_layer; l++) {
        char nm[64];
#define W(suffix) (snprintf(nm, sizeof nm, "blk.%lld.%s", (long long)l, suffix), tensor_f64(m, nm))
        double *an = W("attn_norm.weight"), *wq = W("attn_q.weight"), *wk = W("attn_k.weight");
        double *wv = W("attn_v.weight"), *wo = W("attn_output.weight"), *fn = W("ffn_norm.weight");
        double *wg = W("ffn_gate.weight"), *wu = W("ffn_up.weight"), *wd = W("ffn_down.weight");
#undef W
        rmsnorm_f64(xn, x, an, n, D, c->norm_eps);
        matmul_f64(q, xn, wq, n, D, QD);
        matmul_f64(k, xn, wk, n, D, KVD);
        matmul_f64(v, xn, wv, n, D, KVD);
        for (int t = 0; t < n; t++) /* RoPE: adjacent pairs */
            for (int64_t r = 0; r < QD + KVD; r += 2) {
                double *p = r < QD ? q + t * QD + r : k + t * KVD + (r - QD);
                double th = t * pow(c->rope_base, -(double)((r % hd)) / (double)hd);
                double a = p[0], b = p[1];
                p[0] = a * cos(th) - b * sin(th);
                p[1] = a * sin(th) + b * cos(th);
            }
        for (int64_t h = 0; h < H; h++) {
            int64_t kh = h / (H / HKV);
            for (int t = 0; t < n; t++) {
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= t; j++) {
                    double s = 0;
                    for (int64_t d = 0; d < hd; d++)
                        s += q[t * QD + h * hd + d] * k[j * KVD + kh * hd + d];
                    sc[j] = s / sqrt((double)hd);
                    mx = fmax(mx, sc[j]);
                }
                for (int j = 0; j <= t; j++)
                    sum += sc[j] = exp(sc[j] - mx);
                for (int64_t d = 0; d < hd; d++) {
                    double o = 0;
                    for (int j = 0; j <= t; j++)
                        o += sc[j] / sum * v[j * KVD + kh * hd + d];
                    att[t * QD + h * hd + d] = o;
                }
            }
        }
        matmul_f64(tmp, att, wo, n, QD, D);
        for (int64_t i = 0; i < n * D; i++)
            x[i] += tmp[i];
        rmsnorm_f64(xn, x, fn, n, D, c->norm_eps);
        matmul_f64(g, xn, wg, n, D, F);
        matmul_f64(u, xn, wu, n, D, F);
        for (int64_t i = 0; i < n * F; i++)
            g[i] = g[i] / (1 + exp(-g[i])) * u[i];
        matmul_f64(tmp, g, wd, n, F, D);
        for (int64_t i = 0; i < n * D; i++)
            x[i] += tmp[i];
        free(an), free(wq), free(wk), free(wv), free(wo), free(fn), free(wg), free(wu), free(wd);
    }
    double *on = tensor_f64(m, "output_norm.weight");
    double *wout = qk_model_find(m, "output.weight") ? tensor_f64(m, "output.weight") : NULL;
    double *logits = malloc((size_t)(n * V) * sizeof(double));
    rmsnorm_f64(xn, x, on, n, D, c->norm_eps);
    matmul_f64(logits, xn, wout ? wout : emb, n, D, V);
    free(on), free(wout), free(emb), free(x), free(xn), free(q), free(k), free(v), free(att), free(tmp);
    free(g), free(u), free(sc);
    return logits;
}

/* ----------------------------------------------------------------- tests */

/* The FP32 pass against the same model written plainly in double: what
 * is left is float rounding. */
START_TEST(test_forward_matches_double_reference)
{
    QK_REQUIRE_DATA(nllp, GOLD_NLL);
    QK_REQUIRE_DATA(lp, GOLD_LOGITS);
    QK_REQUIRE_DATA(p, BIN);
    QK_REQUIRE_DATA(p256, "golden/llamacpp/stories260K-pad256-f32.gguf");
    golden g;
    golden_load(&g, nllp, lp);
    const char *paths[] = {p, p256};
    for (int i = 0; i < 2; i++) {
        qk_model *m = open_model(paths[i]);
        double *ref = naive_forward(m, g.ids, NTOK);
        qk_model_close(m);
        float *l = fox_logits(paths[i], &g, 2, 0);
        double err = 0, nll = 0;
        float *rf = malloc(sizeof(float) * NTOK * NV);
        for (int64_t j = 0; j < (int64_t)NTOK * NV; j++) {
            err = fmax(err, fabs(l[j] - ref[j]));
            rf[j] = (float)ref[j];
        }
        nll = total_nll(rf, g.ids, NULL);
        fprintf(stderr, "forward %s: max |FP32 - FP64 reference| %.3g; FP64 total NLL %.6f\n", paths[i], err, nll);
        ck_assert_msg(err <= 1e-4, "%s: logits differ from the double-precision pass by %g", paths[i], err);
        ck_assert_double_eq_tol(nll, REF_NLL, 0.0005);
        free(rf);
        free(ref);
        free(l);
    }
    free(g.logits);
}
END_TEST

START_TEST(test_forward_fox_llama2c)
{
    QK_REQUIRE_DATA(p, BIN);
    check_fox(p, 0.002, 0.005, LOGIT_TOL_F32);
}
END_TEST

/* The OpenBLAS path (CPUs without AVX-512, QK_SIMD=avx2): the same
 * accuracy against the double reference. */
START_TEST(test_forward_fox_openblas)
{
    QK_REQUIRE_DATA(p, GGUF);
    qk_forward_gemm_enable(0);
    ck_assert(!qk_forward_gemm_available());
    check_fox(p, 0.002, 0.005, LOGIT_TOL_F32);
    qk_forward_gemm_enable(1);
}
END_TEST

START_TEST(test_forward_fox_gguf)
{
    QK_REQUIRE_DATA(p, GGUF);
    check_fox(p, 0.002, 0.005, LOGIT_TOL_F32);
    /* llama.cpp's own conversion: untied output.weight */
    QK_REQUIRE_DATA(p2, "golden/llamacpp/stories260K-f32.gguf");
    check_fox(p2, 0.002, 0.005, LOGIT_TOL_F32);
}
END_TEST

START_TEST(test_forward_fox_hf_f32)
{
    QK_REQUIRE_DATA(p, "models/stories260K-hf/float32");
    check_fox(p, 0.002, 0.005, LOGIT_TOL_F32);
}
END_TEST

/* Rounded weights: the NLL moves by the rounding's effect, not by a bug. */
START_TEST(test_forward_fox_hf_half)
{
    QK_REQUIRE_DATA(p16, "models/stories260K-hf/float16");
    check_fox(p16, 0.05, 0.01, 0.04);
    QK_REQUIRE_DATA(pb16, "models/stories260K-hf/bfloat16");
    check_fox(pb16, 0.05, 0.04, 0.2);
}
END_TEST

/* Dequantizing per call (no cache, the output in slices of rows) gives the
 * same logits as the whole-model cache. (F32 files are used in place, so
 * this takes a model that needs decoding.) The output's row slices are
 * small enough for OpenBLAS's small-matrix kernel, whose sum order differs
 * from the whole matrix's: float rounding, not zero. */
START_TEST(test_forward_uncached_equals_cached)
{
    QK_REQUIRE_DATA(p, "models/stories260K-hf/float16");
    QK_REQUIRE_DATA(nllp, GOLD_NLL);
    QK_REQUIRE_DATA(lp, GOLD_LOGITS);
    golden g;
    golden_load(&g, nllp, lp);
    float *a = fox_logits(p, &g, 2, 0);
    float *b = fox_logits(p, &g, 2, -1);
    float *c = fox_logits(p, &g, 1, 1); /* a budget of 1 byte: nothing fits */
    double d1 = max_abs_diff(a, b, (int64_t)NTOK * NV), d2 = max_abs_diff(a, c, (int64_t)NTOK * NV);
    fprintf(stderr, "forward uncached vs cached: %.3g, %.3g\n", d1, d2);
    ck_assert_double_le(d1, 1e-4);
    ck_assert_double_le(d2, 1e-4);
    if (qk_forward_gemm_available()) { /* panels decoded and multiplied per pool item: the same sums */
        ck_assert_double_eq(d1, 0.0);
        ck_assert_double_eq(d2, 0.0);
    }
    free(a);
    free(b);
    free(c);
    free(g.logits);
}
END_TEST

/* Zero-padded models (FFN 172 -> 192; everything -> 256 with dummy heads,
 * zero channels and an adjusted epsilon) are exactly equivalent. */
START_TEST(test_forward_padded_models_equivalent)
{
    QK_REQUIRE_DATA(p, BIN);
    QK_REQUIRE_DATA(nllp, GOLD_NLL);
    QK_REQUIRE_DATA(lp, GOLD_LOGITS);
    QK_REQUIRE_DATA(p192, "golden/llamacpp/stories260K-pad192-f32.gguf");
    QK_REQUIRE_DATA(p256, "golden/llamacpp/stories260K-pad256-f32.gguf");
    golden g;
    golden_load(&g, nllp, lp);
    float *ref = fox_logits(p, &g, 2, 0);
    qk_model *m = open_model(p256);
    const qk_model_config *c = qk_model_cfg(m);
    ck_assert_int_eq(c->n_embd, 256);
    ck_assert_int_eq(c->n_head, 32);
    ck_assert_int_eq(c->n_head_kv, 16);
    ck_assert_int_eq(c->head_dim, 8);
    ck_assert_int_eq(c->n_ff, 256);
    ck_assert_float_eq_tol(c->norm_eps, 2.5e-6f, 1e-12f);
    qk_model_close(m);
    const char *paths[] = {p192, p256};
    for (int i = 0; i < 2; i++) {
        for (int64_t cache = 0; cache >= -1; cache--) {
            float *l = fox_logits(paths[i], &g, 2, cache);
            double d = max_abs_diff(l, ref, (int64_t)NTOK * NV);
            fprintf(stderr, "forward %s (cache %lld): max |logit - unpadded| %.3g\n", paths[i], (long long)cache,
                    d);
            ck_assert_msg(d <= 1e-4, "%s: logits differ from the unpadded model's by %g", paths[i], d);
            free(l);
        }
    }
    /* --pad-ffn on load is the same zero padding */
    qk_model_opts o = {.no_vocab = 1, .pad_ffn = 64};
    ck_assert_int_eq(qk_model_open(&m, p, &o), 0);
    ck_assert_int_eq(qk_model_cfg(m)->n_ff, 192);
    qk_forward *f = new_f(m, 2, NTOK, -1);
    float *l = run_f(f, g.ids, 1, NTOK, 0, NV);
    ck_assert_double_le(max_abs_diff(l, ref, (int64_t)NTOK * NV), 1e-4);
    free(l);
    qk_forward_free(f);
    qk_model_close(m);
    free(ref);
    free(g.logits);
}
END_TEST

/* Sequences in one call are independent; threads do not change results.
 * Every step but the matmuls works row by row or per sequence, so batching
 * is exact wherever OpenBLAS's sgemm gives a row the same bits whatever the
 * number of rows. Its small-matrix kernel (M*N*K tiny, as in stories260K's
 * 64-wide layers) does not: there the difference is float rounding (~2e-5);
 * the 256-wide padded model is bit-exact. */
static void check_batch(const char *path, double batch_tol)
{
    QK_REQUIRE_DATA(nllp, GOLD_NLL);
    QK_REQUIRE_DATA(lp, GOLD_LOGITS);
    golden g;
    golden_load(&g, nllp, lp);
    enum { N = NTOK };
    int32_t two[2 * N];
    memcpy(two, g.ids, sizeof g.ids);
    two[N] = 1; /* second sequence: BOS, then the sentence reversed */
    for (int i = 1; i < N; i++)
        two[N + i] = g.ids[N - i];
    qk_model *m = open_model(path);
    for (int64_t cache = 0; cache >= -1; cache--) {
        qk_forward *f1 = new_f(m, 1, 2 * N, cache);
        qk_forward *f2 = new_f(m, 2, 2 * N, cache);
        float *both = run_f(f1, two, 2, N, 0, NV);
        float *s0 = run_f(f1, two, 1, N, 0, NV);
        float *s1 = run_f(f1, two + N, 1, N, 0, NV);
        double d0 = max_abs_diff(both, s0, (int64_t)N * NV);
        double d1 = max_abs_diff(both + (size_t)N * NV, s1, (int64_t)N * NV);
        fprintf(stderr, "forward batch %s (cache %lld): |2 seqs - 1 seq| %.3g, %.3g\n", path, (long long)cache, d0,
                d1);
        ck_assert_double_le(d0, batch_tol);
        ck_assert_double_le(d1, batch_tol);
        ck_assert_double_gt(max_abs_diff(s0, s1, (int64_t)N * NV), 0.1); /* they do differ */
        /* two threads */
        float *t2 = run_f(f2, two, 2, N, 0, NV);
        double dt = max_abs_diff(both, t2, 2 * (int64_t)N * NV);
        fprintf(stderr, "forward threads %s (cache %lld): |1 - 2 threads| %.3g\n", path, (long long)cache, dt);
        ck_assert_double_le(dt, 1e-5);
        /* first_logit: only the later positions, with the same values */
        float *late = run_f(f2, two, 2, N, 20, NV);
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < N; i++) {
                const float *a = late + ((size_t)s * N + i) * NV, *b = t2 + ((size_t)s * N + i) * NV;
                if (i < 20)
                    ck_assert(isnan(a[0]));
                else
                    ck_assert_double_le(max_abs_diff(a, b, NV), 1e-5);
            }
        /* repeated calls give the same answer (cache state, reused buffers) */
        float *again = run_f(f2, two, 2, N, 0, NV);
        ck_assert_double_eq(max_abs_diff(again, t2, 2 * (int64_t)N * NV), 0);
        free(both);
        free(s0);
        free(s1);
        free(t2);
        free(late);
        free(again);
        qk_forward_free(f1);
        qk_forward_free(f2);
    }
    qk_model_close(m);
    free(g.logits);
}

START_TEST(test_forward_batch_and_threads)
{
    QK_REQUIRE_DATA(p, BIN);
    check_batch(p, 1e-4);
    QK_REQUIRE_DATA(p16, "models/stories260K-hf/float16"); /* decoded, not mapped */
    check_batch(p16, 1e-4);
    QK_REQUIRE_DATA(p256, "golden/llamacpp/stories260K-pad256-f32.gguf");
    check_batch(p256, 0);
}
END_TEST

/* ---------------------------------------------------------------- hooks */

typedef struct hook_log {
    int n_events;
    int n_before, n_after;
    int order_ok;
    int expect_layer, expect_kind, expect_after;
    int64_t n_tok;
    const qk_model_config *c;
    const float *qkv_x;
    int shapes_ok;
    int abort_at; /* abort with 7 at this event (0 = never) */
} hook_log;

static int count_hook(void *ctx, const qk_linear_event *ev)
{
    hook_log *h = ctx;
    h->n_events++;
    if (h->abort_at && h->n_events == h->abort_at)
        return 7;
    if (ev->y)
        h->n_after++;
    else
        h->n_before++;
    /* expected order: per layer Q,K,V,O,GATE,UP,DOWN, each before then after; then OUTPUT */
    if (ev->layer != h->expect_layer || ev->kind != h->expect_kind || (ev->y != NULL) != h->expect_after)
        h->order_ok = 0;
    if (h->expect_after) {
        h->expect_after = 0;
        if (h->expect_kind == QK_LIN_DOWN) {
            h->expect_kind = QK_LIN_Q;
            if (++h->expect_layer == h->c->n_layer) {
                h->expect_layer = -1;
                h->expect_kind = QK_LIN_OUTPUT;
            }
        } else {
            h->expect_kind++;
        }
    } else {
        h->expect_after = 1;
    }
    const qk_model_config *c = h->c;
    int64_t qd = c->n_head * c->head_dim, kvd = c->n_head_kv * c->head_dim;
    int64_t in = 0, out = 0;
    const char *suffix = "";
    switch (ev->kind) {
    case QK_LIN_Q: in = c->n_embd, out = qd, suffix = "attn_q.weight"; break;
    case QK_LIN_K: in = c->n_embd, out = kvd, suffix = "attn_k.weight"; break;
    case QK_LIN_V: in = c->n_embd, out = kvd, suffix = "attn_v.weight"; break;
    case QK_LIN_O: in = qd, out = c->n_embd, suffix = "attn_output.weight"; break;
    case QK_LIN_GATE: in = c->n_embd, out = c->n_ff, suffix = "ffn_gate.weight"; break;
    case QK_LIN_UP: in = c->n_embd, out = c->n_ff, suffix = "ffn_up.weight"; break;
    case QK_LIN_DOWN: in = c->n_ff, out = c->n_embd, suffix = "ffn_down.weight"; break;
    case QK_LIN_OUTPUT: in = c->n_embd, out = c->n_vocab, suffix = "token_embd.weight"; break;
    }
    char name[64];
    if (ev->layer >= 0)
        snprintf(name, sizeof name, "blk.%d.%s", ev->layer, suffix);
    else
        snprintf(name, sizeof name, "%s", suffix);
    if (ev->n_in != in || ev->n_out != out || ev->n_tokens != h->n_tok || !ev->x || !ev->weight ||
        strcmp(ev->weight->name, name) || ev->weight->ne[0] != in || ev->weight->ne[1] != out)
        h->shapes_ok = 0;
    if (ev->kind == QK_LIN_Q)
        h->qkv_x = ev->x;
    if ((ev->kind == QK_LIN_K || ev->kind == QK_LIN_V) && ev->x != h->qkv_x)
        h->shapes_ok = 0;
    return 0;
}

static int noop_logits(void *ctx, int64_t seq, int64_t pos, const float *logits)
{
    (void)seq, (void)pos, (void)logits;
    (*(int64_t *)ctx)++;
    return 0;
}

START_TEST(test_forward_hook_sees_every_linear)
{
    QK_REQUIRE_DATA(p, BIN);
    qk_model *m = open_model(p);
    const qk_model_config *c = qk_model_cfg(m);
    qk_forward *f = new_f(m, 2, 64, 0);
    int32_t tok[2 * 16];
    for (int i = 0; i < 32; i++)
        tok[i] = i % 16 ? (int32_t)(7 * i + 3) % NV : 1;
    hook_log h = {.order_ok = 1, .shapes_ok = 1, .c = c, .n_tok = 32};
    qk_forward_set_hook(f, count_hook, &h);
    int64_t n_logits = 0;
    /* all positions scored: the output sees all 32 rows */
    ck_assert_int_eq(qk_forward_run(f, tok, 2, 16, 0, noop_logits, &n_logits), 0);
    ck_assert_int_eq(h.n_events, 2 * (7 * (int)c->n_layer + 1));
    ck_assert_int_eq(h.n_before, h.n_after);
    ck_assert(h.order_ok);
    ck_assert(h.shapes_ok);
    ck_assert_int_eq(n_logits, 32);
    /* calibration: first_logit = n_ctx skips the output projection */
    hook_log h2 = {.order_ok = 1, .shapes_ok = 1, .c = c, .n_tok = 32};
    qk_forward_set_hook(f, count_hook, &h2);
    ck_assert_int_eq(qk_forward_run(f, tok, 2, 16, 16, NULL, NULL), 0);
    ck_assert_int_eq(h2.n_events, 2 * 7 * (int)c->n_layer);
    ck_assert(h2.order_ok && h2.shapes_ok);
    /* a hook's non-zero return aborts the pass with that code */
    hook_log h3 = {.order_ok = 1, .shapes_ok = 1, .c = c, .n_tok = 32, .abort_at = 9};
    qk_forward_set_hook(f, count_hook, &h3);
    n_logits = 0;
    ck_assert_int_eq(qk_forward_run(f, tok, 2, 16, 0, noop_logits, &n_logits), 7);
    ck_assert_int_eq(h3.n_events, 9);
    ck_assert_int_eq(n_logits, 0);
    qk_forward_free(f);
    qk_model_close(m);
}
END_TEST

static int scale_hook(void *ctx, const qk_linear_event *ev)
{
    const int *layer = ctx;
    if (ev->y && ev->layer == *layer && ev->kind == QK_LIN_DOWN)
        for (int64_t i = 0; i < ev->n_tokens * ev->n_out; i++)
            ev->y[i] *= 2.0f;
    return 0;
}

static int abort_logits(void *ctx, int64_t seq, int64_t pos, const float *logits)
{
    (void)ctx, (void)seq, (void)pos, (void)logits;
    return -42;
}

START_TEST(test_forward_hook_modifies_output)
{
    QK_REQUIRE_DATA(p, BIN);
    QK_REQUIRE_DATA(nllp, GOLD_NLL);
    QK_REQUIRE_DATA(lp, GOLD_LOGITS);
    golden g;
    golden_load(&g, nllp, lp);
    qk_model *m = open_model(p);
    qk_forward *f = new_f(m, 2, NTOK, 0);
    float *base = run_f(f, g.ids, 1, NTOK, 0, NV);
    int layer = 2;
    qk_forward_set_hook(f, scale_hook, &layer);
    float *scaled = run_f(f, g.ids, 1, NTOK, 0, NV);
    ck_assert_double_gt(max_abs_diff(base, scaled, (int64_t)NTOK * NV), 1e-2);
    qk_forward_set_hook(f, NULL, NULL);
    float *again = run_f(f, g.ids, 1, NTOK, 0, NV);
    ck_assert_double_eq(max_abs_diff(base, again, (int64_t)NTOK * NV), 0);
    /* the logits callback can abort too */
    ck_assert_int_eq(qk_forward_run(f, g.ids, 1, NTOK, 0, abort_logits, NULL), -42);
    free(base);
    free(scaled);
    free(again);
    qk_forward_free(f);
    qk_model_close(m);
    free(g.logits);
}
END_TEST

START_TEST(test_forward_override_weight)
{
    QK_REQUIRE_DATA(p, BIN);
    QK_REQUIRE_DATA(nllp, GOLD_NLL);
    QK_REQUIRE_DATA(lp, GOLD_LOGITS);
    golden g;
    golden_load(&g, nllp, lp);
    qk_model *m = open_model(p);
    for (int64_t cache = 0; cache >= -1; cache--) {
        qk_forward *f = new_f(m, 2, NTOK, cache);
        float *base = run_f(f, g.ids, 1, NTOK, 0, NV);
        /* the model's own weights: no change */
        const char *names[] = {"blk.0.ffn_down.weight", "blk.3.attn_q.weight", "token_embd.weight",
                               "blk.1.ffn_norm.weight"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            const qk_model_tensor *t = qk_model_find(m, names[i]);
            ck_assert_ptr_nonnull(t);
            int64_t n = qk_model_tensor_nelem(t);
            float *w = malloc((size_t)n * sizeof(float));
            ck_assert_int_eq(qk_model_rows_f32(m, t, 0, qk_model_tensor_rows(t), w), 0);
            ck_assert_int_eq(qk_forward_override_weight(f, names[i], w), 0);
            free(w);
        }
        float *own = run_f(f, g.ids, 1, NTOK, 0, NV);
        ck_assert_double_eq(max_abs_diff(base, own, (int64_t)NTOK * NV), 0);
        /* zeros for blk.0.ffn_down: a different model */
        const qk_model_tensor *t = qk_model_find(m, "blk.0.ffn_down.weight");
        float *z = calloc((size_t)qk_model_tensor_nelem(t), sizeof(float));
        ck_assert_int_eq(qk_forward_override_weight(f, "blk.0.ffn_down.weight", z), 0);
        free(z);
        float *zero = run_f(f, g.ids, 1, NTOK, 0, NV);
        ck_assert_double_gt(max_abs_diff(base, zero, (int64_t)NTOK * NV), 1e-2);
        /* NULL restores the model's weights */
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            ck_assert_int_eq(qk_forward_override_weight(f, names[i], NULL), 0);
        float *restored = run_f(f, g.ids, 1, NTOK, 0, NV);
        ck_assert_double_eq(max_abs_diff(base, restored, (int64_t)NTOK * NV), 0);
        /* unknown names are refused (tied model: no output.weight) */
        ck_assert_int_eq(qk_forward_override_weight(f, "output.weight", base), QK_ENOTFOUND);
        ck_assert_ptr_nonnull(strstr(qk_errmsg(), "output.weight"));
        free(base);
        free(own);
        free(zero);
        free(restored);
        qk_forward_free(f);
    }
    qk_model_close(m);
    free(g.logits);
}
END_TEST

START_TEST(test_forward_rejects_bad_calls)
{
    QK_REQUIRE_DATA(p, BIN);
    qk_model *m = open_model(p);
    qk_forward *f = new_f(m, 1, 16, 0);
    int32_t tok[32] = {1, 2, 3};
    int64_t n = 0;
    ck_assert_int_eq(qk_forward_run(f, tok, 2, 16, 0, noop_logits, &n), QK_EINVAL); /* 32 > max_tokens */
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "16"));
    ck_assert_int_eq(qk_forward_run(f, tok, 1, 0, 0, noop_logits, &n), QK_EINVAL);
    ck_assert_int_eq(qk_forward_run(f, tok, 1, 8, 9, noop_logits, &n), QK_EINVAL);
    ck_assert_int_eq(qk_forward_run(f, tok, 1, 8, -1, noop_logits, &n), QK_EINVAL);
    ck_assert_int_eq(qk_forward_run(f, tok, 1, 8, 0, NULL, NULL), QK_EINVAL);
    tok[5] = NV;
    ck_assert_int_eq(qk_forward_run(f, tok, 1, 8, 0, noop_logits, &n), QK_EINVAL);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "512"));
    tok[5] = -1;
    ck_assert_int_eq(qk_forward_run(f, tok, 1, 8, 0, noop_logits, &n), QK_EINVAL);
    tok[5] = 5;
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(qk_forward_run(f, tok, 1, 8, 0, noop_logits, &n), 0);
    ck_assert_int_eq(n, 8);
    qk_forward_free(f);
    qk_model_close(m);
}
END_TEST

/* llama.cpp's perplexity protocol on the TinyStories eval text (context
 * 256, BOS first, second half scored): its F32 PPL is 3.606829
 * (quant_matrix_stories260K-pad192.tsv), with an F16 KV cache. Uses the
 * tokenizer to make the windows. */
typedef struct ppl_acc {
    const int32_t *win;
    int64_t n_ctx;
    double nll;
    int64_t n;
} ppl_acc;

static int ppl_fn(void *ctx, int64_t seq, int64_t pos, const float *logits)
{
    ppl_acc *a = ctx;
    if (pos + 1 < a->n_ctx) {
        a->nll += nll_at(logits, a->win[seq * a->n_ctx + pos + 1]);
        a->n++;
    }
    return 0;
}

START_TEST(test_forward_perplexity_matches_llamacpp)
{
    QK_REQUIRE_DATA(p, "golden/llamacpp/stories260K-pad192-f32.gguf");
    QK_REQUIRE_DATA(txtp, "text/tinystories-valid-eval.txt");
    qk_model *m = open_model(p);
    qk_tokenizer *tk;
    ck_assert_int_eq(qk_tokenizer_new(&tk, qk_model_vocab(m)), 0);
    size_t len;
    char *txt = qk_test_read_file(txtp, &len);
    int32_t *ids;
    int64_t n;
    ck_assert_int_eq(qk_tokenize(tk, txt, len, 1, &ids, &n), 0);
    enum { CTX = 256, B = 4 };
    const int64_t n_chunks = n / CTX;
    ck_assert_int_eq(n_chunks, 58);
    qk_forward *f = new_f(m, 2, B * CTX, 0);
    int32_t win[B * CTX];
    ppl_acc a = {win, CTX, 0, 0};
    for (int64_t c = 0; c < n_chunks; c += B) {
        int64_t nb = n_chunks - c < B ? n_chunks - c : B;
        memcpy(win, ids + c * CTX, (size_t)(nb * CTX) * sizeof(int32_t));
        for (int64_t s = 0; s < nb; s++)
            win[s * CTX] = 1; /* BOS */
        ck_assert_int_eq(qk_forward_run(f, win, nb, CTX, CTX / 2, ppl_fn, &a), 0);
    }
    double ppl = exp(a.nll / (double)a.n);
    fprintf(stderr, "forward perplexity: %.6f over %lld positions (llama.cpp 3.606829)\n", ppl, (long long)a.n);
    ck_assert_int_eq(a.n, 58 * 127);
    ck_assert_double_eq_tol(ppl, 3.606829, 0.001);
    qk_forward_free(f);
    free(ids);
    free(txt);
    qk_tokenizer_free(tk);
    qk_model_close(m);
}
END_TEST

/* --------------------------------------------------------- quantized input */

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

/* A quantized golden model runs, equals llama.cpp's own dequantization of it
 * run in F32, and stays near the F32 model's NLL. */
static void check_quantized(const char *base, double nll_tol)
{
    char rel[256], relgz[256];
    snprintf(rel, sizeof rel, "golden/llamacpp/%s.gguf", base);
    snprintf(relgz, sizeof relgz, "golden/llamacpp/%s.dequant-f32.gguf.gz", base);
    QK_REQUIRE_DATA(qp, rel);
    QK_REQUIRE_DATA(gz, relgz);
    QK_REQUIRE_DATA(nllp, GOLD_NLL);
    QK_REQUIRE_DATA(lp, GOLD_LOGITS);
    qk_model *m = open_model(qp);
    int type = qk_model_find(m, "blk.0.ffn_down.weight")->type;
    qk_model_close(m);
    if (!qk_type_get(type)->to_float) {
        fprintf(stderr, "SKIP %s: no %s decoder yet\n", base, qk_type_name(type));
        return;
    }
    golden g;
    golden_load(&g, nllp, lp);
    float *lq = fox_logits(qp, &g, 2, 0);
    float *ld = fox_logits(gunzip_tmp(gz, "dequant.gguf"), &g, 2, 0);
    double d = max_abs_diff(lq, ld, (int64_t)NTOK * NV);
    double nll = total_nll(lq, g.ids, NULL);
    fprintf(stderr, "forward %s: NLL %.4f (F32 %.4f), max |logit - llama.cpp dequant| %.3g\n", base, nll, REF_NLL,
            d);
    ck_assert_msg(d <= 1e-4, "%s: logits differ from the llama.cpp-dequantized model's by %g", base, d);
    ck_assert_msg(fabs(nll - REF_NLL) <= nll_tol, "%s: NLL %.4f is not within %g of %.4f", base, nll, nll_tol,
                  REF_NLL);
    free(lq);
    free(ld);
    free(g.logits);
}

START_TEST(test_forward_quantized_golden)
{
    check_quantized("stories260K-pad192-q8_0-pure", 0.1);
    check_quantized("stories260K-pad192-q4_0-pure", 3.0);
    check_quantized("stories260K-pad256-q4_k-pure", 5.0);
    check_quantized("stories260K-pad256-q6_k-pure", 1.0);
    check_quantized("stories260K-pad256-q4_k_m", 5.0);
}
END_TEST

/* ------------------------------------------------------------ row kernels */

static uint32_t lcg(uint32_t *s) { return *s = *s * 1664525u + 1013904223u; }
static float frand(uint32_t *s) { return (float)(lcg(s) >> 8) / (float)(1u << 24) * 2.0f - 1.0f; }

/* One attention head, in blocks of queries, against a direct
 * double-precision evaluation. */
START_TEST(test_forward_attn_block_matches_naive)
{
    enum { N = 37, HD = 6, QS = 3 * HD, KVS = 2 * HD };
    uint32_t seed = 1;
    float q[N * QS], k[N * KVS], v[N * KVS], out[N * QS];
    for (int i = 0; i < N * QS; i++)
        q[i] = 2 * frand(&seed);
    for (int i = 0; i < N * KVS; i++) {
        k[i] = 2 * frand(&seed);
        v[i] = frand(&seed);
    }
    float *scratch = malloc((size_t)N * N * sizeof(float));
    const int64_t windows[] = {0, 1, 4, N + 5};
    const int64_t blocks[] = {N, 1, 5, 16};
    for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++)
        for (size_t bi = 0; bi < sizeof blocks / sizeof blocks[0]; bi++) {
            int64_t win = windows[w], B = blocks[bi];
            memset(out, 0, sizeof out);
            /* head 1 of q, KV head 1 */
            for (int64_t i0 = 0; i0 < N; i0 += B)
                qk_forward_attn_block(out + HD, QS, q + HD, QS, k + HD, v + HD, KVS, i0, i0 + B <= N ? B : N - i0,
                                      HD, win, 0.4f, scratch, 0);
            for (int i = 0; i < N; i++) {
                int lo = win > 0 && i - win + 1 > 0 ? i - (int)win + 1 : 0;
                double s[N], mx = -INFINITY, sum = 0;
                for (int j = lo; j <= i; j++) {
                    s[j] = 0;
                    for (int d = 0; d < HD; d++)
                        s[j] += (double)q[i * QS + HD + d] * k[j * KVS + HD + d];
                    s[j] *= 0.4;
                    mx = fmax(mx, s[j]);
                }
                for (int j = lo; j <= i; j++)
                    sum += exp(s[j] - mx);
                for (int d = 0; d < HD; d++) {
                    double o = 0;
                    for (int j = lo; j <= i; j++)
                        o += exp(s[j] - mx) / sum * v[j * KVS + HD + d];
                    ck_assert_double_eq_tol(out[i * QS + HD + d], o, 1e-5);
                    ck_assert_float_eq(out[i * QS + d], 0.0f); /* other heads untouched */
                    ck_assert_float_eq(out[i * QS + 2 * HD + d], 0.0f);
                }
            }
            /* window 1: each position sees only itself */
            if (win == 1)
                for (int d = 0; d < HD; d++)
                    ck_assert_float_eq_tol(out[5 * QS + HD + d], v[5 * KVS + HD + d], 1e-6f);
        }
    free(scratch);
}
END_TEST

START_TEST(test_forward_rope_and_norm_rows)
{
    /* RoPE rotates adjacent pairs by pos * base^(-2i/hd) */
    enum { HD = 8, NP = 5 };
    float cs[NP * HD];
    qk_forward_rope_table(cs, NP, HD, 10000.0);
    float x[2 * HD], y[2 * HD];
    uint32_t seed = 3;
    for (int i = 0; i < 2 * HD; i++)
        x[i] = y[i] = frand(&seed);
    int pos = 3;
    qk_forward_rope_row(y, 2, HD, cs + pos * HD);
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < HD / 2; i++) {
            double th = pos * pow(10000.0, -2.0 * i / HD);
            double a = x[h * HD + 2 * i], b = x[h * HD + 2 * i + 1];
            ck_assert_double_eq_tol(y[h * HD + 2 * i], a * cos(th) - b * sin(th), 1e-6);
            ck_assert_double_eq_tol(y[h * HD + 2 * i + 1], a * sin(th) + b * cos(th), 1e-6);
        }
    /* position 0 is the identity */
    memcpy(y, x, sizeof x);
    qk_forward_rope_row(y, 2, HD, cs);
    ck_assert_int_eq(memcmp(x, y, sizeof x), 0);
    /* RMSNorm */
    float w[HD], n[HD];
    double ss = 0;
    for (int i = 0; i < HD; i++) {
        w[i] = 0.5f + (float)i;
        ss += (double)x[i] * x[i];
    }
    qk_forward_rmsnorm_row(n, x, w, HD, 1e-5f);
    for (int i = 0; i < HD; i++)
        ck_assert_double_eq_tol(n[i], x[i] / sqrt(ss / HD + 1e-5) * w[i], 1e-5);
    /* SwiGLU */
    float g[3] = {-2, 0, 3}, u[3] = {1, 5, -2};
    qk_forward_swiglu_row(g, u, 3);
    ck_assert_double_eq_tol(g[0], -2 / (1 + exp(2.0)), 1e-6);
    ck_assert_float_eq(g[1], 0);
    ck_assert_double_eq_tol(g[2], 3 / (1 + exp(-3.0)) * -2, 1e-5);
}
END_TEST

/* The AVX-512 linear-layer kernel: close to a double reference, and exact
 * whatever the slicing of columns or rows (what makes results independent
 * of the thread count and of batching). */
START_TEST(test_forward_gemm_kernel)
{
    if (!qk_forward_gemm_available())
        return; /* no AVX-512: the forward pass uses OpenBLAS only */
    enum { T = 23, K = 300, N = 150 }; /* neither a multiple of the 6x64 tile nor of the 128 k-block */
    float *x = malloc(sizeof(float) * T * K), *w = malloc(sizeof(float) * N * K);
    float *y = malloc(sizeof(float) * T * N), *y2 = malloc(sizeof(float) * T * N);
    ck_assert(x && w && y && y2);
    uint32_t st = 12345;
    for (int i = 0; i < T * K; i++)
        x[i] = (float)((st = st * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    for (int i = 0; i < N * K; i++)
        w[i] = (float)((st = st * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    qk_forward_gemm(y, N, x, K, w, K, T, N, K);
    double worst = 0;
    for (int t = 0; t < T; t++)
        for (int c = 0; c < N; c++) {
            double ref = 0;
            for (int k = 0; k < K; k++)
                ref += (double)x[t * K + k] * w[c * K + k];
            worst = fmax(worst, fabs(ref - y[t * N + c]));
        }
    ck_assert_msg(worst <= 1e-4, "gemm kernel differs from the double reference by %g", worst);
    /* column slices (as threads take them) and single rows give the same bits */
    for (int c0 = 0; c0 < N; c0 += 64) {
        int nc = N - c0 < 64 ? N - c0 : 64;
        qk_forward_gemm(y2 + c0, N, x, K, w + c0 * K, K, T, nc, K);
    }
    ck_assert_int_eq(memcmp(y, y2, sizeof(float) * T * N), 0);
    for (int t = 0; t < T; t++)
        qk_forward_gemm(y2 + t * N, N, x + t * K, K, w, K, 1, N, K);
    ck_assert_int_eq(memcmp(y, y2, sizeof(float) * T * N), 0);
    /* the same product with W stored [K][N] (qk_sgemm_kn): the same bits */
    float *wkn = malloc(sizeof(float) * N * K);
    ck_assert_ptr_nonnull(wkn);
    for (int c = 0; c < N; c++)
        for (int k = 0; k < K; k++)
            wkn[k * N + c] = w[c * K + k];
    qk_sgemm_kn(y2, N, x, K, wkn, N, T, N, K, 0);
    ck_assert_int_eq(memcmp(y, y2, sizeof(float) * T * N), 0);
    /* accumulating: y + x W is the FMA chain qk_sfma builds term by term
     * (what GPTQ's refinement relies on to spread sparse changes) */
    float *y3 = malloc(sizeof(float) * T * N);
    ck_assert_ptr_nonnull(y3);
    memcpy(y2, y, sizeof(float) * T * N);
    memcpy(y3, y, sizeof(float) * T * N);
    qk_sgemm_kn(y2, N, x, K, wkn, N, T, N, K, 1);
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++)
            qk_sfma(y3 + t * N, wkn + k * N, x[t * K + k], N);
    ck_assert_int_eq(memcmp(y2, y3, sizeof(float) * T * N), 0);
    for (int i = 0; i < T * N; i++)
        ck_assert_float_eq_tol(y2[i], 2 * y[i], 1e-4f);
    /* double: qk_dgemm_kn and qk_dfnma against a long-double reference */
    double *xd = malloc(sizeof(double) * T * K), *wd = malloc(sizeof(double) * K * N);
    double *yd = malloc(sizeof(double) * T * N), *yd2 = malloc(sizeof(double) * T * N);
    ck_assert(xd && wd && yd && yd2);
    for (int i = 0; i < T * K; i++)
        xd[i] = x[i];
    for (int i = 0; i < K * N; i++)
        wd[i] = wkn[i];
    for (int i = 0; i < T * N; i++)
        yd[i] = yd2[i] = i % 7 - 3.0;
    qk_dgemm_kn(yd, N, xd, K, wd, N, T, N, K, 1);
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++)
            qk_dfnma(yd2 + t * N, wd + k * N, -xd[t * K + k], N);
    double dworst = 0;
    for (int t = 0; t < T; t++)
        for (int c = 0; c < N; c++) {
            long double ref = (t * N + c) % 7 - 3.0;
            for (int k = 0; k < K; k++)
                ref += (long double)xd[t * K + k] * wd[k * N + c];
            dworst = fmax(dworst, fabs((double)(ref - yd[t * N + c])));
            dworst = fmax(dworst, fabs((double)(ref - yd2[t * N + c])));
        }
    ck_assert_msg(dworst <= 1e-12, "double kernels differ from the reference by %g", dworst);
    qk_dgemm_kn(yd, N, xd, K, wd, N, T, N, K, 0);
    for (int i = 0; i < T * N; i++)
        ck_assert_double_eq_tol(yd[i], y[i], 1e-4);
    free(xd);
    free(wd);
    free(yd);
    free(yd2);
    free(y3);
    free(wkn);
    free(x);
    free(w);
    free(y);
    free(y2);
}
END_TEST

/* The emulation's building blocks: ggml's expf within 2 ulp with its
 * flushes, and the matmul's lane order (visible where float sums are not
 * associative). */
START_TEST(test_forward_ggml_emulation_ops)
{
    ck_assert_float_eq(qk_forward_expf_ggml(0.0f), 1.0f);
    ck_assert_float_eq(qk_forward_expf_ggml(-INFINITY), 0.0f);
    ck_assert_float_eq(qk_forward_expf_ggml(-200.0f), 0.0f);
    ck_assert(isinf(qk_forward_expf_ggml(200.0f)));
    for (float x = -100.0f; x <= 88.0f; x += 0.0137f) {
        float e = qk_forward_expf_ggml(x), ref = (float)exp((double)x);
        ck_assert_msg(fabsf(e - ref) <= 2.0f * fmaxf(nextafterf(ref, INFINITY) - ref, 1e-45f),
                      "expf_ggml(%g) = %g, e^x = %g", x, e, ref);
    }
    /* lanes: x[i] * 1 lands in lane i % 8, whose FMA chain runs over i */
    float x[16] = {1e8f, 1, 0, 0, 0, 0, 0, 0, -1e8f, 0, 0, 0, 0, 0, 0, 0}, ones[16];
    for (int i = 0; i < 16; i++)
        ones[i] = 1.0f;
    ck_assert_float_eq(qk_forward_dot_ggml(x, ones, 16, 0), 1.0f);  /* lane 0: 1e8 - 1e8; lane 1: 1 */
    float seq = 0;
    for (int i = 0; i < 16; i++)
        seq += x[i];
    ck_assert_float_eq(seq, 0.0f); /* in plain order the 1 is absorbed */
    float h[8] = {1e8f, 0, 0, 0, -1e8f, 1, 0, 0};
    ck_assert_float_eq(qk_forward_hsum8(h), 1.0f); /* (v0 + v4) first */
    /* a length that is no multiple of 8 takes ggml_vec_dot_f32's order, still a dot product */
    float a[37], b[37];
    double ref = 0;
    for (int i = 0; i < 37; i++) {
        a[i] = 0.25f * (float)(i % 7) - 0.5f;
        b[i] = 0.125f * (float)(i % 5) + 0.25f;
        ref += (double)a[i] * b[i];
    }
    ck_assert_double_eq_tol(qk_forward_dot_ggml(a, b, 37, 0), ref, 1e-5);
    ck_assert_double_eq_tol(qk_forward_dot_ggml(a, b, 37, 1), ref, 1e-5); /* F16 rows: leftovers in double */
}
END_TEST

Suite *qk_test_suite_forward(void)
{
    Suite *s = suite_create("forward");
    TCase *tc = tcase_create("forward");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_forward_attn_block_matches_naive);
    tcase_add_test(tc, test_forward_rope_and_norm_rows);
    tcase_add_test(tc, test_forward_gemm_kernel);
    tcase_add_test(tc, test_forward_ggml_emulation_ops);
    tcase_add_test(tc, test_forward_matches_double_reference);
    tcase_add_test(tc, test_forward_fox_emulating_llamacpp);
    tcase_add_test(tc, test_forward_fox_llama2c);
    tcase_add_test(tc, test_forward_fox_gguf);
    tcase_add_test(tc, test_forward_fox_openblas);
    tcase_add_test(tc, test_forward_fox_hf_f32);
    tcase_add_test(tc, test_forward_fox_hf_half);
    tcase_add_test(tc, test_forward_uncached_equals_cached);
    tcase_add_test(tc, test_forward_padded_models_equivalent);
    tcase_add_test(tc, test_forward_batch_and_threads);
    tcase_add_test(tc, test_forward_hook_sees_every_linear);
    tcase_add_test(tc, test_forward_hook_modifies_output);
    tcase_add_test(tc, test_forward_override_weight);
    tcase_add_test(tc, test_forward_rejects_bad_calls);
    tcase_add_test(tc, test_forward_quantized_golden);
    tcase_add_test(tc, test_forward_perplexity_matches_llamacpp);
    suite_add_tcase(s, tc);
    return s;
}
