/* Hessians for qk-quantize --method gptq (see quantkit/gptq_method.h):
 * from a .qkc file, from one collection run, layer by layer on the partly
 * quantized model (sequential), and the output projection's per-row
 * Hessians from the full-precision model's token probabilities.
 *
 * The sequential passes use a small accumulator of their own rather than
 * qk_calib_collector: each pass needs one input of one layer and stops
 * there, which the collector (every layer, every pass complete) is not
 * meant for. */
#include <cblas.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quantkit/calib.h"
#include "quantkit/eval.h"
#include "quantkit/forward.h"
#include "quantkit/gptq_method.h"
#include "quantkit/metrics.h"

#define MAX_TEXT_BYTES (256u << 20)
#define TOKENS_PER_CALL 4096
#define STOP_PASS 1          /* hook return that ends a pass early on purpose */
#define OUT_P_MIN 1e-4f      /* output weighting: probabilities kept per position */
#define OUT_K_MAX 128        /* ... at most this many per position */

enum { GRP_QKV = 0, GRP_O, GRP_GATEUP, GRP_DOWN, GRP_COUNT };

struct qk_gptq_calib {
    const qk_model *m;
    qk_gptq_calib_opts o;
    qk_calib *file;        /* loaded .qkc */
    qk_calib *collected;   /* one full-precision collection run */
    int32_t *win;          /* [n_chunks][n_ctx] calibration windows */
    int64_t n_chunks, n_ctx;
    qk_forward *fwd;
    qk_calib_collector *col; /* during the full-precision run: every input's Hessian */
    /* sequential: the Hessian of (seq_layer, seq_group) */
    int64_t seq_layer;
    int seq_group;
    int seq_collecting;    /* the hook accumulates into seq_h */
    double *seq_h;         /* [seq_n][seq_n] */
    int64_t seq_n, seq_tokens;
    /* output weighting */
    int out_ready;         /* probabilities collected */
    int out_x_final;       /* x taken from the quantized model (sequential) */
    int out_phase;         /* hook: 1 = FP pass (x and p), 2 = x only */
    int64_t out_T, out_n, out_V, out_cap;
    float *out_x;          /* [out_T][out_n] final normed hidden states */
    int64_t *out_pos_off;  /* [out_T + 1] into out_ids / out_p (sparse p per position) */
    int32_t *out_ids;
    float *out_p;
    int64_t out_nnz, out_nnz_cap;
    int64_t *row_off;      /* [V + 1] inverted index: entries of token v */
    int64_t *row_pos;      /* [nnz] position */
    float *row_p;          /* [nnz] probability */
    double *out_hshared;   /* [out_n][out_n] sum x x^T */
    int64_t *out_live;     /* columns of out_x not always 0 (padding is), n_live of them */
    int64_t out_n_live;
    /* identity Hessian (token_embd) */
    double *ident;
    int64_t ident_n;
    int64_t passes;
    double seconds;
};

/* --------------------------------------------------------------- helpers */

static int group_of(int kind)
{
    switch (kind) {
    case QK_LIN_Q: case QK_LIN_K: case QK_LIN_V: return GRP_QKV;
    case QK_LIN_O: return GRP_O;
    case QK_LIN_GATE: case QK_LIN_UP: return GRP_GATEUP;
    case QK_LIN_DOWN: return GRP_DOWN;
    default: return -1;
    }
}

