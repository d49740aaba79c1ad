/* Tests of AWQ channel scaling (quantize/awq.c), the folded model view
 * (qk_model_set_scales) and qk-quantize --method awq. */
#include "qk_test.h"

#include <cJSON.h>
#include <cblas.h>
#include <math.h>

#include "quantkit/awq.h"
#include "quantkit/calib.h"
#include "quantkit/eval.h"
#include "quantkit/forward.h"
#include "quantkit/ggml_types.h"
#include "quantkit/gguf.h"
#include "quantkit/metrics.h"
#include "quantkit/model.h"
#include "quantkit/quantize.h"

#define G "golden/llamacpp/"
#define PAD192 G "stories260K-pad192-f32.gguf"
#define CALIB_TEXT "text/tinystories-valid-calib.txt"
#define EVAL_TEXT "text/tinystories-valid-eval.txt"

static uint64_t rng_state;
static double urand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* ------------------------------------------------------------ helpers */

/* The calibration statistics of the brief: qk-calibrate --hessian, ctx 128. */
static const char *make_qkc(const char *model)
{
    const char *text = qk_test_data(CALIB_TEXT);
    ck_assert_ptr_nonnull(text);
    const char *out = qk_test_tmp("awq.qkc");
    char *err = NULL;
    int rc = qk_test_run(NULL, &err, "%s %s --text %s --ctx 128 --hessian -o %s", qk_test_tool("qk-calibrate"),
                         model, text, out);
    ck_assert_msg(rc == 0, "qk-calibrate: exit %d: %s", rc, err);
    free(err);
    return out;
}

typedef struct {
    float *v;
    int64_t n, cap, n_vocab;
} logit_sink;

static int keep_logits(void *ctx, int64_t seq, int64_t pos, const float *logits)
{
    (void)seq, (void)pos;
    logit_sink *s = ctx;
    if (s->n + s->n_vocab > s->cap) {
        s->cap = 2 * (s->n + s->n_vocab);
        s->v = realloc(s->v, (size_t)s->cap * sizeof(float));
        ck_assert_ptr_nonnull(s->v);
    }
    memcpy(s->v + s->n, logits, (size_t)s->n_vocab * sizeof(float));
    s->n += s->n_vocab;
    return 0;
}

/* Logits of every position of 2 fixed windows of 64 tokens. */
static float *run_logits(const qk_model *m, int64_t *n)
{
    enum { NSEQ = 2, NCTX = 64 };
    int32_t tok[NSEQ * NCTX];
    rng_state = 7;
    for (int i = 0; i < NSEQ * NCTX; i++)
        tok[i] = i % NCTX == 0 ? 1 : (int32_t)(urand() * (double)qk_model_cfg(m)->n_vocab);
    qk_forward *f;
    qk_forward_opts fo = {.n_threads = 2, .max_tokens = NSEQ * NCTX};
    ck_assert_int_eq(qk_forward_new(&f, m, &fo), 0);
    logit_sink s = {.n_vocab = qk_model_cfg(m)->n_vocab};
    ck_assert_int_eq(qk_forward_run(f, tok, NSEQ, NCTX, 0, keep_logits, &s), 0);
    qk_forward_free(f);
    *n = s.n;
    return s.v;
}

/* max |a - b| / max |a| */
static double rel_diff(const float *a, const float *b, int64_t n)
{
    double d = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - (double)b[i]));
        s = fmax(s, fabs((double)a[i]));
    }
    return s > 0 ? d / s : d;
}

static int *pure_types(const qk_model *m, int type)
{
    int64_t nt = qk_model_n_tensors(m);
    int *t = malloc((size_t)nt * sizeof *t);
    for (int64_t i = 0; i < nt; i++)
        t[i] = qk_model_tensor_at(m, i)->n_dims > 1 ? type : QK_TYPE_F32;
    return t;
}

/* ------------------------------------------------------------- library */

