/* GPTQ inside ggml blocks: see quantkit/gptq_method.h for the algorithm.
 *
 * Layout of the work: the Hessian is prepared once per tensor, or once for
 * the tensors sharing it (qk_gptq_prepare: dead columns, damping, column
 * order, U = chol(H^-1) upper) and shared read-only; rows are cut into
 * fixed chunks of ROW_CHUNK rows (independent of the thread count, so the
 * work of each row is too). Two rounds over the chunks: the GPTQ pass with
 * its lazy-batch updates as single-threaded dgemm calls (U); then, with U
 * freed when the Hessian is the tensor's alone and a float copy of H made,
 * the refinement (the chunk's rows side by side, so each block of the
 * Hessian read serves all of them) and the decode check. The Hessian is
 * the caller's, worked on in place (its diagonal restored); besides it one
 * n x n double matrix (U), then one n x n float one. Cost per row: about
 * n^2/2 double multiply-adds for GPTQ, n^2 float ones for the objective's
 * gradient, and at most 2 n^2 float ones per refinement pass (1.5 n^2 in
 * the last); per tensor (or per shared Hessian) 2/3 n^3 for the
 * factorization. */
#include "quantkit/gptq_method.h"

#include <cblas.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../eval/forward_ops.h"
#include "gptq_grid.h"
#include "quantkit/ggml_types.h"
#include "quantkit/quantize.h"

#define ROW_CHUNK 128
#define MAX_DAMP 10.0          /* give up beyond 1000% of the mean diagonal */
#define PIVOT_RATIO 1e-10      /* a Cholesky pivot below this x mean diag counts as singular */

/* LAPACK (OpenBLAS). The trailing length is gfortran's hidden CHARACTER
 * length; C implementations ignore it. */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);
extern void dtrtri_(const char *uplo, const char *diag, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len, size_t diag_len);
void openblas_set_num_threads(int);

void qk_gptq_opts_default(qk_gptq_opts *o, int type)
{
    *o = (qk_gptq_opts){.type = type, .layout_bits = 4, .layout_group = 128, .layout_sym = 1, .damp = 0.01,
                        .act_order = 0, .batch = 128, .search = 1, .refine = 2};
}

int qk_gptq_supports(int type) { return gq_type_get(type) != NULL; }

/* ------------------------------------------------------------- Hessian */

/* A prepared Hessian. Columns are processed in order perm[0..n) (perm[p] =
 * column at position p; pos its inverse); U is in that order, Hd in the
 * original one. */
typedef struct {
    int64_t n;
    double *hd;      /* [n][n] H with dead columns fixed, + lambda I (the objective refinement uses): the
                        caller's matrix, worked on in place; its diagonal is put back by hess_free */
    double *diag0;   /* [n] the caller's diagonal */
    double *u;       /* [n][n] upper Cholesky factor of Hd^-1, permuted order; lower triangle 0 (freed once
                        the GPTQ pass no longer needs it) */
    float *hf;       /* [n][n] Hd in float (the refinement's lazy updates), or NULL */
    double *cw;      /* [n] chooser weight of column c: 1 / U_pp^2, p = pos[c] */
    int64_t *perm, *pos;
    uint8_t *dead;   /* [n] */
    double lambda;   /* absolute damping added */
    double live_mean;/* mean diag over live columns */
    double damp;     /* relative damping used */
    int n_raises;
    int64_t n_dead;
} gq_hess;

/* Releases what hess_prepare allocated and restores the caller's matrix
 * (only its diagonal was changed). */
static void hess_free(gq_hess *hs)
{
    if (hs->hd && hs->diag0)
        for (int64_t i = 0; i < hs->n; i++)
            hs->hd[i * hs->n + i] = hs->diag0[i];
    free(hs->diag0);
    free(hs->u);
    free(hs->hf);
    free(hs->cw);
    free(hs->perm);
    free(hs->pos);
    free(hs->dead);
    memset(hs, 0, sizeof *hs);
}

typedef struct {
    double key;
    int64_t idx;
} keyed;

static int cmp_keyed_desc(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->key != y->key)
        return x->key > y->key ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx; /* stable: ties keep column order */
}

/* Column order: identity, or (act_order) blocks by decreasing sum of diag H
 * and, inside each block, columns by decreasing diag H. */
static int make_order(gq_hess *hs, const double *diag, int64_t bs, int act_order)
{
    const int64_t n = hs->n, nb = n / bs;
    for (int64_t c = 0; c < n; c++)
        hs->perm[c] = c;
    if (act_order) {
        keyed *k = malloc((size_t)(nb > bs ? nb : bs) * sizeof *k);
        if (!k)
            return qk_error(QK_ENOMEM, "out of memory");
        for (int64_t b = 0; b < nb; b++) {
            k[b].idx = b;
            k[b].key = 0;
            for (int64_t j = 0; j < bs; j++)
                k[b].key += diag[b * bs + j];
        }
        qsort(k, (size_t)nb, sizeof *k, cmp_keyed_desc);
        int64_t *blocks = malloc((size_t)nb * sizeof *blocks);
        if (!blocks) {
            free(k);
            return qk_error(QK_ENOMEM, "out of memory");
        }
        for (int64_t b = 0; b < nb; b++)
            blocks[b] = k[b].idx;
        for (int64_t b = 0; b < nb; b++) {
            for (int64_t j = 0; j < bs; j++) {
                k[j].idx = blocks[b] * bs + j;
                k[j].key = diag[blocks[b] * bs + j];
            }
            qsort(k, (size_t)bs, sizeof *k, cmp_keyed_desc);
            for (int64_t j = 0; j < bs; j++)
                hs->perm[b * bs + j] = k[j].idx;
        }
        free(blocks);
        free(k);
    }
    for (int64_t p = 0; p < n; p++)
        hs->pos[hs->perm[p]] = p;
    return 0;
}

/* ------------------------------------------------ blocked factorization
 * The Cholesky factor L of an m x m row-major matrix (B = L L^T, lower
 * triangle; the upper one is scratch) and then L^-1 in place, block column
 * by block column (CH_NB wide) as LAPACK's dpotrf / dtrtri do, with the
 * O(m^3) updates (the trailing A22 -= L21 L21^T of the factorization, the
 * X22 L21 products of the inversion) by qk_dgemm_kn over CH_RB-row blocks
 * on the pool, and only the CH_NB-wide diagonal blocks and row-wise
 * triangular solves in LAPACK/BLAS, single-threaded. For a 14336-column
 * ffn_down Hessian on one core: ~17 CPU s, against ~21 s for OpenBLAS's
 * dpotrf + dtrtri (AVX2 kernels here). Every element is computed the same
 * way whatever the number of threads, so U (and the bytes) no longer depend
 * on it (OpenBLAS's threaded dpotrf/dtrtri differed in the last bits). */
#define CH_NB 128
#define CH_RB 256

typedef struct {
    double *a;         /* [m][m] */
    int64_t m, k0, kb; /* the block column [k0, k0+kb) */
    double *p;         /* chol: -L21 [n2][kb]; inv: Y [n2][kb] */
    double *q;         /* chol: L21^T [kb][n2]; inv: lower copies of X22's diagonal blocks [items][CH_RB][CH_RB] */
} ch_job;

/* Cholesky, rows [s0 + r0, s0 + r1) of the trailing matrix (s0 = k0 + kb):
 * A22 -= L21 L21^T on columns [s0, s0 + r1) (the lower triangle and the
 * upper part of the row block's diagonal block, which nothing reads). */
static void chol_update_item(void *ctx, int64_t i, int thread)
{
    (void)thread;
    const ch_job *j = ctx;
    const int64_t s0 = j->k0 + j->kb, n2 = j->m - s0, r0 = i * CH_RB, r1 = r0 + CH_RB < n2 ? r0 + CH_RB : n2;
    qk_dgemm_kn(j->a + (s0 + r0) * j->m + s0, j->m, j->p + r0 * j->kb, j->kb, j->q, n2, r1 - r0, r1, j->kb, 1);
}

