/* Size allocation: a type per tensor that minimises an estimated loss within
 * a byte budget (see quantkit/quantize.h for the model; qk-quantize
 * --target-size / --target-bpw).
 *
 * Three steps, each reading the input at most once more:
 *   1. estimate: per tensor, a sample of rows encoded with every candidate;
 *   2. measure (optional, small models): the forward pass with one tensor
 *      replaced by its decoded candidate, against the full-precision one;
 *   3. solve: dynamic programming over the budget.
 * Memory: the sample (sample_rows rows), and when measuring one whole
 * tensor in floats plus the base model's log-probabilities of the scored
 * positions. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quantkit/calib.h"
#include "quantkit/eval.h"
#include "quantkit/forward.h"
#include "quantkit/metrics.h"
#include "quantkit/quantize.h"

#define MAX_CELLS (1u << 26)          /* DP choice table: tensors x budget units (bytes) */
#define MAX_UNITS (1u << 22)          /* DP budget units (two rows of doubles: 64 MiB) */
#define MAX_TEXT_BYTES (256u << 20)
#define MAX_BASE_FLOATS (128u << 20)  /* measure: base log-probs kept (512 MiB) */
#define TOKENS_PER_CALL 4096
#define DEFAULT_CHUNKS 16
#define SAMPLE_ELEMS (1 << 18)        /* default sample: at most this many elements ... */
#define SAMPLE_MIN_ROWS 16            /* ... but at least this many rows */

/* Every type the allocator may pick, by increasing bits per weight (ties:
 * the 256-blocks first). F32 and BF16 only when asked for. */
static const int k_order[] = {
    QK_TYPE_Q2_K, QK_TYPE_Q3_K, QK_TYPE_IQ4_XS, QK_TYPE_Q4_K, QK_TYPE_Q4_0, QK_TYPE_IQ4_NL, QK_TYPE_Q4_1,
    QK_TYPE_Q5_K, QK_TYPE_Q5_0, QK_TYPE_Q5_1, QK_TYPE_Q6_K, QK_TYPE_Q8_0, QK_TYPE_F16, QK_TYPE_BF16, QK_TYPE_F32,
};

int qk_alloc_candidates(int64_t ne0, const int *allowed, int n_allowed, int *types)
{
    int n = 0;
    for (size_t i = 0; i < sizeof k_order / sizeof k_order[0] && n < QK_ALLOC_MAX_CAND; i++) {
        int t = k_order[i];
        const qk_type_traits *tr = qk_type_get(t);
        if (!tr || !(tr->from_float || tr->from_float_ref) || ne0 <= 0 || ne0 % tr->block_size)
            continue;
        int ok = !allowed && t != QK_TYPE_F32 && t != QK_TYPE_BF16;
        for (int k = 0; allowed && k < n_allowed && !ok; k++)
            ok = allowed[k] == t;
        if (ok)
            types[n++] = t;
    }
    return n;
}

/* Kind factors of the default loss: loss = factor x relative error, where
 * relative error = sum imp_j (w - q)^2 / sum imp_j w^2. Measured on
 * stories260K-pad256 (--alloc-measure=all with the tinystories calibration
 * text, ctx 128, 16 windows; 11 block types per tensor, 444 passes): the
 * KLD with one tensor quantized is proportional to its weighted error
 * (log-log slope 0.92-1.05 for every tensor), and KLD / relative error,
 * geometric mean over layers and types, is per kind:
 *   output 3.44, attn_k 0.52, ffn_up 0.48, ffn_gate 0.44, ffn_down 0.42,
 *   token_embd 0.29, attn_v 0.16, attn_q 0.11, attn_output 0.071
 * (spread between layers: x1.2-1.3 for most kinds, x1.7 for attn_k and
 * attn_v). The output projection's errors reach the logits directly;
 * attn_k's are amplified through the attention scores (METHODS-NOTES), the
 * opposite of attn_q's which this one model also shows. Other kinds: 0.45,
 * an ffn-like middle. One small model: --alloc-measure calibrates each
 * tensor on the model at hand. */
