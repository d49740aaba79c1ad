/* Hessians for qk-quantize --method gptq (see quantkit/gptq_method.h):
 * from a .qkc file (read one at a time), collected from calibration text
 * layer by layer (on the full-precision model, or sequentially on the
 * partly quantized one), and the output projection's per-row Hessians from
 * the full-precision model's token probabilities.
 *
 * Layer-major state: the hidden states of every calibration window,
 * x [n_chunks * n_ctx][n_embd], are the input of layer x_layer (x_stage 0)
 * or the residual after its attention block (x_stage 1). A request for a
 * tensor of layer l moves the state forward to l with qk_forward_layer
 * (the weights quantized so far in place, in sequential mode) and runs
 * the part of layer l that reaches the tensor's input with a hook that
 * accumulates X^T X there:
 *   full precision: the whole layer once, all four inputs (q/k/v,
 *     attn_output, gate/up, ffn_down) at once; the state moves to l+1;
 *   sequential: the attention part for q/k/v (stopping at once) and for
 *     attn_output (stopping before its matmul), then, once attn_output is
 *     quantized, the attention part for real (stage 1), the FFN part for
 *     gate/up (stopping at once) and ffn_down (stopping before it), and the
 *     FFN part for real when layer l+1 is asked for.
 * The input of attn_output and of ffn_down seen when their Hessians are
 * collected is kept (tail_in: one layer input, n_ff floats per token at
 * most), so the real passes of those parts are one matmul each
 * (qk_forward_layer_tail) with the bytes of recomputing them. So the
 * sequential run costs about one forward pass in all (O(layers), where
 * rerunning every pass from the embeddings was O(layers^2); 1.6 passes
 * without the kept inputs), and memory is the hidden states, one layer
 * input and one layer's Hessians (at most). */
#include <cblas.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quantkit/calib.h"
#include "quantkit/eval.h"
#include "quantkit/forward.h"
#include "quantkit/gptq_method.h"
#include "quantkit/metrics.h"

#define MAX_TEXT_BYTES (256u << 20)
#define TOKENS_PER_CALL 4096
#define STOP_PASS QK_CALIB_STOP /* hook return that ends a pass early on purpose */
/* Per-row output Hessians cost about n_vocab * n_embd^3 flops; beyond this
 * the output projection gets the shared Hessian of its input instead. */
#define OUT_ROWS_MAX_WORK 1e12
#define OUT_P_MIN 1e-4f      /* output weighting: probabilities kept per position */
#define OUT_K_MAX 128        /* ... at most this many per position */

enum { GRP_QKV = 0, GRP_O, GRP_GATEUP, GRP_DOWN, GRP_COUNT };

