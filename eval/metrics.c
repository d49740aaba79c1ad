/* Perplexity / KL-divergence protocol: windows, log-softmax, KLD, and the
 * engine that runs a base and a quantized model on identical windows. */
#include "quantkit/metrics.h"

#include "forward_ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int qk_eval_windows(const int32_t *tokens, int64_t n_tokens, int64_t n_ctx, int64_t max_chunks, int32_t bos,
                    int32_t **out, int64_t *n_chunks)
{
    *out = NULL;
    *n_chunks = 0;
    if (n_ctx < 4)
        return qk_error(QK_EINVAL, "context length %lld is too small (at least 4)", (long long)n_ctx);
    int64_t n = n_tokens / n_ctx;
    if (max_chunks > 0 && n > max_chunks)
        n = max_chunks;
    if (n < 1)
        return qk_error(QK_EINVAL, "the text has %lld tokens, fewer than one window of %lld", (long long)n_tokens,
                        (long long)n_ctx);
    int32_t *w = malloc((size_t)n * (size_t)n_ctx * sizeof *w);
    if (!w)
        return qk_error(QK_ENOMEM, "out of memory for %lld windows", (long long)n);
    memcpy(w, tokens, (size_t)n * (size_t)n_ctx * sizeof *w);
    if (bos >= 0)
        for (int64_t c = 0; c < n; c++)
            w[c * n_ctx] = bos;
    *out = w;
    *n_chunks = n;
    return 0;
}

int64_t qk_log_softmax(const float *logits, int64_t n, float *out)
{
    int64_t am = 0;
    float mx = logits[0];
    for (int64_t i = 1; i < n; i++)
        if (logits[i] > mx) {
            mx = logits[i];
            am = i;
        }
    double s = qk_forward_sum_exp_shift(logits, mx, n);
    double lse = mx + log(s);
    for (int64_t i = 0; i < n; i++)
        out[i] = (float)((double)logits[i] - lse);
    return am;
}

double qk_percentile(const float *sorted, int64_t n, double frac)
{
    if (n <= 0)
        return 0;
    double pos = frac * (double)(n - 1);
    int64_t i = (int64_t)floor(pos);
    if (i >= n - 1)
        return sorted[n - 1];
    double f = pos - (double)i;
    return (1 - f) * sorted[i] + f * sorted[i + 1];
}

double qk_kld_full(const float *lp, const float *lq, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += exp((double)lp[i]) * ((double)lp[i] - (double)lq[i]);
    return s > 0 ? s : 0;
}

double qk_kld_topk(const int32_t *ids, const float *lps, int64_t k, const float *lq)
{
    double s = 0, pb = 0, pq = 0;
    for (int64_t i = 0; i < k; i++) {
        double p = exp((double)lps[i]);
        s += p * ((double)lps[i] - (double)lq[ids[i]]);
        pb += p;
        pq += exp((double)lq[ids[i]]);
    }
    double rb = 1 - pb, rq = 1 - pq;
    if (rb > 1e-12 && rq > 1e-12)
        s += rb * (log(rb) - log(rq));
    return s > 0 ? s : 0;
}

void qk_base_results_free(qk_base_results *b)
{
    if (!b)
        return;
    free(b->lp_correct);
    free(b->top1);
    free(b->ids);
    free(b->lps);
    free(b);
}

void qk_eval_data_free(qk_eval_data *d)
{
    if (!d)
        return;
    free(d->nll_base);
    free(d->nll_q);
    free(d->kld);
    free(d->dp);
    free(d->same_top);
    free(d);
}

/* ------------------------------------------------------------------ engine */

typedef struct {
    const qk_eval_opts *o;
    const int32_t *win;       /* windows of this batch */
    int64_t chunk0;           /* first window index of the batch */
    int64_t first, n_scored;  /* scored positions per window */
    int64_t n_vocab;
    /* base pass */
    float *base_lp;           /* [batch][n_scored][n_vocab] logits, then log-probs kept for the quant pass */
    int32_t *base_top;        /* [batch][n_scored] */
    qk_eval_data *d;
    qk_base_results *save;
    const qk_base_results *loaded;
    float *q_lp;              /* [batch][n_scored][n_vocab] logits, then log-probs of the quant pass */
    int pass;                 /* 0 base, 1 quant */
    int have_base;            /* base log-probs available (live or loaded) */
} run_ctx;

/* Top-k of lp by bounded insertion: O(V) for the common case of a value below
 * the current k-th, O(k) per insertion otherwise. Ties keep the lower id. */
static void topk(const float *lp, int64_t n, int64_t k, int32_t *ids, float *vals)
{
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = lp[i];
        if (m == k && v <= vals[k - 1])
            continue;
        int64_t j = m < k ? m++ : k - 1;
        while (j > 0 && vals[j - 1] < v) {
            vals[j] = vals[j - 1];
            ids[j] = ids[j - 1];
            j--;
        }
        vals[j] = v;
        ids[j] = (int32_t)i;
    }
}