START_TEST(test_awq_model_set_scales)
{
    QK_REQUIRE_DATA(src, PAD192);
    qk_model *m;
    ck_assert_int_eq(qk_model_open(&m, src, NULL), 0);
    const qk_model_tensor *t = qk_model_find(m, "blk.1.ffn_up.weight"); /* ne {64, 192} */
    const int64_t n = t->ne[0], rows = qk_model_tensor_rows(t);
    float *before = malloc((size_t)(n * rows) * sizeof(float)), *after = malloc((size_t)(n * rows) * sizeof(float));
    float *cs = malloc((size_t)n * sizeof(float)), *rs = malloc((size_t)rows * sizeof(float));
    ck_assert_int_eq(qk_model_rows_f32(m, t, 0, rows, before), 0);
    ck_assert_ptr_nonnull(qk_model_row_raw(t, 3));
    rng_state = 11;
    for (int64_t j = 0; j < n; j++)
        cs[j] = (float)(0.25 + 2 * urand());
    for (int64_t r = 0; r < rows; r++)
        rs[r] = (float)(0.5 + urand());
    ck_assert_int_eq(qk_model_set_scales(m, t->name, cs, rs), 0);
    cs[0] = 99; /* copied: later changes to the caller's array do not matter */
    ck_assert_ptr_null(qk_model_row_raw(t, 3));
    ck_assert_int_eq(qk_model_rows_f32(m, t, 0, rows, after), 0);
    rng_state = 11;
    for (int64_t j = 0; j < n; j++)
        cs[j] = (float)(0.25 + 2 * urand());
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++)
            ck_assert_float_eq(after[r * n + j], before[r * n + j] * cs[j] * rs[r]);
    /* a norm takes column scales; NULL removes them */
    ck_assert_int_eq(qk_model_set_scales(m, "blk.0.attn_norm.weight", cs, NULL), 0);
    ck_assert_ptr_nonnull(qk_model_find(m, "blk.0.attn_norm.weight")->col_scale);
    ck_assert_int_eq(qk_model_set_scales(m, t->name, NULL, NULL), 0);
    ck_assert_ptr_null(t->col_scale);
    ck_assert_ptr_null(t->row_scale);
    ck_assert_int_eq(qk_model_rows_f32(m, t, 0, rows, after), 0);
    ck_assert_int_eq(memcmp(before, after, (size_t)(n * rows) * sizeof(float)), 0);
    ck_assert_ptr_nonnull(qk_model_row_raw(t, 3));
    /* errors */
    ck_assert_int_eq(qk_model_set_scales(m, "blk.9.ffn_up.weight", cs, NULL), QK_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "blk.9.ffn_up.weight"));
    rs[5] = NAN;
    ck_assert_int_eq(qk_model_set_scales(m, t->name, NULL, rs), QK_ENONFINITE);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "row scale 5"));
    ck_assert_ptr_null(t->row_scale); /* unchanged after an error */
    free(before);
    free(after);
    free(cs);
    free(rs);
    qk_model_close(m);
}
END_TEST

/* The folded model computes the same function: random scales in every
 * group (the o group's shared per KV head under GQA) through
 * qk_awq_apply, and the forward logits against the unscaled model's. */