double qk_alloc_kind_factor(const char *name)
{
    static const struct {
        const char *kind;
        double f;
    } k[] = {
        {"output.weight", 3.4}, {"token_embd.weight", 0.29}, {"attn_q.", 0.11}, {"attn_k.", 0.52},
        {"attn_v.", 0.16},      {"attn_output.", 0.071},     {"ffn_gate", 0.44}, {"ffn_up", 0.48},
        {"ffn_down", 0.42},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        const char *p = strstr(name, k[i].kind);
        /* whole names for the two unprefixed tensors, ".kind." inside a block */
        if (p && (i >= 2 ? p > name && p[-1] == '.' : p == name))
            return k[i].f;
    }
    return 0.45;
}

/* ------------------------------------------------------------ estimate */

/* Rows [0, n) of sample row indices into w [n][ne0]; non-finite values
 * refused or zeroed. */
static int read_rows(const qk_model *m, const qk_model_tensor *t, const int64_t *idx, int64_t n, float *w,
                     int allow_nonfinite)
{
    const int64_t ne0 = t->ne[0];
    for (int64_t k = 0; k < n; k++) {
        int rc = qk_model_row_f32(m, t, idx ? idx[k] : k, w + (size_t)k * (size_t)ne0);
        if (rc)
            return rc;
    }
    for (int64_t bad = qk_find_nonfinite(w, n * ne0); bad >= 0;) {
        if (!allow_nonfinite)
            return qk_error(QK_ENONFINITE, "%s: tensor '%s' row %" PRId64 " holds %s (use --allow-nonfinite to zero it)",
                            qk_model_path(m), t->name, idx ? idx[bad / ne0] : bad / ne0,
                            isnan(w[bad]) ? "NaN" : "Inf");
        w[bad] = 0.0f;
        int64_t next = qk_find_nonfinite(w + bad + 1, n * ne0 - bad - 1);
        bad = next < 0 ? -1 : bad + 1 + next;
    }
    return 0;
}

/* Encode rows w [n][ne0] as `type` (importance only for block types, as
 * qk-quantize does) and decode them into d. */
static int roundtrip(int type, const float *w, int64_t n, int64_t ne0, const float *imp, uint8_t *q, float *d,
                     qk_pool *pool)
{
    const qk_type_traits *tr = qk_type_get(type);
    size_t rb;
    int rc = qk_type_row_bytes(type, ne0, &rb);
    if (rc || (rc = qk_quantize_rows(type, w, q, n, ne0, tr->is_quantized ? imp : NULL, pool)))
        return rc;
    for (int64_t r = 0; r < n; r++)
        tr->to_float(q + (size_t)r * rb, d + (size_t)r * (size_t)ne0, ne0);
    return 0;
}

/* sum_r sum_j imp_j (a - b)^2 (imp NULL: 1) in double. */
static double wsq(const float *a, const float *b, int64_t n, int64_t ne0, const float *imp)
{
    double s = 0;
    for (int64_t r = 0; r < n; r++) {
        const float *x = a + (size_t)r * (size_t)ne0, *y = b ? b + (size_t)r * (size_t)ne0 : NULL;
        double sr = 0;
        for (int64_t j = 0; j < ne0; j++) {
            double e = y ? (double)x[j] - (double)y[j] : (double)x[j];
            sr += (imp ? (double)imp[j] : 1.0) * e * e;
        }
        s += sr;
    }
    return s;
}

