/* AWQ: activation-aware per-channel scales, searched on calibration
 * statistics and folded exactly into the model view (see quantkit/awq.h).
 *
 * Per group the search reads a sample of each consumer's rows once
 * (unscaled), then scores every alpha of the grid in parallel: scale the
 * columns, encode with the target type's encoder, decode, and measure the
 * output error d^T H d of the difference taken back to the original
 * coordinates. Nothing here depends on the thread count: each alpha is one
 * work item computed single-threaded.
 */
#include "quantkit/awq.h"

#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quantkit/eval.h"
#include "quantkit/forward.h"
#include "quantkit/metrics.h"
#include "quantkit/quantize.h"

void openblas_set_num_threads(int);

#define SCALE_MIN 1e-4                      /* AutoAWQ's floor on m^alpha before normalising */
#define MAX_TEXT_BYTES ((size_t)1 << 30)    /* calibration text */
#define TOKENS_PER_CALL 2048                /* tokens per forward call when collecting */
#define LOGITS_BYTES ((int64_t)256 << 20)   /* most logits held per call (output statistics) */

/* ---------------------------------------------------------------- groups */

static int64_t tensor_index(const qk_model *m, const char *name)
{
    for (int64_t i = 0; i < qk_model_n_tensors(m); i++)
        if (!strcmp(qk_model_tensor_at(m, i)->name, name))
            return i;
    return -1;
}

/* Input channel c of the consumers -> index of its free scale: under GQA
 * the query heads of one KV head share the scale of that V row. */
static int64_t free_of(const qk_awq_group *g, int64_t c)
{
    if (g->rep <= 1)
        return c;
    return (c / g->head_dim / g->rep) * g->head_dim + c % g->head_dim;
}

/* The groups of a block: consumers and the producer that absorbs 1/s. */
static const struct {
    int kind;
    const char *name, *prev, *cons[3];
    int n_cons;
} k_groups[4] = {
    {QK_AWQ_QKV, "qkv", "attn_norm.weight", {"attn_q.weight", "attn_k.weight", "attn_v.weight"}, 3},
    {QK_AWQ_O, "o", "attn_v.weight", {"attn_output.weight"}, 1},
    {QK_AWQ_GATE_UP, "gate_up", "ffn_norm.weight", {"ffn_gate.weight", "ffn_up.weight"}, 2},
    {QK_AWQ_DOWN, "down", "ffn_up.weight", {"ffn_down.weight"}, 1},
};

