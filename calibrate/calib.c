/* Calibration statistics in memory: the set, the collector that fills it
 * from forward-pass hooks, and token-weighted merging.
 *
 * Per linear layer input x [T][n_in] (one token per row) the collector adds
 *   sum_x2[j] += x[t][j]^2          (double; float products are exact in double)
 *   sum_x[j]  += x[t][j], absmax[j] = max |x[t][j]|      (optional)
 *   H         += X^T X              (optional; upper-triangle tiles: float products
 *                                     summed over at most HCHUNK tokens by sgemm,
 *                                     then added to the double accumulator)
 * over every token t, for every event of the pass. The float partial sums
 * halve the cost of the dominant term at 7B sizes (n^2 per token) against
 * dgemm; their relative error is below HCHUNK x 2^-24 (about 1.5e-5) of
 * sum |x_a x_b|, and typically ~1e-7, far below the damping GPTQ adds.
 *
 * Layer-major collection (qk_calib_collect_layers) carries every window's
 * hidden states through the model one layer at a time, so only the
 * Hessians of the current layer need to exist. q/k/v and gate/up see the
 * same x: each keeps its own sums (cheap), the Hessian is computed once, at
 * the first of them (q, gate), and referenced by the others.
 */
#include "quantkit/calib.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../eval/forward_ops.h"
#include "quantkit/gptq.h"

/* Hessian tiles are HTILE x HTILE blocks of H; tokens in chunks of HCHUNK. */
#define HTILE 256
#define HCHUNK 256
/* Below this many elements (tokens x columns) the sums run on the calling thread. */
#define PAR_SUM_MIN ((int64_t)1 << 16)
/* The 7 linear layers of a block, in forward order (QK_LIN_Q .. QK_LIN_DOWN). */
#define N_LAYER_LINEAR 7

static const char *const k_suffix[N_LAYER_LINEAR] = {
    "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
    "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight",
};

/* ------------------------------------------------------------------ set */

int qk_calib_new(qk_calib **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : qk_error(QK_ENOMEM, "out of memory");
}

static void entry_clear(qk_calib_entry *e)
{
    free(e->name);
    free(e->sum_x2);
    free(e->sum_x);
    free(e->absmax);
    free(e->xtx);
    memset(e, 0, sizeof *e);
}

void qk_calib_free(qk_calib *c)
{
    if (!c)
        return;
    for (int64_t i = 0; i < c->n; i++)
        entry_clear(&c->e[i]);
    free(c->e);
    free(c->dataset);
    qk_mmap_close(c->src);
    free(c);
}

const qk_calib_entry *qk_calib_find(const qk_calib *c, const char *name)
{
    for (int64_t i = 0; i < c->n; i++)
        if (!strcmp(c->e[i].name, name))
            return &c->e[i];
    return NULL;
}

void qk_calib_importance(const qk_calib_entry *e, float *out)
{
    /* (float)(v / n) with v a float and n < 2^24 equals llama-quantize's
     * float division v / (float)ncall: double has more than 2*24+2 bits. */
    const double n = e->n_tokens > 0 ? (double)e->n_tokens : 1.0;
    for (int64_t j = 0; j < e->n_in; j++)
        out[j] = (float)(e->sum_x2[j] / n);
}

const double *qk_calib_hessian(const qk_calib *c, const qk_calib_entry *e)
{
    if (e->hessian_of < 0 || e->hessian_of >= c->n)
        return NULL;
    const qk_calib_entry *h = &c->e[e->hessian_of];
    return h->hessian_of == e->hessian_of && h->n_in == e->n_in ? h->xtx : NULL;
}

int qk_calib_model_hash(const qk_model *m, uint64_t *out)
{
    qk_hasher *h = NULL;
    int rc = qk_hasher_new(&h);
    if (rc)
        return rc;
    for (int64_t i = 0; i < qk_model_n_tensors(m); i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        if (t->gptq)
            for (int k = 0; k < QK_GPTQ_NPARTS; k++)
                qk_hasher_update(h, t->gptq->part[k].data, (size_t)t->gptq->part[k].nbytes);
        else
            qk_hasher_update(h, t->data, (size_t)t->nbytes);
        qk_model_release(t);
    }
    *out = qk_hasher_digest(h);
    qk_hasher_free(h);
    return 0;
}