/* The forward pass hands the logits over one position at a time on the
 * calling thread; they are only copied here, and scored afterwards by
 * score_row over the pool (the log-softmax of a 32,000-token vocabulary costs
 * as much as a layer of a small model: serial, it kept the second thread
 * idle for ~5% of the run). */
static int on_logits(void *vctx, int64_t seq, int64_t pos, const float *logits)
{
    run_ctx *c = vctx;
    if (pos < c->first || pos > c->first + c->n_scored - 1)
        return 0;
    const size_t V = (size_t)c->n_vocab, row = (size_t)seq * (size_t)c->n_scored + (size_t)(pos - c->first);
    memcpy((c->pass == 0 ? c->base_lp : c->q_lp) + row * V, logits, V * sizeof(float));
    return 0;
}

/* Row `row` (= seq * n_scored + scored position) of the batch just run:
 * log-softmax in place and the per-position numbers. Rows write disjoint
 * slots, so any order gives the same results. */
static void score_row(void *vctx, int64_t row, int thread)
{
    (void)thread;
    run_ctx *c = vctx;
    const int64_t seq = row / c->n_scored, sp = row % c->n_scored, pos = c->first + sp;
    const int64_t gi = (c->chunk0 + seq) * c->n_scored + sp; /* global position index */
    const int32_t target = c->win[seq * c->o->n_ctx + pos + 1];
    const int64_t V = c->n_vocab;
    qk_eval_data *d = c->d;
    if (c->pass == 0) {
        float *lp = c->base_lp + (size_t)row * (size_t)V;
        int64_t am = qk_log_softmax(lp, V, lp);
        c->base_top[row] = (int32_t)am;
        d->nll_base[gi] = -(double)lp[target];
        if (c->save) {
            qk_base_results *s = c->save;
            s->lp_correct[gi] = lp[target];
            s->top1[gi] = (int32_t)am;
            topk(lp, V, s->k, s->ids + gi * s->k, s->lps + gi * s->k);
        }
        return;
    }
    float *lq = c->q_lp + (size_t)row * (size_t)V;
    int64_t am = qk_log_softmax(lq, V, lq);
    d->nll_q[gi] = -(double)lq[target];
    if (!c->have_base)
        return;
    if (c->loaded) {
        const qk_base_results *b = c->loaded;
        d->kld[gi] = (float)qk_kld_topk(b->ids + gi * b->k, b->lps + gi * b->k, b->k, lq);
        d->same_top[gi] = b->top1[gi] == am;
        d->dp[gi] = (float)(exp((double)lq[target]) - exp((double)b->lp_correct[gi]));
    } else {
        const float *lp = c->base_lp + (size_t)row * (size_t)V;
        d->kld[gi] = (float)qk_kld_full(lp, lq, V);
        d->same_top[gi] = c->base_top[row] == am;
        d->dp[gi] = (float)(exp((double)lq[target]) - exp((double)lp[target]));
    }
}