/* L21 = A21 L11^-T on rows [s0 + r0, s0 + r1), then their copies in p (negated) and q (transposed). */
static void chol_panel_item(void *ctx, int64_t i, int thread)
{
    (void)thread;
    const ch_job *j = ctx;
    const int64_t m = j->m, kb = j->kb, s0 = j->k0 + kb, n2 = m - s0, r0 = i * CH_RB;
    const int64_t r1 = r0 + CH_RB < n2 ? r0 + CH_RB : n2;
    double *l21 = j->a + (s0 + r0) * m + j->k0;
    cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, (int)(r1 - r0), (int)kb, 1.0,
                j->a + j->k0 * m + j->k0, (int)m, l21, (int)m);
    for (int64_t r = r0; r < r1; r++)
        for (int64_t c = 0; c < kb; c++) {
            const double v = l21[(r - r0) * m + c];
            j->p[r * kb + c] = -v;
            j->q[c * n2 + r] = v;
        }
}

/* Inversion, rows [r0, r1) of Y = X22 L21 (X22 = the inverted trailing
 * block, lower; L21 still the factor's), then Y := -Y L11^-1 and into A21. */
static void inv_item(void *ctx, int64_t i, int thread)
{
    (void)thread;
    const ch_job *j = ctx;
    const int64_t m = j->m, kb = j->kb, s0 = j->k0 + kb, n2 = m - s0, r0 = i * CH_RB;
    const int64_t r1 = r0 + CH_RB < n2 ? r0 + CH_RB : n2, rr = r1 - r0;
    const double *x22 = j->a + (s0 + r0) * m + s0, *l21 = j->a + s0 * m + j->k0;
    double *y = j->p + r0 * kb, *t = j->q + i * CH_RB * CH_RB;
    if (r0 > 0) /* columns left of the diagonal block: dense */
        qk_dgemm_kn(y, kb, x22, m, l21, m, rr, kb, r0, 0);
    for (int64_t r = 0; r < rr; r++) /* the diagonal block, its upper part zeroed */
        for (int64_t c = 0; c < rr; c++)
            t[r * rr + c] = c <= r ? x22[r * m + r0 + c] : 0.0;
    qk_dgemm_kn(y, kb, t, rr, l21 + r0 * m, m, rr, kb, rr, r0 > 0);
    cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, (int)rr, (int)kb, -1.0,
                j->a + j->k0 * m + j->k0, (int)m, y, (int)kb);
}

/* B = L L^T in place (lower); 0, the 1-based column where B is not
 * positive definite, or QK_ENOMEM (negative). */
static int chol_lower(double *a, int64_t m, qk_pool *pool)
{
    double *p = malloc((size_t)m * CH_NB * sizeof(double)), *q = malloc((size_t)m * CH_NB * sizeof(double));
    int rc = p && q ? 0 : qk_error(QK_ENOMEM, "out of memory for a %" PRId64 "x%" PRId64 " factorization", m, m);
    for (int64_t k0 = 0; k0 < m && !rc; k0 += CH_NB) {
        int kb = (int)(m - k0 < CH_NB ? m - k0 : CH_NB), mm = (int)m, info = 0;
        dpotrf_("U", &kb, a + k0 * m + k0, &mm, &info, 1); /* column-major U = row-major L */
        if (info) {
            rc = (int)(k0 + info);
            break;
        }
        const int64_t n2 = m - k0 - kb;
        if (n2 == 0)
            break;
        ch_job j = {a, m, k0, kb, p, q};
        qk_pool_run(pool, (n2 + CH_RB - 1) / CH_RB, 1, chol_panel_item, &j);
        qk_pool_run(pool, (n2 + CH_RB - 1) / CH_RB, 1, chol_update_item, &j);
    }
    free(p);
    free(q);
    return rc;
}

/* L (lower, from chol_lower) := L^-1 in place; 0, 1 + the column of a zero
 * pivot, or QK_ENOMEM (negative). */
static int inv_lower(double *a, int64_t m, qk_pool *pool)
{
    double *p = malloc((size_t)m * CH_NB * sizeof(double));
    double *q = malloc((size_t)((m + CH_RB - 1) / CH_RB) * CH_RB * CH_RB * sizeof(double));
    int rc = p && q ? 0 : qk_error(QK_ENOMEM, "out of memory for a %" PRId64 "x%" PRId64 " inverse", m, m);
    for (int64_t k0 = (m - 1) / CH_NB * CH_NB; k0 >= 0 && !rc; k0 -= CH_NB) {
        int kb = (int)(m - k0 < CH_NB ? m - k0 : CH_NB), mm = (int)m, info = 0;
        const int64_t n2 = m - k0 - kb;
        if (n2 > 0) {
            ch_job j = {a, m, k0, kb, p, q};
            qk_pool_run(pool, (n2 + CH_RB - 1) / CH_RB, 1, inv_item, &j);
            for (int64_t r = 0; r < n2; r++)
                memcpy(a + (k0 + kb + r) * m + k0, p + r * kb, (size_t)kb * sizeof(double));
        }
        dtrtri_("U", "N", &kb, a + k0 * m + k0, &mm, &info, 1, 1);
        if (info)
            rc = (int)(k0 + info);
    }
    free(p);
    free(q);
    return rc;
}

/* One factorization attempt with absolute damping lambda: u = chol(inv(A))
 * upper, A = permuted Hd. Returns 0, 1 when A is (numerically) singular, or
 * a negative error. Dead columns are decoupled from everything, so only the
 * live ones are factorized (compacted; a padded model has many dead ones)
 * and a dead column's U is just 1/sqrt(A_pp) on the diagonal. */
static int factor(gq_hess *hs, double lambda, qk_pool *pool)
{
    const int64_t n = hs->n;
    int64_t m = 0;
    int64_t *live = malloc((size_t)n * sizeof *live);
    /* The live columns' m x m matrix is built compacted at the start of u
     * and spread to its n x n place after factorization (no third matrix). */
    double *a = hs->u;
    if (!live)
        return qk_error(QK_ENOMEM, "out of memory for a %" PRId64 "x%" PRId64 " Hessian", n, n);
    for (int64_t p = 0; p < n; p++)
        if (!hs->dead[hs->perm[p]])
            live[m++] = p;
    for (int64_t i = 0; i < m; i++) {
        const double *hr = hs->hd + hs->perm[live[i]] * n;
        for (int64_t k = 0; k < m; k++)
            a[i * m + k] = hr[hs->perm[live[k]]];
        a[i * m + i] += lambda - hs->lambda; /* hd already holds hs->lambda */
    }
    /* U upper with inv(A) = U^T U. With J the reversal permutation, the
     * Cholesky factor of J A J = L L^T gives A = V V^T with V = J L J upper,
     * so U = V^-1 = J L^-1 J: one Cholesky and one triangular inverse
     * (2/3 m^3 flops; factor, invert and factor again took 4/3 m^3). J X J
     * of a row-major m x m matrix is its m^2 elements in reverse order.
     * Row-major memory read as column-major is the transpose: LAPACK's 'U'
     * there is the row-major lower triangle. */
    int mm = (int)m, info = 0, bad = 0;
    if (m > 0) {
        const size_t mm2 = (size_t)m * (size_t)m;
        for (size_t k = 0; k < mm2 / 2; k++) {
            double tmp = a[k];
            a[k] = a[mm2 - 1 - k];
            a[mm2 - 1 - k] = tmp;
        }
        if (m < 2 * CH_NB) { /* small: LAPACK as is */
            dpotrf_("U", &mm, a, &mm, &info, 1);
        } else if ((info = chol_lower(a, m, pool)) < 0) {
            free(live);
            return info;
        }
        bad = info != 0;
        for (int64_t i = 0; i < m && !bad; i++)
            bad = !(a[i * m + i] * a[i * m + i] > PIVOT_RATIO * hs->live_mean);
        if (!bad) {
            if (m < 2 * CH_NB) {
                dtrtri_("U", "N", &mm, a, &mm, &info, 1, 1);
            } else if ((info = inv_lower(a, m, pool)) < 0) {
                free(live);
                return info;
            }
            bad = info != 0;
        }
        if (!bad) {
            for (int64_t i = 0; i < m; i++) /* the row-major strict upper part still holds A */
                for (int64_t k = i + 1; k < m; k++)
                    a[i * m + k] = 0.0;
            for (size_t k = 0; k < mm2 / 2; k++) {
                double tmp = a[k];
                a[k] = a[mm2 - 1 - k];
                a[mm2 - 1 - k] = tmp;
            }
        }
        for (int64_t i = 0; i < m && !bad; i++) {
            for (int64_t k = i; k < m; k++)
                bad |= !isfinite(a[i * m + k]);
            bad |= !(a[i * m + i] > 0.0);
        }
    }
    if (!bad && m < n) {
        /* spread a[i][k] (k >= i) to u[live[i]][live[k]], last first: the
         * target index live[i]*n + live[k] >= i*m + k, so no element is
         * overwritten before it is read */
        double *u = hs->u;
        for (int64_t i = m - 1; i >= 0; i--)
            for (int64_t k = m - 1; k >= i; k--)
                u[live[i] * n + live[k]] = a[i * m + k];
        uint8_t *is_live = calloc((size_t)n, 1);
        if (!is_live) {
            free(live);
            return qk_error(QK_ENOMEM, "out of memory");
        }
        for (int64_t i = 0; i < m; i++)
            is_live[live[i]] = 1;
        for (int64_t p = 0; p < n; p++)
            for (int64_t q = 0; q < n; q++)
                if (q < p || !is_live[p] || !is_live[q])
                    u[p * n + q] = 0.0;
        for (int64_t p = 0; p < n; p++)
            if (!is_live[p]) {
                const int64_t c = hs->perm[p];
                u[p * n + p] = 1.0 / sqrt(hs->hd[c * n + c] + lambda - hs->lambda);
            }
        free(is_live);
    } else if (!bad) {
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < i; k++)
                a[i * n + k] = 0.0;
    }
    free(live);
    return bad;
}