struct qk_gptq_calib {
    const qk_model *m;
    qk_gptq_calib_opts o;
    qk_calib *file;        /* .qkc opened lazily: Hessians read one at a time */
    double *fh;            /* [fh_n][fh_n] the Hessian of file entry fh_owner */
    int64_t fh_owner, fh_n;
    int32_t *win;          /* [n_chunks][n_ctx] calibration windows */
    int64_t n_chunks, n_ctx, per_call;
    qk_forward *fwd;
    /* layer-major state */
    float *x;              /* [n_chunks * n_ctx][n_embd] hidden states of every window */
    int64_t x_layer;       /* layer whose input (stage 0) or post-attention residual (stage 1) x is; -1: none */
    int x_stage;
    /* sequential: the input of the last matmul of a part (attn_output's or
     * ffn_down's), kept when its group's Hessian was collected, so moving
     * the state past that part is one matmul (qk_forward_layer_tail) */
    float *tail_in;        /* [n_chunks * n_ctx][tail_n] */
    int64_t tail_n, tail_cap;
    int64_t tail_layer;    /* layer tail_in is valid for, -1: none */
    int tail_kind;         /* QK_LIN_O or QK_LIN_DOWN */
    int tail_keep;         /* hook: copy the stop group's input into tail_in */
    int64_t sweep_row;     /* hook: first row of the current call in x */
    int64_t dropped_upto;  /* sequential: the quantized weights of layers < this were dropped from the forward */
    double *gh[GRP_COUNT]; /* [gn][gn] the Hessian of each input group of layer gh_layer */
    int64_t gn[GRP_COUNT];
    int64_t gh_layer;      /* layer the groups in gh_mask are for (-1 none) */
    unsigned gh_mask;      /* bit g: gh[g] holds layer gh_layer's group g */
    int64_t g_tokens[GRP_COUNT];
    /* collection hook */
    int collecting;        /* the hook accumulates groups col_mask of layer col_layer */
    int64_t col_layer;
    unsigned col_mask;
    int col_stop;          /* group after which the pass stops (-1: run through) */
    qk_pool *pool;         /* for the X^T X tiles */
    float *xs;             /* tile scratch (qk_calib_xtx_scratch) */
    int64_t *tiles;
    int all_rows_big;      /* output rowwise Hessians would cost too much: the shared one instead */
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
    int out_h_collect;     /* hook: accumulate the output projection's input into out_hshared, then stop */
    /* identity Hessian (token_embd) */
    double *ident;
    int64_t ident_n;
    /* the prepared Hessian (factorization) of the group q/k/v or gate/up
     * being quantized, kept for its next tensor; prep_h's diagonal is
     * changed while it lives (freed before any Hessian is collected or read) */
    qk_gptq_prepared *prep;
    double *prep_h;
    int64_t prep_layer;
    int prep_group;
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

/* The linear tensors of a layer, "blk.N.<kind>.weight", indexed by QK_LIN_* kind. */
static const char *const k_kinds[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
#define N_KINDS (int)(sizeof k_kinds / sizeof k_kinds[0])

/* "blk.N.<kind>.weight" -> layer and QK_LIN_* kind; -1 for other tensors. */
static int layer_kind(const char *name, int64_t *layer)
{
    long long l;
    int off = 0;
    if (sscanf(name, "blk.%lld.%n", &l, &off) != 1 || off == 0)
        return -1;
    for (int k = 0; k < N_KINDS; k++) {
        size_t n = strlen(k_kinds[k]);
        if (!strncmp(name + off, k_kinds[k], n) && !strcmp(name + off + n, ".weight")) {
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
    c->passes += qk_model_cfg(c->m)->n_layer; /* a full pass: every layer's sweep */
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

/* The group an event's input starts (the first linear layer reading it), or -1. */
static int group_start(int kind)
{
    return kind == QK_LIN_Q ? GRP_QKV : kind == QK_LIN_O ? GRP_O : kind == QK_LIN_GATE ? GRP_GATEUP
         : kind == QK_LIN_DOWN ? GRP_DOWN : -1;
}

static int calib_hook(void *ctx, const qk_linear_event *ev)
{
    qk_gptq_calib *c = ctx;
    if (c->collecting) {
        const int g = group_start(ev->kind);
        if (ev->y || g < 0 || ev->layer != c->col_layer || !(c->col_mask & (1u << g)))
            return 0;
        if (ev->n_in != c->gn[g])
            return qk_error(QK_EINVAL, "layer %d input has %" PRId64 " columns, expected %" PRId64, ev->layer,
                            ev->n_in, c->gn[g]);
        int rc = qk_calib_xtx_add(c->gh[g], ev->x, ev->n_tokens, ev->n_in, c->pool, c->xs, c->tiles);
        if (rc)
            return rc;
        c->g_tokens[g] += ev->n_tokens;
        if (g == c->col_stop && c->tail_keep)
            memcpy(c->tail_in + c->sweep_row * ev->n_in, ev->x, (size_t)(ev->n_tokens * ev->n_in) * sizeof(float));
        return g == c->col_stop ? STOP_PASS : 0;
    }
    if (c->out_h_collect && ev->kind == QK_LIN_OUTPUT && !ev->y) {
        if (ev->n_in != c->out_n)
            return qk_error(QK_EINVAL, "output projection: %" PRId64 " columns, expected %" PRId64, ev->n_in,
                            c->out_n);
        int rc = qk_calib_xtx_add(c->out_hshared, ev->x, ev->n_tokens, ev->n_in, c->pool, c->xs, c->tiles);
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

/* ---------------------------------------------------------- layer-major */

static int sweep_logits(void *ctx, int64_t seq, int64_t pos, const float *logits)
{
    (void)ctx, (void)seq, (void)pos, (void)logits;
    return 0;
}

/* Run `parts` of layer l over every window; keep: the state moves on (x
 * updated), else the pass is expected to stop in a hook (x unchanged). */
static int sweep(qk_gptq_calib *c, int64_t l, int parts)
{
    const double t0 = qk_now();
    const int64_t D = qk_model_cfg(c->m)->n_embd;
    int rc = 0;
    for (int64_t s = 0; s < c->n_chunks && !rc; s += c->per_call) {
        const int64_t ns = c->n_chunks - s < c->per_call ? c->n_chunks - s : c->per_call;
        float *x = c->x + s * c->n_ctx * D;
        c->sweep_row = s * c->n_ctx;
        if (l >= 0 && c->tail_layer == l &&
            parts == (c->tail_kind == QK_LIN_O ? QK_FORWARD_ATTN : QK_FORWARD_FFN) && !c->collecting)
            rc = qk_forward_layer_tail(c->fwd, l, c->tail_kind, c->tail_in + c->sweep_row * c->tail_n, x, ns,
                                       c->n_ctx);
        else
            rc = l < 0 ? qk_forward_final(c->fwd, x, ns, c->n_ctx, 0, sweep_logits, NULL)
                       : qk_forward_layer(c->fwd, l, parts, x, ns, c->n_ctx);
        if (rc == STOP_PASS)
            rc = 0;
    }
    c->passes++;
    c->seconds += qk_now() - t0;
    return rc;
}

/* Sequential: layer l is behind the state for good; its quantized weights
 * (float overrides in the forward pass: n_embd x (4 n_embd + 3 n_ff)
 * floats, 0.87 GB for a 7B layer) are dropped, so memory holds one layer's
 * worth, not the model's. */
static void drop_layer_weights(qk_gptq_calib *c, int64_t l)
{
    if (!c->o.sequential)
        return;
    for (int k = 0; k < N_KINDS; k++) {
        char name[96];
        snprintf(name, sizeof name, "blk.%" PRId64 ".%s.weight", l, k_kinds[k]);
        qk_forward_override_weight(c->fwd, name, NULL); /* QK_ENOTFOUND for a tensor the model lacks: nothing to drop */
    }
    c->dropped_upto = l + 1;
}

/* Move the state to (layer, stage): forward through whole parts with the
 * current weights; backwards by starting again from the embeddings (not in
 * sequential mode once weights were dropped). */
static int state_to(qk_gptq_calib *c, int64_t layer, int stage)
{
    const qk_model_config *cfg = qk_model_cfg(c->m);
    int rc = 0;
    if (c->x_layer < 0 || c->x_layer > layer || (c->x_layer == layer && c->x_stage > stage)) {
        if (c->dropped_upto > 0)
            return qk_error(QK_EINVAL, "sequential GPTQ: layer %" PRId64 " asked for after the calibration state moved "
                            "past layer %" PRId64 " (tensors must come in canonical order)", layer, c->dropped_upto - 1);
        const double t0 = qk_now();
        rc = qk_forward_embed(c->fwd, c->win, c->n_chunks * c->n_ctx, c->x);
        c->seconds += qk_now() - t0;
        c->tail_layer = -1;
        if (rc)
            return rc;
        c->x_layer = 0;
        c->x_stage = 0;
    }
    while (!rc && (c->x_layer < layer || (c->x_layer == layer && c->x_stage < stage))) {
        if (c->x_layer >= cfg->n_layer)
            break;
        /* the rest of the current layer, or just its attention when stage 1 of it is the target */
        const int parts = c->x_stage == 1 ? QK_FORWARD_FFN : c->x_layer == layer ? QK_FORWARD_ATTN : QK_FORWARD_BLOCK;
        c->collecting = 0;
        rc = sweep(c, c->x_layer, parts);
        c->tail_layer = -1; /* used, or the state moved past it */
        if (rc)
            break;
        if (parts == QK_FORWARD_ATTN) {
            c->x_stage = 1;
        } else {
            qk_model_release_layer(c->m, c->x_layer);
            drop_layer_weights(c, c->x_layer);
            c->x_layer++;
            c->x_stage = 0;
        }
    }
    return rc;
}

/* tail_in for n columns of every window's rows; 0, or QK_ENOMEM (logged:
 * the parts are then recomputed) */
static int tail_reserve(qk_gptq_calib *c, int64_t n)
{
    c->tail_n = n;
    const int64_t need = c->n_chunks * c->n_ctx * n;
    if (need <= c->tail_cap)
        return 0;
    free(c->tail_in);
    c->tail_cap = 0;
    if (!(c->tail_in = malloc((size_t)need * sizeof(float)))) {
        qk_log(QK_LOG_INFO, "sequential GPTQ: no memory to keep %" PRId64 " x %" PRId64 " layer inputs; the "
               "layer parts are recomputed", c->n_chunks * c->n_ctx, n);
        return QK_ENOMEM;
    }
    c->tail_cap = need;
    return 0;
}

/* Hessians of the groups in mask of layer l, at the current weights:
 * sequential (one group): stop at it; else run the whole layer. */
static int collect_layer(qk_gptq_calib *c, int64_t l, unsigned mask, int stop_group)
{
    const qk_model_config *cfg = qk_model_cfg(c->m);
    const int64_t qd = cfg->n_head * cfg->head_dim;
    const int64_t sizes[GRP_COUNT] = {cfg->n_embd, qd, cfg->n_embd, cfg->n_ff};
    for (int g = 0; g < GRP_COUNT; g++) {
        if (!(mask & (1u << g)))
            continue;
        const int64_t n = sizes[g];
        if (c->gn[g] != n) {
            free(c->gh[g]);
            c->gn[g] = 0;
            if (!(c->gh[g] = malloc((size_t)(n * n) * sizeof(double))))
                return qk_error(QK_ENOMEM, "out of memory for a %" PRId64 " x %" PRId64 " Hessian", n, n);
            c->gn[g] = n;
        }
        memset(c->gh[g], 0, (size_t)(n * n) * sizeof(double));
        c->g_tokens[g] = 0;
    }
    c->gh_mask &= ~mask;
    if (c->gh_layer != l)
        c->gh_mask = 0;
    c->gh_layer = l;
    const int ffn_only = !(mask & ((1u << GRP_QKV) | (1u << GRP_O)));
    int rc = state_to(c, l, ffn_only && stop_group >= 0 ? 1 : 0);
    if (rc)
        return rc;
    c->collecting = 1;
    c->col_layer = l;
    c->col_mask = mask;
    c->col_stop = stop_group;
    const int parts = stop_group < 0 ? QK_FORWARD_BLOCK : stop_group <= GRP_O ? QK_FORWARD_ATTN : QK_FORWARD_FFN;
    c->tail_layer = -1;
    c->tail_keep = (stop_group == GRP_O || stop_group == GRP_DOWN) && !c->o.recompute_parts &&
                   tail_reserve(c, sizes[stop_group]) == 0;
    rc = sweep(c, l, parts);
    c->collecting = 0;
    if (!rc && c->tail_keep) {
        c->tail_layer = l;
        c->tail_kind = stop_group == GRP_O ? QK_LIN_O : QK_LIN_DOWN;
    }
    c->tail_keep = 0;
    if (rc)
        return rc;
    if (stop_group < 0) { /* the whole layer ran: the state moved on */
        qk_model_release_layer(c->m, l);
        c->x_layer = l + 1;
        c->x_stage = 0;
    }
    for (int g = 0; g < GRP_COUNT; g++) {
        if (!(mask & (1u << g)))
            continue;
        if (c->g_tokens[g] == 0)
            return qk_error(QK_EINVAL, "calibration: the input of layer %" PRId64 " was never reached", l);
        mirror_upper(c->gh[g], c->gn[g]);
        c->gh_mask |= 1u << g;
    }
    return 0;
}

/* Sequential: the final hidden states of the quantized model, normed, into
 * out_x (same positions as the full-precision pass). */
static int output_x_quantized(qk_gptq_calib *c)
{
    int rc = state_to(c, qk_model_cfg(c->m)->n_layer, 0);
    if (rc)
        return rc;
    c->out_T = 0;
    c->out_phase = 2;
    rc = sweep(c, -1, 0);
    c->out_phase = 0;
    return rc;
}

/* ------------------------------------------------------------ creation */

static int layer_kind(const char *name, int64_t *layer);

/* The file entry holding t's Hessian (QK_ENOTFOUND when t has no entry). */
static int file_owner(const qk_gptq_calib *c, const qk_model_tensor *t, int64_t *owner)
{
    const qk_calib_entry *e = qk_calib_find(c->file, t->name);
    if (!e)
        return QK_ENOTFOUND;
    if (e->n_in != t->ne[0])
        return qk_error(QK_EFORMAT, "%s: the Hessian of '%s' is %" PRId64 " x %" PRId64 " but the tensor has %" PRId64
                        " input columns (calibrated on another model?)", c->o.calib_path, t->name, e->n_in, e->n_in,
                        t->ne[0]);
    if ((*owner = qk_calib_hessian_owner(c->file, e)) < 0)
        return qk_error(QK_ENOTFOUND, "%s: no Hessian for '%s' (make the file with qk-calibrate --hessian)",
                        c->o.calib_path, t->name);
    return 0;
}

/* Every linear layer of m has a Hessian of its size in the file: checked
 * before anything is quantized. */
static int check_file(const qk_gptq_calib *c)
{
    for (int64_t i = 0; i < qk_model_n_tensors(c->m); i++) {
        const qk_model_tensor *t = qk_model_tensor_at(c->m, i);
        int64_t layer, owner;
        if (layer_kind(t->name, &layer) < 0)
            continue;
        int rc = file_owner(c, t, &owner);
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
        int rc = output_x_quantized(c);
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
    c->x_layer = -1;
    c->tail_layer = -1;
    c->gh_layer = -1;
    c->fh_owner = -1;
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
    if (o->calib_path && !o->sequential && (rc = qk_calib_open(&c->file, o->calib_path)))
        goto done;
    if (c->file && (rc = check_file(c)))
        goto done;
    if (o->text_path) {
        const qk_model_config *cfg = qk_model_cfg(m);
        if ((rc = load_windows(c)))
            goto done;
        c->per_call = TOKENS_PER_CALL / c->n_ctx > 0 ? TOKENS_PER_CALL / c->n_ctx : 1;
        qk_forward_opts fo = {.n_threads = o->n_threads, .max_tokens = c->per_call * c->n_ctx};
        int64_t widest = cfg->n_ff > cfg->n_embd ? cfg->n_ff : cfg->n_embd; /* largest Hessian */
        if (cfg->n_head * cfg->head_dim > widest)
            widest = cfg->n_head * cfg->head_dim;
        if ((rc = qk_forward_new(&c->fwd, m, &fo)) || (rc = qk_pool_create(&c->pool, o->n_threads)) ||
            (rc = qk_calib_xtx_scratch(widest, c->pool, &c->xs, &c->tiles)))
            goto done;
        qk_forward_set_hook(c->fwd, calib_hook, c);
        int64_t nx;
        if (qk_mul_i64(c->n_chunks * c->n_ctx, cfg->n_embd, &nx) || !(c->x = malloc((size_t)nx * sizeof(float)))) {
            rc = qk_error(QK_ENOMEM, "out of memory for the hidden states of %" PRId64 " calibration windows",
                          c->n_chunks);
            goto done;
        }
        /* the output weighting: the full-precision model's probabilities
         * (one full pass), when per-row Hessians are affordable */
        const qk_model_tensor *out_t = o->output_rows ? qk_model_find(m, "output.weight") : NULL;
        const double n_out = out_t ? (double)out_t->ne[0] : 0;
        if (out_t && (double)qk_model_tensor_rows(out_t) * n_out * n_out * n_out > OUT_ROWS_MAX_WORK) {
            qk_log(QK_LOG_INFO, "output.weight: %" PRId64 " x %" PRId64 " is too large for per-row Hessians; GPTQ "
                   "uses the Hessian of its input", qk_model_tensor_rows(out_t), out_t->ne[0]);
            out_t = NULL;
        }
        if (out_t) {
            if ((rc = output_begin(c, out_t)) || (rc = run_windows(c, 1)) || (rc = output_end(c)))
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

/* Drops the kept factorization, restoring its Hessian. */
static void prep_drop(qk_gptq_calib *c)
{
    qk_gptq_prepared_free(c->prep);
    c->prep = NULL;
    c->prep_h = NULL;
}

void qk_gptq_calib_free(qk_gptq_calib *c)
{
    if (!c)
        return;
    prep_drop(c);
    qk_calib_free(c->file);
    free(c->fh);
    qk_forward_free(c->fwd);
    qk_pool_free(c->pool);
    free(c->xs);
    free(c->tiles);
    free(c->x);
    free(c->tail_in);
    for (int g = 0; g < GRP_COUNT; g++)
        free(c->gh[g]);
    free(c->win);
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

static double *identity(qk_gptq_calib *c, int64_t n)
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

/* The file's Hessian for t, read into fh (kept while the next tensor shares it). */
static int from_file(qk_gptq_calib *c, const qk_model_tensor *t, double **h)
{
    int64_t owner;
    int rc = file_owner(c, t, &owner);
    if (rc)
        return rc;
    const int64_t n = t->ne[0];
    if (c->fh_owner != owner) {
        c->fh_owner = -1;
        if (c->fh_n != n) {
            free(c->fh);
            c->fh_n = 0;
            if (!(c->fh = malloc((size_t)(n * n) * sizeof(double))))
                return qk_error(QK_ENOMEM, "out of memory for a %" PRId64 " x %" PRId64 " Hessian", n, n);
            c->fh_n = n;
        }
        if ((rc = qk_calib_read_hessian(c->file, owner, c->fh)))
            return rc;
        c->fh_owner = owner;
    }
    *h = c->fh;
    return 0;
}

/* The output projection's input Hessian on the current model (layer-major end state). */
static int output_shared(qk_gptq_calib *c, const qk_model_tensor *t, double **h)
{
    const int64_t n = t->ne[0];
    if (!c->out_hshared || c->out_n != n) {
        free(c->out_hshared);
        c->out_n = n;
        if (!(c->out_hshared = calloc((size_t)(n * n), sizeof(double))))
            return qk_error(QK_ENOMEM, "out of memory for a %" PRId64 " x %" PRId64 " Hessian", n, n);
        int rc = state_to(c, qk_model_cfg(c->m)->n_layer, 0);
        c->out_h_collect = 1;
        if (!rc)
            rc = sweep(c, -1, 0);
        c->out_h_collect = 0;
        if (rc) {
            free(c->out_hshared);
            c->out_hshared = NULL;
            return rc;
        }
        mirror_upper(c->out_hshared, n);
    }
    *h = c->out_hshared;
    return 0;
}

typedef enum { H_SHARED, H_ROWS } hkind;

static int hessian_for(qk_gptq_calib *c, const qk_model_tensor *t, double **h, hkind *kind)
{
    *kind = H_SHARED;
    int64_t layer = -1;
    const int k = layer_kind(t->name, &layer);
    const int g = k >= 0 ? group_of(k) : -1;
    const int is_output = !strcmp(t->name, "output.weight");
    if (k >= 0 && layer >= qk_model_cfg(c->m)->n_layer)
        return qk_error(QK_EFORMAT, "'%s': layer %" PRId64 " beyond the model's %" PRId64, t->name, layer,
                        qk_model_cfg(c->m)->n_layer);
    if (is_output && c->out_ready) {
        int rc = finish_output_x(c);
        if (rc)
            return rc;
        if (t->ne[0] != c->out_n || qk_model_tensor_rows(t) != c->out_V)
            return qk_error(QK_EFORMAT, "output.weight shape does not match the collected projection");
        *kind = H_ROWS;
        return 0;
    }
    if (k >= 0 && c->file)
        return from_file(c, t, h);
    if (k >= 0 && c->fwd) {
        if (!(c->gh_layer == layer && (c->gh_mask & (1u << g)))) {
            /* sequential: this group on the model quantized so far; else the
             * whole layer's groups in one full-precision sweep */
            int rc = c->o.sequential ? collect_layer(c, layer, 1u << g, g)
                                     : collect_layer(c, layer, (1u << GRP_COUNT) - 1, -1);
            if (rc)
                return rc;
        }
        if (c->gn[g] != t->ne[0])
            return qk_error(QK_EFORMAT, "'%s': %" PRId64 " input columns, the layer's input has %" PRId64, t->name,
                            t->ne[0], c->gn[g]);
        *h = c->gh[g];
        return 0;
    }
    if (k >= 0)
        return qk_error(QK_ENOTFOUND, "%s: no Hessian for '%s'", c->o.calib_path ? c->o.calib_path : "calibration",
                        t->name);
    if (is_output && c->fwd && c->o.output_rows)
        return output_shared(c, t, h);
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

/* Tensors sharing one input (q/k/v, gate/up) share one factorization of
 * its Hessian: it is made for the group's first tensor and kept while the
 * next ones of the same layer and group come (the bytes are those of a
 * factorization per tensor); any other tensor drops it first. */
int qk_gptq_calib_tensor(qk_gptq_calib *c, const qk_model_tensor *t, const qk_gptq_opts *o, const float *w,
                         void *dst, float *deq, qk_pool *pool, qk_gptq_stats *st)
{
    double *h = NULL;
    hkind kind;
    int64_t layer = -1;
    const int k = layer_kind(t->name, &layer), g = k >= 0 ? group_of(k) : -1;
    const int shareable = (g == GRP_QKV || g == GRP_GATEUP) && o->type != QK_GPTQ_LAYOUT;
    if (c->prep && !(shareable && c->prep_layer == layer && c->prep_group == g))
        prep_drop(c);
    int rc = hessian_for(c, t, &h, &kind);
    if (!rc && kind == H_SHARED && shareable) {
        const int64_t rows = qk_model_tensor_rows(t), cols = t->ne[0];
        if (c->prep && (c->prep_h != h || !qk_gptq_prepared_fits(c->prep, o, cols)))
            prep_drop(c);
        if (!c->prep && !(rc = qk_gptq_prepare(&c->prep, o, h, cols, pool))) {
            c->prep_h = h;
            c->prep_layer = layer;
            c->prep_group = g;
        }
        if (!rc)
            rc = qk_gptq_quantize_prepared(o, c->prep, w, rows, dst, deq, pool, st);
    } else if (!rc) {
        rc = kind == H_ROWS ? qk_gptq_quantize_rowwise(o, w, qk_model_tensor_rows(t), t->ne[0], output_row_h, c, dst,
                                                       deq, pool, st)
                            : qk_gptq_quantize_inplace(o, w, qk_model_tensor_rows(t), t->ne[0], h, dst, deq, pool, st);
    }
    if (rc)
        prep_drop(c);
    return rc ? qk_error_prefix(rc, t->name) : 0;
}

int qk_gptq_calib_tensor_layout(qk_gptq_calib *c, const qk_model_tensor *t, const qk_gptq_opts *o, const float *w,
                                uint8_t *q, uint16_t *scale, uint16_t *zero, float *deq, qk_pool *pool,
                                qk_gptq_stats *st)
{
    double *h = NULL;
    hkind kind;
    prep_drop(c);
    int rc = hessian_for(c, t, &h, &kind);
    if (!rc && kind == H_ROWS)
        rc = qk_error(QK_EUNSUPPORTED, "per-row Hessians are for ggml types");
    if (!rc)
        rc = qk_gptq_quantize_layout_inplace(o, w, qk_model_tensor_rows(t), t->ne[0], h, q, scale, zero, deq, pool, st);
    return rc ? qk_error_prefix(rc, t->name) : 0;
}

int qk_gptq_calib_quantized(qk_gptq_calib *c, const qk_model_tensor *t, const float *deq)
{
    if (!c->o.sequential || !c->fwd)
        return 0;
    int64_t layer = -1;
    const int k = layer_kind(t->name, &layer);
    if (!(layer == c->tail_layer && k == c->tail_kind)) /* the kept input no longer holds */
        c->tail_layer = -1;
    int rc = qk_forward_override_weight(c->fwd, t->name, deq);
    return rc ? qk_error_prefix(rc, t->name) : 0;
}