/* Process CPU seconds (all threads), for the speed report. */
static double cpu_now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts))
        return 0;
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int qk_eval_run(const qk_model *base, const qk_model *quant, const qk_base_results *loaded,
                const int32_t *windows, int64_t n_chunks, const qk_eval_opts *o, qk_eval_data **out,
                qk_base_results **save)
{
    *out = NULL;
    if (save)
        *save = NULL;
    const qk_model *any = base ? base : quant;
    if (!any)
        return qk_error(QK_EINVAL, "no model to evaluate");
    int64_t V = qk_model_cfg(any)->n_vocab;
    int64_t n_ctx = o->n_ctx;
    int64_t first = o->score_all ? 0 : n_ctx / 2;
    int64_t n_scored = n_ctx - 1 - first;
    int64_t B = o->batch_seqs > 0 ? o->batch_seqs : 1;
    if (B > n_chunks)
        B = n_chunks;
    int64_t N = n_chunks * n_scored;
    int have_base = base != NULL || loaded != NULL;
    if (loaded && (loaded->n_pos != N || loaded->n_vocab != V))
        return qk_error(QK_EINVAL, "saved base has %lld positions over %lld tokens of vocabulary, this run needs %lld "
                        "over %lld (same text, --ctx and --chunks?)", (long long)loaded->n_pos,
                        (long long)loaded->n_vocab, (long long)N, (long long)V);
    qk_eval_data *d = calloc(1, sizeof *d);
    run_ctx c = {0};
    qk_forward *fb = NULL, *fq = NULL;
    qk_pool *pool = NULL;
    qk_base_results *sv = NULL;
    qk_progress *prog = NULL;
    int rc = 0;
    if (!d)
        return qk_error(QK_ENOMEM, "out of memory");
    d->n_pos = N;
    d->n_chunks = n_chunks;
    d->n_ctx = n_ctx;
    d->kld_exact = base != NULL;
    if (base && !(d->nll_base = calloc((size_t)N, sizeof(double))))
        goto oom;
    if (quant && !(d->nll_q = calloc((size_t)N, sizeof(double))))
        goto oom;
    if (quant && have_base &&
        (!(d->kld = calloc((size_t)N, sizeof(float))) || !(d->dp = calloc((size_t)N, sizeof(float))) ||
         !(d->same_top = calloc((size_t)N, 1))))
        goto oom;
    if (loaded && !base) {
        d->nll_base = malloc((size_t)N * sizeof(double));
        if (!d->nll_base)
            goto oom;
        for (int64_t i = 0; i < N; i++)
            d->nll_base[i] = -(double)loaded->lp_correct[i];
    }
    if (base && save) {
        sv = calloc(1, sizeof *sv);
        if (!sv)
            goto oom;
        sv->n_pos = N;
        sv->k = o->top_k > 0 ? o->top_k : 64;
        if (sv->k > V)
            sv->k = V;
        sv->n_vocab = V;
        sv->n_ctx = n_ctx;
        sv->n_chunks = n_chunks;
        sv->score_all = o->score_all;
        if (!(sv->lp_correct = malloc((size_t)N * sizeof(float))) || !(sv->top1 = malloc((size_t)N * sizeof(int32_t))) ||
            !(sv->ids = malloc((size_t)N * (size_t)sv->k * sizeof(int32_t))) ||
            !(sv->lps = malloc((size_t)N * (size_t)sv->k * sizeof(float))))
            goto oom;
    }
    c.o = o;
    c.first = first;
    c.n_scored = n_scored;
    c.n_vocab = V;
    c.d = d;
    c.save = sv;
    c.loaded = base ? NULL : loaded;
    c.have_base = have_base;
    const size_t batch_floats = (size_t)B * (size_t)n_scored * (size_t)V;
    if (base && !(c.base_lp = malloc(batch_floats * sizeof(float))))
        goto oom;
    if (quant && !(c.q_lp = malloc(batch_floats * sizeof(float))))
        goto oom;
    if (!(c.base_top = malloc((size_t)B * (size_t)n_scored * sizeof(int32_t))))
        goto oom;
    qk_forward_opts fo = {.n_threads = o->n_threads, .max_tokens = B * n_ctx, .emulate_llamacpp = o->emulate_llamacpp};
    if (base && (rc = qk_forward_new(&fb, base, &fo)))
        goto done;
    if (quant && (rc = qk_forward_new(&fq, quant, &fo)))
        goto done;
    if ((rc = qk_pool_create(&pool, o->n_threads)))
        goto done;
    prog = qk_progress_start("evaluating", (uint64_t)n_chunks, "win");
    for (int64_t c0 = 0; c0 < n_chunks && !rc; c0 += B) {
        int64_t nb = n_chunks - c0 < B ? n_chunks - c0 : B;
        c.win = windows + c0 * n_ctx;
        c.chunk0 = c0;
        if (fb) {
            double t0 = qk_now(), u0 = cpu_now();
            c.pass = 0;
            rc = qk_forward_run(fb, c.win, nb, n_ctx, first, on_logits, &c);
            if (!rc)
                qk_pool_run(pool, nb * n_scored, 0, score_row, &c);
            d->seconds_base += qk_now() - t0;
            d->cpu_seconds_base += cpu_now() - u0;
            d->tokens_base += nb * n_ctx;
        }
        if (!rc && fq) {
            double t0 = qk_now(), u0 = cpu_now();
            c.pass = 1;
            rc = qk_forward_run(fq, c.win, nb, n_ctx, first, on_logits, &c);
            if (!rc)
                qk_pool_run(pool, nb * n_scored, 0, score_row, &c);
            d->seconds_q += qk_now() - t0;
            d->cpu_seconds_q += cpu_now() - u0;
            d->tokens_q += nb * n_ctx;
        }
        qk_progress_update(prog, (uint64_t)(c0 + nb));
    }
    goto done;
oom:
    rc = qk_error(QK_ENOMEM, "out of memory for %lld scored positions", (long long)N);
done:
    if (prog)
        qk_progress_finish(prog);
    qk_forward_free(fb);
    qk_forward_free(fq);
    qk_pool_free(pool);
    free(c.base_lp);
    free(c.base_top);
    free(c.q_lp);
    if (rc) {
        qk_eval_data_free(d);
        qk_base_results_free(sv);
        return rc;
    }
    *out = d;
    if (save)
        *save = sv;
    else
        qk_base_results_free(sv);
    return 0;
}
