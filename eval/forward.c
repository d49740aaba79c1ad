/* The reference forward pass of the llama family (see quantkit/forward.h).
 *
 * One call runs n_seq sequences of n_ctx tokens stacked as T = n_seq*n_ctx
 * rows, layer by layer:
 *
 *   x = token_embd[tokens]                                  x  [T][n_embd]
 *   per layer l:
 *     xn = rmsnorm(x) * attn_norm
 *     q = xn Wq^T, k = xn Wk^T, v = xn Wv^T                 q  [T][n_head*hd], k, v [T][n_head_kv*hd]
 *     rope(q, k) at position t % n_ctx
 *     att = causal GQA attention per (sequence, head)       att [T][n_head*hd]
 *     x += att Wo^T
 *     xn = rmsnorm(x) * ffn_norm
 *     x += (silu(xn Wg^T) * (xn Wu^T)) Wd^T                 gate, up [T][n_ff]
 *   logits = (rmsnorm(x[scored rows]) * output_norm) Wout^T [n_scored][n_vocab]
 *
 * Every linear layer is one matmul (qk_forward_gemm on AVX-512 CPUs, else
 * cblas_sgemm) over all T rows with the weight as a
 * dequantized float matrix W [n_out][n_in] (row-major, ne = {n_in, n_out}),
 * its output columns split over the thread pool when big (see gemm).
 * Attention runs per (sequence, head, block of 64 queries) on the pool,
 * two small matmuls each. Norms, RoPE and SwiGLU are per row.
 * The matrix comes from, in order: an override, the mapped file itself
 * (F32 tensors stored as is), the whole-model cache (small models), or it
 * is decoded just before its matmul: with qk_forward_gemm, 64 rows at a time
 * per pool item into that thread's `pbuf` (fused_linear); otherwise into the
 * reusable buffer `wbuf`, which holds the largest layer matrix; a larger one
 * (the output projection of a big vocabulary) is decoded and multiplied in
 * slices of rows. Either way memory stays one layer's working set.
 */
#include "quantkit/forward.h"

#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward_ops.h"

void openblas_set_num_threads(int);

#define DEFAULT_CACHE_BYTES ((int64_t)256 << 20)
/* Tensors with fewer elements than this are decoded by the calling thread. */
#define PAR_DECODE_MIN ((int64_t)1 << 16)
/* Least multiply-adds per slice of a matmul split over threads (see gemm). */
#define GEMM_SLICE_MIN 2097152.0
/* Steps with less work than this (float operations) run on the calling thread. */
#define PAR_STEP_MIN 65536.0
/* Queries per attention work item: a block's scores are ATTN_BLOCK x n_ctx floats. */
#define ATTN_BLOCK 64
/* Largest number of tokens per call (keeps every size product far from overflow). */
#define MAX_TOKENS ((int64_t)1 << 24)

typedef struct fw_weight {
    const qk_model_tensor *t;
    int64_t ne0, rows;
    float *ovr;   /* [rows][ne0] override set by qk_forward_override_weight, or NULL */
    const float *direct; /* [rows][ne0] the mapped data itself (aligned F32, no permutation, padding or scales), or NULL */
    float *cache; /* [rows][ne0] dequantized copy kept across calls, or NULL */
} fw_weight;

typedef struct fw_layer {
    /* indices into qk_forward.w */
    int64_t attn_norm, wq, wk, wv, wo, ffn_norm, wg, wu, wd;
} fw_layer;

struct qk_forward {
    const qk_model *m;
    qk_model_config c;
    int n_threads;
    qk_pool *pool;
    int64_t max_tokens;
    int cache_all; /* the whole model, dequantized, fits the cache budget */
    qk_linear_hook hook;
    void *hook_ctx;

    fw_weight *w; /* one per model tensor, in model order */
    int64_t n_w;
    fw_layer *layers;
    int64_t tok_embd, out_norm, output; /* output == tok_embd when tied */

    float *wbuf; /* [wbuf_elems] decoded weight matrix (or a slice of rows of one) */
    int64_t wbuf_elems;
    float *pbuf; /* [n_threads][pbuf_per_thread] decoded panel of FUSED_ROWS rows (fused_linear) */
    int64_t pbuf_per_thread;
    float *rope; /* [rope_n][head_dim/2][2] cos, sin per position */
    int64_t rope_n;

    /* activations, one token per row, T = max_tokens rows */
    float *x;     /* [T][n_embd] residual stream */
    float *xn;    /* [T][n_embd] normalised input of the current linear layers */
    float *q;     /* [T][n_head*head_dim] */
    float *k;     /* [T][n_head_kv*head_dim] */
    float *v;     /* [T][n_head_kv*head_dim] */
    float *att;   /* [T][n_head*head_dim] attention output */
    float *tmp;   /* [T][n_embd] output of attn_output and ffn_down */
    float *gate;  /* [T][n_ff] gate, then silu(gate) * up */
    float *up;    /* [T][n_ff] */
    float *scratch; /* [n_threads][ATTN_BLOCK * T] attention scores of one block */
    int64_t scratch_per_thread;
    int emulate;  /* opts.emulate_llamacpp */
    int fast_gemm; /* linear layers through qk_forward_gemm (AVX-512), see gemm */
    float *xr;    /* [T][max linear input] rounded copy of a linear layer's input (emulation) */
    int64_t xr_cols;
    float *logits; /* [n_scored][n_vocab], grown per call */
    int64_t logits_cap;
    int64_t *scored; /* [T] row index of each scored token */
};

/* ------------------------------------------------------------- decoding */

typedef struct decode_job {
    const qk_model *m;
    const qk_model_tensor *t;
    int64_t r0, n, rows_per_item;
    float *dst; /* [n][ne0] */
    atomic_int err;
} decode_job;

static void decode_item(void *ctx, int64_t i, int thread)
{
    (void)thread;
    decode_job *j = ctx;
    int64_t a = i * j->rows_per_item;
    int64_t b = a + j->rows_per_item < j->n ? a + j->rows_per_item : j->n;
    int rc = qk_model_rows_f32(j->m, j->t, j->r0 + a, b - a, j->dst + a * j->t->ne[0]);
    if (rc)
        atomic_store(&j->err, rc);
}