/* "blk.N.<kind>.weight" -> layer and QK_LIN_* kind; -1 for other tensors. */
static int layer_kind(const char *name, int64_t *layer)
{
    static const char *const kinds[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    long long l;
    int off = 0;
    if (sscanf(name, "blk.%lld.%n", &l, &off) != 1 || off == 0)
        return -1;
    for (int k = 0; k < 7; k++) {
        size_t n = strlen(kinds[k]);
        if (!strncmp(name + off, kinds[k], n) && !strcmp(name + off + n, ".weight")) {
            *layer = l;
            return k;
        }
    }
    return -1;
}

static int noop_logits(void *ctx, int64_t seq, int64_t pos, const float *logits)
{
    (void)ctx, (void)seq, (void)pos, (void)logits;
    return 0;
}

/* Run every calibration window through the forward pass, in calls of up
 * to TOKENS_PER_CALL tokens; a pass a hook stops on purpose is fine. */
static int run_windows(qk_gptq_calib *c, int with_logits)
{
    double t0 = qk_now();
    int64_t per = TOKENS_PER_CALL / c->n_ctx;
    if (per < 1)
        per = 1;
    int rc = 0;
    for (int64_t s = 0; s < c->n_chunks && !rc; s += per) {
        int64_t ns = c->n_chunks - s < per ? c->n_chunks - s : per;
        rc = qk_forward_run(c->fwd, c->win + s * c->n_ctx, ns, c->n_ctx, with_logits ? 0 : c->n_ctx,
                            with_logits ? noop_logits : NULL, NULL);
        if (rc == STOP_PASS)
            rc = 0;
    }
    c->passes++;
    c->seconds += qk_now() - t0;
    return rc;
}

/* ------------------------------------------------------------------ hook */

/* A += x^T x for x [T][n] floats (upper triangle; mirrored by the caller). */
static int accumulate_xtx(double *a, const float *x, int64_t T, int64_t n)
{
    double *xd = malloc((size_t)T * (size_t)n * sizeof(double));
    if (!xd)
        return qk_error(QK_ENOMEM, "out of memory for %" PRId64 " x %" PRId64 " activations", T, n);
    for (int64_t k = 0; k < T * n; k++)
        xd[k] = x[k];
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, (int)T, 1.0, xd, (int)n, 1.0, a, (int)n);
    free(xd);
    return 0;
}

static void mirror_upper(double *a, int64_t n)
{
    for (int64_t r = 1; r < n; r++)
        for (int64_t q = 0; q < r; q++)
            a[r * n + q] = a[q * n + r];
}

/* Keep the probabilities >= OUT_P_MIN (at most OUT_K_MAX) of each position. */
static int keep_probs(qk_gptq_calib *c, const float *logits, int64_t T, int64_t V)
{
    float *lp = malloc((size_t)V * sizeof(float));
    if (!lp)
        return qk_error(QK_ENOMEM, "out of memory");
    int rc = 0;
    for (int64_t t = 0; t < T && !rc; t++) {
        qk_log_softmax(logits + t * V, V, lp);
        if (c->out_nnz + OUT_K_MAX > c->out_nnz_cap) {
            int64_t cap = (c->out_nnz_cap + OUT_K_MAX) * 2;
            int32_t *ids = realloc(c->out_ids, (size_t)cap * sizeof *ids);
            if (ids)
                c->out_ids = ids;
            float *p = realloc(c->out_p, (size_t)cap * sizeof *p);
            if (p)
                c->out_p = p;
            if (!ids || !p) {
                rc = qk_error(QK_ENOMEM, "out of memory for output probabilities");
                break;
            }
            c->out_nnz_cap = cap;
        }
        int64_t k0 = c->out_nnz, k = 0;
        const float lmin = logf(OUT_P_MIN);
        for (int64_t v = 0; v < V; v++)
            if (lp[v] >= lmin) {
                if (k < OUT_K_MAX) {
                    c->out_ids[k0 + k] = (int32_t)v;
                    c->out_p[k0 + k] = expf(lp[v]);
                    k++;
                } else { /* replace the smallest kept when this one is larger */
                    int64_t mi = 0;
                    for (int64_t i = 1; i < k; i++)
                        if (c->out_p[k0 + i] < c->out_p[k0 + mi])
                            mi = i;
                    float p = expf(lp[v]);
                    if (p > c->out_p[k0 + mi]) {
                        c->out_ids[k0 + mi] = (int32_t)v;
                        c->out_p[k0 + mi] = p;
                    }
                }
            }
        c->out_nnz += k;
        c->out_pos_off[c->out_T + t + 1] = c->out_nnz;
    }
    free(lp);
    return rc;
}