START_TEST(test_awq_fold_random_scales_same_logits)
{
    QK_REQUIRE_DATA(src, PAD192);
    qk_model *m;
    ck_assert_int_eq(qk_model_open(&m, src, NULL), 0);
    int64_t n_ref, n_got;
    float *ref = run_logits(m, &n_ref);
    /* the group structure from a fixed-alpha run on statistics of ones
     * (every 2-D tensor but the embedding) */
    qk_calib *st;
    ck_assert_int_eq(qk_calib_new(&st), 0);
    st->e = calloc((size_t)qk_model_n_tensors(m), sizeof *st->e);
    for (int64_t i = 0; i < qk_model_n_tensors(m); i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        if (t->n_dims < 2 || !strcmp(t->name, "token_embd.weight"))
            continue;
        qk_calib_entry *e = &st->e[st->n++];
        e->name = strdup(t->name);
        e->n_in = t->ne[0];
        e->n_tokens = e->n_calls = 1;
        e->hessian_of = -1;
        e->sum_x2 = malloc((size_t)e->n_in * sizeof(double));
        for (int64_t j = 0; j < e->n_in; j++)
            e->sum_x2[j] = 1;
    }
    int *types = pure_types(m, QK_TYPE_Q4_0);
    qk_awq_opts ao = {.fixed = 1, .alpha = 1};
    qk_awq_result *r;
    ck_assert_int_eq(qk_awq_search(&r, m, st, types, &ao, NULL), 0);
    ck_assert_int_eq(r->n, 4 * 5 + 1); /* 4 per layer and the output (untied) */
    rng_state = 3;
    int saw_gqa = 0;
    for (int64_t i = 0; i < r->n; i++) {
        qk_awq_group *g = &r->g[i];
        ck_assert(!g->skipped);
        ck_assert_ptr_nonnull(g->s);
        for (int64_t c = 0; c < g->n; c++) {
            ck_assert_float_eq(g->s[c], 1.0f); /* equal magnitudes: s = 1 */
            int64_t hd = g->head_dim, first = g->rep > 1 ? (c / hd / g->rep) * g->rep * hd + c % hd : c;
            g->s[c] = first == c ? (float)exp(2.0 * urand() - 1.0) : g->s[first];
        }
        saw_gqa |= g->kind == QK_AWQ_O && g->rep == 2 && g->head_dim == 8;
        g->alpha = 0.5; /* non-zero: applied */
    }
    ck_assert(saw_gqa);
    ck_assert_int_eq(qk_awq_apply(m, r), 0);
    ck_assert_ptr_nonnull(qk_model_find(m, "blk.2.attn_v.weight")->row_scale);
    ck_assert_ptr_nonnull(qk_model_find(m, "blk.2.attn_v.weight")->col_scale);
    ck_assert_ptr_nonnull(qk_model_find(m, "blk.2.ffn_up.weight")->row_scale);
    ck_assert_ptr_nonnull(qk_model_find(m, "blk.2.ffn_norm.weight")->col_scale);
    ck_assert_ptr_nonnull(qk_model_find(m, "output_norm.weight")->col_scale);
    ck_assert_ptr_nonnull(qk_model_find(m, "output.weight")->col_scale);
    ck_assert_ptr_null(qk_model_find(m, "token_embd.weight")->col_scale);
    float *got = run_logits(m, &n_got);
    ck_assert_int_eq(n_ref, n_got);
    double d = rel_diff(ref, got, n_ref);
    fprintf(stderr, "random AWQ scales: logits differ by %.3g (relative to max |logit|)\n", d);
    ck_assert_msg(d <= 1e-4, "folded model's logits differ by %g", d);
    /* and the scales really changed the weights */
    float a[64], b[64];
    qk_model *m0;
    ck_assert_int_eq(qk_model_open(&m0, src, NULL), 0);
    ck_assert_int_eq(qk_model_row_f32(m0, qk_model_find(m0, "blk.2.attn_q.weight"), 0, a), 0);
    ck_assert_int_eq(qk_model_row_f32(m, qk_model_find(m, "blk.2.attn_q.weight"), 0, b), 0);
    ck_assert(rel_diff(a, b, 64) > 0.1);
    qk_model_close(m0);
    qk_awq_result_free(r);
    qk_calib_free(st);
    free(types);
    free(ref);
    free(got);
    qk_model_close(m);
}
END_TEST

/* Layer-output error ||X (W - Q)^T||^2 of every linear layer on the
 * calibration activations, measured on a model view through the forward
 * hooks (Q: W quantized with `type` and decoded, both in that view). A
 * producer's rows scaled by 1/s (attn_v, ffn_up) feed a consumer whose
 * columns are scaled by s: its output error counts back in the original
 * coordinates, row r divided by its row scale. */
typedef struct {
    const qk_model *m;
    int type;
    float **delta; /* [n_tensors] W - Q, computed on first use */
    double err[64];
} err_ctx;