/* Rows [r0, r0+n) of t as floats into dst [n][ne0], over the pool when big. */
static int decode_rows(qk_forward *f, const qk_model_tensor *t, int64_t r0, int64_t n, float *dst)
{
    if (n * t->ne[0] < PAR_DECODE_MIN || qk_pool_size(f->pool) == 1)
        return qk_model_rows_f32(f->m, t, r0, n, dst);
    decode_job j = {.m = f->m, .t = t, .r0 = r0, .n = n, .dst = dst};
    atomic_init(&j.err, 0);
    /* items of ~16K elements: small enough to balance, big enough to amortise */
    j.rows_per_item = ((int64_t)1 << 14) / t->ne[0];
    if (j.rows_per_item < 1)
        j.rows_per_item = 1;
    qk_pool_run(f->pool, (n + j.rows_per_item - 1) / j.rows_per_item, 1, decode_item, &j);
    int rc = atomic_load(&j.err);
    if (rc) /* the worker's message is thread-local: say it again here */
        return qk_error(rc, "tensor '%s': cannot decode type %s", t->name, qk_type_name(t->type));
    return 0;
}

/* The whole matrix of weight wi as floats when it is resident (override,
 * mapped F32, or the cache, filled on first use), else NULL: the caller
 * decodes it in slices into wbuf. */
static int weight_resident(qk_forward *f, int64_t wi, const float **out)
{
    fw_weight *w = &f->w[wi];
    *out = NULL;
    if (w->ovr || w->direct) {
        *out = w->ovr ? w->ovr : w->direct;
        return 0;
    }
    if (!w->cache && f->cache_all) {
        float *c = malloc((size_t)w->rows * (size_t)w->ne0 * sizeof(float));
        if (!c)
            return qk_error(QK_ENOMEM, "out of memory caching tensor '%s'", w->t->name);
        int rc = decode_rows(f, w->t, 0, w->rows, c);
        if (rc) {
            free(c);
            return rc;
        }
        w->cache = c;
    }
    *out = w->cache;
    return 0;
}

/* --------------------------------------------------------------- linear */

/* y[:, cols] = x W[cols]^T over slices of output columns, one sgemm per
 * pool item, OpenBLAS single-threaded. Letting OpenBLAS thread instead left
 * its workers spinning in sched_yield beside the pool's attention and
 * decoding (half the CPU time on a busy 2-core machine). Slices are made
 * only when each has at least GEMM_SLICE_MIN multiply-adds: OpenBLAS then
 * uses its regular kernel, whose per-element sum order does not depend on
 * the number of columns, so the result is bit-identical to one sgemm and
 * does not depend on the thread count. (Below ~1e6 it may pick a
 * small-matrix kernel with another order.)
 * On CPUs with AVX-512 the slices go to qk_forward_gemm instead (eval/
 * forward_ops.c: about 1.8x OpenBLAS's AVX2 kernels per core, and exact whatever
 * the slicing or the number of rows), except for calls of fewer than
 * GEMM_FAST_MIN_TOK rows, whose register tiles would be mostly padding. */
#define GEMM_FAST_MIN_TOK 4
typedef struct gemm_job {
    const float *x; /* [n_tok][n_in] */
    const float *w; /* [n_cols][n_in] */
    float *y;       /* [n_tok][ldy], columns [0, n_cols) */
    int64_t n_tok, n_in, n_cols, ldy, per, n_items;
    int fast;       /* qk_forward_gemm, not cblas_sgemm */
    int f16;        /* emulation: the weight is F16 (ggml's F16 dot product) */
} gemm_job;

static void gemm_item(void *ctx, int64_t i, int thread)
{
    (void)thread;
    const gemm_job *g = ctx;
    int64_t c0 = i * g->per;
    int64_t nc = i + 1 == g->n_items ? g->n_cols - c0 : g->per; /* the last item takes the remainder */
    if (g->fast) {
        qk_forward_gemm(g->y + c0, g->ldy, g->x, g->n_in, g->w + c0 * g->n_in, g->n_in, g->n_tok, nc, g->n_in);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->n_tok, (int)nc, (int)g->n_in, 1.0f, g->x,
                (int)g->n_in, g->w + c0 * g->n_in, (int)g->n_in, 0.0f, g->y + c0, (int)g->ldy);
}

static void gemm(qk_forward *f, const float *x, const float *w, float *y, int64_t n_tok, int64_t n_in,
                 int64_t n_cols, int64_t ldy)
{
    gemm_job g = {x, w, y, n_tok, n_in, n_cols, ldy, n_cols, 1, f->fast_gemm && n_tok >= GEMM_FAST_MIN_TOK, 0};
    const int64_t n_threads = qk_pool_size(f->pool);
    double work = (double)n_tok * (double)n_in * (double)n_cols;
    /* two items per thread; four with qk_forward_gemm, whose results do not
     * depend on the slicing, so a thread that loses its CPU to another
     * process holds the others up less */
    int64_t items = (int64_t)fmin(work / GEMM_SLICE_MIN, (g.fast ? 4.0 : 2.0) * (double)n_threads);
    if (n_threads > 1 && items > 1 && n_tok > 1) {
        g.per = (n_cols + items - 1) / items;
        g.per = g.fast ? (g.per + 63) / 64 * 64 : (g.per + 15) / 16 * 16; /* whole kernel tiles */
        g.n_items = n_cols / g.per;     /* rounded down: the last slice is at least `per` wide */
        if (g.n_items < 1) {
            g.n_items = 1;
            g.per = n_cols;
        }
    }
    qk_pool_run(g.n_items > 1 ? f->pool : NULL, g.n_items, 1, gemm_item, &g);
}

/* gemm in ggml's summation order (emulation of llama.cpp's F32 and F16
 * matmuls, see qk_forward_dot_ggml), one token row per pool item. */
static void gemm_ggml_item(void *ctx, int64_t t, int thread)
{
    (void)thread;
    const gemm_job *g = ctx;
    const float *x = g->x + t * g->n_in;
    for (int64_t c = 0; c < g->n_cols; c++)
        g->y[t * g->ldy + c] = qk_forward_dot_ggml(x, g->w + c * g->n_in, g->n_in, g->f16);
}

/* ggml_order: 0 gemm; 1, 2 ggml's order for an F32, F16 weight (emulation) */
static void matmul(qk_forward *f, int ggml_order, const float *x, const float *w, float *y, int64_t n_tok,
                   int64_t n_in, int64_t n_cols, int64_t ldy)
{
    if (!ggml_order) {
        gemm(f, x, w, y, n_tok, n_in, n_cols, ldy);
        return;
    }
    gemm_job g = {x, w, y, n_tok, n_in, n_cols, ldy, n_cols, 1, 0, ggml_order == 2};
    qk_pool_run(f->pool, n_tok, 1, gemm_ggml_item, &g);
}