/* The groups of m with their tensors, shapes checked; no scales yet. */
static int plan_groups(const qk_model *m, qk_awq_result *r)
{
    const qk_model_config *c = qk_model_cfg(m);
    r->g = calloc((size_t)(4 * c->n_layer + 1), sizeof *r->g);
    if (!r->g)
        return qk_error(QK_ENOMEM, "out of memory");
    for (int64_t l = 0; l < c->n_layer; l++)
        for (int k = 0; k < 4; k++) {
            qk_awq_group *g = &r->g[r->n++];
            g->layer = l;
            g->kind = k_groups[k].kind;
            g->n_cons = k_groups[k].n_cons;
            g->rep = g->kind == QK_AWQ_O ? c->n_head / c->n_head_kv : 1;
            g->head_dim = c->head_dim;
            snprintf(g->name, sizeof g->name, "blk.%lld.%s", (long long)l, k_groups[k].name);
            snprintf(g->prev, sizeof g->prev, "blk.%lld.%s", (long long)l, k_groups[k].prev);
            for (int i = 0; i < g->n_cons; i++)
                snprintf(g->cons[i], sizeof g->cons[i], "blk.%lld.%s", (long long)l, k_groups[k].cons[i]);
        }
    if (qk_model_find(m, "output.weight")) {
        qk_awq_group *g = &r->g[r->n++];
        *g = (qk_awq_group){.layer = -1, .kind = QK_AWQ_OUTPUT, .n_cons = 1, .rep = 1, .head_dim = c->head_dim,
                            .name = "output", .prev = "output_norm.weight", .cons = {"output.weight"}};
    }
    for (int64_t i = 0; i < r->n; i++) {
        qk_awq_group *g = &r->g[i];
        const qk_model_tensor *p = qk_model_find(m, g->prev);
        for (int k = 0; k < g->n_cons; k++) {
            const qk_model_tensor *t = qk_model_find(m, g->cons[k]);
            if (!t || !p)
                return qk_error(QK_EUNSUPPORTED, "%s: tensor '%s' is missing (AWQ needs the llama layout)",
                                qk_model_path(m), t ? g->prev : g->cons[k]);
            if (k == 0)
                g->n = t->ne[0];
            if (t->ne[0] != g->n || t->col_scale || t->row_scale || p->col_scale || p->row_scale)
                return qk_error(t->ne[0] != g->n ? QK_EFORMAT : QK_EINVAL,
                                "'%s': %s", g->cons[k], t->ne[0] != g->n ? "input width differs from its group's"
                                                                         : "the model already carries scales");
        }
        /* a norm gains 1/s per channel; a producer, per output row */
        int64_t want = p->n_dims == 1 ? p->ne[0] : qk_model_tensor_rows(p);
        int heads_ok = g->rep == 1 || (g->head_dim > 0 && g->n % (g->head_dim * g->rep) == 0);
        if (g->rep < 1 || !heads_ok || want != g->n / g->rep)
            return qk_error(QK_EFORMAT, "'%s' (%lld) does not match the %lld inputs of '%s'", g->prev,
                            (long long)want, (long long)g->n, g->cons[0]);
    }
    return 0;
}

/* ------------------------------------------------------------ the search */

/* Free-channel magnitudes mag[k] = sqrt(mean x^2), pooled over the query
 * heads sharing a scale. */
static void magnitudes(const qk_awq_group *g, const qk_calib_entry *e, double *mag)
{
    const int64_t nf = g->n / g->rep;
    const double nt = e->n_tokens > 0 ? (double)e->n_tokens : 1.0;
    for (int64_t k = 0; k < nf; k++)
        mag[k] = 0;
    for (int64_t c = 0; c < g->n; c++)
        mag[free_of(g, c)] += e->sum_x2[c] / nt;
    for (int64_t k = 0; k < nf; k++)
        mag[k] = sqrt(mag[k] / (double)g->rep);
}

/* s[c] for alpha (see awq.h); alpha = 0 gives exactly 1. */
static void scales_for(const qk_awq_group *g, const double *mag, double alpha, float *s)
{
    const int64_t nf = g->n / g->rep;
    double lo = INFINITY, hi = 0;
    for (int64_t k = 0; k < nf; k++)
        if (mag[k] > 0) {
            double v = fmax(pow(mag[k], alpha), SCALE_MIN);
            lo = fmin(lo, v);
            hi = fmax(hi, v);
        }
    const double norm = hi > 0 ? sqrt(lo * hi) : 1.0;
    for (int64_t c = 0; c < g->n; c++) {
        double mk = mag[free_of(g, c)];
        s[c] = mk > 0 ? (float)(fmax(pow(mk, alpha), SCALE_MIN) / norm) : 1.0f; /* never active: left alone */
    }
}

typedef struct cons_data {
    const qk_model_tensor *t;
    int type;
    int64_t rows, nr; /* all rows; sampled rows */
    float *w;         /* [nr][n] sampled rows, unscaled */
    float *imp;       /* [n] the final pass's importance, or NULL */
} cons_data;

typedef struct search_job {
    const qk_awq_group *g;
    const double *mag;   /* [n / rep] */
    const double *h;     /* [n][n] Hessian, or NULL: diagonal */
    const double *diag;  /* [n] sum x^2 */
    cons_data c[3];
    int n_cons;
    const double *alpha; /* [n_items] */
    double *err;         /* [n_items] */
    atomic_int rc;
} search_job;

/* err(alpha[i]): every consumer scaled, encoded, decoded, and its error in
 * the original coordinates weighted by H. */