static int err_hook(void *ctx, const qk_linear_event *ev)
{
    err_ctx *c = ctx;
    if (ev->y || ev->layer < 0)
        return 0;
    int64_t ti = 0;
    while (qk_model_tensor_at(c->m, ti) != ev->weight)
        ti++;
    const int64_t n = ev->n_in, rows = ev->n_out;
    if (!c->delta[ti]) {
        size_t rb;
        ck_assert_int_eq(qk_type_row_bytes(c->type, n, &rb), 0);
        float *w = malloc((size_t)(n * rows) * sizeof(float)), *q = malloc((size_t)(n * rows) * sizeof(float));
        uint8_t *qb = malloc(rb * (size_t)rows);
        ck_assert_int_eq(qk_model_rows_f32(c->m, ev->weight, 0, rows, w), 0);
        ck_assert_int_eq(qk_quantize_rows(c->type, w, qb, rows, n, NULL, NULL), 0);
        for (int64_t r = 0; r < rows; r++)
            qk_type_get(c->type)->to_float(qb + (size_t)r * rb, q + r * n, n);
        const float *rs = ev->weight->row_scale;
        for (int64_t k = 0; k < n * rows; k++)
            w[k] = (w[k] - q[k]) / (rs ? rs[k / n] : 1.0f);
        c->delta[ti] = w;
        free(q);
        free(qb);
    }
    float *y = malloc((size_t)(ev->n_tokens * rows) * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)ev->n_tokens, (int)rows, (int)n, 1.0f, ev->x, (int)n,
                c->delta[ti], (int)n, 0.0f, y, (int)rows);
    double s = 0;
    for (int64_t k = 0; k < ev->n_tokens * rows; k++)
        s += (double)y[k] * y[k];
    c->err[ev->layer] += s;
    free(y);
    return 0;
}

static void layer_errors(const qk_model *m, int type, const int32_t *win, int64_t n_win, int64_t n_ctx, double *err)
{
    err_ctx c = {.m = m, .type = type, .delta = calloc((size_t)qk_model_n_tensors(m), sizeof(float *))};
    qk_forward *f;
    const int64_t per = 16;
    qk_forward_opts fo = {.n_threads = 2, .max_tokens = per * n_ctx};
    ck_assert_int_eq(qk_forward_new(&f, m, &fo), 0);
    qk_forward_set_hook(f, err_hook, &c);
    for (int64_t s = 0; s < n_win; s += per)
        ck_assert_int_eq(qk_forward_run(f, win + s * n_ctx, n_win - s < per ? n_win - s : per, n_ctx, n_ctx, NULL, NULL), 0);
    qk_forward_free(f);
    for (int64_t i = 0; i < qk_model_n_tensors(m); i++)
        free(c.delta[i]);
    free(c.delta);
    memcpy(err, c.err, sizeof c.err);
}

/* AWQ lowers every layer's output error below plain rounding's (same type)
 * on the calibration activations, and the searched scales fold exactly. */