/* y = x W^T for a weight that is not resident, with qk_forward_gemm: each
 * pool item decodes a panel of FUSED_ROWS rows into its thread's pbuf and
 * multiplies it at once, while the panel is still in the core's L2. (Decoding
 * the whole matrix into wbuf first, then multiplying, wrote and re-read it
 * through memory: two threads then waited on memory, 1.59x one thread's
 * speed for Q8_0.) qk_forward_gemm's sums do not depend on the slicing, so
 * the result is bit-identical to the wbuf path's. */
#define FUSED_ROWS 64
typedef struct fused_job {
    qk_forward *f;
    const qk_model_tensor *t;
    const float *x;
    float *y;
    int64_t n_tok, n_in, n_out;
    atomic_int err;
} fused_job;

static void fused_item(void *ctx, int64_t i, int thread)
{
    fused_job *j = ctx;
    const int64_t r0 = i * FUSED_ROWS;
    const int64_t nr = j->n_out - r0 < FUSED_ROWS ? j->n_out - r0 : FUSED_ROWS;
    float *p = j->f->pbuf + (int64_t)thread * j->f->pbuf_per_thread;
    int rc = qk_model_rows_f32(j->f->m, j->t, r0, nr, p);
    if (rc) {
        atomic_store(&j->err, rc);
        return;
    }
    qk_forward_gemm(j->y + r0, j->n_out, j->x, j->n_in, p, j->n_in, j->n_tok, nr, j->n_in);
}

static int fused_linear(qk_forward *f, const qk_model_tensor *t, const float *x, int64_t n_tok, int64_t n_in,
                        int64_t n_out, float *y)
{
    fused_job j = {.f = f, .t = t, .x = x, .y = y, .n_tok = n_tok, .n_in = n_in, .n_out = n_out};
    atomic_init(&j.err, 0);
    qk_pool_run(f->pool, (n_out + FUSED_ROWS - 1) / FUSED_ROWS, 1, fused_item, &j);
    int rc = atomic_load(&j.err);
    if (rc) /* the worker's message is thread-local: say it again here */
        return qk_error(rc, "tensor '%s': cannot decode type %s", t->name, qk_type_name(t->type));
    return 0;
}

/* y [T][n_out] = x [T][n_in] W^T, W = weight wi [n_out][n_in]; hooks before
 * and after. */
static int linear(qk_forward *f, int layer, int kind, int64_t wi, const float *x, int64_t n_tok, float *y)
{
    fw_weight *w = &f->w[wi];
    const int64_t n_in = w->ne0, n_out = w->rows;
    qk_linear_event ev = {.layer = layer, .kind = kind, .weight = w->t, .x = x, .n_tokens = n_tok,
                          .n_in = n_in, .y = NULL, .n_out = n_out};
    int rc;
    if (f->hook && (rc = f->hook(f->hook_ctx, &ev)))
        return rc;
    int ggml_order = 0;
    if (f->emulate) {
        /* llama.cpp rounds the activations to the weight's dot-product type */
        int t = w->t->gptq ? QK_TYPE_F32 : w->t->type;
        if (t == QK_TYPE_F32 || t == QK_TYPE_F16) /* and sums F32/F16 products in its own order */
            ggml_order = t == QK_TYPE_F16 ? 2 : 1;
        const qk_type_traits *tr = qk_type_get(t);
        void (*round)(float *, int64_t) = NULL;
        if (t == QK_TYPE_F16)
            round = qk_forward_round_f16;
        else if (t == QK_TYPE_BF16)
            round = qk_forward_round_bf16;
        else if (tr && tr->is_quantized)
            round = tr->block_size == 256 ? qk_forward_round_q8_k : qk_forward_round_q8_0;
        if (round && n_in <= f->xr_cols) {
            memcpy(f->xr, x, (size_t)n_tok * (size_t)n_in * sizeof(float));
            for (int64_t t2 = 0; t2 < n_tok; t2++)
                round(f->xr + t2 * n_in, n_in);
            x = f->xr;
        }
    }
    const float *W;
    if ((rc = weight_resident(f, wi, &W)))
        return rc;
    if (W) {
        matmul(f, ggml_order, x, W, y, n_tok, n_in, n_out, n_out);
    } else if (!ggml_order && f->pbuf && n_tok >= GEMM_FAST_MIN_TOK && n_in <= f->pbuf_per_thread / FUSED_ROWS) {
        if ((rc = fused_linear(f, w->t, x, n_tok, n_in, n_out, y)))
            return rc;
    } else {
        int64_t slice = f->wbuf_elems / n_in; /* rows per slice; >= 1 by construction of wbuf */
        for (int64_t r0 = 0; r0 < n_out; r0 += slice) {
            int64_t nr = n_out - r0 < slice ? n_out - r0 : slice;
            if ((rc = decode_rows(f, w->t, r0, nr, f->wbuf)))
                return rc;
            matmul(f, ggml_order, x, f->wbuf, y + r0, n_tok, n_in, nr, n_out);
        }
    }
    ev.y = y;
    if (f->hook && (rc = f->hook(f->hook_ctx, &ev)))
        return rc;
    return 0;
}

/* f->scored: the rows of positions [first_logit, n_ctx) of every sequence,
 * *n_sc of them; f->logits sized for them. */
static int scored_rows(qk_forward *f, int64_t n_seq, int64_t n_ctx, int64_t first_logit, int64_t *n_sc)
{
    const int64_t V = f->c.n_vocab;
    int64_t n = 0;
    for (int64_t s = 0; s < n_seq; s++)
        for (int64_t p = first_logit; p < n_ctx; p++)
            f->scored[n++] = s * n_ctx + p;
    *n_sc = n;
    if (n * V > f->logits_cap) {
        free(f->logits);
        f->logits_cap = 0;
        if (!(f->logits = malloc((size_t)n * (size_t)V * sizeof(float))))
            return qk_error(QK_ENOMEM, "out of memory for %lld x %lld logits", (long long)n, (long long)V);
        f->logits_cap = n * V;
    }
    return 0;
}

/* ------------------------------------------------------ per-token steps */