static int calib_hook(void *ctx, const qk_linear_event *ev)
{
    qk_gptq_calib *c = ctx;
    if (c->col) {
        int rc = qk_calib_hook(c->col, ev);
        if (rc)
            return rc;
    }
    if (c->seq_collecting) {
        if (ev->y || ev->kind == QK_LIN_OUTPUT || ev->layer != c->seq_layer || group_of(ev->kind) != c->seq_group)
            return 0;
        if (ev->n_in != c->seq_n)
            return qk_error(QK_EINVAL, "layer %d input has %" PRId64 " columns, expected %" PRId64, ev->layer,
                            ev->n_in, c->seq_n);
        int rc = accumulate_xtx(c->seq_h, ev->x, ev->n_tokens, ev->n_in);
        c->seq_tokens += ev->n_tokens;
        return rc ? rc : STOP_PASS;
    }
    if (c->out_phase && ev->kind == QK_LIN_OUTPUT) {
        const int64_t T = ev->n_tokens, n = ev->n_in;
        if (c->out_phase == 2) { /* x only (sequential, quantized model): rows in the same order as before */
            if (!ev->y) {
                if (c->out_T + T > c->out_cap || n != c->out_n)
                    return qk_error(QK_EINVAL, "output projection: positions do not match the first pass");
                memcpy(c->out_x + c->out_T * n, ev->x, (size_t)(T * n) * sizeof(float));
                c->out_T += T;
                return STOP_PASS;
            }
            return 0;
        }
        if (!ev->y)
            return 0;
        if (c->out_T + T > c->out_cap)
            return qk_error(QK_EINVAL, "output projection: more positions than windows");
        memcpy(c->out_x + c->out_T * n, ev->x, (size_t)(T * n) * sizeof(float));
        int rc = keep_probs(c, ev->y, T, ev->n_out);
        c->out_T += T;
        return rc;
    }
    return 0;
}

/* ------------------------------------------------------------ creation */

static int from_set(const qk_calib *set, const char *what, const qk_model_tensor *t, const double **h);
static int layer_kind(const char *name, int64_t *layer);

/* Every linear layer of m has a Hessian of its size in the file: checked
 * before anything is quantized. */
static int check_file(const qk_gptq_calib *c)
{
    for (int64_t i = 0; i < qk_model_n_tensors(c->m); i++) {
        const qk_model_tensor *t = qk_model_tensor_at(c->m, i);
        const double *h;
        int64_t layer;
        if (layer_kind(t->name, &layer) < 0)
            continue;
        int rc = from_set(c->file, c->o.calib_path, t, &h);
        if (rc == QK_ENOTFOUND)
            return qk_error(QK_ENOTFOUND, "%s: no entry for '%s' (calibrated on another model?)", c->o.calib_path,
                            t->name);
        if (rc)
            return rc;
    }
    return 0;
}

static int load_windows(qk_gptq_calib *c)
{
    char *text = NULL;
    size_t n = 0;
    qk_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    const qk_vocab *v = qk_model_vocab(c->m);
    int rc = qk_read_file(&text, &n, c->o.text_path, MAX_TEXT_BYTES);
    if (rc)
        return rc;
    if (!v)
        rc = qk_error(QK_ENOTFOUND, "%s: no tokenizer for the calibration text (give --vocab)", qk_model_path(c->m));
    else if (!(rc = qk_tokenizer_new(&tok, v)) &&
             !(rc = qk_tokenize_ex(tok, text, n, QK_TOKENIZE_ADD_SPECIAL, &ids, &n_ids)))
        rc = qk_eval_windows(ids, n_ids, c->n_ctx, c->o.max_chunks, v->bos_id, &c->win, &c->n_chunks);
    if (rc)
        qk_error_prefix(rc, c->o.text_path);
    qk_tokenizer_free(tok);
    free(ids);
    free(text);
    return rc;
}

/* The output weighting, before the full-precision pass: x and p of every
 * position will be kept. */
static int output_begin(qk_gptq_calib *c, const qk_model_tensor *t)
{
    c->out_n = t->ne[0];
    c->out_V = t->ne[1];
    c->out_cap = c->n_chunks * c->n_ctx;
    c->out_x = malloc((size_t)c->out_cap * (size_t)c->out_n * sizeof(float));
    c->out_pos_off = calloc((size_t)c->out_cap + 1, sizeof(int64_t));
    if (!c->out_x || !c->out_pos_off)
        return qk_error(QK_ENOMEM, "out of memory for %" PRId64 " output-projection inputs", c->out_cap);
    c->out_phase = 1;
    return 0;
}