static void score_item(void *ctx, int64_t i, int thread)
{
    (void)thread;
    search_job *j = ctx;
    const int64_t n = j->g->n;
    int64_t max_nr = 0;
    size_t max_rb = 0;
    for (int k = 0; k < j->n_cons; k++) {
        size_t rb = 0;
        qk_type_row_bytes(j->c[k].type, n, &rb);
        max_nr = j->c[k].nr > max_nr ? j->c[k].nr : max_nr;
        max_rb = rb > max_rb ? rb : max_rb;
    }
    float *s = malloc((size_t)n * sizeof(float)), *imp = malloc((size_t)n * sizeof(float));
    float *ws = malloc((size_t)(max_nr * n) * sizeof(float)), *deq = malloc((size_t)(max_nr * n) * sizeof(float));
    uint8_t *qb = malloc((size_t)max_nr * max_rb);
    double *d = malloc((size_t)(max_nr * n) * sizeof(double));
    double *e = j->h ? malloc((size_t)(max_nr * n) * sizeof(double)) : NULL;
    double err = 0;
    int rc = 0;
    if (!s || !imp || !ws || !deq || !qb || !d || (j->h && !e)) {
        rc = qk_error(QK_ENOMEM, "out of memory scoring AWQ scales of '%s'", j->g->name);
        goto done;
    }
    scales_for(j->g, j->mag, j->alpha[i], s);
    for (int k = 0; k < j->n_cons && !rc; k++) {
        const cons_data *c = &j->c[k];
        const qk_type_traits *tr = qk_type_get(c->type);
        size_t rb = 0;
        qk_type_row_bytes(c->type, n, &rb);
        for (int64_t r = 0; r < c->nr; r++)
            for (int64_t x = 0; x < n; x++)
                ws[r * n + x] = c->w[r * n + x] * s[x];
        if (c->imp) /* the scaled input is x / s: its mean square is imp / s^2 */
            for (int64_t x = 0; x < n; x++)
                imp[x] = c->imp[x] / (s[x] * s[x]);
        if ((rc = qk_quantize_rows(c->type, ws, qb, c->nr, n, c->imp ? imp : NULL, NULL)))
            break;
        for (int64_t r = 0; r < c->nr; r++)
            tr->to_float(qb + (size_t)r * rb, deq + r * n, n);
        for (int64_t r = 0; r < c->nr; r++)
            for (int64_t x = 0; x < n; x++)
                d[r * n + x] = (double)c->w[r * n + x] - (double)deq[r * n + x] / (double)s[x];
        double sum = 0;
        if (j->h) {
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)c->nr, (int)n, (int)n, 1.0, d, (int)n,
                        j->h, (int)n, 0.0, e, (int)n);
            for (int64_t x = 0; x < c->nr * n; x++)
                sum += d[x] * e[x];
        } else {
            for (int64_t r = 0; r < c->nr; r++)
                for (int64_t x = 0; x < n; x++)
                    sum += d[r * n + x] * d[r * n + x] * j->diag[x];
        }
        err += sum * (double)c->rows / (double)c->nr;
    }
    j->err[i] = isfinite(err) ? err : INFINITY; /* an overflowing scale loses */
done:
    if (rc)
        atomic_store(&j->rc, rc);
    free(s);
    free(imp);
    free(ws);
    free(deq);
    free(qb);
    free(d);
    free(e);
}

static void job_free(search_job *j)
{
    for (int k = 0; k < 3; k++) {
        free(j->c[k].w);
        free(j->c[k].imp);
    }
}

