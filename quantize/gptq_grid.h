/* The representable values of a ggml block once its scales are fixed
 * (internal to quantize/).
 *
 * Error-compensating quantizers (GPTQ) choose a block's scales first and
 * then its codes one column at a time. For every supported block type this
 * module describes a block in those terms, working directly on the block's
 * bytes:
 *
 *   value of element j = a * (lev[q] + c) + b
 *
 * where q is j's code, lev the type's (increasing) level table and (a, b, c)
 * the affine map of j's sub-block, computed from the stored scales with the
 * very float operations of the type's decoder, so a value computed here is
 * bit-identical to what to_float decodes from the bytes (c is non-zero only
 * for the GPTQ layout's integer zero points; b is 0 for symmetric types).
 *
 * The fp16 fields of a block ("theta": d, and dmin / m where present) enter
 * linearly: a = theta0 * ca, b = theta1 * cb, with ca, cb read from the
 * block's integer sub-block scales (gq_coef), which is what the least-squares
 * scale refit needs.
 *
 * Besides the ggml types, a "GPTQ layout" pseudo type describes one group of
 * the GPTQ safetensors layout (quantkit/gptq.h): value = (q - z) * s, stored
 * here as [fp16 s][u16 z][u8 codes[G]].
 */
#ifndef QK_GPTQ_GRID_H
#define QK_GPTQ_GRID_H

#include <stddef.h>
#include <stdint.h>

#define GQ_MAX_BS 256   /* largest block (the K super-block) */
#define GQ_MAX_SUB 16   /* most sub-blocks per block */

typedef struct gq_sub {
    float a, b; /* value = a * (lev[q] + c) + b */
    int c;
} gq_sub;

typedef struct gq_type gq_type;
struct gq_type {
    int type;            /* qk_type, or -1 for the GPTQ layout */
    int bs;              /* elements per block */
    int sub;             /* elements per sub-block (one affine map each) */
    int nlev;            /* codes 0..nlev-1 */
    int lev_off;         /* linear levels: lev[q] = q + lev_off */
    const int8_t *lev_tab; /* non-linear levels (IQ4), else NULL */
    int zero_code;       /* the code whose level is nearest 0 */
    size_t bytes;        /* bytes per block */
    int n_theta;         /* fp16 scale fields (1 or 2) */
    int theta_off[2];    /* their byte offsets */
    int gptq_bits, gptq_sym; /* GPTQ layout only */
    /* Scales (and provisional codes) of one block from values x[bs] with
     * non-negative weights w[bs] (NULL: unweighted) into blk. search: use
     * quantkit's weighted scale search where there is one (else the type's
     * reference encoder). */
    void (*choose)(const gq_type *t, const float *x, const float *w, uint8_t *blk, int search);
    void (*params)(const gq_type *t, const uint8_t *blk, int s, gq_sub *p);
    void (*set_code)(const gq_type *t, uint8_t *blk, int j, int q);
    int (*get_code)(const gq_type *t, const uint8_t *blk, int j);
    /* integer multipliers of theta in sub-block s: a = theta0*ca, b = theta1*cb */
    void (*coef)(const gq_type *t, const uint8_t *blk, int s, float *ca, float *cb);
};

/* The description of a ggml type, or NULL when it has none (F32, ...). */
const gq_type *gq_type_get(int type);
/* The GPTQ layout with `bits` (4 or 8) and `group` elements per group. */
void gq_type_gptq(gq_type *out, int bits, int64_t group, int sym);

static inline float gq_lev(const gq_type *t, int q) { return t->lev_tab ? (float)t->lev_tab[q] : (float)(q + t->lev_off); }

/* The value of code q under p, exactly as the decoder computes it. */
static inline float gq_value(const gq_type *t, const gq_sub *p, int q)
{
    return p->a * (gq_lev(t, q) + (float)p->c) + p->b;
}

/* The code whose value is nearest x under p (ties to the lower code);
 * *v gets that value. */
int gq_nearest(const gq_type *t, const gq_sub *p, float x, float *v);

/* fp16 scale fields. */
float gq_theta_get(const gq_type *t, const uint8_t *blk, int k);
void gq_theta_set(const gq_type *t, uint8_t *blk, int k, float v);

/* Decode one block into out[bs] (the type's decoder; the GPTQ layout's
 * (q - z) * s). */
void gq_decode(const gq_type *t, const uint8_t *blk, float *out);

#endif