static int estimate(qk_alloc_tensor *a, const qk_model *m, const qk_model_tensor *t, const float *imp,
                    int64_t max_rows, int allow_nonfinite, qk_pool *pool)
{
    const int64_t ne0 = t->ne[0], rows = qk_model_tensor_rows(t);
    const int64_t n = rows < max_rows ? rows : max_rows;
    if (n <= 0)
        return 0; /* no rows: no error, no energy */
    size_t max_rb = 0;
    for (int k = 0; k < a->n_cand; k++) {
        size_t rb;
        int rc = qk_type_row_bytes(a->cand[k].type, ne0, &rb);
        if (rc)
            return rc;
        max_rb = rb > max_rb ? rb : max_rb;
    }
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    float *w = malloc((size_t)n * (size_t)ne0 * sizeof(float));
    float *d = malloc((size_t)n * (size_t)ne0 * sizeof(float));
    uint8_t *q = malloc((size_t)n * max_rb);
    int rc = idx && w && d && q ? 0 : qk_error(QK_ENOMEM, "out of memory sampling tensor '%s'", t->name);
    /* evenly spaced rows: r_k = floor(k * rows / n) (all rows when n == rows) */
    for (int64_t k = 0; !rc && k < n; k++)
        idx[k] = (int64_t)((__int128)k * rows / n);
    if (!rc)
        rc = read_rows(m, t, idx, n, w, allow_nonfinite);
    const double scale = (double)rows / (double)n;
    if (!rc) {
        a->rows_sampled = n;
        a->energy = scale * wsq(w, NULL, n, ne0, imp);
        a->energy_plain = scale * wsq(w, NULL, n, ne0, NULL);
    }
    for (int k = 0; k < a->n_cand && !rc; k++) {
        if (!(rc = roundtrip(a->cand[k].type, w, n, ne0, imp, q, d, pool))) {
            a->cand[k].err = scale * wsq(w, d, n, ne0, imp);
            a->cand[k].err_plain = scale * wsq(w, d, n, ne0, NULL);
        }
    }
    qk_model_release(t);
    free(idx);
    free(w);
    free(d);
    free(q);
    return rc;
}

/* ------------------------------------------------------------- measure */

typedef struct {
    int64_t n_ctx, first, n_scored, n_vocab;
    int64_t s0;        /* first window of the current call */
    float *base;       /* [n_chunks * n_scored][n_vocab] base log-probs */
    float *lq;         /* [n_vocab] scratch */
    int collect;       /* 1: fill base; 0: accumulate the KLD against it */
    double kld_sum;
} measure_ctx;

static int on_logits(void *ctx, int64_t seq, int64_t pos, const float *logits)
{
    measure_ctx *c = ctx;
    int64_t i = (c->s0 + seq) * c->n_scored + (pos - c->first);
    float *b = c->base + (size_t)i * (size_t)c->n_vocab;
    if (c->collect) {
        qk_log_softmax(logits, c->n_vocab, b);
        return 0;
    }
    qk_log_softmax(logits, c->n_vocab, c->lq);
    c->kld_sum += qk_kld_full(b, c->lq, c->n_vocab);
    return 0;
}

static int run_all(qk_forward *f, const int32_t *win, int64_t n_chunks, measure_ctx *c)
{
    int64_t per = TOKENS_PER_CALL / c->n_ctx;
    per = per < 1 ? 1 : per;
    c->kld_sum = 0;
    for (int64_t s = 0; s < n_chunks; s += per) {
        int64_t ns = n_chunks - s < per ? n_chunks - s : per;
        c->s0 = s;
        int rc = qk_forward_run(f, win + s * c->n_ctx, ns, c->n_ctx, c->first, on_logits, c);
        if (rc)
            return rc;
    }
    return 0;
}