START_TEST(test_awq_layer_error_beats_rtn)
{
    QK_REQUIRE_DATA(src, PAD192);
    QK_REQUIRE_DATA(text, CALIB_TEXT);
    const char *qkc = make_qkc(src);
    qk_calib *st;
    ck_assert_int_eq(qk_calib_load(&st, qkc), 0);
    qk_model *m0;
    ck_assert_int_eq(qk_model_open(&m0, src, NULL), 0);
    /* the calibration windows, as qk-calibrate cuts them */
    qk_tokenizer *tok;
    int32_t *ids, *win;
    int64_t n_ids, n_win;
    size_t len;
    char *txt = qk_test_read_file(text, &len);
    ck_assert_int_eq(qk_tokenizer_new(&tok, qk_model_vocab(m0)), 0);
    ck_assert_int_eq(qk_tokenize_ex(tok, txt, len, QK_TOKENIZE_ADD_SPECIAL, &ids, &n_ids), 0);
    ck_assert_int_eq(qk_eval_windows(ids, n_ids, 128, 0, qk_model_vocab(m0)->bos_id, &win, &n_win), 0);
    ck_assert_int_eq(n_win, 61);
    const qk_model_config *cfg = qk_model_cfg(m0);
    int64_t n_ref, n_got;
    float *ref = run_logits(m0, &n_ref);
    const int types[2] = {QK_TYPE_Q4_0, QK_TYPE_IQ4_NL};
    for (int k = 0; k < 2; k++) {
        qk_model *m;
        ck_assert_int_eq(qk_model_open(&m, src, NULL), 0);
        int *ty = pure_types(m, types[k]);
        qk_pool *pool;
        ck_assert_int_eq(qk_pool_create(&pool, 2), 0);
        qk_awq_result *r;
        ck_assert_int_eq(qk_awq_search(&r, m, st, ty, NULL, pool), 0);
        ck_assert_int_eq(qk_awq_apply(m, r), 0);
        int n_scaled = 0;
        for (int64_t i = 0; i < r->n; i++) {
            const qk_awq_group *g = &r->g[i];
            if (g->kind == QK_AWQ_OUTPUT) { /* the file has no output.weight entry (no --process-output) */
                ck_assert(g->skipped && !g->s);
                continue;
            }
            ck_assert(g->searched && !g->skipped && !g->diagonal);
            ck_assert(g->err <= g->err_rtn);
            n_scaled += g->alpha > 0;
        }
        ck_assert_int_ge(n_scaled, (int)r->n - 3);
        double rtn[64], awq[64];
        layer_errors(m0, types[k], win, n_win, 128, rtn);
        layer_errors(m, types[k], win, n_win, 128, awq);
        for (int64_t l = 0; l < cfg->n_layer; l++) {
            fprintf(stderr, "%s layer %lld output error: rtn %.5g, awq %.5g (%.1f%%)\n", qk_type_name(types[k]),
                    (long long)l, rtn[l], awq[l], 100 * awq[l] / rtn[l]);
            ck_assert_msg(awq[l] < 0.97 * rtn[l], "layer %lld: AWQ error %g not below RTN's %g", (long long)l,
                          awq[l], rtn[l]);
        }
        float *got = run_logits(m, &n_got);
        double d = rel_diff(ref, got, n_ref);
        ck_assert_msg(d <= 1e-4, "searched scales: folded logits differ by %g", d);
        free(got);
        qk_awq_result_free(r);
        qk_pool_free(pool);
        free(ty);
        qk_model_close(m);
    }
    free(ref);
    free(txt);
    free(ids);
    free(win);
    qk_tokenizer_free(tok);
    qk_calib_free(st);
    qk_model_close(m0);
}
END_TEST

/* Bit-identical choices for any pool size; the diagonal fallback without
 * Hessians; refusing a model that already carries scales. */
START_TEST(test_awq_search_deterministic_and_diagonal)
{
    QK_REQUIRE_DATA(src, PAD192);
    const char *qkc = make_qkc(src);
    qk_calib *st;
    ck_assert_int_eq(qk_calib_load(&st, qkc), 0);
    qk_model *m;
    ck_assert_int_eq(qk_model_open(&m, src, NULL), 0);
    int *ty = pure_types(m, QK_TYPE_Q4_0);
    qk_pool *pool;
    ck_assert_int_eq(qk_pool_create(&pool, 2), 0);
    qk_awq_result *a, *b, *c;
    ck_assert_int_eq(qk_awq_search(&a, m, st, ty, NULL, NULL), 0);
    ck_assert_int_eq(qk_awq_search(&b, m, st, ty, NULL, pool), 0);
    ck_assert_int_eq(a->n, b->n);
    for (int64_t i = 0; i < a->n; i++) {
        ck_assert(a->g[i].skipped == b->g[i].skipped && a->g[i].alpha == b->g[i].alpha && a->g[i].err == b->g[i].err);
        if (!a->g[i].skipped)
            ck_assert_int_eq(memcmp(a->g[i].s, b->g[i].s, (size_t)a->g[i].n * sizeof(float)), 0);
    }
    /* without Hessians: the diagonal error, still never above plain rounding */
    for (int64_t i = 0; i < st->n; i++) {
        free(st->e[i].xtx);
        st->e[i].xtx = NULL;
        st->e[i].hessian_of = -1;
    }
    ck_assert_int_eq(qk_awq_search(&c, m, st, ty, NULL, pool), 0);
    for (int64_t i = 0; i < c->n; i++)
        ck_assert(c->g[i].skipped || (c->g[i].diagonal && c->g[i].err <= c->g[i].err_rtn));
    ck_assert_int_eq(qk_awq_apply(m, a), 0);
    qk_awq_result *d = NULL;
    ck_assert_int_eq(qk_awq_search(&d, m, st, ty, NULL, pool), QK_EINVAL);
    ck_assert_ptr_null(d);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "already carries scales"));
    qk_awq_result_free(a);
    qk_awq_result_free(b);
    qk_awq_result_free(c);
    qk_pool_free(pool);
    free(ty);
    qk_calib_free(st);
    qk_model_close(m);
}
END_TEST