int qk_calib_check_model(const qk_calib *c, const qk_model *m, int allow_unknown)
{
    for (int64_t i = 0; i < c->n; i++) {
        const qk_calib_entry *e = &c->e[i];
        const qk_model_tensor *t = qk_model_find(m, e->name);
        if (!t) {
            if (allow_unknown)
                continue;
            return qk_error(QK_EFORMAT, "calibration entry '%s' names no tensor of %s: the file was made for "
                            "another model", e->name, qk_model_path(m));
        }
        if (t->ne[0] != e->n_in)
            return qk_error(QK_EFORMAT, "tensor '%s' has %lld input columns (ne[0]) but its calibration entry has "
                            "%lld: the file was made for another model", e->name, (long long)t->ne[0],
                            (long long)e->n_in);
    }
    return 0;
}

/* Allocate the arrays of e (zeroed); the name is copied. */
static int entry_init(qk_calib_entry *e, const char *name, int64_t n_in, int sum_x, int absmax, int own_hessian)
{
    memset(e, 0, sizeof *e);
    e->hessian_of = -1;
    e->n_in = n_in;
    e->name = strdup(name);
    e->sum_x2 = calloc((size_t)n_in, sizeof(double));
    if (sum_x)
        e->sum_x = calloc((size_t)n_in, sizeof(double));
    if (absmax)
        e->absmax = calloc((size_t)n_in, sizeof(double));
    if (own_hessian)
        e->xtx = calloc((size_t)n_in * (size_t)n_in, sizeof(double));
    if (!e->name || !e->sum_x2 || (sum_x && !e->sum_x) || (absmax && !e->absmax))
        return qk_error(QK_ENOMEM, "out of memory for calibration entry '%s' (%lld columns)", name,
                        (long long)n_in);
    if (own_hessian && !e->xtx) {
        char b[32];
        return qk_error(QK_ENOMEM, "out of memory for the %lld x %lld Hessian of '%s' (%s)", (long long)n_in,
                        (long long)n_in, name,
                        qk_fmt_bytes((uint64_t)n_in * (uint64_t)n_in * sizeof(double), b));
    }
    return 0;
}

/* ------------------------------------------------------------ collector */

struct qk_calib_collector {
    const qk_model *m;
    qk_calib_opts o;
    int64_t calls_per_window;
    int64_t n_layer;
    int64_t out_entry;    /* index of output.weight, or -1 */
    int64_t windows;      /* windows seen (counted at layer 0's q events) */
    qk_calib *c;          /* entries: layer l, kind k at l*7 + k; output last */
    qk_pool *pool;
    float *scratch;       /* [n_threads][HTILE * HTILE] one tile's float partial sums per thread */
    int64_t *tiles;       /* [n_tiles] (bi << 32 | bj), bi <= bj, for the largest n_in */
};

/* Entry sizes of the collection for m and o: returns the entry count, fills
 * names/n_in/owner when the arrays are given. */
static int64_t plan_entries(const qk_model *m, const qk_calib_opts *o, char (*names)[QK_MODEL_MAX_NAME],
                            int64_t *n_in, int64_t *owner, int *missing)
{
    const qk_model_config *cfg = qk_model_cfg(m);
    int64_t n = 0;
    *missing = 0;
    for (int64_t l = 0; l < cfg->n_layer; l++) {
        for (int k = 0; k < N_LAYER_LINEAR; k++, n++) {
            char nm[QK_MODEL_MAX_NAME];
            snprintf(nm, sizeof nm, "blk.%lld.%s", (long long)l, k_suffix[k]);
            const qk_model_tensor *t = qk_model_find(m, nm);
            if (!t) {
                *missing = 1;
                return n;
            }
            if (names)
                memcpy(names[n], nm, sizeof nm);
            if (n_in)
                n_in[n] = t->ne[0];
            if (owner) /* q holds the q/k/v Hessian, gate the gate/up one */
                owner[n] = k == QK_LIN_K || k == QK_LIN_V ? n - k : k == QK_LIN_UP ? n - 1 : n;
        }
    }
    const qk_model_tensor *out = o->output ? qk_model_find(m, "output.weight") : NULL;
    if (out) {
        if (names)
            snprintf(names[n], QK_MODEL_MAX_NAME, "output.weight");
        if (n_in)
            n_in[n] = out->ne[0];
        if (owner)
            owner[n] = n;
        n++;
    }
    return n;
}