static int load_windows(const qk_model *m, const qk_alloc_params *p, int32_t **win, int64_t *n_chunks)
{
    char *text = NULL;
    size_t n = 0;
    qk_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    const qk_vocab *v = qk_model_vocab(m);
    int rc = qk_read_file(&text, &n, p->calib_text, MAX_TEXT_BYTES);
    if (rc)
        return rc;
    if (!v)
        rc = qk_error(QK_ENOTFOUND, "%s: no tokenizer for the calibration text (give --vocab)", qk_model_path(m));
    else if (!(rc = qk_tokenizer_new(&tok, v)) &&
             !(rc = qk_tokenize_ex(tok, text, n, QK_TOKENIZE_ADD_SPECIAL, &ids, &n_ids)))
        rc = qk_eval_windows(ids, n_ids, p->n_ctx, p->max_chunks > 0 ? p->max_chunks : DEFAULT_CHUNKS, v->bos_id,
                             win, n_chunks);
    if (!rc && *n_chunks < 1)
        rc = qk_error(QK_EINVAL, "the text has fewer than %" PRId64 " tokens (one window)", p->n_ctx);
    if (rc)
        qk_error_prefix(rc, p->calib_text);
    qk_tokenizer_free(tok);
    free(ids);
    free(text);
    return rc;
}

/* The candidate to probe: the one the estimate-based solution chose when
 * it is a block type, else the largest block type (a float type's KLD is
 * noise). -1 when the tensor has no block type. */
static int probe_of(const qk_alloc_tensor *a)
{
    if (a->choice >= 0 && qk_type_get(a->cand[a->choice].type)->is_quantized)
        return a->choice;
    for (int k = a->n_cand - 1; k >= 0; k--)
        if (qk_type_get(a->cand[k].type)->is_quantized)
            return k;
    return -1;
}

static int measure(const qk_model *m, const qk_alloc_params *p, qk_alloc_tensor *at, qk_pool *pool,
                   int64_t *n_passes)
{
    int32_t *win = NULL;
    int64_t n_chunks = 0;
    qk_forward *f = NULL;
    float *w = NULL, *d = NULL;
    uint8_t *q = NULL;
    const float *imp_use = NULL;
    float *imp = NULL;
    measure_ctx c = {0};
    qk_progress *prog = NULL;
    int rc = load_windows(m, p, &win, &n_chunks);
    if (rc)
        goto done;
    c.n_ctx = p->n_ctx;
    c.first = p->n_ctx / 2; /* the perplexity protocol's scored half */
    c.n_scored = p->n_ctx - c.first;
    c.n_vocab = qk_model_cfg(m)->n_vocab;
    if ((uint64_t)n_chunks * (uint64_t)c.n_scored * (uint64_t)c.n_vocab > MAX_BASE_FLOATS) {
        rc = qk_error(QK_ELIMIT, "measuring: %" PRId64 " windows x %" PRId64 " positions x %" PRId64
                      " tokens of base log-probabilities exceed %u floats (use fewer --calib-chunks)",
                      n_chunks, c.n_scored, c.n_vocab, MAX_BASE_FLOATS);
        goto done;
    }
    c.base = malloc((size_t)n_chunks * (size_t)c.n_scored * (size_t)c.n_vocab * sizeof(float));
    c.lq = malloc((size_t)c.n_vocab * sizeof(float));
    int64_t max_elems = 1, max_ne0 = 1;
    size_t max_bytes = 1;
    for (int64_t i = 0; i < qk_model_n_tensors(m); i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        if (at[i].fixed || at[i].n_cand < 2)
            continue;
        int64_t e = qk_model_tensor_nelem(t);
        max_elems = e > max_elems ? e : max_elems;
        max_ne0 = t->ne[0] > max_ne0 ? t->ne[0] : max_ne0;
        for (int k = 0; k < at[i].n_cand; k++)
            max_bytes = at[i].cand[k].bytes > max_bytes ? (size_t)at[i].cand[k].bytes : max_bytes;
    }
    w = malloc((size_t)max_elems * sizeof(float));
    d = malloc((size_t)max_elems * sizeof(float));
    q = malloc(max_bytes);
    imp = malloc((size_t)max_ne0 * sizeof(float));
    if (!c.base || !c.lq || !w || !d || !q || !imp) {
        rc = qk_error(QK_ENOMEM, "out of memory for the KLD measurements");
        goto done;
    }
    int64_t per = TOKENS_PER_CALL / c.n_ctx;
    qk_forward_opts fo = {.n_threads = p->n_threads, .max_tokens = (per < 1 ? 1 : per) * c.n_ctx};
    if ((rc = qk_forward_new(&f, m, &fo)))
        goto done;
    c.collect = 1;
    if ((rc = run_all(f, win, n_chunks, &c)))
        goto done;
    c.collect = 0;
    const double n_pos = (double)n_chunks * (double)c.n_scored;
    int64_t n_probe = 0;
    for (int64_t i = 0; i < qk_model_n_tensors(m); i++)
        for (int k = 0; !at[i].fixed && at[i].n_cand >= 2 && k < at[i].n_cand; k++)
            n_probe += p->measure == QK_ALLOC_MEASURE_ALL ? qk_type_get(at[i].cand[k].type)->is_quantized
                                                          : k == probe_of(&at[i]);
    prog = qk_progress_start("measuring", (uint64_t)n_probe, "passes");
    for (int64_t i = 0; i < qk_model_n_tensors(m) && !rc; i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        qk_alloc_tensor *a = &at[i];
        if (a->fixed || a->n_cand < 2)
            continue;
        const int64_t rows = qk_model_tensor_rows(t), ne0 = t->ne[0];
        const qk_calib_entry *ie = p->imatrix ? qk_calib_find(p->imatrix, t->name) : NULL;
        imp_use = NULL;
        if (ie && ie->n_in == ne0) {
            qk_calib_importance(ie, imp);
            imp_use = imp;
        }
        if ((rc = read_rows(m, t, NULL, rows, w, p->allow_nonfinite)))
            break;
        qk_model_release(t);
        int probe = probe_of(a);
        for (int k = 0; k < a->n_cand && !rc; k++) {
            if (p->measure == QK_ALLOC_MEASURE_ALL ? !qk_type_get(a->cand[k].type)->is_quantized : k != probe)
                continue;
            if ((rc = roundtrip(a->cand[k].type, w, rows, ne0, imp_use, q, d, pool)) ||
                (rc = qk_forward_override_weight(f, t->name, d)) || (rc = run_all(f, win, n_chunks, &c)))
                break;
            a->cand[k].kld = c.kld_sum / n_pos;
            (*n_passes)++;
            qk_progress_add(prog, 1);
        }
        if (!rc)
            rc = qk_forward_override_weight(f, t->name, NULL);
    }
done:
    qk_progress_finish(prog);
    qk_forward_free(f);
    free(win);
    free(c.base);
    free(c.lq);
    free(w);
    free(d);
    free(q);
    free(imp);
    return rc;
}