/* --------------------------------------------------------------- tools */

static double json_num(const char *path, const char *a, const char *b)
{
    char *js = qk_test_read_file(path, NULL);
    cJSON *j = cJSON_Parse(js);
    ck_assert_ptr_nonnull(j);
    cJSON *x = cJSON_GetObjectItem(j, a);
    if (b)
        x = cJSON_GetObjectItem(x, b);
    ck_assert_ptr_nonnull(x);
    double v = x->valuedouble;
    cJSON_Delete(j);
    free(js);
    return v;
}

static void quantize(const char *src, const char *out, const char *type, const char *extra)
{
    char *err = NULL;
    int rc = qk_test_run(NULL, &err, "%s %s %s %s --pure -q %s", qk_test_tool("qk-quantize"), src, out, type,
                         extra ? extra : "");
    ck_assert_msg(rc == 0, "qk-quantize %s %s: exit %d: %s", type, extra ? extra : "", rc, err);
    free(err);
}

static double eval_kld(const char *base, const char *quant)
{
    const char *json = qk_test_tmp("awq-eval.json");
    char *err = NULL;
    int rc = qk_test_run(NULL, &err, "%s --base %s --quant %s --text %s --ctx 256 -q --json %s",
                         qk_test_tool("qk-eval"), base, quant, qk_test_data(EVAL_TEXT), json);
    ck_assert_msg(rc == 0, "qk-eval %s: %s", quant, err);
    free(err);
    return json_num(json, "kld", "mean");
}

/* qk-quantize F32 --method awq writes the folded model: a different file
 * (norms and matrices scaled) with the same perplexity. */
START_TEST(test_awq_tool_f32_folded_same_ppl)
{
    QK_REQUIRE_DATA(src, PAD192);
    QK_REQUIRE_DATA(text, EVAL_TEXT);
    const char *qkc = make_qkc(src), *out = qk_test_tmp("awq-f32.gguf");
    char extra[4200];
    snprintf(extra, sizeof extra, "--method awq --calib %s --awq-alpha 0.5", qkc);
    quantize(src, out, "F32", extra);
    double ppl[2];
    const char *models[2] = {src, out};
    for (int k = 0; k < 2; k++) {
        const char *json = qk_test_tmp("awq-ppl.json");
        char *err = NULL;
        int rc = qk_test_run(NULL, &err, "%s %s --text %s --ctx 256 -q --json %s", qk_test_tool("qk-eval"), models[k],
                             text, json);
        ck_assert_msg(rc == 0, "qk-eval: %s", err);
        free(err);
        ppl[k] = json_num(json, "perplexity", "base");
    }
    fprintf(stderr, "folded F32 (alpha 0.5): PPL %.6f vs %.6f\n", ppl[1], ppl[0]);
    ck_assert_msg(fabs(ppl[1] / ppl[0] - 1) <= 1e-4, "PPL %g vs %g", ppl[1], ppl[0]);
    /* it is folded: the norm and the matrices changed; provenance */
    qk_gguf *a, *b;
    ck_assert_int_eq(qk_gguf_open(&a, src), 0);
    ck_assert_int_eq(qk_gguf_open(&b, out), 0);
    const char *names[] = {"blk.0.attn_norm.weight", "blk.0.attn_q.weight", "blk.3.attn_v.weight",
                           "blk.3.ffn_up.weight", "blk.4.ffn_down.weight"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const qk_gguf_tensor *x = qk_gguf_find_tensor(a, names[i]), *y = qk_gguf_find_tensor(b, names[i]);
        ck_assert_int_eq(y->type, QK_TYPE_F32);
        ck_assert_uint_eq(x->nbytes, y->nbytes);
        ck_assert_msg(memcmp(x->data, y->data, x->nbytes) != 0, "%s unchanged", names[i]);
    }
    ck_assert_int_eq(memcmp(qk_gguf_find_tensor(a, "token_embd.weight")->data,
                            qk_gguf_find_tensor(b, "token_embd.weight")->data, qk_gguf_find_tensor(a, "token_embd.weight")->nbytes), 0);
    const char *method = NULL;
    ck_assert_int_eq(qk_gguf_get_str(b, "quantkit.method", &method), 0);
    ck_assert_msg(!strncmp(method, "awq alpha=0.5 calib=", 20), "quantkit.method '%s'", method);
    qk_gguf_close(a);
    qk_gguf_close(b);
}
END_TEST