uint64_t qk_calib_collector_bytes(const qk_model *m, const qk_calib_opts *o)
{
    int missing;
    int64_t n = plan_entries(m, o, NULL, NULL, NULL, &missing);
    int64_t *n_in = calloc((size_t)(n > 0 ? n : 1), sizeof *n_in), *owner = calloc((size_t)(n > 0 ? n : 1), sizeof *owner);
    uint64_t bytes = 0;
    if (n_in && owner) {
        plan_entries(m, o, NULL, n_in, owner, &missing);
        int arrays = 1 + (o->sum_x != 0) + (o->absmax != 0);
        uint64_t layer = 0, layer_max = 0;
        for (int64_t i = 0; i < n; i++) {
            bytes += (uint64_t)arrays * (uint64_t)n_in[i] * sizeof(double);
            if (o->hessian && owner[i] == i)
                layer += (uint64_t)n_in[i] * (uint64_t)n_in[i] * sizeof(double);
            if (i % N_LAYER_LINEAR == N_LAYER_LINEAR - 1 || i == n - 1) { /* a layer (or the output) ends */
                if (o->hessian_per_layer)
                    layer_max = layer > layer_max ? layer : layer_max;
                else
                    bytes += layer;
                layer = 0;
            }
        }
        bytes += layer_max;
    }
    free(n_in);
    free(owner);
    return bytes;
}

