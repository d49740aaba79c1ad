/* GPTQ-layout linear layers: packer and validating reader (layout in
 * quantkit/gptq.h). */
#include "quantkit/gptq.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const qk_gptq_part_names[QK_GPTQ_NPARTS] = {"qweight", "qzeros", "scales", "g_idx"};

int qk_gptq_check_shape(const char *what, int bits, int64_t n_in, int64_t n_out, int64_t group_size)
{
    if (bits == 2 || bits == 3)
        return qk_error(QK_EUNSUPPORTED, "%s: GPTQ with %d bits is not supported (supported: 4, 8)", what, bits);
    if (bits != 4 && bits != 8)
        return qk_error(QK_EINVAL, "%s: GPTQ bits %d: expected 4 or 8", what, bits);
    int64_t pf = 32 / bits;
    if (n_in <= 0 || n_out <= 0 || group_size <= 0)
        return qk_error(QK_EINVAL, "%s: GPTQ shape %" PRId64 " x %" PRId64 ", group size %" PRId64 " must be positive",
                        what, n_out, n_in, group_size);
    if (n_in % group_size)
        return qk_error(QK_EINVAL,
                        "%s: %" PRId64 " input features are not a multiple of the group size %" PRId64
                        " (pad the FFN with --pad-ffn, e.g. --pad-ffn %" PRId64 ", or use a smaller --group-size)",
                        what, n_in, group_size, group_size);
    if (n_in % pf || n_out % pf)
        return qk_error(QK_EINVAL,
                        "%s: %" PRId64 " inputs and %" PRId64 " outputs must be multiples of %" PRId64
                        " to pack %d-bit codes in int32 words",
                        what, n_in, n_out, pf, bits);
    return 0;
}

/* ------------------------------------------------------------------ packer */

void qk_gptq_packed_free(qk_gptq_packed *p)
{
    if (!p)
        return;
    free(p->qweight);
    free(p->qzeros);
    free(p->scales);
    free(p->g_idx);
    memset(p, 0, sizeof *p);
}

int qk_gptq_packed_init(qk_gptq_packed *p, int bits, int64_t n_in, int64_t n_out, int64_t group_size)
{
    memset(p, 0, sizeof *p);
    int rc = qk_gptq_check_shape("GPTQ layer", bits, n_in, n_out, group_size);
    if (rc)
        return rc;
    int64_t pf = 32 / bits, ng = n_in / group_size;
    uint64_t nw, nz, ns;
    if (qk_mul_u64((uint64_t)(n_in / pf), (uint64_t)n_out, &nw) || nw > SIZE_MAX / 4 ||
        qk_mul_u64((uint64_t)ng, (uint64_t)n_out, &ns) || ns > SIZE_MAX / 4)
        return qk_error(QK_ELIMIT, "GPTQ layer %" PRId64 " x %" PRId64 " is too large", n_out, n_in);
    nz = ns / (uint64_t)pf;
    p->bits = bits;
    p->n_in = n_in;
    p->n_out = n_out;
    p->group_size = group_size;
    p->n_groups = ng;
    p->qweight = calloc((size_t)nw, 4);
    p->qzeros = calloc((size_t)nz, 4);
    p->scales = calloc((size_t)ns, 2);
    p->g_idx = calloc((size_t)n_in, 4);
    if (!p->qweight || !p->qzeros || !p->scales || !p->g_idx) {
        qk_gptq_packed_free(p);
        return qk_error(QK_ENOMEM, "out of memory for a GPTQ layer %" PRId64 " x %" PRId64, n_out, n_in);
    }
    for (int64_t i = 0; i < n_in; i++)
        p->g_idx[i] = (int32_t)(i / group_size);
    p->nbytes[QK_GPTQ_QWEIGHT] = nw * 4;
    p->nbytes[QK_GPTQ_QZEROS] = nz * 4;
    p->nbytes[QK_GPTQ_SCALES] = ns * 2;
    p->nbytes[QK_GPTQ_G_IDX] = (uint64_t)n_in * 4;
    return 0;
}