/* Choose g->s (and the report fields) from the statistics. */
static int search_group(const qk_model *m, const qk_calib *stats, const int *types, const qk_awq_opts *o,
                        qk_pool *pool, qk_awq_group *g)
{
    const qk_calib_entry *e = qk_calib_find(stats, g->cons[0]);
    g->skipped = 1;
    if (!e || e->n_in != g->n || e->n_tokens <= 0)
        return 0; /* no statistics for this input: left as is */
    const int grid = o->grid > 0 ? o->grid : QK_AWQ_GRID;
    const int64_t max_rows = o->sample_rows > 0 ? o->sample_rows : QK_AWQ_SAMPLE_ROWS;
    search_job j = {.g = g, .h = qk_calib_hessian(stats, e), .diag = e->sum_x2};
    atomic_init(&j.rc, 0);
    g->diagonal = j.h == NULL;
    double *mag = malloc((size_t)g->n * sizeof(double));
    double *alpha = malloc((size_t)(grid + 1) * sizeof(double)), *err = malloc((size_t)(grid + 1) * sizeof(double));
    int rc = mag && alpha && err ? 0 : qk_error(QK_ENOMEM, "out of memory");
    if (rc)
        goto done;
    j.mag = mag;
    j.alpha = alpha;
    j.err = err;
    magnitudes(g, e, mag);
    for (int k = 0; k < g->n_cons && !rc; k++) {
        int64_t ti = tensor_index(m, g->cons[k]);
        const qk_model_tensor *t = qk_model_tensor_at(m, ti);
        const qk_type_traits *tr = qk_type_get(types[ti]);
        if (!tr || !tr->is_quantized || !tr->to_float)
            continue; /* written as floats: nothing to protect */
        cons_data *c = &j.c[j.n_cons++];
        c->t = t;
        c->type = types[ti];
        c->rows = qk_model_tensor_rows(t);
        c->nr = c->rows < max_rows ? c->rows : max_rows;
        c->w = malloc((size_t)(c->nr * g->n) * sizeof(float));
        if (!c->w) {
            rc = qk_error(QK_ENOMEM, "out of memory for '%s'", t->name);
            break;
        }
        for (int64_t r = 0; r < c->nr && !rc; r++) /* evenly spaced rows */
            rc = qk_model_row_f32(m, t, r * c->rows / c->nr, c->w + r * g->n);
        /* NaN/Inf weights count as 0 here; the final pass refuses or zeroes them */
        for (int64_t x = 0; !rc && x < c->nr * g->n; x++)
            c->w[x] = isfinite(c->w[x]) ? c->w[x] : 0.0f;
        const qk_calib_entry *ie = o->imatrix ? qk_calib_find(o->imatrix, t->name) : NULL;
        if (!rc && ie && ie->n_in == g->n) {
            if (!(c->imp = malloc((size_t)g->n * sizeof(float))))
                rc = qk_error(QK_ENOMEM, "out of memory");
            else
                qk_calib_importance(ie, c->imp);
        }
        qk_model_release(t);
    }
    if (rc)
        goto done;
    int n_items;
    if (o->fixed) { /* score plain and the fixed alpha, for the report */
        alpha[0] = 0;
        alpha[1] = o->alpha;
        n_items = 2;
    } else {
        if (!j.n_cons)
            goto done; /* no quantized consumer: s = 1 */
        for (int i = 0; i <= grid; i++)
            alpha[i] = (double)i / grid;
        n_items = grid + 1;
    }
    if (j.n_cons) {
        openblas_set_num_threads(1); /* the pool runs the alphas in parallel */
        qk_pool_run(pool, n_items, 1, score_item, &j);
        if ((rc = atomic_load(&j.rc))) { /* the worker's message is thread-local: say it here */
            rc = qk_error(rc, "AWQ group %s: scoring the scales failed (%s)", g->name, qk_strerror(rc));
            goto done;
        }
    } else {
        err[0] = err[1] = 0;
    }
    int best = o->fixed ? 1 : 0;
    for (int i = 1; i < n_items && !o->fixed; i++)
        if (err[i] < err[best]) /* ties keep the smaller alpha */
            best = i;
    g->alpha = alpha[best];
    g->err_rtn = err[0];
    g->err = err[best];
    g->searched = !o->fixed;
    g->skipped = 0;
    if (!(g->s = malloc((size_t)g->n * sizeof(float))))
        rc = qk_error(QK_ENOMEM, "out of memory");
    else
        scales_for(g, mag, g->alpha, g->s);
done:
    job_free(&j);
    free(mag);
    free(alpha);
    free(err);
    return rc;
}