int qk_calib_collector_new(qk_calib_collector **out, const qk_model *m, const qk_calib_opts *o)
{
    *out = NULL;
    if (o->n_ctx < 1)
        return qk_error(QK_EINVAL, "calibration window length %lld must be positive", (long long)o->n_ctx);
    int missing;
    int64_t n = plan_entries(m, o, NULL, NULL, NULL, &missing);
    if (missing)
        return qk_error(QK_EUNSUPPORTED, "%s: layer tensor 'blk.%lld.%s' is missing; calibration needs every "
                        "linear layer of the llama family", qk_model_path(m), (long long)(n / N_LAYER_LINEAR),
                        k_suffix[n % N_LAYER_LINEAR]);
    if (n < 1)
        return qk_error(QK_EUNSUPPORTED, "%s: the model has no layers to calibrate", qk_model_path(m));
    qk_calib_collector *c = calloc(1, sizeof *c);
    char (*names)[QK_MODEL_MAX_NAME] = calloc((size_t)n, sizeof *names);
    int64_t *n_in = calloc((size_t)n, sizeof *n_in), *owner = calloc((size_t)n, sizeof *owner);
    int rc = 0;
    if (!c || !names || !n_in || !owner || qk_calib_new(&c->c) ||
        !(c->c->e = calloc((size_t)n, sizeof *c->c->e))) {
        rc = qk_error(QK_ENOMEM, "out of memory");
        goto done;
    }
    plan_entries(m, o, names, n_in, owner, &missing);
    c->m = m;
    c->o = *o;
    c->calls_per_window = (o->n_ctx + QK_CALIB_UBATCH - 1) / QK_CALIB_UBATCH;
    c->n_layer = qk_model_cfg(m)->n_layer;
    c->out_entry = n > c->n_layer * N_LAYER_LINEAR ? n - 1 : -1;
    int64_t max_h = 0;
    for (int64_t i = 0; i < n && !rc; i++) {
        int own = o->hessian && owner[i] == i;
        if (own && n_in[i] > QK_CALIB_MAX_HESSIAN_N) {
            rc = qk_error(QK_ELIMIT, "'%s': a Hessian of %lld columns is beyond the limit %d", names[i],
                          (long long)n_in[i], QK_CALIB_MAX_HESSIAN_N);
            break;
        }
        if (n_in[i] < 1 || n_in[i] > QK_CALIB_MAX_N_IN) {
            rc = qk_error(QK_ELIMIT, "'%s': %lld input columns is outside [1, %d]", names[i], (long long)n_in[i],
                          QK_CALIB_MAX_N_IN);
            break;
        }
        c->c->n = i + 1;
        rc = entry_init(&c->c->e[i], names[i], n_in[i], o->sum_x, o->absmax, own && !o->hessian_per_layer);
        if (o->hessian)
            c->c->e[i].hessian_of = owner[i];
        if (own && n_in[i] > max_h)
            max_h = n_in[i];
    }
    if (rc)
        goto done;
    c->c->n_ctx = o->n_ctx;
    if ((rc = qk_pool_create(&c->pool, o->n_threads)))
        goto done;
    if (max_h) {
        rc = qk_calib_xtx_scratch(max_h, c->pool, &c->scratch, &c->tiles);
    }
done:
    free(names);
    free(n_in);
    free(owner);
    if (rc) {
        qk_calib_collector_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void qk_calib_collector_free(qk_calib_collector *c)
{
    if (!c)
        return;
    qk_calib_free(c->c);
    qk_pool_free(c->pool);
    free(c->scratch);
    free(c->tiles);
    free(c);
}

/* Column-range jobs over one event's activations. */
typedef struct sum_job {
    const float *x; /* [T][n] */
    int64_t T, n, cols_per_item;
    qk_calib_entry *e;
} sum_job;

static void sum_item(void *ctx, int64_t i, int thread)
{
    (void)thread;
    const sum_job *j = ctx;
    const int64_t c0 = i * j->cols_per_item;
    const int64_t c1 = c0 + j->cols_per_item < j->n ? c0 + j->cols_per_item : j->n;
    double *s2 = j->e->sum_x2, *s1 = j->e->sum_x, *am = j->e->absmax;
    for (int64_t t = 0; t < j->T; t++) {
        const float *row = j->x + t * j->n;
        for (int64_t c = c0; c < c1; c++) {
            const double v = row[c];
            s2[c] += v * v;
        }
        if (s1)
            for (int64_t c = c0; c < c1; c++)
                s1[c] += row[c];
        if (am)
            for (int64_t c = c0; c < c1; c++) {
                const double a = fabs((double)row[c]);
                if (a > am[c] || a != a) /* keep a NaN so the finiteness check sees it */
                    am[c] = a;
            }
    }
}

typedef struct tile_job {
    const float *x;   /* [T][n] */
    double *h;        /* [n][n] */
    int64_t T, n;
    const int64_t *tiles;
    float *scratch;   /* [threads][HTILE * HTILE] */
    float *xt;        /* [threads][HTILE * T] a block of columns of x, transposed */
    int64_t *xt_bi;   /* [threads] the column block xt holds, -1 none */
} tile_job;

/* H[bi rows, bj cols] += X[:, bi]^T X[:, bj]: per chunk of HCHUNK tokens a
 * float product into the thread's scratch tile (qk_sgemm_kn, on the
 * thread's transposed copy of the columns bi, made once per bi), added in
 * double. The tile of H stays in cache over the chunks. The order of every
 * sum is fixed (independent of threads). */
static void tile_item(void *ctx, int64_t i, int thread)
{
    const tile_job *j = ctx;
    const int64_t bi = j->tiles[i] >> 32, bj = j->tiles[i] & 0xffffffff;
    const int64_t i0 = bi * HTILE, j0 = bj * HTILE, n = j->n, T = j->T;
    const int64_t mi = n - i0 < HTILE ? n - i0 : HTILE;
    const int64_t mj = n - j0 < HTILE ? n - j0 : HTILE;
    float *s = j->scratch + (size_t)thread * HTILE * HTILE; /* [mi][mj] */
    float *xt = j->xt + (size_t)thread * HTILE * T;         /* [mi][T] */
    if (j->xt_bi[thread] != bi) {
        for (int64_t t0 = 0; t0 < T; t0 += 16)
            for (int64_t a0 = 0; a0 < mi; a0 += 16)
                for (int64_t a = a0; a < a0 + 16 && a < mi; a++)
                    for (int64_t t = t0; t < t0 + 16 && t < T; t++)
                        xt[a * T + t] = j->x[t * n + i0 + a];
        j->xt_bi[thread] = bi;
    }
    for (int64_t t0 = 0; t0 < T; t0 += HCHUNK) {
        const int64_t kt = T - t0 < HCHUNK ? T - t0 : HCHUNK;
        qk_sgemm_kn(s, mj, xt + t0, T, j->x + t0 * n + j0, n, mi, mj, kt, 0);
        for (int64_t a = 0; a < mi; a++) {
            double *hr = j->h + (i0 + a) * n + j0;
            const float *sr = s + a * mj;
            for (int64_t b = 0; b < mj; b++)
                hr[b] += sr[b];
        }
    }
}

int qk_calib_xtx_add(double *h, const float *x, int64_t T, int64_t n, qk_pool *pool, float *scratch,
                     int64_t *tiles)
{
    int64_t nb = (n + HTILE - 1) / HTILE, k = 0;
    for (int64_t bi = 0; bi < nb; bi++)
        for (int64_t bj = bi; bj < nb; bj++)
            tiles[k++] = bi << 32 | bj;
    qk_pool *p = (double)T * (double)n * (double)n >= (double)PAR_SUM_MIN * 64 ? pool : NULL;
    const int64_t threads = pool ? qk_pool_size(pool) : 1;
    tile_job tj = {x, h, T, n, tiles, scratch, malloc((size_t)(threads * HTILE * T) * sizeof(float)),
                   malloc((size_t)threads * sizeof(int64_t))};
    if (!tj.xt || !tj.xt_bi) {
        free(tj.xt);
        free(tj.xt_bi);
        return qk_error(QK_ENOMEM, "out of memory for %lld x %d activations", (long long)T, HTILE);
    }
    for (int64_t t = 0; t < threads; t++)
        tj.xt_bi[t] = -1;
    qk_pool_run(p, k, 1, tile_item, &tj);
    free(tj.xt);
    free(tj.xt_bi);
    return 0;
}

/* Scratch: [threads][HTILE][HTILE] tiles. */
int qk_calib_xtx_scratch(int64_t n, qk_pool *pool, float **scratch, int64_t **tiles)
{
    int64_t nb = (n + HTILE - 1) / HTILE;
    *scratch = malloc((size_t)(pool ? qk_pool_size(pool) : 1) * HTILE * HTILE * sizeof(float));
    *tiles = malloc((size_t)(nb * (nb + 1) / 2) * sizeof **tiles);
    if (*scratch && *tiles)
        return 0;
    free(*scratch);
    free(*tiles);
    *scratch = NULL;
    *tiles = NULL;
    return qk_error(QK_ENOMEM, "out of memory");
}

int qk_calib_hook(void *vc, const qk_linear_event *ev)
{
    qk_calib_collector *c = vc;
    if (ev->y)
        return 0;
    int64_t idx;
    if (ev->kind == QK_LIN_OUTPUT) {
        if (c->out_entry < 0)
            return 0;
        idx = c->out_entry;
    } else {
        if (ev->layer < 0 || ev->layer >= c->n_layer || ev->kind < 0 || ev->kind >= N_LAYER_LINEAR)
            return qk_error(QK_EINVAL, "calibration hook: unexpected event (layer %d, kind %d)", ev->layer,
                            ev->kind);
        idx = (int64_t)ev->layer * N_LAYER_LINEAR + ev->kind;
    }
    qk_calib_entry *e = &c->c->e[idx];
    const int64_t T = ev->n_tokens, n = ev->n_in;
    if (n != e->n_in)
        return qk_error(QK_EINVAL, "calibration hook: '%s' sees %lld input columns, expected %lld", e->name,
                        (long long)n, (long long)e->n_in);
    if (T < 1 || T % c->o.n_ctx)
        return qk_error(QK_EINVAL, "calibration hook: '%s' sees %lld tokens, not a multiple of the window %lld",
                        e->name, (long long)T, (long long)c->o.n_ctx);
    const int hess = e->hessian_of == idx && e->xtx;
    int nt = qk_pool_size(c->pool);
    sum_job sj = {ev->x, T, n, n, e};
    qk_pool *p = T * n >= PAR_SUM_MIN && nt > 1 ? c->pool : NULL;
    if (p) {
        int64_t per = (n + 2 * nt - 1) / (2 * nt);
        sj.cols_per_item = (per + 7) / 8 * 8;
    }
    qk_pool_run(p, (n + sj.cols_per_item - 1) / sj.cols_per_item, 1, sum_item, &sj);
    for (int64_t j = 0; j < n; j++)
        if (!isfinite(e->sum_x2[j]))
            return qk_error(QK_ENONFINITE, "the input of '%s' holds NaN or Inf (column %lld) after %lld tokens; "
                            "the model or its input is broken", e->name, (long long)j, (long long)e->n_tokens);
    int rc;
    if (hess && (rc = qk_calib_xtx_add(e->xtx, ev->x, T, n, c->pool, c->scratch, c->tiles)))
        return rc;
    e->n_tokens += T;
    e->n_calls += T / c->o.n_ctx * c->calls_per_window;
    if (idx == 0)
        c->windows += T / c->o.n_ctx;
    return 0;
}

int qk_calib_collector_finish(qk_calib_collector *c, qk_calib **out)
{
    *out = NULL;
    qk_calib *s = c->c;
    for (int64_t i = 0; i < s->n; i++) {
        qk_calib_entry *e = &s->e[i];
        if (e->n_tokens == 0)
            return qk_error(QK_EINVAL, "calibration: '%s' saw no tokens (was the hook installed and a window run?)",
                            e->name);
        if (e->xtx) /* only upper-triangle tiles were accumulated: mirror */
            for (int64_t r = 1; r < e->n_in; r++)
                for (int64_t q = 0; q < r; q++)
                    e->xtx[r * e->n_in + q] = e->xtx[q * e->n_in + r];
    }
    s->n_chunks = c->windows;
    *out = s;
    c->c = NULL;
    return 0;
}

/* ----------------------------------------------------------------- merge */

static int64_t find_index(const qk_calib *c, const char *name)
{
    for (int64_t i = 0; i < c->n; i++)
        if (!strcmp(c->e[i].name, name))
            return i;
    return -1;
}

static double *dup_doubles(const double *src, size_t n)
{
    double *d = malloc(n * sizeof(double));
    if (d)
        memcpy(d, src, n * sizeof(double));
    return d;
}

static void drop_hessian(qk_calib_entry *e)
{
    free(e->xtx);
    e->xtx = NULL;
    e->hessian_of = -1;
}

int qk_calib_merge(qk_calib *a, const qk_calib *b)
{
    const int64_t na = a->n;
    int64_t *match = NULL; /* [na] index in b, or -1 */
    int rc = 0;
    /* shapes first: nothing is changed when they disagree */
    if (na && !(match = malloc((size_t)na * sizeof *match)))
        return qk_error(QK_ENOMEM, "out of memory");
    for (int64_t i = 0; i < na; i++) {
        match[i] = find_index(b, a->e[i].name);
        if (match[i] >= 0 && b->e[match[i]].n_in != a->e[i].n_in) {
            rc = qk_error(QK_EFORMAT, "cannot merge: '%s' has %lld columns in one file and %lld in the other",
                          a->e[i].name, (long long)a->e[i].n_in, (long long)b->e[match[i]].n_in);
            goto done;
        }
    }
    int64_t n_new = 0;
    for (int64_t j = 0; j < b->n; j++)
        n_new += find_index(a, b->e[j].name) < 0;
    if (na + n_new > QK_CALIB_MAX_ENTRIES) {
        rc = qk_error(QK_ELIMIT, "cannot merge: %lld entries is beyond the limit %d", (long long)(na + n_new),
                      QK_CALIB_MAX_ENTRIES);
        goto done;
    }
    if (n_new) {
        qk_calib_entry *ne = realloc(a->e, (size_t)(na + n_new) * sizeof *ne);
        if (!ne) {
            rc = qk_error(QK_ENOMEM, "out of memory");
            goto done;
        }
        a->e = ne;
        memset(a->e + na, 0, (size_t)n_new * sizeof *ne);
    }

    /* Hessian references of a's entries, decided before any sums change:
     * own Hessians survive when b's entry also holds one; references when
     * b's entry references the entry of the same name and that survives. */
    for (int64_t i = 0; i < na; i++) {
        qk_calib_entry *x = &a->e[i];
        if (x->hessian_of != i)
            continue;
        const qk_calib_entry *y = match[i] >= 0 ? &b->e[match[i]] : NULL;
        if (!y || y->hessian_of != match[i] || !y->xtx || !x->xtx)
            drop_hessian(x);
    }
    for (int64_t i = 0; i < na; i++) {
        qk_calib_entry *x = &a->e[i];
        if (x->hessian_of < 0 || x->hessian_of == i)
            continue;
        const int64_t k = x->hessian_of;
        const qk_calib_entry *y = match[i] >= 0 ? &b->e[match[i]] : NULL;
        int keep = k < na && a->e[k].hessian_of == k && y && y->hessian_of >= 0 && y->hessian_of < b->n &&
                   !strcmp(b->e[y->hessian_of].name, a->e[k].name);
        if (!keep)
            x->hessian_of = -1;
    }

    for (int64_t i = 0; i < na; i++) {
        qk_calib_entry *x = &a->e[i];
        if (match[i] < 0)
            continue;
        const qk_calib_entry *y = &b->e[match[i]];
        const int64_t n = x->n_in;
        for (int64_t j = 0; j < n; j++)
            x->sum_x2[j] += y->sum_x2[j];
        if (x->sum_x && y->sum_x)
            for (int64_t j = 0; j < n; j++)
                x->sum_x[j] += y->sum_x[j];
        else {
            free(x->sum_x);
            x->sum_x = NULL;
        }
        if (x->absmax && y->absmax)
            for (int64_t j = 0; j < n; j++)
                x->absmax[j] = y->absmax[j] > x->absmax[j] ? y->absmax[j] : x->absmax[j];
        else {
            free(x->absmax);
            x->absmax = NULL;
        }
        if (x->hessian_of == i)
            for (int64_t j = 0; j < n * n; j++)
                x->xtx[j] += y->xtx[j];
        x->n_tokens += y->n_tokens;
        x->n_calls += y->n_calls;
    }

    /* entries only in b: copied, with Hessians own or referring to another copied entry */
    int64_t k = na;
    for (int64_t j = 0; j < b->n && !rc; j++) {
        const qk_calib_entry *y = &b->e[j];
        int64_t in_a = find_index(a, y->name);
        if (in_a >= 0 && in_a < na)
            continue;
        qk_calib_entry *x = &a->e[k];
        a->n = k + 1;
        x->hessian_of = -1;
        x->name = strdup(y->name);
        x->n_in = y->n_in;
        x->n_tokens = y->n_tokens;
        x->n_calls = y->n_calls;
        x->sum_x2 = dup_doubles(y->sum_x2, (size_t)y->n_in);
        if (y->sum_x)
            x->sum_x = dup_doubles(y->sum_x, (size_t)y->n_in);
        if (y->absmax)
            x->absmax = dup_doubles(y->absmax, (size_t)y->n_in);
        if (y->hessian_of == j && y->xtx) {
            x->xtx = dup_doubles(y->xtx, (size_t)y->n_in * (size_t)y->n_in);
            x->hessian_of = k;
            if (!x->xtx)
                rc = qk_error(QK_ENOMEM, "out of memory copying the Hessian of '%s'", y->name);
        }
        if (!x->name || !x->sum_x2 || (y->sum_x && !x->sum_x) || (y->absmax && !x->absmax))
            rc = qk_error(QK_ENOMEM, "out of memory copying calibration entry '%s'", y->name);
        k++;
    }
    /* references among the copied entries */
    for (int64_t i = na; i < a->n && !rc; i++) {
        qk_calib_entry *x = &a->e[i];
        if (x->hessian_of == i)
            continue;
        const qk_calib_entry *y = &b->e[find_index(b, x->name)];
        if (y->hessian_of < 0 || y->hessian_of >= b->n)
            continue;
        int64_t t = find_index(a, b->e[y->hessian_of].name);
        if (t >= na && a->e[t].hessian_of == t)
            x->hessian_of = t;
    }

    if (rc)
        goto done;
    if (na == 0) { /* merging into an empty set: b's provenance */
        a->model_hash = b->model_hash;
        a->text_hash = b->text_hash;
        a->n_ctx = b->n_ctx;
        a->n_chunks = b->n_chunks;
        free(a->dataset);
        a->dataset = b->dataset ? strdup(b->dataset) : NULL;
        if (b->dataset && !a->dataset)
            rc = qk_error(QK_ENOMEM, "out of memory");
        goto done;
    }
    if (a->model_hash != b->model_hash)
        a->model_hash = 0;
    if (a->text_hash != b->text_hash)
        a->text_hash = 0;
    if (a->n_ctx != b->n_ctx)
        a->n_ctx = 0;
    a->n_chunks += b->n_chunks;
    if (a->dataset && (!b->dataset || strcmp(a->dataset, b->dataset))) {
        free(a->dataset);
        a->dataset = NULL;
    }
done:
    free(match);
    return rc;
}

/* ---------------------------------------------------------- layer-major */

static void mirror(double *a, int64_t n)
{
    for (int64_t r = 1; r < n; r++)
        for (int64_t q = 0; q < r; q++)
            a[r * n + q] = a[q * n + r];
}

/* Allocate (zeroed) the Hessians owned by entries [first, first+count). */
static int layer_hessians_alloc(qk_calib_collector *c, int64_t first, int64_t count)
{
    for (int64_t i = first; i < first + count; i++) {
        qk_calib_entry *e = &c->c->e[i];
        if (e->hessian_of != i || e->xtx)
            continue;
        if (!(e->xtx = calloc((size_t)e->n_in * (size_t)e->n_in, sizeof(double)))) {
            char b[32];
            return qk_error(QK_ENOMEM, "out of memory for the %lld x %lld Hessian of '%s' (%s)", (long long)e->n_in,
                            (long long)e->n_in, e->name,
                            qk_fmt_bytes((uint64_t)e->n_in * (uint64_t)e->n_in * sizeof(double), b));
        }
    }
    return 0;
}

/* Entries [first, first+count) are complete: mirror their Hessians, hand
 * them over, free the Hessians when they were handed over. */
static int layer_done(qk_calib_collector *c, int64_t layer, int64_t first, int64_t count, qk_calib_layer_fn fn,
                      void *ctx)
{
    for (int64_t i = first; i < first + count; i++)
        if (c->c->e[i].xtx)
            mirror(c->c->e[i].xtx, c->c->e[i].n_in);
    if (!fn)
        return 0;
    int rc = fn(ctx, c->c, layer, first, count);
    for (int64_t i = first; i < first + count; i++) {
        free(c->c->e[i].xtx);
        c->c->e[i].xtx = NULL;
    }
    return rc;
}

static int stop_logits(void *ctx, int64_t seq, int64_t pos, const float *logits)
{
    (void)ctx, (void)seq, (void)pos, (void)logits;
    return 0;
}

static int stop_after_output(void *ctx, const qk_linear_event *ev)
{
    int rc = qk_calib_hook(ctx, ev);
    return rc ? rc : ev->kind == QK_LIN_OUTPUT ? QK_CALIB_STOP : 0;
}

int qk_calib_collect_layers(qk_calib_collector *c, qk_forward *f, const int32_t *win, int64_t n_win, int64_t n_layers,
                            qk_calib_layer_fn fn, void *ctx, qk_progress *prog)
{
    const qk_model_config *cfg = qk_model_cfg(c->m);
    const int64_t n_ctx = c->o.n_ctx, D = cfg->n_embd;
    const int64_t per = qk_forward_max_tokens(f) / n_ctx; /* windows per forward call */
    if (n_win < 1 || per < 1)
        return qk_error(QK_EINVAL, "layer-major calibration: %lld windows of %lld tokens, %lld tokens per call",
                        (long long)n_win, (long long)n_ctx, (long long)qk_forward_max_tokens(f));
    if (n_layers <= 0 || n_layers > c->n_layer)
        n_layers = c->n_layer;
    int64_t nx;
    if (qk_mul_i64(n_win * n_ctx, D, &nx) || nx > (int64_t)(SIZE_MAX / sizeof(float)))
        return qk_error(QK_ELIMIT, "%lld windows of %lld tokens: hidden states too large", (long long)n_win,
                        (long long)n_ctx);
    float *x = malloc((size_t)nx * sizeof(float)); /* [n_win * n_ctx][D] hidden states of every window */
    if (!x) {
        char b[32];
        return qk_error(QK_ENOMEM, "out of memory for the hidden states of %lld windows (%s)", (long long)n_win,
                        qk_fmt_bytes((uint64_t)nx * sizeof(float), b));
    }
    qk_forward_set_hook(f, qk_calib_hook, c);
    int rc = qk_forward_embed(f, win, n_win * n_ctx, x);
    for (int64_t l = 0; l < n_layers && !rc; l++) {
        const int64_t first = l * N_LAYER_LINEAR;
        if ((rc = layer_hessians_alloc(c, first, N_LAYER_LINEAR)))
            break;
        for (int64_t s = 0; s < n_win && !rc; s += per) {
            const int64_t ns = n_win - s < per ? n_win - s : per;
            rc = qk_forward_layer(f, l, QK_FORWARD_BLOCK, x + s * n_ctx * D, ns, n_ctx);
            qk_progress_add(prog, (uint64_t)ns);
        }
        if (!rc)
            rc = layer_done(c, l, first, N_LAYER_LINEAR, fn, ctx);
        qk_model_release_layer(c->m, l);
    }
    if (!rc && c->out_entry >= 0 && n_layers == c->n_layer) {
        /* the output projection's input: the final normed states; stop before the matmul */
        qk_forward_set_hook(f, stop_after_output, c);
        rc = layer_hessians_alloc(c, c->out_entry, 1);
        for (int64_t s = 0; s < n_win && !rc; s += per) {
            const int64_t ns = n_win - s < per ? n_win - s : per;
            rc = qk_forward_final(f, x + s * n_ctx * D, ns, n_ctx, 0, stop_logits, NULL);
            if (rc == QK_CALIB_STOP)
                rc = 0;
        }
        if (!rc)
            rc = layer_done(c, -1, c->out_entry, 1, fn, ctx);
        qk_forward_set_hook(f, qk_calib_hook, c);
    }
    free(x);
    return rc;
}