/* The pool for a step of about `work` float operations, or NULL (run on the
 * calling thread) when waking the workers would cost more than it saves. */
static qk_pool *pool_for(const qk_forward *f, double work)
{
    return work >= PAR_STEP_MIN ? f->pool : NULL;
}

typedef struct row_job {
    qk_forward *f;
    const int32_t *tokens;
    const float *norm_w;  /* [n_embd] */
    const int64_t *rows;  /* gather: source row of each output row, or NULL */
    int64_t n_ctx;
    atomic_int err;
} row_job;

/* x[t] = token_embd[tokens[t]] */
static void embed_item(void *ctx, int64_t t, int thread)
{
    (void)thread;
    row_job *j = ctx;
    qk_forward *f = j->f;
    const fw_weight *w = &f->w[f->tok_embd];
    const int64_t D = f->c.n_embd;
    const int64_t id = j->tokens[t];
    float *dst = f->x + t * D;
    const float *src = w->ovr ? w->ovr : w->direct ? w->direct : w->cache;
    if (src) {
        memcpy(dst, src + id * D, (size_t)D * sizeof(float));
        return;
    }
    int rc = qk_model_row_f32(f->m, w->t, id, dst);
    if (rc)
        atomic_store(&j->err, rc);
}

/* xn[t] = rmsnorm(x[rows ? rows[t] : t]) * w */
static void norm_item(void *ctx, int64_t t, int thread)
{
    (void)thread;
    row_job *j = ctx;
    qk_forward *f = j->f;
    const int64_t D = f->c.n_embd;
    int64_t src = j->rows ? j->rows[t] : t;
    qk_forward_rmsnorm_row(f->xn + t * D, f->x + src * D, j->norm_w, D, f->c.norm_eps);
}

/* x[t] += tmp[t]; xn[t] = rmsnorm(x[t]) * w (w NULL: add only) */
static void residual_norm_item(void *ctx, int64_t t, int thread)
{
    (void)thread;
    row_job *j = ctx;
    qk_forward *f = j->f;
    const int64_t D = f->c.n_embd;
    float *x = f->x + t * D;
    const float *d = f->tmp + t * D;
    for (int64_t i = 0; i < D; i++)
        x[i] += d[i];
    if (j->norm_w)
        qk_forward_rmsnorm_row(f->xn + t * D, x, j->norm_w, D, f->c.norm_eps);
}

static void rope_item(void *ctx, int64_t t, int thread)
{
    (void)thread;
    row_job *j = ctx;
    qk_forward *f = j->f;
    const int64_t hd = f->c.head_dim;
    const float *cs = f->rope + (t % j->n_ctx) * hd;
    qk_forward_rope_row(f->q + t * f->c.n_head * hd, f->c.n_head, hd, cs);
    qk_forward_rope_row(f->k + t * f->c.n_head_kv * hd, f->c.n_head_kv, hd, cs);
    if (f->emulate) { /* llama.cpp's F16 KV cache; q meets k in an F16 dot product */
        qk_forward_round_f16(f->q + t * f->c.n_head * hd, f->c.n_head * hd);
        qk_forward_round_f16(f->k + t * f->c.n_head_kv * hd, f->c.n_head_kv * hd);
        qk_forward_round_f16(f->v + t * f->c.n_head_kv * hd, f->c.n_head_kv * hd);
    }
}

static void swiglu_item(void *ctx, int64_t t, int thread)
{
    (void)thread;
    row_job *j = ctx;
    qk_forward *f = j->f;
    const int64_t F = f->c.n_ff;
    (f->emulate ? qk_forward_swiglu_row_ggml : qk_forward_swiglu_row)(f->gate + t * F, f->up + t * F, F);
}

/* item = (sequence * n_head + head) * n_blocks + block of ATTN_BLOCK queries */
static void attn_item(void *ctx, int64_t i, int thread)
{
    row_job *j = ctx;
    qk_forward *f = j->f;
    const qk_model_config *c = &f->c;
    const int64_t hd = c->head_dim, n_ctx = j->n_ctx;
    const int64_t n_blocks = (n_ctx + ATTN_BLOCK - 1) / ATTN_BLOCK;
    const int64_t b = i % n_blocks, sh = i / n_blocks;
    const int64_t s = sh / c->n_head, h = sh % c->n_head;
    const int64_t kvh = h / (c->n_head / c->n_head_kv); /* GQA: consecutive heads share a KV head */
    const int64_t qs = c->n_head * hd, kvs = c->n_head_kv * hd;
    const int64_t row0 = s * n_ctx, i0 = b * ATTN_BLOCK;
    const int64_t nb = n_ctx - i0 < ATTN_BLOCK ? n_ctx - i0 : ATTN_BLOCK;
    if (f->emulate) {
        qk_forward_attn_block_ggml(f->att + row0 * qs + h * hd, qs, f->q + row0 * qs + h * hd, qs,
                                   f->k + row0 * kvs + kvh * hd, f->v + row0 * kvs + kvh * hd, kvs, i0, nb, hd,
                                   c->sliding_window, 1.0f / sqrtf((float)hd), f->scratch + thread * f->scratch_per_thread);
        return;
    }
    qk_forward_attn_block(f->att + row0 * qs + h * hd, qs, f->q + row0 * qs + h * hd, qs,
                          f->k + row0 * kvs + kvh * hd, f->v + row0 * kvs + kvh * hd, kvs, i0, nb, hd,
                          c->sliding_window, 1.0f / sqrtf((float)hd), f->scratch + thread * f->scratch_per_thread, f->emulate);
}

/* ------------------------------------------------------------ lifecycle */

static int find_weight(qk_forward *f, const char *name, int64_t *out)
{
    for (int64_t i = 0; i < f->n_w; i++)
        if (!strcmp(f->w[i].t->name, name)) {
            *out = i;
            return 0;
        }
    return qk_error(QK_ENOTFOUND, "%s: no tensor '%s'", qk_model_path(f->m), name);
}

/* Index of "blk.<l>.<suffix>", checking its shape is {ne0, ne1}. */
static int layer_weight(qk_forward *f, int64_t l, const char *suffix, int64_t ne0, int64_t ne1, int64_t *out)
{
    char name[QK_MODEL_MAX_NAME];
    snprintf(name, sizeof name, "blk.%lld.%s", (long long)l, suffix);
    int rc = find_weight(f, name, out);
    if (rc)
        return rc;
    const fw_weight *w = &f->w[*out];
    if (w->ne0 != ne0 || w->rows != ne1)
        return qk_error(QK_EFORMAT, "%s: tensor '%s' has shape [%lld, %lld], expected [%lld, %lld]",
                        qk_model_path(f->m), name, (long long)w->ne0, (long long)w->rows, (long long)ne0,
                        (long long)ne1);
    return 0;
}