int qk_gptq_packed_put_row(qk_gptq_packed *p, int64_t j, const uint8_t *q, const uint16_t *scale,
                           const uint16_t *zero)
{
    const int b = p->bits;
    const int64_t pf = 32 / b, n_in = p->n_in, n_out = p->n_out;
    const uint32_t maxq = (1u << b) - 1;
    if (j < 0 || j >= n_out || p->finished)
        return qk_error(QK_EINVAL, "GPTQ row %" PRId64 " outside [0, %" PRId64 ") or layer already finished", j,
                        n_out);
    for (int64_t i = 0; i < n_in; i++)
        if (q[i] > maxq)
            return qk_error(QK_EINVAL, "GPTQ row %" PRId64 ": code %u at input %" PRId64 " exceeds %u", j, q[i], i,
                            maxq);
    for (int64_t g = 0; g < p->n_groups; g++)
        if (zero[g] < 1 || zero[g] > maxq + 1)
            return qk_error(QK_EINVAL,
                            "GPTQ row %" PRId64 ": zero point %u of group %" PRId64
                            " outside [1, %u] (the v1 layout stores zero - 1)",
                            j, zero[g], g, maxq + 1);
    /* qweight column j: words [k][j] belong to this row alone */
    for (int64_t k = 0; k < n_in / pf; k++) {
        uint32_t w = 0;
        for (int64_t e = 0; e < pf; e++)
            w |= (uint32_t)q[k * pf + e] << (b * e);
        p->qweight[k * n_out + j] = w;
    }
    /* qzeros words hold pf rows: OR in atomically so rows can be put concurrently */
    for (int64_t g = 0; g < p->n_groups; g++) {
        p->scales[g * n_out + j] = scale[g];
        uint32_t v = (uint32_t)(zero[g] - 1) << (b * (j % pf));
        __atomic_fetch_or(&p->qzeros[g * (n_out / pf) + j / pf], v, __ATOMIC_RELAXED);
    }
    return 0;
}

void qk_gptq_packed_finish(qk_gptq_packed *p)
{
    if (p->finished)
        return;
    /* host order -> little-endian bytes, in place (a no-op on little-endian hosts) */
    uint64_t nw = p->nbytes[QK_GPTQ_QWEIGHT] / 4, nz = p->nbytes[QK_GPTQ_QZEROS] / 4;
    uint64_t ns = p->nbytes[QK_GPTQ_SCALES] / 2;
    for (uint64_t i = 0; i < nw; i++)
        qk_wr_u32((uint8_t *)&p->qweight[i], p->qweight[i]);
    for (uint64_t i = 0; i < nz; i++)
        qk_wr_u32((uint8_t *)&p->qzeros[i], p->qzeros[i]);
    for (uint64_t i = 0; i < ns; i++)
        qk_wr_u16((uint8_t *)&p->scales[i], p->scales[i]);
    for (int64_t i = 0; i < p->n_in; i++)
        qk_wr_u32((uint8_t *)&p->g_idx[i], (uint32_t)p->g_idx[i]);
    p->finished = 1;
}

/* ------------------------------------------------------------------ reader */

uint64_t qk_gptq_tensor_bytes(const qk_gptq_tensor *t)
{
    uint64_t n = 0;
    for (int k = 0; k < QK_GPTQ_NPARTS; k++)
        n += t->part[k].nbytes;
    return n;
}

static int check_part(const qk_st_tensor *st, const char *file, int dtype, int n_dims, int64_t d0, int64_t d1)
{
    if (st->dtype != dtype)
        return qk_error(QK_EFORMAT, "%s: GPTQ tensor '%s' has dtype %s, expected %s", file, st->name,
                        qk_st_dtype_name(st->dtype), qk_st_dtype_name(dtype));
    int ok = st->n_dims == n_dims && st->shape[0] == d0 && (n_dims == 1 || st->shape[1] == d1);
    if (!ok) {
        char got[96] = "[", want[64];
        size_t k = 1;
        for (int d = 0; d < st->n_dims && k < sizeof got - 24; d++)
            k += (size_t)snprintf(got + k, sizeof got - k, "%s%" PRId64, d ? ", " : "", st->shape[d]);
        snprintf(got + k, sizeof got - k, "]");
        if (n_dims == 1)
            snprintf(want, sizeof want, "[%" PRId64 "]", d0);
        else
            snprintf(want, sizeof want, "[%" PRId64 ", %" PRId64 "]", d0, d1);
        return qk_error(QK_EFORMAT, "%s: GPTQ tensor '%s' has shape %s, expected %s", file, st->name, got, want);
    }
    return 0;
}