/* ... and after it. */
static int output_end(qk_gptq_calib *c)
{
    c->out_phase = 0;
    /* inverted index: for token v, the positions where it has probability */
    c->row_off = calloc((size_t)c->out_V + 1, sizeof(int64_t));
    c->row_pos = malloc((size_t)(c->out_nnz > 0 ? c->out_nnz : 1) * sizeof(int64_t));
    c->row_p = malloc((size_t)(c->out_nnz > 0 ? c->out_nnz : 1) * sizeof(float));
    c->out_hshared = calloc((size_t)(c->out_n * c->out_n), sizeof(double));
    if (!c->row_off || !c->row_pos || !c->row_p || !c->out_hshared)
        return qk_error(QK_ENOMEM, "out of memory for the output weighting");
    for (int64_t k = 0; k < c->out_nnz; k++)
        c->row_off[c->out_ids[k] + 1]++;
    for (int64_t v = 0; v < c->out_V; v++)
        c->row_off[v + 1] += c->row_off[v];
    int64_t *fill = calloc((size_t)c->out_V, sizeof(int64_t));
    if (!fill)
        return qk_error(QK_ENOMEM, "out of memory");
    for (int64_t t2 = 0; t2 < c->out_T; t2++)
        for (int64_t k = c->out_pos_off[t2]; k < c->out_pos_off[t2 + 1]; k++) {
            int32_t v = c->out_ids[k];
            int64_t at = c->row_off[v] + fill[v]++;
            c->row_pos[at] = t2;
            c->row_p[at] = c->out_p[k];
        }
    free(fill);
    c->out_ready = 1;
    return 0;
}

static int finish_output_x(qk_gptq_calib *c)
{
    if (c->out_x_final || !c->out_ready)
        return 0;
    if (c->o.sequential) { /* the quantized model's hidden states, same positions */
        c->out_T = 0;
        c->out_phase = 2;
        int rc = run_windows(c, 1);
        c->out_phase = 0;
        if (rc)
            return rc;
        if (c->out_T != c->out_cap)
            return qk_error(QK_EINVAL, "output projection: %" PRId64 " positions, expected %" PRId64, c->out_T,
                            c->out_cap);
    }
    memset(c->out_hshared, 0, (size_t)(c->out_n * c->out_n) * sizeof(double));
    int rc = accumulate_xtx(c->out_hshared, c->out_x, c->out_T, c->out_n);
    if (rc)
        return rc;
    mirror_upper(c->out_hshared, c->out_n);
    free(c->out_live);
    if (!(c->out_live = malloc((size_t)c->out_n * sizeof(int64_t))))
        return qk_error(QK_ENOMEM, "out of memory");
    c->out_n_live = 0;
    for (int64_t j = 0; j < c->out_n; j++)
        if (c->out_hshared[j * c->out_n + j] != 0)
            c->out_live[c->out_n_live++] = j;
    c->out_x_final = 1;
    return 0;
}