/* hs->hf = (float)hs->hd (n^2 floats: half the size of U, which is freed
 * before when only one tensor uses the Hessian). */
static int hess_make_float(gq_hess *hs)
{
    if (hs->hf)
        return 0;
    const size_t nn = (size_t)hs->n * (size_t)hs->n;
    if (!(hs->hf = malloc(nn * sizeof(float))))
        return qk_error(QK_ENOMEM, "out of memory for a %" PRId64 "x%" PRId64 " Hessian", hs->n, hs->n);
    for (size_t k = 0; k < nn; k++)
        hs->hf[k] = (float)hs->hd[k];
    return 0;
}

/* Prepare h [n][n] for GPTQ, in place: h becomes hs->hd (its diagonal
 * changes; hess_free puts it back, exactly). bs: the block size (act order). */
static int hess_prepare(gq_hess *hs, double *h, int64_t n, int64_t bs, const qk_gptq_opts *o, qk_pool *pool)
{
    memset(hs, 0, sizeof *hs);
    hs->n = n;
    size_t nn = (size_t)n * (size_t)n;
    hs->u = malloc(nn * sizeof(double));
    hs->diag0 = malloc((size_t)n * sizeof(double));
    hs->cw = malloc((size_t)n * sizeof(double));
    hs->perm = malloc((size_t)n * sizeof(int64_t));
    hs->pos = malloc((size_t)n * sizeof(int64_t));
    hs->dead = calloc((size_t)n, 1);
    double *diag = malloc((size_t)n * sizeof(double));
    int rc = 0;
    if (!hs->diag0 || !hs->u || !hs->cw || !hs->perm || !hs->pos || !hs->dead || !diag) {
        rc = qk_error(QK_ENOMEM, "out of memory for a %" PRId64 "x%" PRId64 " Hessian", n, n);
        goto done;
    }
    double live = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = h[i * n + i];
        if (!isfinite(d) || d < 0) {
            rc = qk_error(isfinite(d) ? QK_EINVAL : QK_ENONFINITE,
                          "Hessian diagonal element %" PRId64 " is %g (a Hessian X^T X has a finite, non-negative "
                          "diagonal)", i, d);
            goto done;
        }
        if (d == 0) {
            hs->dead[i] = 1;
            hs->n_dead++;
        } else {
            live += d;
        }
    }
    hs->live_mean = hs->n_dead < n ? live / (double)(n - hs->n_dead) : 1.0;
    for (size_t k = 0; k < nn; k++)
        if (!isfinite(h[k])) {
            rc = qk_error(QK_ENONFINITE, "Hessian element (%" PRId64 ", %" PRId64 ") is not finite",
                          (int64_t)(k / (size_t)n), (int64_t)(k % (size_t)n));
            goto done;
        }
    /* Dead columns (no input ever reached them) are decoupled: their H row
     * and column are 0; the diagonal gets the live mean so damping keeps
     * its scale, and the weights there are zeroed by the caller. */
    for (int64_t i = 0; i < n; i++)
        hs->diag0[i] = h[i * n + i];
    hs->hd = h;
    for (int64_t i = 0; i < n; i++) {
        if (hs->dead[i])
            hs->hd[i * n + i] = hs->live_mean;
        diag[i] = hs->hd[i * n + i];
    }
    if ((rc = make_order(hs, diag, bs, o->act_order)))
        goto done;
    double damp = o->damp;
    for (;;) {
        double lambda = damp * hs->live_mean;
        int f = factor(hs, lambda, pool);
        if (f < 0) {
            rc = f;
            goto done;
        }
        if (f == 0) {
            for (int64_t i = 0; i < n; i++)
                hs->hd[i * n + i] += lambda - hs->lambda;
            hs->lambda = lambda;
            break;
        }
        damp = damp > 0 ? damp * 10 : 1e-4;
        hs->n_raises++;
        if (damp > MAX_DAMP) {
            rc = qk_error(QK_ENONFINITE,
                          "the Hessian cannot be factorized even with damping %g x its mean diagonal (calibration "
                          "data degenerate?)", MAX_DAMP);
            goto done;
        }
    }
    hs->damp = damp;
    for (int64_t c = 0; c < n; c++) {
        double uu = hs->u[hs->pos[c] * n + hs->pos[c]];
        hs->cw[c] = 1.0 / (uu * uu);
    }
done:
    free(diag);
    if (rc)
        hess_free(hs);
    return rc;
}

/* --------------------------------------------------------------- engine */

typedef struct gq_job gq_job;
struct gq_job {
    const gq_type *t;
    const qk_gptq_opts *o;
    int64_t rows, n, B;
    size_t row_bytes;       /* bytes of the packed blocks of one row */
    const float *w;         /* [rows][n] */
    uint8_t *blocks;        /* [rows][row_bytes] */
    float *deq;             /* [rows][n] or NULL */
    const gq_hess *shared;  /* NULL: per-row Hessians through row_h */
    int (*chunk_fn)(gq_job *, const gq_hess *, int64_t, int64_t); /* task_chunk's work on a row chunk */
    qk_gptq_row_hessian_fn row_h;
    void *row_ctx;
    double *err, *err_gptq; /* [rows] */
    double *quad;           /* [rows] r^T Hd r of the current values */
    double *row_damp;       /* [rows] (rowwise) */
    int *row_raises;        /* [rows] (rowwise) */
    int64_t *row_dead;      /* [rows] (rowwise) */
    int rc;
    int failed;             /* first failure claimed */
    char msg[512];
};