/* a * b floats (overflow-checked); on failure sets *rc. Does nothing once *rc is set. */
static float *alloc_floats(int64_t a, int64_t b, int *rc)
{
    int64_t n;
    if (*rc)
        return NULL;
    if (qk_mul_i64(a, b, &n) || n > INT64_MAX / (int64_t)sizeof(float)) {
        *rc = qk_error(QK_ELIMIT, "forward pass buffer of %lld x %lld floats is too large", (long long)a,
                       (long long)b);
        return NULL;
    }
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p)
        *rc = qk_error(QK_ENOMEM, "out of memory allocating %lld floats for the forward pass", (long long)n);
    return p;
}

int qk_forward_new(qk_forward **out, const qk_model *m, const qk_forward_opts *o)
{
    *out = NULL;
    qk_forward_opts opts = {0};
    if (o)
        opts = *o;
    const qk_model_config *c = qk_model_cfg(m);
    if (opts.max_tokens <= 0)
        opts.max_tokens = c->n_ctx > 0 ? c->n_ctx : 2048;
    if (opts.max_tokens > MAX_TOKENS)
        return qk_error(QK_ELIMIT, "max_tokens %lld is beyond the limit %lld", (long long)opts.max_tokens,
                        (long long)MAX_TOKENS);
    qk_forward *f = calloc(1, sizeof *f);
    if (!f)
        return qk_error(QK_ENOMEM, "out of memory");
    f->m = m;
    f->c = *c;
    f->max_tokens = opts.max_tokens;
    f->n_threads = opts.n_threads > 0 ? opts.n_threads : qk_cpu_count();
    int rc = qk_pool_create(&f->pool, f->n_threads);
    if (rc)
        goto done;

    /* weights: every model tensor, decodable, with the expected shapes */
    f->n_w = qk_model_n_tensors(m);
    f->w = calloc((size_t)f->n_w, sizeof *f->w);
    f->layers = calloc((size_t)c->n_layer, sizeof *f->layers);
    if (!f->w || !f->layers) {
        rc = qk_error(QK_ENOMEM, "out of memory");
        goto done;
    }
    int64_t total_bytes = 0;
    for (int64_t i = 0; i < f->n_w; i++) {
        fw_weight *w = &f->w[i];
        w->t = qk_model_tensor_at(m, i);
        w->ne0 = w->t->ne[0];
        w->rows = qk_model_tensor_rows(w->t);
        if (!qk_model_tensor_decodable(w->t)) {
            rc = qk_error(QK_EUNSUPPORTED, "%s: tensor '%s' is %s, which quantkit cannot decode yet",
                          qk_model_path(m), w->t->name, qk_type_name(w->t->type));
            goto done;
        }
        const qk_model_tensor *t = w->t;
        if (t->type == QK_TYPE_F32 && !t->gptq && t->src_ne0 == w->ne0 && t->src_rows == w->rows && t->perm_heads <= 0 &&
            !t->col_scale && !t->row_scale && (uintptr_t)t->data % sizeof(float) == 0)
            w->direct = (const float *)(const void *)t->data;
        else
            total_bytes += w->ne0 * w->rows * (int64_t)sizeof(float);
    }
    const int64_t D = c->n_embd, hd = c->head_dim, F = c->n_ff, V = c->n_vocab;
    int64_t QD = 0, KVD = 0;
    /* BLAS takes dimensions as int */
    if (qk_mul_i64(c->n_head, hd, &QD) || qk_mul_i64(c->n_head_kv, hd, &KVD) || D > INT32_MAX / 2 ||
        QD > INT32_MAX / 2 || F > INT32_MAX / 2 || V > INT32_MAX / 2) {
        rc = qk_error(QK_ELIMIT, "%s: model dimensions are beyond the forward pass's limits", qk_model_path(m));
        goto done;
    }
    if ((rc = find_weight(f, "token_embd.weight", &f->tok_embd)) ||
        (rc = find_weight(f, "output_norm.weight", &f->out_norm)))
        goto done;
    if (f->w[f->tok_embd].ne0 != D || f->w[f->tok_embd].rows != V || f->w[f->out_norm].ne0 != D) {
        rc = qk_error(QK_EFORMAT, "%s: token_embd/output_norm shapes do not match n_embd %lld, n_vocab %lld",
                      qk_model_path(m), (long long)D, (long long)V);
        goto done;
    }
    f->output = f->tok_embd;
    if (qk_model_find(m, "output.weight") && (rc = find_weight(f, "output.weight", &f->output)))
        goto done;
    if (f->w[f->output].ne0 != D || f->w[f->output].rows != V) {
        rc = qk_error(QK_EFORMAT, "%s: output.weight is not [%lld, %lld]", qk_model_path(m), (long long)D,
                      (long long)V);
        goto done;
    }
    int64_t layer_max = 0;
    for (int64_t l = 0; l < c->n_layer; l++) {
        fw_layer *L = &f->layers[l];
        if ((rc = layer_weight(f, l, "attn_norm.weight", D, 1, &L->attn_norm)) ||
            (rc = layer_weight(f, l, "attn_q.weight", D, QD, &L->wq)) ||
            (rc = layer_weight(f, l, "attn_k.weight", D, KVD, &L->wk)) ||
            (rc = layer_weight(f, l, "attn_v.weight", D, KVD, &L->wv)) ||
            (rc = layer_weight(f, l, "attn_output.weight", QD, D, &L->wo)) ||
            (rc = layer_weight(f, l, "ffn_norm.weight", D, 1, &L->ffn_norm)) ||
            (rc = layer_weight(f, l, "ffn_gate.weight", D, F, &L->wg)) ||
            (rc = layer_weight(f, l, "ffn_up.weight", D, F, &L->wu)) ||
            (rc = layer_weight(f, l, "ffn_down.weight", F, D, &L->wd)))
            goto done;
        const int64_t mats[] = {L->wq, L->wk, L->wv, L->wo, L->wg, L->wu, L->wd};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
            int64_t e = f->w[mats[i]].ne0 * f->w[mats[i]].rows;
            layer_max = e > layer_max ? e : layer_max;
        }
    }

    /* norms are small: always decoded once */
    for (int64_t i = 0; i < f->n_w && !rc; i++) {
        fw_weight *w = &f->w[i];
        if (w->t->n_dims != 1 || w->direct)
            continue;
        w->cache = alloc_floats(w->ne0, w->rows, &rc);
        if (!rc)
            rc = decode_rows(f, w->t, 0, w->rows, w->cache);
    }
    if (rc)
        goto done;
    int64_t budget = opts.cache_bytes == 0 ? DEFAULT_CACHE_BYTES : opts.cache_bytes;
    f->cache_all = budget > 0 && total_bytes <= budget;
    if (!f->cache_all) {
        /* the largest layer matrix, and at least one row of the output */
        f->wbuf_elems = layer_max > D ? layer_max : D;
        f->wbuf = alloc_floats(f->wbuf_elems, 1, &rc);
    }

    /* activations */
    const int64_t T = f->max_tokens;
    f->x = alloc_floats(T, D, &rc);
    f->xn = alloc_floats(T, D, &rc);
    f->tmp = alloc_floats(T, D, &rc);
    f->q = alloc_floats(T, QD, &rc);
    f->att = alloc_floats(T, QD, &rc);
    f->k = alloc_floats(T, KVD, &rc);
    f->v = alloc_floats(T, KVD, &rc);
    f->gate = alloc_floats(T, F, &rc);
    f->up = alloc_floats(T, F, &rc);
    f->emulate = opts.emulate_llamacpp;
    f->fast_gemm = qk_forward_gemm_available();
    if (!f->cache_all && f->fast_gemm) {
        int64_t max_in = D > F ? D : F;
        max_in = QD > max_in ? QD : max_in;
        f->pbuf_per_thread = FUSED_ROWS * max_in;
        f->pbuf = alloc_floats(f->pbuf_per_thread, qk_pool_size(f->pool), &rc);
    }
    if (f->emulate) {
        f->xr_cols = D > F ? D : F;
        if (QD > f->xr_cols)
            f->xr_cols = QD;
        f->xr = alloc_floats(T, f->xr_cols, &rc);
    }
    f->scratch_per_thread = ATTN_BLOCK * T;
    f->scratch = alloc_floats(f->scratch_per_thread, qk_pool_size(f->pool), &rc);
    if (!rc && !(f->scored = malloc((size_t)T * sizeof *f->scored)))
        rc = qk_error(QK_ENOMEM, "out of memory");