int qk_gptq_calib_new(qk_gptq_calib **out, const qk_model *m, const qk_gptq_calib_opts *o)
{
    *out = NULL;
    qk_gptq_calib *c = calloc(1, sizeof *c);
    if (!c)
        return qk_error(QK_ENOMEM, "out of memory");
    c->m = m;
    c->o = *o;
    c->n_ctx = o->n_ctx > 0 ? o->n_ctx : 128;
    c->seq_layer = -1;
    int rc = 0;
    if (!o->calib_path && !o->text_path) {
        rc = qk_error(QK_EINVAL, "GPTQ needs Hessians: a .qkc file (--calib, from qk-calibrate --hessian) or "
                                 "calibration text (--calib-text)");
        goto done;
    }
    if (o->sequential && !o->text_path) {
        rc = qk_error(QK_EINVAL, "--sequential collects Hessians on the partly quantized model: it needs "
                                 "--calib-text");
        goto done;
    }
    if (o->calib_path && (rc = qk_calib_load(&c->file, o->calib_path)))
        goto done;
    if (c->file && !o->sequential && (rc = check_file(c)))
        goto done;
    if (o->text_path) {
        if ((rc = load_windows(c)))
            goto done;
        qk_forward_opts fo = {.n_threads = o->n_threads, .max_tokens = (TOKENS_PER_CALL / c->n_ctx > 0 ?
                                                                         TOKENS_PER_CALL / c->n_ctx : 1) * c->n_ctx};
        if ((rc = qk_forward_new(&c->fwd, m, &fo)))
            goto done;
        qk_forward_set_hook(c->fwd, calib_hook, c);
        /* one full-precision run: every Hessian (unless a file has them or
         * they are collected sequentially) and the output weighting */
        const qk_model_tensor *out_t = o->output_rows ? qk_model_find(m, "output.weight") : NULL;
        if (!c->file && !o->sequential) {
            qk_calib_opts co = {.n_ctx = c->n_ctx, .hessian = 1, .n_threads = o->n_threads};
            if ((rc = qk_calib_collector_new(&c->col, m, &co)))
                goto done;
        }
        if (out_t && (rc = output_begin(c, out_t)))
            goto done;
        if (c->col || out_t) {
            rc = run_windows(c, out_t != NULL);
            if (!rc && out_t)
                rc = output_end(c);
            if (!rc && c->col)
                rc = qk_calib_collector_finish(c->col, &c->collected);
            qk_calib_collector_free(c->col);
            c->col = NULL;
            if (rc)
                goto done;
        }
    }
done:
    if (rc) {
        qk_gptq_calib_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void qk_gptq_calib_free(qk_gptq_calib *c)
{
    if (!c)
        return;
    qk_calib_free(c->file);
    qk_calib_free(c->collected);
    qk_calib_collector_free(c->col);
    qk_forward_free(c->fwd);
    free(c->win);
    free(c->seq_h);
    free(c->out_x);
    free(c->out_pos_off);
    free(c->out_ids);
    free(c->out_p);
    free(c->row_off);
    free(c->row_pos);
    free(c->row_p);
    free(c->out_hshared);
    free(c->out_live);
    free(c->ident);
    free(c);
}

void qk_gptq_calib_counts(const qk_gptq_calib *c, int64_t *passes, double *seconds)
{
    *passes = c->passes;
    *seconds = c->seconds;
}

/* ----------------------------------------------------------- Hessians */

static const double *identity(qk_gptq_calib *c, int64_t n)
{
    if (c->ident_n != n) {
        free(c->ident);
        c->ident_n = 0;
        if (!(c->ident = calloc((size_t)(n * n), sizeof(double))))
            return NULL;
        for (int64_t i = 0; i < n; i++)
            c->ident[i * n + i] = 1.0;
        c->ident_n = n;
    }
    return c->ident;
}

static int from_set(const qk_calib *set, const char *what, const qk_model_tensor *t, const double **h)
{
    const qk_calib_entry *e = qk_calib_find(set, t->name);
    if (!e)
        return QK_ENOTFOUND;
    if (e->n_in != t->ne[0])
        return qk_error(QK_EFORMAT, "%s: the Hessian of '%s' is %" PRId64 " x %" PRId64 " but the tensor has %" PRId64
                        " input columns (calibrated on another model?)", what, t->name, e->n_in, e->n_in, t->ne[0]);
    *h = qk_calib_hessian(set, e);
    if (!*h)
        return qk_error(QK_ENOTFOUND, "%s: no Hessian for '%s' (make the file with qk-calibrate --hessian)", what,
                        t->name);
    return 0;
}

/* Sequential: collect the input Hessian of (layer, group) on the model as
 * quantized so far. */
static int collect_group(qk_gptq_calib *c, int64_t layer, int group, int64_t n)
{
    if (c->seq_layer == layer && c->seq_group == group)
        return 0;
    if (c->seq_n != n) {
        free(c->seq_h);
        c->seq_n = 0;
        if (!(c->seq_h = malloc((size_t)(n * n) * sizeof(double))))
            return qk_error(QK_ENOMEM, "out of memory for a %" PRId64 " x %" PRId64 " Hessian", n, n);
        c->seq_n = n;
    }
    memset(c->seq_h, 0, (size_t)(n * n) * sizeof(double));
    c->seq_layer = layer;
    c->seq_group = group;
    c->seq_tokens = 0;
    c->seq_collecting = 1;
    int rc = run_windows(c, 0);
    c->seq_collecting = 0;
    if (!rc && c->seq_tokens == 0)
        rc = qk_error(QK_EINVAL, "sequential calibration: layer %" PRId64 " was never reached", layer);
    if (rc) {
        c->seq_layer = -1;
        return rc;
    }
    mirror_upper(c->seq_h, n);
    return 0;
}

typedef enum { H_SHARED, H_ROWS } hkind;

static int hessian_for(qk_gptq_calib *c, const qk_model_tensor *t, const double **h, hkind *kind)
{
    *kind = H_SHARED;
    int64_t layer = -1;
    int k = layer_kind(t->name, &layer);
    if (k >= 0 && c->o.sequential) {
        int rc = collect_group(c, layer, group_of(k), t->ne[0]);
        *h = c->seq_h;
        return rc;
    }
    int is_output = !strcmp(t->name, "output.weight");
    if (is_output && c->out_ready) {
        int rc = finish_output_x(c);
        if (rc)
            return rc;
        if (t->ne[0] != c->out_n || qk_model_tensor_rows(t) != c->out_V)
            return qk_error(QK_EFORMAT, "output.weight shape does not match the collected projection");
        *kind = H_ROWS;
        return 0;
    }
    int rc = QK_ENOTFOUND;
    if (c->file && (rc = from_set(c->file, c->o.calib_path, t, h)) != QK_ENOTFOUND)
        return rc;
    if (c->collected && (rc = from_set(c->collected, "calibration", t, h)) != QK_ENOTFOUND)
        return rc;
    if (k >= 0)
        return qk_error(QK_ENOTFOUND, "%s: no Hessian for '%s'", c->o.calib_path ? c->o.calib_path : "calibration",
                        t->name);
    /* token_embd, or an output projection without statistics: rounding with a searched scale */
    if (!(*h = identity(c, t->ne[0])))
        return qk_error(QK_ENOMEM, "out of memory");
    return 0;
}

/* Row v of output.weight: H_v = sum_t p_v(t) x_t x_t^T + gamma * H_shared / V. */
static int output_row_h(void *ctx, int64_t v, double *out)
{
    const qk_gptq_calib *c = ctx;
    const int64_t n = c->out_n, k0 = c->row_off[v], m = c->row_off[v + 1] - k0;
    const double g = c->o.output_gamma / (double)c->out_V;
    for (int64_t k = 0; k < n * n; k++)
        out[k] = g * c->out_hshared[k];
    if (m == 0)
        return 0;
    /* over the live columns only (a padded model's zero channels stay 0) */
    const int64_t nl = c->out_n_live, *live = c->out_live;
    double *y = malloc((size_t)(m * nl) * sizeof(double)), *hl = calloc((size_t)(nl * nl), sizeof(double));
    if (!y || !hl) {
        free(y);
        free(hl);
        return qk_error(QK_ENOMEM, "out of memory");
    }
    for (int64_t i = 0; i < m; i++) {
        const float *x = c->out_x + c->row_pos[k0 + i] * n;
        const double s = sqrt((double)c->row_p[k0 + i]);
        for (int64_t j = 0; j < nl; j++)
            y[i * nl + j] = s * x[live[j]];
    }
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)nl, (int)m, 1.0, y, (int)nl, 0.0, hl, (int)nl);
    for (int64_t a = 0; a < nl; a++)
        for (int64_t b = a; b < nl; b++) {
            out[live[a] * n + live[b]] += hl[a * nl + b];
            if (b != a)
                out[live[b] * n + live[a]] += hl[a * nl + b];
        }
    free(y);
    free(hl);
    return 0;
}