int qk_gptq_tensor_init(qk_gptq_tensor *t, int bits, int64_t n_in, int64_t n_out,
                        const qk_st_tensor *const st[QK_GPTQ_NPARTS], const char *const files[QK_GPTQ_NPARTS])
{
    memset(t, 0, sizeof *t);
    const qk_st_tensor *qw = st[QK_GPTQ_QWEIGHT], *qz = st[QK_GPTQ_QZEROS];
    const qk_st_tensor *sc = st[QK_GPTQ_SCALES], *gi = st[QK_GPTQ_G_IDX];
    int rc = qk_gptq_check_shape(qw->name, bits, n_in, n_out, n_in);
    if (rc)
        return qk_error_prefix(rc, files[QK_GPTQ_QWEIGHT]);
    int64_t pf = 32 / bits;
    /* the group count comes from scales; everything else must agree with it */
    if (sc->n_dims != 2 || sc->shape[0] < 1 || sc->shape[0] > n_in)
        return qk_error(QK_EFORMAT, "%s: GPTQ tensor '%s' must be [n_groups, %" PRId64 "] with 1 <= n_groups <= %" PRId64,
                        files[QK_GPTQ_SCALES], sc->name, n_out, n_in);
    int64_t ng = sc->shape[0];
    if ((rc = check_part(qw, files[QK_GPTQ_QWEIGHT], QK_ST_I32, 2, n_in / pf, n_out)) ||
        (rc = check_part(qz, files[QK_GPTQ_QZEROS], QK_ST_I32, 2, ng, n_out / pf)) ||
        (rc = check_part(sc, files[QK_GPTQ_SCALES], QK_ST_F16, 2, ng, n_out)) ||
        (rc = check_part(gi, files[QK_GPTQ_G_IDX], QK_ST_I32, 1, n_in, 0)))
        return rc;
    for (int64_t i = 0; i < n_in; i++) {
        int32_t g = (int32_t)qk_rd_u32(gi->data + 4 * i);
        if (g < 0 || g >= ng)
            return qk_error(QK_EFORMAT, "%s: GPTQ tensor '%s' element %" PRId64 " is %" PRId32 ", outside [0, %" PRId64 ")",
                            files[QK_GPTQ_G_IDX], gi->name, i, g, ng);
    }
    t->bits = bits;
    t->n_in = n_in;
    t->n_out = n_out;
    t->n_groups = ng;
    for (int k = 0; k < QK_GPTQ_NPARTS; k++) {
        t->part[k].data = st[k]->data;
        t->part[k].nbytes = st[k]->nbytes;
    }
    return 0;
}

void qk_gptq_row_f32(const qk_gptq_tensor *t, int64_t j, float *dst)
{
    const int b = t->bits;
    const int64_t pf = 32 / b, n_out = t->n_out;
    const uint32_t maxq = (1u << b) - 1;
    const uint8_t *qw = t->part[QK_GPTQ_QWEIGHT].data, *qz = t->part[QK_GPTQ_QZEROS].data;
    const uint8_t *sc = t->part[QK_GPTQ_SCALES].data, *gi = t->part[QK_GPTQ_G_IDX].data;
    const int zshift = (int)(b * (j % pf));
    int64_t g_cur = -1;
    int32_t z = 0;
    float s = 0.0f;
    for (int64_t i = 0; i < t->n_in; i++) {
        int64_t g = (int32_t)qk_rd_u32(gi + 4 * i); /* validated at init */
        if (g != g_cur) {
            z = (int32_t)((qk_rd_u32(qz + 4 * (g * (n_out / pf) + j / pf)) >> zshift) & maxq) + 1;
            s = qk_fp16_to_f32(qk_rd_u16(sc + 2 * (g * n_out + j)));
            g_cur = g;
        }
        int32_t q = (int32_t)((qk_rd_u32(qw + 4 * ((i / pf) * n_out + j)) >> (b * (i % pf))) & maxq);
        dst[i] = (float)(q - z) * s;
    }
}