/* End to end on pad192: AWQ's mean KLD below plain rounding's for Q4_0 and
 * IQ4_NL; bytes identical for any thread count. */
START_TEST(test_awq_tool_kld_beats_rtn)
{
    QK_REQUIRE_DATA(src, PAD192);
    QK_REQUIRE_DATA(text, EVAL_TEXT);
    const char *qkc = make_qkc(src);
    const char *types[2] = {"Q4_0", "IQ4_NL"};
    for (int k = 0; k < 2; k++) {
        const char *rtn = qk_test_tmp("awq-rtn.gguf"), *awq = qk_test_tmp("awq-awq.gguf"),
                   *awq1 = qk_test_tmp("awq-awq-t1.gguf");
        char extra[4200];
        quantize(src, rtn, types[k], NULL);
        snprintf(extra, sizeof extra, "--method awq --calib %s -t 2", qkc);
        quantize(src, awq, types[k], extra);
        snprintf(extra, sizeof extra, "--method awq --calib %s -t 1", qkc);
        quantize(src, awq1, types[k], extra);
        qk_gguf *ga, *gb; /* the command lines differ: compare the tensors */
        ck_assert_int_eq(qk_gguf_open(&ga, awq), 0);
        ck_assert_int_eq(qk_gguf_open(&gb, awq1), 0);
        ck_assert_int_eq(qk_gguf_n_tensors(ga), qk_gguf_n_tensors(gb));
        for (int64_t i = 0; i < qk_gguf_n_tensors(ga); i++) {
            const qk_gguf_tensor *x = qk_gguf_tensor_at(ga, i), *y = qk_gguf_tensor_at(gb, i);
            ck_assert_uint_eq(x->nbytes, y->nbytes);
            ck_assert_msg(!memcmp(x->data, y->data, x->nbytes), "%s differs between -t 1 and -t 2", x->name);
        }
        qk_gguf_close(ga);
        qk_gguf_close(gb);
        double k_rtn = eval_kld(src, rtn), k_awq = eval_kld(src, awq);
        fprintf(stderr, "pad192 %s --pure: mean KLD rtn %.4f, awq %.4f\n", types[k], k_rtn, k_awq);
        ck_assert_msg(k_awq < 0.95 * k_rtn, "%s: AWQ KLD %.5f not below 0.95 x RTN's %.5f", types[k], k_awq, k_rtn);
    }
}
END_TEST

/* Statistics collected from --calib-text (the output group included) and
 * the JSON report; --method awq+gptq. */
START_TEST(test_awq_tool_calib_text_json_and_gptq)
{
    QK_REQUIRE_DATA(src, PAD192);
    QK_REQUIRE_DATA(text, CALIB_TEXT);
    const char *out = qk_test_tmp("awq-text.gguf");
    char *so = NULL, *err = NULL;
    int rc = qk_test_run(&so, &err, "%s %s %s Q4_0 --pure --method awq --calib-text %s --calib-chunks 16 --json",
                         qk_test_tool("qk-quantize"), src, out, text);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    cJSON *j = cJSON_Parse(so);
    ck_assert_ptr_nonnull(j);
    cJSON *a = cJSON_GetObjectItem(j, "awq"), *groups = cJSON_GetObjectItem(a, "groups");
    ck_assert_int_eq(cJSON_GetArraySize(groups), 21);
    ck_assert(cJSON_GetObjectItem(a, "error")->valuedouble < cJSON_GetObjectItem(a, "error_plain")->valuedouble);
    cJSON *last = cJSON_GetArrayItem(groups, 20);
    ck_assert_str_eq(cJSON_GetObjectItem(last, "group")->valuestring, "output");
    ck_assert(!cJSON_IsTrue(cJSON_GetObjectItem(last, "skipped")));
    ck_assert(cJSON_GetObjectItem(last, "alpha")->valuedouble > 0);
    ck_assert_ptr_nonnull(strstr(cJSON_GetObjectItem(j, "method")->valuestring, "awq grid=20 calib=- calib_text="));
    cJSON_Delete(j);
    free(so);
    free(err);
    rc = qk_test_run(NULL, &err, "%s %s %s Q4_0 --pure --method awq+gptq --calib-text %s --calib-chunks 8 -q",
                     qk_test_tool("qk-quantize"), src, out, text);
    ck_assert_msg(rc == 0, "awq+gptq: exit %d: %s", rc, err);
    free(err);
    qk_gguf *g;
    const char *method;
    ck_assert_int_eq(qk_gguf_open(&g, out), 0);
    ck_assert_int_eq(qk_gguf_get_str(g, "quantkit.method", &method), 0);
    ck_assert_msg(strstr(method, "awq grid=20") == method && strstr(method, " + gptq pure"), "%s", method);
    qk_gguf_close(g);
}
END_TEST