int qk_gptq_calib_tensor(qk_gptq_calib *c, const qk_model_tensor *t, const qk_gptq_opts *o, const float *w,
                         void *dst, float *deq, qk_pool *pool, qk_gptq_stats *st)
{
    const double *h = NULL;
    hkind kind;
    int rc = hessian_for(c, t, &h, &kind);
    if (!rc)
        rc = kind == H_ROWS ? qk_gptq_quantize_rowwise(o, w, qk_model_tensor_rows(t), t->ne[0], output_row_h, c, dst,
                                                       deq, pool, st)
                            : qk_gptq_quantize(o, w, qk_model_tensor_rows(t), t->ne[0], h, dst, deq, pool, st);
    return rc ? qk_error_prefix(rc, t->name) : 0;
}

int qk_gptq_calib_tensor_layout(qk_gptq_calib *c, const qk_model_tensor *t, const qk_gptq_opts *o, const float *w,
                                uint8_t *q, uint16_t *scale, uint16_t *zero, float *deq, qk_pool *pool,
                                qk_gptq_stats *st)
{
    const double *h = NULL;
    hkind kind;
    int rc = hessian_for(c, t, &h, &kind);
    if (!rc && kind == H_ROWS)
        rc = qk_error(QK_EUNSUPPORTED, "per-row Hessians are for ggml types");
    if (!rc)
        rc = qk_gptq_quantize_layout(o, w, qk_model_tensor_rows(t), t->ne[0], h, q, scale, zero, deq, pool, st);
    return rc ? qk_error_prefix(rc, t->name) : 0;
}

int qk_gptq_calib_quantized(qk_gptq_calib *c, const qk_model_tensor *t, const float *deq)
{
    if (!c->o.sequential || !c->fwd)
        return 0;
    int rc = qk_forward_override_weight(c->fwd, t->name, deq);
    return rc ? qk_error_prefix(rc, t->name) : 0;
}