int qk_awq_search(qk_awq_result **out, const qk_model *m, const qk_calib *stats, const int *types,
                  const qk_awq_opts *o, qk_pool *pool)
{
    *out = NULL;
    double t0 = qk_now();
    qk_awq_opts opts = {0};
    if (o)
        opts = *o;
    if ((opts.fixed && !(opts.alpha >= 0 && opts.alpha <= 1000)) || opts.grid > 1000)
        return qk_error(QK_EINVAL, "AWQ alpha %g / grid %d out of range", opts.alpha, opts.grid);
    qk_awq_result *r = calloc(1, sizeof *r);
    if (!r)
        return qk_error(QK_ENOMEM, "out of memory");
    int rc = plan_groups(m, r);
    for (int64_t i = 0; i < r->n && !rc; i++)
        rc = search_group(m, stats, types, &opts, pool, &r->g[i]);
    if (rc) {
        qk_awq_result_free(r);
        return rc;
    }
    r->seconds = qk_now() - t0;
    *out = r;
    return 0;
}

void qk_awq_result_free(qk_awq_result *r)
{
    if (!r)
        return;
    for (int64_t i = 0; i < r->n; i++)
        free(r->g[i].s);
    free(r->g);
    free(r);
}

/* ------------------------------------------------------------- folding */

/* v[i] for tensor index ti, allocated as ones (or the tensor's current
 * scales) on first use. */
static float *scale_vec(float **v, const qk_model_tensor *t, int64_t ti, int rows)
{
    if (v[ti])
        return v[ti];
    int64_t n = rows ? qk_model_tensor_rows(t) : t->ne[0];
    const float *cur = rows ? t->row_scale : t->col_scale;
    if (!(v[ti] = malloc((size_t)n * sizeof(float))))
        return NULL;
    for (int64_t k = 0; k < n; k++)
        v[ti][k] = cur ? cur[k] : 1.0f;
    return v[ti];
}

int qk_awq_apply(qk_model *m, const qk_awq_result *r)
{
    const int64_t nt = qk_model_n_tensors(m);
    float **col = calloc((size_t)nt, sizeof *col), **row = calloc((size_t)nt, sizeof *row);
    int rc = col && row ? 0 : qk_error(QK_ENOMEM, "out of memory");
    for (int64_t i = 0; i < r->n && !rc; i++) {
        const qk_awq_group *g = &r->g[i];
        if (g->skipped || !g->s || g->alpha == 0)
            continue;
        for (int k = 0; k < g->n_cons && !rc; k++) {
            int64_t ti = tensor_index(m, g->cons[k]);
            float *v = ti >= 0 ? scale_vec(col, qk_model_tensor_at(m, ti), ti, 0) : NULL;
            if (!v) {
                rc = ti < 0 ? qk_error(QK_ENOTFOUND, "no tensor '%s'", g->cons[k]) : qk_error(QK_ENOMEM, "out of memory");
                break;
            }
            for (int64_t c = 0; c < g->n; c++)
                v[c] *= g->s[c];
        }
        int64_t pi = tensor_index(m, g->prev);
        const qk_model_tensor *p = qk_model_tensor_at(m, pi);
        if (rc || !p) {
            rc = rc ? rc : qk_error(QK_ENOTFOUND, "no tensor '%s'", g->prev);
            break;
        }
        /* a norm's channel c, or a producer's row k = free_of(c), takes 1/s */
        float *v = scale_vec(p->n_dims == 1 ? col : row, p, pi, p->n_dims != 1);
        if (!v) {
            rc = qk_error(QK_ENOMEM, "out of memory");
            break;
        }
        for (int64_t k = 0; k < g->n / g->rep; k++) /* c: the first query head of KV row k */
            v[k] /= g->s[g->rep > 1 ? (k / g->head_dim * g->rep) * g->head_dim + k % g->head_dim : k];
    }
    for (int64_t i = 0; i < nt && !rc; i++)
        if (col[i] || row[i]) {
            const qk_model_tensor *t = qk_model_tensor_at(m, i);
            rc = qk_model_set_scales(m, t->name, col[i] ? col[i] : t->col_scale, row[i] ? row[i] : t->row_scale);
        }
    for (int64_t i = 0; i < nt; i++) {
        if (col)
            free(col[i]);
        if (row)
            free(row[i]);
    }
    free(col);
    free(row);
    return rc;
}