done:
    if (rc) {
        qk_forward_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

void qk_forward_free(qk_forward *f)
{
    if (!f)
        return;
    for (int64_t i = 0; f->w && i < f->n_w; i++) {
        free(f->w[i].ovr);
        free(f->w[i].cache);
    }
    free(f->w);
    free(f->layers);
    free(f->wbuf);
    free(f->pbuf);
    free(f->rope);
    free(f->x);
    free(f->xn);
    free(f->q);
    free(f->k);
    free(f->v);
    free(f->att);
    free(f->tmp);
    free(f->gate);
    free(f->up);
    free(f->scratch);
    free(f->xr);
    free(f->logits);
    free(f->scored);
    qk_pool_free(f->pool);
    free(f);
}

void qk_forward_set_hook(qk_forward *f, qk_linear_hook fn, void *ctx)
{
    f->hook = fn;
    f->hook_ctx = ctx;
}

int qk_forward_override_weight(qk_forward *f, const char *name, const float *w)
{
    int64_t i;
    int rc = find_weight(f, name, &i);
    if (rc)
        return rc;
    fw_weight *fw = &f->w[i];
    if (!w) {
        free(fw->ovr);
        fw->ovr = NULL;
        return 0;
    }
    size_t n = (size_t)fw->rows * (size_t)fw->ne0;
    if (!fw->ovr && !(fw->ovr = malloc(n * sizeof(float))))
        return qk_error(QK_ENOMEM, "out of memory overriding '%s'", name);
    memcpy(fw->ovr, w, n * sizeof(float));
    return 0;
}

/* A norm weight's floats (override, mapped F32, or the copy decoded at creation). */
static const float *norm_weight(const qk_forward *f, int64_t wi)
{
    const fw_weight *w = &f->w[wi];
    return w->ovr ? w->ovr : w->direct ? w->direct : w->cache;
}

/* ------------------------------------------------------------------- run */

int qk_forward_run(qk_forward *f, const int32_t *tokens, int64_t n_seq, int64_t n_ctx, int64_t first_logit,
                   qk_logits_fn on_logits, void *ctx)
{
    const qk_model_config *c = &f->c;
    if (n_seq <= 0 || n_ctx <= 0 || n_seq > f->max_tokens / n_ctx)
        return qk_error(QK_EINVAL, "%lld sequences of %lld tokens: need at least one token and at most %lld in all",
                        (long long)n_seq, (long long)n_ctx, (long long)f->max_tokens);
    if (first_logit < 0 || first_logit > n_ctx)
        return qk_error(QK_EINVAL, "first_logit %lld is outside [0, %lld]", (long long)first_logit,
                        (long long)n_ctx);
    if (first_logit < n_ctx && !on_logits)
        return qk_error(QK_EINVAL, "logits were asked for (first_logit %lld < n_ctx %lld) without a callback",
                        (long long)first_logit, (long long)n_ctx);
    const int64_t T = n_seq * n_ctx, hd = c->head_dim, V = c->n_vocab;
    for (int64_t t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= V)
            return qk_error(QK_EINVAL, "token id %d at index %lld is outside the vocabulary [0, %lld)",
                            (int)tokens[t], (long long)t, (long long)V);
    if (n_ctx > f->rope_n) {
        float *r = malloc((size_t)n_ctx * (size_t)hd * sizeof(float));
        if (!r)
            return qk_error(QK_ENOMEM, "out of memory");
        if (f->emulate)
            qk_forward_rope_table_ggml(r, n_ctx, hd, c->rope_base);
        else
            qk_forward_rope_table(r, n_ctx, hd, (double)c->rope_base);
        free(f->rope);
        f->rope = r;
        f->rope_n = n_ctx;
    }
    openblas_set_num_threads(1); /* the pool splits every sgemm (see gemm) */

    int rc = 0;
    row_job j = {.f = f, .tokens = tokens, .n_ctx = n_ctx};
    atomic_init(&j.err, 0);
    const fw_weight *emb = &f->w[f->tok_embd];
    const float *resident;
    if ((rc = weight_resident(f, f->tok_embd, &resident))) /* fills the cache in cache mode */
        return rc;
    qk_pool_run(pool_for(f, (double)(T * c->n_embd)), T, 0, embed_item, &j);
    if ((rc = atomic_load(&j.err)))
        return qk_error(rc, "tensor '%s': cannot decode type %s", emb->t->name, qk_type_name(emb->t->type));

    const double row_work = (double)T * (double)(c->n_embd > c->n_ff ? c->n_embd : c->n_ff);
    j.norm_w = norm_weight(f, f->layers[0].attn_norm);
    qk_pool_run(pool_for(f, row_work), T, 0, norm_item, &j);
    for (int64_t l = 0; l < c->n_layer; l++) {
        const fw_layer *L = &f->layers[l];
        const int li = (int)l;
        /* attention block; xn = rmsnorm(x) * attn_norm already */
        if ((rc = linear(f, li, QK_LIN_Q, L->wq, f->xn, T, f->q)) ||
            (rc = linear(f, li, QK_LIN_K, L->wk, f->xn, T, f->k)) ||
            (rc = linear(f, li, QK_LIN_V, L->wv, f->xn, T, f->v)))
            return rc;
        qk_pool_run(pool_for(f, row_work), T, 0, rope_item, &j);
        /* (sequence, head, query block) items in parallel */
        const int64_t n_items = n_seq * c->n_head * ((n_ctx + ATTN_BLOCK - 1) / ATTN_BLOCK);
        qk_pool_run(pool_for(f, (double)T * (double)n_ctx * (double)(c->n_head * hd)), n_items, 1, attn_item, &j);
        if ((rc = linear(f, li, QK_LIN_O, L->wo, f->att, T, f->tmp)))
            return rc;
        j.norm_w = norm_weight(f, L->ffn_norm);
        qk_pool_run(pool_for(f, row_work), T, 0, residual_norm_item, &j);
        /* feed-forward block */
        if ((rc = linear(f, li, QK_LIN_GATE, L->wg, f->xn, T, f->gate)) ||
            (rc = linear(f, li, QK_LIN_UP, L->wu, f->xn, T, f->up)))
            return rc;
        qk_pool_run(pool_for(f, row_work), T, 0, swiglu_item, &j);
        if ((rc = linear(f, li, QK_LIN_DOWN, L->wd, f->gate, T, f->tmp)))
            return rc;
        j.norm_w = l + 1 < c->n_layer ? norm_weight(f, f->layers[l + 1].attn_norm) : NULL;
        qk_pool_run(pool_for(f, row_work), T, 0, residual_norm_item, &j);
    }
    if (first_logit == n_ctx)
        return 0;

    /* output: only the scored rows, gathered, normalised into xn */
    int64_t n_sc;
    if ((rc = scored_rows(f, n_seq, n_ctx, first_logit, &n_sc)))
        return rc;
    j.rows = f->scored;
    j.norm_w = norm_weight(f, f->out_norm);
    qk_pool_run(pool_for(f, (double)(n_sc * c->n_embd)), n_sc, 0, norm_item, &j);
    if ((rc = linear(f, -1, QK_LIN_OUTPUT, f->output, f->xn, n_sc, f->logits)))
        return rc;
    for (int64_t i = 0; i < n_sc; i++) {
        int64_t r = f->scored[i];
        if ((rc = on_logits(ctx, r / n_ctx, r % n_ctx, f->logits + i * V)))
            return rc;
    }
    return 0;
}

/* ----------------------------------------------------------- layer-major
 *
 * The same steps as qk_forward_run, cut at layer boundaries so a caller can
 * carry the hidden states of many more tokens than one call holds (every
 * calibration window) through the model one layer at a time: embed all
 * windows, then layer 0 over all of them, then layer 1, ... The caller's
 * x is copied into the residual stream, the layer runs exactly as in
 * qk_forward_run (same items, same order: the results are bit-identical)
 * and the stream is copied back. */

/* Tokens per call and the RoPE table for windows of n_ctx. */
static int layer_major_check(qk_forward *f, int64_t n_seq, int64_t n_ctx)
{
    if (n_seq <= 0 || n_ctx <= 0 || n_seq > f->max_tokens / n_ctx)
        return qk_error(QK_EINVAL, "%lld sequences of %lld tokens: need at least one token and at most %lld in all",
                        (long long)n_seq, (long long)n_ctx, (long long)f->max_tokens);
    if (n_ctx > f->rope_n) {
        const int64_t hd = f->c.head_dim;
        float *r = malloc((size_t)n_ctx * (size_t)hd * sizeof(float));
        if (!r)
            return qk_error(QK_ENOMEM, "out of memory");
        if (f->emulate)
            qk_forward_rope_table_ggml(r, n_ctx, hd, f->c.rope_base);
        else
            qk_forward_rope_table(r, n_ctx, hd, (double)f->c.rope_base);
        free(f->rope);
        f->rope = r;
        f->rope_n = n_ctx;
    }
    openblas_set_num_threads(1); /* the pool splits every sgemm (see gemm) */
    return 0;
}

int qk_forward_embed(qk_forward *f, const int32_t *tokens, int64_t n_tokens, float *x)
{
    const int64_t D = f->c.n_embd, V = f->c.n_vocab;
    for (int64_t t = 0; t < n_tokens; t++)
        if (tokens[t] < 0 || tokens[t] >= V)
            return qk_error(QK_EINVAL, "token id %d at index %lld is outside the vocabulary [0, %lld)",
                            (int)tokens[t], (long long)t, (long long)V);
    const fw_weight *emb = &f->w[f->tok_embd];
    const float *resident;
    int rc = weight_resident(f, f->tok_embd, &resident);
    if (rc)
        return rc;
    for (int64_t t0 = 0; t0 < n_tokens; t0 += f->max_tokens) {
        const int64_t T = n_tokens - t0 < f->max_tokens ? n_tokens - t0 : f->max_tokens;
        row_job j = {.f = f, .tokens = tokens + t0, .n_ctx = T};
        atomic_init(&j.err, 0);
        qk_pool_run(pool_for(f, (double)(T * D)), T, 0, embed_item, &j);
        if ((rc = atomic_load(&j.err)))
            return qk_error(rc, "tensor '%s': cannot decode type %s", emb->t->name, qk_type_name(emb->t->type));
        memcpy(x + t0 * D, f->x, (size_t)(T * D) * sizeof(float));
    }
    return 0;
}

int qk_forward_layer(qk_forward *f, int64_t layer, int parts, float *x, int64_t n_seq, int64_t n_ctx)
{
    const qk_model_config *c = &f->c;
    if (layer < 0 || layer >= c->n_layer || !(parts & QK_FORWARD_BLOCK) || (parts & ~QK_FORWARD_BLOCK))
        return qk_error(QK_EINVAL, "layer %lld (parts %d) of a %lld-layer model", (long long)layer, parts,
                        (long long)c->n_layer);
    int rc = layer_major_check(f, n_seq, n_ctx);
    if (rc)
        return rc;
    const int64_t T = n_seq * n_ctx, D = c->n_embd, hd = c->head_dim;
    const fw_layer *L = &f->layers[layer];
    const int li = (int)layer;
    const double row_work = (double)T * (double)(c->n_embd > c->n_ff ? c->n_embd : c->n_ff);
    row_job j = {.f = f, .n_ctx = n_ctx};
    atomic_init(&j.err, 0);
    memcpy(f->x, x, (size_t)(T * D) * sizeof(float));
    if (parts & QK_FORWARD_ATTN) {
        j.norm_w = norm_weight(f, L->attn_norm);
        qk_pool_run(pool_for(f, row_work), T, 0, norm_item, &j);
        if ((rc = linear(f, li, QK_LIN_Q, L->wq, f->xn, T, f->q)) ||
            (rc = linear(f, li, QK_LIN_K, L->wk, f->xn, T, f->k)) ||
            (rc = linear(f, li, QK_LIN_V, L->wv, f->xn, T, f->v)))
            return rc;
        qk_pool_run(pool_for(f, row_work), T, 0, rope_item, &j);
        const int64_t n_items = n_seq * c->n_head * ((n_ctx + ATTN_BLOCK - 1) / ATTN_BLOCK);
        qk_pool_run(pool_for(f, (double)T * (double)n_ctx * (double)(c->n_head * hd)), n_items, 1, attn_item, &j);
        if ((rc = linear(f, li, QK_LIN_O, L->wo, f->att, T, f->tmp)))
            return rc;
        j.norm_w = parts & QK_FORWARD_FFN ? norm_weight(f, L->ffn_norm) : NULL;
        qk_pool_run(pool_for(f, row_work), T, 0, residual_norm_item, &j);
    } else {
        j.norm_w = norm_weight(f, L->ffn_norm);
        qk_pool_run(pool_for(f, row_work), T, 0, norm_item, &j);
    }
    if (parts & QK_FORWARD_FFN) {
        if ((rc = linear(f, li, QK_LIN_GATE, L->wg, f->xn, T, f->gate)) ||
            (rc = linear(f, li, QK_LIN_UP, L->wu, f->xn, T, f->up)))
            return rc;
        qk_pool_run(pool_for(f, row_work), T, 0, swiglu_item, &j);
        if ((rc = linear(f, li, QK_LIN_DOWN, L->wd, f->gate, T, f->tmp)))
            return rc;
        j.norm_w = NULL;
        qk_pool_run(pool_for(f, row_work), T, 0, residual_norm_item, &j);
    }
    memcpy(x, f->x, (size_t)(T * D) * sizeof(float));
    return 0;
}

int qk_forward_layer_tail(qk_forward *f, int64_t layer, int kind, const float *in, float *x, int64_t n_seq,
                          int64_t n_ctx)
{
    const qk_model_config *c = &f->c;
    if (layer < 0 || layer >= c->n_layer || (kind != QK_LIN_O && kind != QK_LIN_DOWN))
        return qk_error(QK_EINVAL, "layer %lld (kind %d) of a %lld-layer model: only attn_output and ffn_down end "
                        "a part", (long long)layer, kind, (long long)c->n_layer);
    int rc = layer_major_check(f, n_seq, n_ctx);
    if (rc)
        return rc;
    const int64_t T = n_seq * n_ctx, D = c->n_embd;
    const fw_layer *L = &f->layers[layer];
    row_job j = {.f = f, .n_ctx = n_ctx};
    atomic_init(&j.err, 0);
    memcpy(f->x, x, (size_t)(T * D) * sizeof(float));
    if ((rc = linear(f, (int)layer, kind, kind == QK_LIN_O ? L->wo : L->wd, in, T, f->tmp)))
        return rc;
    qk_pool_run(pool_for(f, (double)T * (double)(c->n_embd > c->n_ff ? c->n_embd : c->n_ff)), T, 0,
                residual_norm_item, &j);
    memcpy(x, f->x, (size_t)(T * D) * sizeof(float));
    return 0;
}

int qk_forward_final(qk_forward *f, const float *x, int64_t n_seq, int64_t n_ctx, int64_t first_logit,
                     qk_logits_fn on_logits, void *ctx)
{
    const qk_model_config *c = &f->c;
    if (first_logit < 0 || first_logit >= n_ctx || !on_logits)
        return qk_error(QK_EINVAL, "first_logit %lld is outside [0, %lld), or no callback", (long long)first_logit,
                        (long long)n_ctx);
    int rc = layer_major_check(f, n_seq, n_ctx);
    if (rc)
        return rc;
    const int64_t T = n_seq * n_ctx, V = c->n_vocab;
    memcpy(f->x, x, (size_t)(T * c->n_embd) * sizeof(float));
    int64_t n_sc;
    if ((rc = scored_rows(f, n_seq, n_ctx, first_logit, &n_sc)))
        return rc;
    row_job j = {.f = f, .n_ctx = n_ctx, .rows = f->scored, .norm_w = norm_weight(f, f->out_norm)};
    atomic_init(&j.err, 0);
    qk_pool_run(pool_for(f, (double)(n_sc * c->n_embd)), n_sc, 0, norm_item, &j);
    if ((rc = linear(f, -1, QK_LIN_OUTPUT, f->output, f->xn, n_sc, f->logits)))
        return rc;
    for (int64_t i = 0; i < n_sc; i++) {
        int64_t r = f->scored[i];
        if ((rc = on_logits(ctx, r / n_ctx, r % n_ctx, f->logits + i * V)))
            return rc;
    }
    return 0;
}

int64_t qk_forward_max_tokens(const qk_forward *f) { return f->max_tokens; }