static void job_fail(gq_job *j, int rc)
{
    int expected = 0;
    if (__atomic_compare_exchange_n(&j->failed, &expected, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        snprintf(j->msg, sizeof j->msg, "%s", qk_errmsg());
        __atomic_store_n(&j->rc, rc, __ATOMIC_RELEASE);
    }
}

/* Lazy-update scratch of one chunk's refinement (R rows, blocks of bs). */
typedef struct {
    float *pend;   /* [R][n] changes of g not yet applied (the true g is g - pend) */
    double *phi;   /* [R][2][bs] d value / d theta_p of each block element */
    double *hphi;  /* [R][2][bs] Hbb phi */
    double *dv;    /* [R][bs] the refit's step */
    double *hdv;   /* [R][bs] Hbb dv */
    double *acc;   /* [R][bs] the block's change in this sweep */
    float *accf;   /* [R][bs] the same in float */
    float *nv;     /* [R][bs] the refit's values */
    uint8_t *save; /* [R][bytes] the block before the refit */
    int *ok;       /* [R] */
    int64_t *rows; /* [R] the rows a block's change touched (spread_block) */
    float *tmp;    /* [R][n] their pend rows, gathered */
} gq_scratch;

/* Refit of block kb's fp16 scales (codes fixed) by least squares for the R
 * rows: A = Phi^T Hbb Phi, rhs = Phi^T g_b; kept where the objective drops.
 * g must be exact on the block; it stays so (Hbb dv, double). */
static void refit_block(const gq_job *j, const gq_hess *hs, int64_t R, int64_t kb, float *v, uint8_t *blocks,
                        double *g, double *quad, gq_scratch *s)
{
    const gq_type *t = j->t;
    const int64_t n = j->n, bs = t->bs, nsub = bs / t->sub, c0 = kb * bs;
    const int np = t->n_theta;
    const double *Hbb = hs->hd + c0 * n + c0;
    for (int64_t i = 0; i < R; i++) {
        const uint8_t *blk = blocks + (size_t)i * j->row_bytes + kb * t->bytes;
        double *ph = s->phi + i * 2 * bs;
        for (int64_t jj = 0; jj < bs; jj++) {
            int sb = (int)(jj / t->sub);
            float ca, cb;
            gq_sub sp;
            t->coef(t, blk, sb, &ca, &cb);
            t->params(t, blk, sb, &sp);
            int q = t->get_code(t, blk, (int)jj);
            ph[jj] = (double)ca * ((double)gq_lev(t, q) + sp.c);
            ph[bs + jj] = cb;
        }
    }
    /* Hbb is symmetric: row phi times Hbb = (Hbb phi)^T, all rows in one product */
    qk_dgemm_kn(s->hphi, bs, s->phi, bs, Hbb, n, 2 * R, bs, bs, 0);
    int n_ok = 0;
    for (int64_t i = 0; i < R; i++) {
        uint8_t *blk = blocks + (size_t)i * j->row_bytes + kb * t->bytes;
        const float *vb = v + i * n + c0;
        const double *gb = g + i * n + c0, *ph = s->phi + i * 2 * bs, *hph = s->hphi + i * 2 * bs;
        double *dvi = s->dv + i * bs;
        float *nv = s->nv + i * bs;
        double A[2][2] = {{0, 0}, {0, 0}}, rhs[2] = {0, 0}, dt[2] = {0, 0};
        for (int p = 0; p < np; p++) {
            for (int p2 = 0; p2 < np; p2++)
                A[p2][p] = cblas_ddot((int)bs, ph + p2 * bs, 1, hph + p * bs, 1);
            rhs[p] = cblas_ddot((int)bs, ph + p * bs, 1, gb, 1);
        }
        int ok;
        if (np == 1) {
            ok = A[0][0] > 0;
            if (ok)
                dt[0] = rhs[0] / A[0][0];
        } else {
            double det = A[0][0] * A[1][1] - A[0][1] * A[1][0];
            ok = det > 1e-300 * fabs(A[0][0] * A[1][1]) && A[0][0] > 0;
            if (ok) {
                dt[0] = (A[1][1] * rhs[0] - A[0][1] * rhs[1]) / det;
                dt[1] = (A[0][0] * rhs[1] - A[1][0] * rhs[0]) / det;
            }
        }
        if (ok) {
            memcpy(s->save + (size_t)i * t->bytes, blk, t->bytes);
            for (int p = 0; p < np; p++)
                gq_theta_set(t, blk, p, (float)(gq_theta_get(t, blk, p) + dt[p]));
            for (int sb = 0; sb < nsub && ok; sb++) {
                gq_sub sp;
                t->params(t, blk, sb, &sp);
                for (int64_t jj = sb * t->sub; jj < (sb + 1) * t->sub; jj++) {
                    nv[jj] = gq_value(t, &sp, t->get_code(t, blk, (int)jj));
                    if (!isfinite(nv[jj]))
                        ok = 0;
                }
            }
            if (!ok)
                memcpy(blk, s->save + (size_t)i * t->bytes, t->bytes);
        }
        s->ok[i] = ok;
        n_ok += ok;
        for (int64_t a = 0; a < bs; a++)
            dvi[a] = ok ? (double)nv[a] - vb[a] : 0.0;
    }
    if (!n_ok)
        return;
    qk_dgemm_kn(s->hdv, bs, s->dv, bs, Hbb, n, R, bs, bs, 0);
    for (int64_t i = 0; i < R; i++) {
        if (!s->ok[i])
            continue;
        uint8_t *blk = blocks + (size_t)i * j->row_bytes + kb * t->bytes;
        float *vb = v + i * n + c0;
        double *gb = g + i * n + c0, *acc = s->acc + i * bs;
        const double *dvi = s->dv + i * bs, *hdv = s->hdv + i * bs;
        /* change of the objective: dv^T Hbb dv - 2 dv^T g_b */
        double delta = cblas_ddot((int)bs, dvi, 1, hdv, 1) - 2 * cblas_ddot((int)bs, dvi, 1, gb, 1);
        if (!(delta < 0)) {
            memcpy(blk, s->save + (size_t)i * t->bytes, t->bytes);
            continue;
        }
        for (int64_t a = 0; a < bs; a++) {
            vb[a] = s->nv[i * bs + a];
            gb[a] -= hdv[a];
            acc[a] += dvi[a];
        }
        quad[i] += delta;
    }
}

/* Coordinate descent over block kb's codes for the R rows: the
 * unconstrained optimum of element c given the others is v_c + g_c / H_cc;
 * the code nearest to it and the two neighbours of the current code are
 * tried, the best kept when it lowers the objective. g exact on the block,
 * and kept so. */
static void descend_block(const gq_job *j, const gq_hess *hs, int64_t R, int64_t kb, float *v, uint8_t *blocks,
                          double *g, double *quad, gq_scratch *s)
{
    const gq_type *t = j->t;
    const int64_t n = j->n, bs = t->bs, nsub = bs / t->sub, c0 = kb * bs, c1 = c0 + bs;
    const double *H = hs->hd;
    for (int64_t i = 0; i < R; i++) {
        uint8_t *blk = blocks + (size_t)i * j->row_bytes + kb * t->bytes;
        float *vr = v + i * n;
        double *gr = g + i * n, *acc = s->acc + i * bs;
        for (int sb = 0; sb < nsub; sb++) {
            gq_sub sp;
            t->params(t, blk, sb, &sp);
            for (int64_t jj = sb * t->sub; jj < (sb + 1) * t->sub; jj++) {
                const int64_t c = c0 + jj;
                const double hcc = H[c * n + c];
                if (!(hcc > 0))
                    continue;
                int q0 = t->get_code(t, blk, (int)jj), cand[3], best_q = q0;
                float tv;
                cand[0] = gq_nearest(t, &sp, (float)(vr[c] + gr[c] / hcc), &tv);
                cand[1] = q0 - 1;
                cand[2] = q0 + 1;
                double best = 0;
                float best_v = vr[c];
                for (int k = 0; k < 3; k++) {
                    if (cand[k] < 0 || cand[k] >= t->nlev || cand[k] == q0)
                        continue;
                    float cv = gq_value(t, &sp, cand[k]);
                    double dv = (double)cv - vr[c];
                    double d = dv * dv * hcc - 2 * dv * gr[c];
                    if (d < best) {
                        best = d;
                        best_q = cand[k];
                        best_v = cv;
                    }
                }
                if (best_q == q0)
                    continue;
                const double dv = (double)best_v - vr[c], *hc = H + c * n;
                for (int64_t k = c0; k < c1; k++)
                    gr[k] -= dv * hc[k];
                acc[jj] += dv;
                quad[i] += best;
                vr[c] = best_v;
                t->set_code(t, blk, (int)jj, best_q);
            }
        }
    }
}

/* A block's change is spread per changed value (an n-long multiply-add
 * each) when fewer than 1 in SPARSE_SPREAD of the changed rows' values
 * changed: the code descent moves ~0.1-0.3 % of the codes, while a refit
 * that is kept changes its whole block. */
#define SPARSE_SPREAD 4

/* The lazy update of block [c0, c0+bs): pend[i] += accf[i] Hf[c0:c0+bs][cols]
 * for every row i with a change, cols the columns right of the block and,
 * unless `last`, left of it. Rows without a change are left out (a refit is
 * kept in 25-40 % of the blocks), and a sparse change goes value by value.
 * The sums are the same FMA chains whichever way (the kernel adds its k
 * terms one by one into pend, a zero term adds nothing), so the result
 * does not depend on the route taken on CPUs with qk_forward_gemm's kernel. */
static void spread_block(const float *Hf, int64_t n, int64_t R, int64_t bs, int64_t c0, int last, gq_scratch *s)
{
    const int64_t c1 = c0 + bs;
    const float *Hb = Hf + c0 * n;
    int64_t nz = 0, nrow = 0;
    for (int64_t i = 0; i < R; i++) {
        int64_t k = 0;
        for (int64_t a = 0; a < bs; a++)
            k += s->accf[i * bs + a] != 0.0f;
        nz += k;
        if (k)
            s->rows[nrow++] = i;
    }
    if (nrow == 0)
        return;
    if (nz * SPARSE_SPREAD < nrow * bs) {
        for (int64_t r = 0; r < nrow; r++) {
            const int64_t i = s->rows[r];
            float *p = s->pend + i * n;
            for (int64_t a = 0; a < bs; a++) {
                const float f = s->accf[i * bs + a];
                if (f == 0.0f)
                    continue;
                if (c1 < n)
                    qk_sfma(p + c1, Hb + a * n + c1, f, n - c1);
                if (!last && c0 > 0)
                    qk_sfma(p, Hb + a * n, f, c0);
            }
        }
        return;
    }
    float *y = s->pend, *x = s->accf;
    if (nrow < R) { /* the changed rows side by side: their steps in accf (in place), pend rows in tmp */
        for (int64_t r = 0; r < nrow; r++) {
            const int64_t i = s->rows[r];
            if (i != r)
                memcpy(s->accf + r * bs, s->accf + i * bs, (size_t)bs * sizeof(float));
            memcpy(s->tmp + r * n, s->pend + i * n, (size_t)n * sizeof(float));
        }
        y = s->tmp;
    }
    if (c1 < n)
        qk_sgemm_kn(y + c1, n, x, bs, Hb + c1, n, nrow, n - c1, bs, 1);
    if (!last && c0 > 0)
        qk_sgemm_kn(y, n, x, bs, Hb, n, nrow, c0, bs, 1);
    if (nrow < R)
        for (int64_t r = 0; r < nrow; r++)
            memcpy(s->pend + s->rows[r] * n, s->tmp + r * n, (size_t)n * sizeof(float));
}

/* Refinement of the R rows of a chunk on the damped objective r^T Hd r (r =
 * w0 - v); see the header. Each pass is two sweeps over the blocks, left to
 * right: the scale refit of every block (refit_block), then the code
 * descent (descend_block). A step at a block needs g = Hd r only on that
 * block: there g is kept exact in double (Hbb), and the block's change dV
 * [R][bs] reaches the other columns lazily, added to pend by one sgemm per
 * changed block on the float copy of Hd, and subtracted when a block is
 * reached (the rest at the end of the sweep). The last sweep never looks
 * back, so it updates only the columns to its right. Per row and sweep at
 * most n^2 float multiply-adds (n^2/2 in the last), where updating g
 * everywhere after each change cost n^2 in double per sweep plus n per
 * changed code, with every Hbb product a matrix-vector one; the decisions
 * are the same up to float rounding in g (on stories260K and the synthetic
 * tests the bytes are identical). quad[i] (r^T Hd r) follows the accepted
 * steps' own changes. Rows are independent and go side by side so that each
 * block of Hd read serves all R of them. */
static void refine_rows(const gq_job *j, const gq_hess *hs, int64_t R, float *v, uint8_t *blocks, double *g,
                        double *quad, gq_scratch *s)
{
    const gq_type *t = j->t;
    const int64_t n = j->n, bs = t->bs, nb = n / bs;
    const float *Hf = hs->hf;
    memset(s->pend, 0, (size_t)R * (size_t)n * sizeof(float));
    for (int sweep = 0; sweep < 2 * j->o->refine; sweep++) {
        const int last = sweep == 2 * j->o->refine - 1;
        for (int64_t kb = 0; kb < nb; kb++) {
            const int64_t c0 = kb * bs;
            for (int64_t i = 0; i < R; i++) {
                double *gb = g + i * n + c0;
                float *pb = s->pend + i * n + c0;
                for (int64_t a = 0; a < bs; a++)
                    gb[a] -= (double)pb[a];
                memset(pb, 0, (size_t)bs * sizeof(float));
            }
            memset(s->acc, 0, (size_t)R * (size_t)bs * sizeof(double));
            if (sweep % 2 == 0)
                refit_block(j, hs, R, kb, v, blocks, g, quad, s);
            else
                descend_block(j, hs, R, kb, v, blocks, g, quad, s);
            for (int64_t k = 0; k < R * bs; k++)
                s->accf[k] = (float)s->acc[k];
            spread_block(Hf, n, R, bs, c0, last, s);
        }
        if (!last) /* what is still pending: the left columns' share of later blocks */
            for (size_t k = 0; k < (size_t)R * (size_t)n; k++) {
                g[k] -= (double)s->pend[k];
                s->pend[k] = 0.0f;
            }
    }
}

/* r^T Hd r (quad) minus the damping and dead-column terms = the undamped objective. */
static double row_objective_from(const gq_hess *hs, const double *r, double quad)
{
    double e = quad;
    for (int64_t k = 0; k < hs->n; k++) {
        e -= hs->lambda * r[k] * r[k];
        if (hs->dead[k])
            e -= hs->live_mean * r[k] * r[k];
    }
    return e;
}

/* Checks that row `row`'s bytes decode to exactly v [n] (the values the
 * algorithm used) and hands them to deq. */
static int finish_row(gq_job *j, int64_t row, const float *v, float *dec)
{
    const gq_type *t = j->t;
    const int64_t n = j->n, bs = t->bs;
    const uint8_t *brow = j->blocks + (size_t)row * j->row_bytes;
    for (int64_t kb = 0; kb < n / bs; kb++) {
        gq_decode(t, brow + kb * t->bytes, dec);
        for (int64_t jj = 0; jj < bs; jj++)
            if (!(dec[jj] == v[kb * bs + jj]))
                return qk_error(QK_EFORMAT,
                                "internal error: %s block %" PRId64 " of row %" PRId64 " decodes element %" PRId64
                                " to %.9g, not the %.9g chosen", t->type >= 0 ? qk_type_name(t->type) : "GPTQ", kb,
                                row, jj, (double)dec[jj], (double)v[kb * bs + jj]);
    }
    if (j->deq)
        memcpy(j->deq + (size_t)row * (size_t)n, v, (size_t)n * sizeof(float));
    return 0;
}

/* The GPTQ pass over rows [r0, r0+R) with a prepared Hessian: blocks,
 * err_gptq and quad (r^T Hd r after it); without refinement also err, the
 * decode check and deq. */
static int gptq_rows(gq_job *j, const gq_hess *hs, int64_t r0, int64_t R)
{
    const gq_type *t = j->t;
    const int64_t n = j->n, bs = t->bs, B = j->B;
    const double *U = hs->u;
    size_t rn = (size_t)R * (size_t)n;
    double *wp = malloc(rn * sizeof(double));        /* [R][n] weights being updated, permuted order */
    double *err = malloc((size_t)R * (size_t)B * sizeof(double)); /* [R][B] the batch's scaled errors, negated */
    double *w0 = malloc(rn * sizeof(double));        /* [R][n] original weights, dead zeroed, original order */
    double *esum = calloc((size_t)R, sizeof(double)); /* [R] sum of squared scaled errors */
    float *v = malloc(rn * sizeof(float));           /* [R][n] chosen values, original order */
    float xb[GQ_MAX_BS], wb[GQ_MAX_BS], dec[GQ_MAX_BS];
    int rc = 0;
    if (!wp || !err || !w0 || !esum || !v) {
        rc = qk_error(QK_ENOMEM, "out of memory for GPTQ rows of %" PRId64 " columns", n);
        goto done;
    }
    for (int64_t i = 0; i < R; i++) {
        const float *src = j->w + (size_t)(r0 + i) * (size_t)n;
        for (int64_t c = 0; c < n; c++)
            w0[i * n + c] = hs->dead[c] ? 0.0 : (double)src[c];
        for (int64_t p = 0; p < n; p++)
            wp[i * n + p] = w0[i * n + hs->perm[p]];
    }
    for (int64_t b0 = 0; b0 < n && !rc; b0 += B) {
        const int64_t b1 = b0 + B < n ? b0 + B : n, bw = b1 - b0;
        for (int64_t i = 0; i < R && !rc; i++) {
            double *wr = wp + i * n;
            uint8_t *brow = j->blocks + (size_t)(r0 + i) * j->row_bytes;
            float *vr = v + i * n;
            gq_sub sp[GQ_MAX_SUB];
            int64_t kb = -1;
            for (int64_t p = b0; p < b1; p++) {
                const int64_t c = hs->perm[p];
                if (p % bs == 0) {
                    /* a new block: its scales from its columns' current weights */
                    kb = c / bs;
                    for (int64_t jj = 0; jj < bs; jj++) {
                        xb[jj] = (float)wr[hs->pos[kb * bs + jj]];
                        wb[jj] = (float)hs->cw[kb * bs + jj];
                    }
                    uint8_t *blk = brow + kb * t->bytes;
                    t->choose(t, xb, wb, blk, j->o->search);
                    for (int s = 0; s < bs / t->sub; s++) {
                        t->params(t, blk, s, &sp[s]);
                        if (!isfinite(sp[s].a) || !isfinite(sp[s].b)) {
                            rc = qk_error(QK_ELIMIT, "row %" PRId64 " block %" PRId64 ": a scale overflows fp16",
                                          r0 + i, kb);
                            break;
                        }
                    }
                    if (rc)
                        break;
                }
                const int64_t jj = c - kb * bs;
                float val;
                int q = gq_nearest(t, &sp[jj / t->sub], (float)wr[p], &val);
                t->set_code(t, brow + kb * t->bytes, (int)jj, q);
                vr[c] = val;
                const double *ur = U + p * n;
                const double e = (wr[p] - val) / ur[p];
                err[i * bw + (p - b0)] = -e;
                esum[i] += e * e;
                qk_dfnma(wr + p + 1, ur + p + 1, e, b1 - p - 1);
            }
        }
        if (!rc && b1 < n) /* wp[:, b1:] -= E U[b0:b1, b1:] */
            qk_dgemm_kn(wp + b1, n, err, bw, U + b0 * n + b1, n, R, n - b1, bw, 1);
    }
    if (rc)
        goto done;
    /* The GPTQ pass's own account of the objective: r = w0 - v = U^T e
     * (permuted order), and U Hd U^T = I, so r^T Hd r = sum e^2. */
    for (int64_t i = 0; i < R && !rc; i++) {
        const int64_t row = r0 + i;
        double *r = wp + i * n;
        for (int64_t k = 0; k < n; k++)
            r[k] = w0[i * n + k] - (double)v[i * n + k];
        j->quad[row] = esum[i];
        j->err_gptq[row] = row_objective_from(hs, r, esum[i]);
        if (j->o->refine == 0) {
            j->err[row] = j->err_gptq[row];
            rc = finish_row(j, row, v + i * n, dec);
        }
    }
done:
    free(wp);
    free(err);
    free(w0);
    free(esum);
    free(v);
    return rc;
}

/* The refinement of rows [r0, r0+R) after their GPTQ pass (the chunk's
 * values decoded from its blocks), then err, the decode check and deq. */
static int refine_chunk(gq_job *j, const gq_hess *hs, int64_t r0, int64_t R)
{
    const gq_type *t = j->t;
    const int64_t n = j->n, bs = t->bs;
    const size_t rn = (size_t)R * (size_t)n, rb = (size_t)R * (size_t)bs;
    float *v = malloc(rn * sizeof(float));     /* [R][n] current values */
    float *rf = malloc(rn * sizeof(float));    /* [R][n] w0 - v for g's start */
    double *g = malloc(rn * sizeof(double));   /* [R][n] Hd (w0 - v) */
    double *r = malloc((size_t)n * sizeof(double));
    float dec[GQ_MAX_BS];
    gq_scratch s = {.pend = malloc(rn * sizeof(float)), .phi = malloc(2 * rb * sizeof(double)),
                    .hphi = malloc(2 * rb * sizeof(double)), .dv = malloc(rb * sizeof(double)),
                    .hdv = malloc(rb * sizeof(double)), .acc = malloc(rb * sizeof(double)),
                    .accf = malloc(rb * sizeof(float)), .nv = malloc(rb * sizeof(float)),
                    .save = malloc((size_t)R * t->bytes), .ok = malloc((size_t)R * sizeof(int)),
                    .rows = malloc((size_t)R * sizeof(int64_t)), .tmp = malloc(rn * sizeof(float))};
    int rc = 0;
    if (!v || !rf || !g || !r || !s.pend || !s.phi || !s.hphi || !s.dv || !s.hdv || !s.acc || !s.accf || !s.nv ||
        !s.save || !s.ok || !s.rows || !s.tmp) {
        rc = qk_error(QK_ENOMEM, "out of memory for GPTQ rows of %" PRId64 " columns", n);
        goto done;
    }
    for (int64_t i = 0; i < R; i++) {
        const uint8_t *brow = j->blocks + (size_t)(r0 + i) * j->row_bytes;
        const float *src = j->w + (size_t)(r0 + i) * (size_t)n;
        for (int64_t kb = 0; kb < n / bs; kb++)
            gq_decode(t, brow + kb * t->bytes, v + i * n + kb * bs);
        for (int64_t c = 0; c < n; c++)
            rf[i * n + c] = (float)((hs->dead[c] ? 0.0 : (double)src[c]) - (double)v[i * n + c]);
    }
    /* g = (w0 - v) Hd, in float (it only steers the refinement; the
     * objective itself comes from the GPTQ pass and the accepted steps) */
    qk_sgemm_kn(s.pend, n, rf, n, hs->hf, n, R, n, n, 0);
    for (size_t k = 0; k < rn; k++)
        g[k] = (double)s.pend[k];
    refine_rows(j, hs, R, v, j->blocks + (size_t)r0 * j->row_bytes, g, j->quad + r0, &s);
    for (int64_t i = 0; i < R && !rc; i++) {
        const int64_t row = r0 + i;
        const float *src = j->w + (size_t)row * (size_t)n;
        for (int64_t c = 0; c < n; c++)
            r[c] = (hs->dead[c] ? 0.0 : (double)src[c]) - (double)v[i * n + c];
        j->err[row] = row_objective_from(hs, r, j->quad[row]);
        rc = finish_row(j, row, v + i * n, dec);
    }
done:
    free(v);
    free(rf);
    free(g);
    free(r);
    free(s.pend);
    free(s.phi);
    free(s.hphi);
    free(s.dv);
    free(s.hdv);
    free(s.acc);
    free(s.accf);
    free(s.nv);
    free(s.save);
    free(s.ok);
    free(s.rows);
    free(s.tmp);
    return rc;
}

/* Row chunk ci with the shared Hessian: j->chunk_fn (the GPTQ pass, then
 * the refinement) on rows [ROW_CHUNK ci, ...). */
static void task_chunk(void *ctx, int64_t ci, int thread)
{
    (void)thread;
    gq_job *j = ctx;
    if (__atomic_load_n(&j->failed, __ATOMIC_ACQUIRE))
        return;
    int64_t r0 = ci * ROW_CHUNK, R = j->rows - r0 < ROW_CHUNK ? j->rows - r0 : ROW_CHUNK;
    int rc = j->chunk_fn(j, j->shared, r0, R);
    if (rc)
        job_fail(j, rc);
}

static void task_rowwise(void *ctx, int64_t row, int thread)
{
    (void)thread;
    gq_job *j = ctx;
    if (__atomic_load_n(&j->failed, __ATOMIC_ACQUIRE))
        return;
    gq_hess hs;
    double *h = malloc((size_t)j->n * (size_t)j->n * sizeof(double));
    int rc = h ? 0 : qk_error(QK_ENOMEM, "out of memory for a %" PRId64 "x%" PRId64 " Hessian", j->n, j->n);
    if (!rc && (rc = j->row_h(j->row_ctx, row, h)) == 0 &&
        (rc = hess_prepare(&hs, h, j->n, j->t->bs, j->o, NULL)) == 0) {
        j->row_damp[row] = hs.damp;
        j->row_raises[row] = hs.n_raises;
        j->row_dead[row] = hs.n_dead;
        rc = gptq_rows(j, &hs, row, 1);
        if (!rc && j->o->refine > 0 && !(rc = hess_make_float(&hs)))
            rc = refine_chunk(j, &hs, row, 1);
        hess_free(&hs);
    } else if (rc) {
        qk_error_prefix(rc, "row Hessian");
    }
    free(h);
    if (rc) {
        char m[400];
        snprintf(m, sizeof m, "%s", qk_errmsg());
        job_fail(j, qk_error(rc, "row %" PRId64 ": %s", row, m));
    }
}

static int check_args(const qk_gptq_opts *o, const gq_type *t, const float *w, int64_t rows, int64_t cols)
{
    if (!t)
        return qk_error(QK_EINVAL, "GPTQ does not support type %s (supported: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, "
                                   "IQ4_XS, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)", qk_type_name(o->type));
    if (rows <= 0 || cols <= 0 || cols % t->bs)
        return qk_error(QK_EINVAL, "GPTQ into %s: %" PRId64 " columns are not a positive multiple of its %d-element "
                                   "block", t->type >= 0 ? qk_type_name(t->type) : "the GPTQ layout", cols, t->bs);
    if (cols > INT32_MAX / 2 || rows > INT32_MAX)
        return qk_error(QK_ELIMIT, "GPTQ: %" PRId64 " x %" PRId64 " is beyond BLAS's 32-bit sizes", rows, cols);
    if (!(o->damp >= 0 && o->damp <= MAX_DAMP))
        return qk_error(QK_EINVAL, "GPTQ damping %g outside [0, %g]", o->damp, MAX_DAMP);
    if (o->refine < 0 || o->refine > 100)
        return qk_error(QK_EINVAL, "GPTQ refinement passes %d outside [0, 100]", o->refine);
    int64_t bad = qk_find_nonfinite(w, rows * cols);
    if (bad >= 0)
        return qk_error(QK_ENONFINITE, "weight %" PRId64 " (row %" PRId64 ") is not finite", bad, bad / cols);
    return 0;
}

/* Shared driver: blocks (rows x row_bytes) out, internal format of t. With
 * pre (a prepared Hessian, kept) h is unused; else h (shared Hessian) is
 * prepared here, worked on in place and restored; or per-row Hessians
 * through row_h. */
static int gq_run(const qk_gptq_opts *o, const gq_type *t, const float *w, int64_t rows, int64_t cols,
                  double *h, qk_gptq_row_hessian_fn row_h, void *row_ctx, uint8_t *blocks, float *deq,
                  qk_pool *pool, qk_gptq_stats *st, gq_hess *pre)
{
    double t0 = qk_now();
    int rc = check_args(o, t, w, rows, cols);
    if (rc)
        return rc;
    gq_job j = {.t = t, .o = o, .rows = rows, .n = cols, .w = w, .blocks = blocks, .deq = deq, .row_h = row_h,
                .row_ctx = row_ctx};
    int64_t B = o->batch > 0 ? o->batch : 128;
    j.B = (B + t->bs - 1) / t->bs * t->bs;
    j.row_bytes = (size_t)(cols / t->bs) * t->bytes;
    gq_hess own, *hs = pre;
    int have_own = 0;
    j.err = calloc((size_t)rows, sizeof(double));
    j.err_gptq = calloc((size_t)rows, sizeof(double));
    j.quad = calloc((size_t)rows, sizeof(double));
    if (row_h) {
        j.row_damp = calloc((size_t)rows, sizeof(double));
        j.row_raises = calloc((size_t)rows, sizeof(int));
        j.row_dead = calloc((size_t)rows, sizeof(int64_t));
    }
    if (!j.err || !j.err_gptq || !j.quad || (row_h && (!j.row_damp || !j.row_raises || !j.row_dead))) {
        rc = qk_error(QK_ENOMEM, "out of memory");
        goto done;
    }
    if (!row_h) {
        if (!hs) {
            /* the factorization (2/3 n^3: ~27 s on one core for a
             * 14336-column ffn_down with OpenBLAS's dpotrf/dtrtri; see
             * chol_lower) and then the row chunks, both on the pool; U is the
             * same for every thread count. */
            openblas_set_num_threads(1);
            rc = hess_prepare(&own, h, cols, t->bs, o, pool);
            if (rc)
                goto done;
            have_own = 1;
            hs = &own;
        }
        j.shared = hs;
        const int64_t n_chunks = (rows + ROW_CHUNK - 1) / ROW_CHUNK;
        j.chunk_fn = gptq_rows;
        qk_pool_run(pool, n_chunks, 1, task_chunk, &j);
        if (!j.failed && o->refine > 0) {
            /* U is done with: a Hessian of this tensor alone gives its memory
             * back before the float copy is made */
            if (have_own) {
                free(own.u);
                own.u = NULL;
            }
            if ((rc = hess_make_float(hs)))
                goto done;
            j.chunk_fn = refine_chunk;
            qk_pool_run(pool, n_chunks, 1, task_chunk, &j);
        }
    } else {
        openblas_set_num_threads(1); /* the pool parallelises over rows */
        qk_pool_run(pool, rows, 1, task_rowwise, &j);
    }
    if (j.failed) {
        rc = qk_error(j.rc, "%s", j.msg);
        goto done;
    }
    if (st) {
        memset(st, 0, sizeof *st);
        for (int64_t r = 0; r < rows; r++) { /* in row order: the sums do not depend on threads */
            st->err += j.err[r];
            st->err_gptq += j.err_gptq[r];
        }
        if (hs) {
            st->damp = hs->damp;
            st->n_raises = hs->n_raises;
            st->n_dead = hs->n_dead;
        } else {
            for (int64_t r = 0; r < rows; r++) {
                st->damp = j.row_damp[r] > st->damp ? j.row_damp[r] : st->damp;
                st->n_raises = j.row_raises[r] > st->n_raises ? j.row_raises[r] : st->n_raises;
                st->n_dead = j.row_dead[r] > st->n_dead ? j.row_dead[r] : st->n_dead;
            }
        }
        st->seconds = qk_now() - t0;
    }
done:
    if (have_own)
        hess_free(&own);
    free(j.err);
    free(j.err_gptq);
    free(j.quad);
    free(j.row_damp);
    free(j.row_raises);
    free(j.row_dead);
    return rc;
}

/* ------------------------------------------------- prepared Hessians */

struct qk_gptq_prepared {
    gq_hess hs;
    int64_t bs;      /* block size the column order was made for */
    double damp;     /* the options it was prepared with */
    int act_order;
};

int qk_gptq_prepare(qk_gptq_prepared **out, const qk_gptq_opts *o, double *h, int64_t cols, qk_pool *pool)
{
    *out = NULL;
    const gq_type *t = o->type == QK_GPTQ_LAYOUT ? NULL : gq_type_get(o->type);
    if (!t)
        return qk_error(QK_EINVAL, "GPTQ: no prepared Hessians for type %s", qk_type_name(o->type));
    if (cols <= 0 || cols % t->bs || cols > INT32_MAX / 2)
        return qk_error(QK_EINVAL, "GPTQ into %s: %" PRId64 " columns are not a positive multiple of its %d-element "
                                   "block", qk_type_name(o->type), cols, t->bs);
    if (!(o->damp >= 0 && o->damp <= MAX_DAMP))
        return qk_error(QK_EINVAL, "GPTQ damping %g outside [0, %g]", o->damp, MAX_DAMP);
    qk_gptq_prepared *p = calloc(1, sizeof *p);
    if (!p)
        return qk_error(QK_ENOMEM, "out of memory");
    openblas_set_num_threads(1);
    int rc = hess_prepare(&p->hs, h, cols, t->bs, o, pool);
    if (rc) {
        free(p);
        return rc;
    }
    p->bs = t->bs;
    p->damp = o->damp;
    p->act_order = o->act_order;
    *out = p;
    return 0;
}

int qk_gptq_prepared_fits(const qk_gptq_prepared *p, const qk_gptq_opts *o, int64_t cols)
{
    const gq_type *t = o->type == QK_GPTQ_LAYOUT ? NULL : gq_type_get(o->type);
    return p && t && p->hs.n == cols && (p->bs == t->bs || !o->act_order) && p->damp == o->damp &&
           p->act_order == o->act_order;
}

int qk_gptq_quantize_prepared(const qk_gptq_opts *o, qk_gptq_prepared *p, const float *w, int64_t rows, void *dst,
                              float *deq, qk_pool *pool, qk_gptq_stats *st)
{
    if (!qk_gptq_prepared_fits(p, o, p->hs.n))
        return qk_error(QK_EINVAL, "GPTQ: the prepared Hessian was made with other options (damping, act order, "
                                   "block size) than %s's", qk_type_name(o->type));
    return gq_run(o, gq_type_get(o->type), w, rows, p->hs.n, NULL, NULL, NULL, dst, deq, pool, st, &p->hs);
}

void qk_gptq_prepared_free(qk_gptq_prepared *p)
{
    if (!p)
        return;
    hess_free(&p->hs);
    free(p);
}

/* A working copy of a caller's const Hessian. */
static int dup_hessian(const double *h, int64_t n, double **out)
{
    size_t nn = (size_t)n * (size_t)n;
    if (n <= 0 || !(*out = malloc(nn * sizeof(double))))
        return n <= 0 ? qk_error(QK_EINVAL, "GPTQ: %" PRId64 " columns", n)
                      : qk_error(QK_ENOMEM, "out of memory for a %" PRId64 "x%" PRId64 " Hessian", n, n);
    memcpy(*out, h, nn * sizeof(double));
    return 0;
}

int qk_gptq_quantize_inplace(const qk_gptq_opts *o, const float *w, int64_t rows, int64_t cols, double *h, void *dst,
                             float *deq, qk_pool *pool, qk_gptq_stats *st)
{
    if (o->type == QK_GPTQ_LAYOUT)
        return qk_error(QK_EINVAL, "the GPTQ layout is written with qk_gptq_quantize_layout");
    return gq_run(o, gq_type_get(o->type), w, rows, cols, h, NULL, NULL, dst, deq, pool, st, NULL);
}

int qk_gptq_quantize(const qk_gptq_opts *o, const float *w, int64_t rows, int64_t cols, const double *h, void *dst,
                     float *deq, qk_pool *pool, qk_gptq_stats *st)
{
    double *hw = NULL;
    int rc = o->type == QK_GPTQ_LAYOUT ? qk_gptq_quantize_inplace(o, w, rows, cols, NULL, dst, deq, pool, st)
                                       : dup_hessian(h, cols, &hw);
    if (!rc && hw)
        rc = qk_gptq_quantize_inplace(o, w, rows, cols, hw, dst, deq, pool, st);
    free(hw);
    return rc;
}

int qk_gptq_quantize_rowwise(const qk_gptq_opts *o, const float *w, int64_t rows, int64_t cols,
                             qk_gptq_row_hessian_fn row_h, void *ctx, void *dst, float *deq, qk_pool *pool,
                             qk_gptq_stats *st)
{
    if (o->type == QK_GPTQ_LAYOUT)
        return qk_error(QK_EINVAL, "per-row Hessians are for ggml types");
    return gq_run(o, gq_type_get(o->type), w, rows, cols, NULL, row_h, ctx, dst, deq, pool, st, NULL);
}

int qk_gptq_quantize_layout(const qk_gptq_opts *o, const float *w, int64_t rows, int64_t cols, const double *h,
                            uint8_t *q, uint16_t *scale, uint16_t *zero, float *deq, qk_pool *pool,
                            qk_gptq_stats *st)
{
    double *hw = NULL;
    int rc = dup_hessian(h, cols, &hw);
    if (!rc)
        rc = qk_gptq_quantize_layout_inplace(o, w, rows, cols, hw, q, scale, zero, deq, pool, st);
    free(hw);
    return rc;
}

int qk_gptq_quantize_layout_inplace(const qk_gptq_opts *o, const float *w, int64_t rows, int64_t cols, double *h,
                                    uint8_t *q, uint16_t *scale, uint16_t *zero, float *deq, qk_pool *pool,
                                    qk_gptq_stats *st)
{
    if (o->type != QK_GPTQ_LAYOUT || (o->layout_bits != 4 && o->layout_bits != 8) || o->layout_group <= 0 ||
        o->layout_group > GQ_MAX_BS)
        return qk_error(QK_EINVAL, "GPTQ layout: bits %d / group %" PRId64 " unsupported (4 or 8 bits, groups up to %d)",
                        o->layout_bits, o->layout_group, GQ_MAX_BS);
    gq_type t;
    gq_type_gptq(&t, o->layout_bits, o->layout_group, o->layout_sym);
    if (cols % t.bs)
        return qk_error(QK_EINVAL, "GPTQ layout: %" PRId64 " columns are not a multiple of the group size %d", cols, t.bs);
    const int64_t ng = cols / t.bs;
    uint8_t *blocks = malloc((size_t)rows * (size_t)ng * t.bytes);
    if (!blocks)
        return qk_error(QK_ENOMEM, "out of memory");
    int rc = gq_run(o, &t, w, rows, cols, h, NULL, NULL, blocks, deq, pool, st, NULL);
    for (int64_t r = 0; r < rows && !rc; r++)
        for (int64_t g = 0; g < ng; g++) {
            const uint8_t *b = blocks + ((size_t)r * (size_t)ng + (size_t)g) * t.bytes;
            scale[r * ng + g] = qk_rd_u16(b);
            zero[r * ng + g] = qk_rd_u16(b + 2);
            memcpy(q + r * cols + g * t.bs, b + 4, (size_t)t.bs);
        }
    free(blocks);
    return rc;
}

double qk_gptq_layer_error(const float *w, const float *q, int64_t rows, int64_t cols, const double *h)
{
    double total = 0;
    double *r = malloc((size_t)cols * sizeof(double));
    if (!r)
        return NAN;
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t k = 0; k < cols; k++)
            r[k] = (double)w[i * cols + k] - (double)q[i * cols + k];
        for (int64_t a = 0; a < cols; a++) {
            if (r[a] == 0)
                continue;
            double s = 0;
            for (int64_t b = 0; b < cols; b++)
                s += h[a * cols + b] * r[b];
            total += r[a] * s;
        }
    }
    free(r);
    return total;
}