/* ---------------------------------------------------------- statistics */

static int logits_noop(void *ctx, int64_t seq, int64_t pos, const float *logits)
{
    (void)ctx, (void)seq, (void)pos, (void)logits;
    return 0;
}

int qk_awq_collect(qk_calib **out, const qk_model *m, const char *text_path, int64_t n_ctx, int64_t max_chunks,
                   int n_threads)
{
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    qk_tokenizer *tok = NULL;
    int32_t *ids = NULL, *win = NULL;
    int64_t n_ids = 0, n_win = 0;
    qk_forward *f = NULL;
    qk_calib_collector *col = NULL;
    const qk_vocab *v = qk_model_vocab(m);
    if (n_ctx < 1)
        return qk_error(QK_EINVAL, "calibration window length %lld must be positive", (long long)n_ctx);
    int rc = qk_read_file(&text, &len, text_path, MAX_TEXT_BYTES);
    if (rc)
        goto done;
    if (!v)
        rc = qk_error(QK_ENOTFOUND, "%s: no tokenizer for the calibration text (give --vocab)", qk_model_path(m));
    else if (!(rc = qk_tokenizer_new(&tok, v)) &&
             !(rc = qk_tokenize_ex(tok, text, len, QK_TOKENIZE_ADD_SPECIAL, &ids, &n_ids)))
        rc = qk_eval_windows(ids, n_ids, n_ctx, max_chunks, v->bos_id, &win, &n_win);
    if (!rc && n_win < 1)
        rc = qk_error(QK_EINVAL, "%lld tokens make no window of %lld", (long long)n_ids, (long long)n_ctx);
    if (rc) {
        qk_error_prefix(rc, text_path);
        goto done;
    }
    const int output = qk_model_find(m, "output.weight") != NULL;
    int64_t per = TOKENS_PER_CALL / n_ctx > 0 ? TOKENS_PER_CALL / n_ctx : 1;
    const int64_t logit_rows = LOGITS_BYTES / ((int64_t)sizeof(float) * qk_model_cfg(m)->n_vocab);
    if (output && per * n_ctx > logit_rows) /* every position's logits are held at once */
        per = logit_rows / n_ctx > 0 ? logit_rows / n_ctx : 1;
    qk_forward_opts fo = {.n_threads = n_threads, .max_tokens = per * n_ctx};
    qk_calib_opts co = {.n_ctx = n_ctx, .hessian = 1, .output = output, .n_threads = n_threads};
    if ((rc = qk_forward_new(&f, m, &fo)) || (rc = qk_calib_collector_new(&col, m, &co)))
        goto done;
    qk_forward_set_hook(f, qk_calib_hook, col);
    for (int64_t s = 0; s < n_win && !rc; s += per) {
        int64_t ns = n_win - s < per ? n_win - s : per;
        rc = qk_forward_run(f, win + s * n_ctx, ns, n_ctx, output ? 0 : n_ctx, output ? logits_noop : NULL, NULL);
    }
    if (!rc)
        rc = qk_calib_collector_finish(col, out);
    if (!rc) {
        const char *base = strrchr(text_path, '/');
        (*out)->text_hash = qk_hash64(text, len);
        if (!((*out)->dataset = strdup(base ? base + 1 : text_path)))
            rc = qk_error(QK_ENOMEM, "out of memory");
    }
done:
    if (rc && *out) {
        qk_calib_free(*out);
        *out = NULL;
    }
    qk_calib_collector_free(col);
    qk_forward_free(f);
    qk_tokenizer_free(tok);
    free(ids);
    free(win);
    free(text);
    return rc;
}