/* Losses from the measurements: with one probe, gain = KLD / err there;
 * with all block types measured, their KLDs are the losses and the float
 * types keep err x the gain of the largest block type. */
static void apply_measured(qk_alloc_tensor *a, int all)
{
    int ref = -1;
    for (int k = 0; k < a->n_cand; k++)
        if (a->cand[k].kld >= 0 && a->cand[k].err > 0)
            ref = k; /* the largest measured */
    if (ref < 0)
        return;
    a->gain = a->cand[ref].kld / a->cand[ref].err;
    a->measured = 1;
    for (int k = 0; k < a->n_cand; k++)
        a->cand[k].loss = all && a->cand[k].kld >= 0 ? a->cand[k].kld : a->gain * a->cand[k].err;
}

/* --------------------------------------------------------------- solve */

static uint64_t gcd_u64(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

int qk_alloc_solve(qk_alloc_tensor *at, int64_t n, uint64_t budget, uint64_t *min_cost)
{
    int64_t *items = malloc((size_t)(n > 0 ? n : 1) * sizeof *items);
    double *prev = NULL, *cur = NULL;
    uint8_t *ch = NULL;
    if (!items)
        return qk_error(QK_ENOMEM, "out of memory");
    int64_t ni = 0;
    uint64_t need = 0, g = 0;
    for (int64_t i = 0; i < n; i++) {
        at[i].choice = -1;
        if (at[i].fixed || at[i].n_cand < 1)
            continue;
        items[ni++] = i;
        uint64_t mc = UINT64_MAX;
        for (int k = 0; k < at[i].n_cand; k++) {
            mc = at[i].cand[k].cost < mc ? at[i].cand[k].cost : mc;
            g = gcd_u64(g, at[i].cand[k].cost);
        }
        need += mc;
    }
    if (min_cost)
        *min_cost = need;
    int rc = 0;
    if (need > budget) {
        rc = qk_error(QK_EINVAL, "the tensors cannot fit: even the smallest candidate types take %" PRIu64
                      " bytes, %" PRIu64 " more than the %" PRIu64 " left for them",
                      need, need - budget, budget);
        goto done;
    }
    if (ni == 0)
        goto done;
    /* units: the gcd of the costs (exact), coarser when the table would be too big */
    uint64_t unit = g ? g : 1, per = MAX_CELLS / (uint64_t)ni;
    per = per > MAX_UNITS ? MAX_UNITS : per;
    if (budget / unit + 1 > per) {
        uint64_t u = budget / (per > 1 ? per - 1 : 1) + 1;
        unit = (u + unit - 1) / unit * unit;
    }
    const uint64_t B = budget / unit;
    prev = malloc((size_t)(B + 1) * sizeof *prev);
    cur = malloc((size_t)(B + 1) * sizeof *cur);
    ch = malloc((size_t)(ni > 0 ? ni : 1) * (size_t)(B + 1));
    if (!prev || !cur || !ch) {
        rc = qk_error(QK_ENOMEM, "out of memory for the allocation table (%" PRId64 " x %" PRIu64 ")", ni, B + 1);
        goto done;
    }
    for (uint64_t b = 0; b <= B; b++)
        prev[b] = 0;
    for (int64_t s = 0; s < ni; s++) {
        const qk_alloc_tensor *a = &at[items[s]];
        uint8_t *cs = ch + (size_t)s * (size_t)(B + 1);
        uint64_t cu[QK_ALLOC_MAX_CAND];
        for (int k = 0; k < a->n_cand; k++)
            cu[k] = (a->cand[k].cost + unit - 1) / unit;
        for (uint64_t b = 0; b <= B; b++) {
            double best = INFINITY;
            int bk = 0;
            for (int k = 0; k < a->n_cand; k++) {
                uint64_t c = cu[k];
                if (c <= b && prev[b - c] + a->cand[k].loss < best) {
                    best = prev[b - c] + a->cand[k].loss;
                    bk = k;
                }
            }
            cur[b] = best;
            cs[b] = (uint8_t)bk;
        }
        double *t = prev;
        prev = cur;
        cur = t;
    }
    uint64_t used = 0;
    if (isinf(prev[B])) {
        /* costs rounded up to coarse units do not fit although the bytes do:
         * the smallest candidates, then the top-up below */
        for (int64_t s = 0; s < ni; s++) {
            qk_alloc_tensor *a = &at[items[s]];
            int kmin = 0;
            for (int k = 1; k < a->n_cand; k++)
                if (a->cand[k].cost < a->cand[kmin].cost)
                    kmin = k;
            a->choice = kmin;
            used += a->cand[kmin].cost;
        }
    } else {
        uint64_t b = B;
        for (int64_t s = ni - 1; s >= 0; s--) {
            qk_alloc_tensor *a = &at[items[s]];
            int k = ch[(size_t)s * (size_t)(B + 1) + b];
            a->choice = k;
            b -= (a->cand[k].cost + unit - 1) / unit;
            used += a->cand[k].cost;
        }
    }
    /* top-up: what rounding left, spent greedily by loss saved per byte */
    for (;;) {
        double best = 0;
        int64_t bi = -1;
        int bk = -1;
        for (int64_t s = 0; s < ni; s++) {
            const qk_alloc_tensor *a = &at[items[s]];
            const qk_alloc_cand *c0 = &a->cand[a->choice];
            for (int k = 0; k < a->n_cand; k++) {
                const qk_alloc_cand *c = &a->cand[k];
                if (c->loss >= c0->loss || (c->cost > c0->cost && c->cost - c0->cost > budget - used))
                    continue;
                double r = c->cost > c0->cost ? (c0->loss - c->loss) / (double)(c->cost - c0->cost) : INFINITY;
                if (r > best) {
                    best = r;
                    bi = items[s];
                    bk = k;
                }
            }
        }
        if (bi < 0)
            break;
        used = used - at[bi].cand[at[bi].choice].cost + at[bi].cand[bk].cost;
        at[bi].choice = bk;
    }
done:
    free(items);
    free(prev);
    free(cur);
    free(ch);
    return rc;
}

/* ---------------------------------------------------------------- plan */

static double total_loss(const qk_alloc_tensor *at, int64_t n, uint64_t *cost)
{
    double l = 0;
    *cost = 0;
    for (int64_t i = 0; i < n; i++)
        if (at[i].choice >= 0) {
            l += at[i].cand[at[i].choice].loss;
            *cost += at[i].cand[at[i].choice].cost;
        }
    return l;
}

int qk_alloc_plan(const qk_model *m, const qk_alloc_params *p, qk_plan_entry *plan, qk_alloc_tensor *at,
                  qk_alloc_result *res, qk_pool *pool)
{
    const int64_t nt = qk_model_n_tensors(m);
    const uint64_t align = p->mode == QK_ALLOC_SIZE ? (p->alignment ? p->alignment : 32) : 1;
    const int tied = qk_model_find(m, "output.weight") == NULL;
    float *imp = NULL;
    int rc = 0;
    memset(res, 0, sizeof *res);
    memset(at, 0, (size_t)nt * sizeof *at);
    uint64_t elems = 0, fixed = p->mode == QK_ALLOC_SIZE ? p->header_bytes : 0;
    int64_t max_ne0 = 1;
    for (int64_t i = 0; i < nt; i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        elems += (uint64_t)qk_model_tensor_nelem(t);
        max_ne0 = t->ne[0] > max_ne0 ? t->ne[0] : max_ne0;
    }
    if (p->mode == QK_ALLOC_SIZE) {
        res->budget = p->target_bytes;
    } else {
        double b = floor(p->target_bpw * (double)elems / 8.0);
        if (!(b >= 0) || b >= 1.8e19)
            return qk_error(QK_EINVAL, "--target-bpw %g: not a usable budget", p->target_bpw);
        res->budget = (uint64_t)b;
    }
    if (!(imp = malloc((size_t)max_ne0 * sizeof(float))))
        return qk_error(QK_ENOMEM, "out of memory");
    double t0 = qk_now();
    qk_progress *prog = qk_progress_start("estimating", (uint64_t)nt, "tensors");
    for (int64_t i = 0; i < nt && !rc; i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        qk_alloc_tensor *a = &at[i];
        a->choice = -1;
        int types[QK_ALLOC_MAX_CAND];
        a->fixed = t->n_dims < 2 || plan[i].reason != QK_PLAN_BASE;
        if (!a->fixed && !(a->n_cand = qk_alloc_candidates(t->ne[0], p->types, p->n_types, types))) {
            rc = qk_error(QK_EINVAL, "tensor '%s': no candidate type fits its %" PRId64 "-element rows (add F16 to "
                          "--types)", t->name, t->ne[0]);
            break;
        }
        if (a->fixed) {
            uint64_t b = 0;
            if ((rc = qk_type_tensor_bytes(plan[i].type, t->ne, t->n_dims, &b)))
                break;
            fixed += qk_pad_u64(b, align);
            qk_progress_add(prog, 1);
            continue;
        }
        for (int k = 0; k < a->n_cand && !rc; k++) {
            a->cand[k].type = types[k];
            a->cand[k].kld = -1;
            rc = qk_type_tensor_bytes(types[k], t->ne, t->n_dims, &a->cand[k].bytes);
            a->cand[k].cost = qk_pad_u64(a->cand[k].bytes, align);
        }
        const qk_calib_entry *ie = p->imatrix ? qk_calib_find(p->imatrix, t->name) : NULL;
        const int use_imp = ie && ie->n_in == t->ne[0];
        if (use_imp)
            qk_calib_importance(ie, imp);
        /* the sample: --alloc-rows rows, or by default up to 256 rows and 2^18
         * elements (a few % precision on the error; the encoders' time is the
         * cost on wide models) but at least 16 rows */
        int64_t max_rows = p->sample_rows;
        if (max_rows <= 0) {
            int64_t by_elems = SAMPLE_ELEMS / t->ne[0];
            max_rows = by_elems < SAMPLE_MIN_ROWS ? SAMPLE_MIN_ROWS : by_elems;
            max_rows = max_rows > QK_ALLOC_SAMPLE_ROWS ? QK_ALLOC_SAMPLE_ROWS : max_rows;
        }
        if (!rc)
            rc = estimate(a, m, t, use_imp ? imp : NULL, max_rows, p->allow_nonfinite, pool);
        qk_progress_add(prog, 1);
        a->factor = qk_alloc_kind_factor(t->name);
        if (tied && !strcmp(t->name, "token_embd.weight")) /* it is the output projection too */
            a->factor += qk_alloc_kind_factor("output.weight");
        a->gain = a->energy > 0 ? a->factor / a->energy : 0;
        for (int k = 0; k < a->n_cand; k++)
            a->cand[k].loss = a->gain * a->cand[k].err;
        res->n_alloc++;
    }
    free(imp);
    qk_progress_finish(prog);
    res->seconds_estimate = qk_now() - t0;
    if (rc)
        return rc;
    res->fixed_cost = fixed;
    if (fixed > res->budget) {
        char b1[32];
        return qk_error(QK_EINVAL, "a budget of %" PRIu64 " bytes is below the %s%" PRIu64 " bytes (%s) of what is not "
                        "allocated (metadata, 1-D tensors, pinned tensors)", res->budget,
                        p->mode == QK_ALLOC_SIZE ? "" : "tensor data's ", fixed, qk_fmt_bytes(fixed, b1));
    }
    uint64_t avail = res->budget - fixed, need = 0;
    if ((rc = qk_alloc_solve(at, nt, avail, &need))) {
        char b1[32];
        return qk_error(rc, "a budget of %" PRIu64 " bytes is too small: the smallest possible %s is %" PRIu64
                        " bytes (%s; every tensor in its smallest candidate type)", res->budget,
                        p->mode == QK_ALLOC_SIZE ? "file" : "tensor data", fixed + need, qk_fmt_bytes(fixed + need, b1));
    }
    if (p->measure != QK_ALLOC_MEASURE_NONE) {
        t0 = qk_now();
        rc = measure(m, p, at, pool, &res->n_measured);
        res->seconds_measure = qk_now() - t0;
        if (rc)
            return rc;
        for (int64_t i = 0; i < nt; i++)
            if (!at[i].fixed && at[i].n_cand >= 2)
                apply_measured(&at[i], p->measure == QK_ALLOC_MEASURE_ALL);
        if ((rc = qk_alloc_solve(at, nt, avail, NULL)))
            return rc;
    }
    res->loss = total_loss(at, nt, &res->chosen_cost);
    res->predicted = fixed + res->chosen_cost;
    for (int64_t i = 0; i < nt; i++)
        if (at[i].choice >= 0) {
            plan[i].type = plan[i].wanted = at[i].cand[at[i].choice].type;
            plan[i].fallback = 0;
            plan[i].reason = QK_PLAN_ALLOC;
        }
    return 0;
}