START_TEST(test_awq_tool_usage_and_errors)
{
    QK_REQUIRE_DATA(src, PAD192);
    const char *out = qk_test_tmp("awq-bad.gguf");
    const char *q = qk_test_tool("qk-quantize");
    struct {
        const char *args, *msg;
    } bad[] = {
        {"Q4_0 --method awq", "needs activation statistics"},
        {"Q4_0 --awq-alpha 0.5", "--awq-alpha applies to --method awq"},
        {"Q4_0 --method awq --calib x.qkc --awq-alpha 2", "expected a number in [0, 1]"},
        {"Q4_0 --method awq --calib x.qkc --awq-grid 0", "--awq-grid"},
        {"Q4_0 --method awq+gptq --calib x.qkc", "needs --calib-text"},
        {"Q4_0 --method awq --calib x.qkc --target-size 200000", "does not combine"},
        {"Q4_0 --calib x.qkc", "--calib applies to --method gptq or awq"},
        {"Q4_0 --method awk --calib x.qkc", "expected rtn, gptq, awq or awq+gptq"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *err = NULL;
        int rc = qk_test_run(NULL, &err, "%s %s %s %s", q, src, out, bad[i].args);
        ck_assert_msg(rc == 2, "'%s': exit %d", bad[i].args, rc);
        ck_assert_msg(strstr(err, bad[i].msg), "'%s': %s", bad[i].args, err);
        free(err);
    }
    char *err = NULL;
    int rc = qk_test_run(NULL, &err, "%s %s -o %s --format gptq --method awq --calib x.qkc", q, src, qk_test_tmp("d"));
    ck_assert_int_eq(rc, 2);
    ck_assert_ptr_nonnull(strstr(err, "applies to --format gguf"));
    free(err);
    /* statistics of another model: an error naming the tensor, no output */
    QK_REQUIRE_DATA(other, G "stories260K-pad256-f32.gguf");
    const char *qkc = make_qkc(other);
    rc = qk_test_run(NULL, &err, "%s %s %s Q4_0 --method awq --calib %s", q, src, out, qkc);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "another model"), "%s", err);
    free(err);
    ck_assert(!qk_file_exists(out));
    ck_assert_int_eq(qk_test_count_entries(qk_test_tmpdir(), "qk-tmp"), 0);
}
END_TEST

Suite *qk_test_suite_awq(void)
{
    Suite *s = suite_create("awq");
    TCase *tc = tcase_create("library");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_awq_model_set_scales);
    tcase_add_test(tc, test_awq_fold_random_scales_same_logits);
    tcase_add_test(tc, test_awq_layer_error_beats_rtn);
    tcase_add_test(tc, test_awq_search_deterministic_and_diagonal);
    suite_add_tcase(s, tc);
    TCase *tt = tcase_create("tools");
    tcase_set_timeout(tt, 300);
    tcase_add_test(tt, test_awq_tool_f32_folded_same_ppl);
    tcase_add_test(tt, test_awq_tool_kld_beats_rtn);
    tcase_add_test(tt, test_awq_tool_calib_text_json_and_gptq);
    tcase_add_test(tt, test_awq_tool_usage_and_errors);
    suite_add_tcase(s, tt);
    return s;
}
