/* GPTQ-layout export: a Hugging Face directory with GPTQ v1 linear layers
 * (see quantkit/quantize.h and the layout in quantkit/gptq.h).
 *
 * Per quantized layer the whole packed layer (about n_in * n_out * bits / 8
 * bytes) is held in memory, because qweight packs along input features and
 * rows are produced as output features; the float rows stream through in
 * chunks. Other tensors stream row by row as F16. */
#include <cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quantkit/hf.h"
#include "quantkit/quantize.h"
#include "quantkit/safetensors.h"

#define CHUNK_FLOATS (4u << 20) /* rows per RTN chunk: about 16 MiB of floats */

/* ------------------------------------------------------------------ RTN */

int qk_gptq_rtn_row(const float *w, int64_t n_in, int bits, int64_t group_size, int sym, uint8_t *q,
                    uint16_t *scale, uint16_t *zero)
{
    const int maxq = (1 << bits) - 1;
    for (int64_t g = 0; g < n_in / group_size; g++) {
        const float *x = w + g * group_size;
        uint8_t *qg = q + g * group_size;
        /* the range always includes 0, as AutoGPTQ's quantizer does */
        float xmin = 0.0f, xmax = 0.0f;
        for (int64_t i = 0; i < group_size; i++) {
            xmin = x[i] < xmin ? x[i] : xmin;
            xmax = x[i] > xmax ? x[i] : xmax;
        }
        if (sym) {
            float amax = -xmin > xmax ? -xmin : xmax;
            xmin = -amax;
            xmax = amax;
        }
        if (xmin == 0.0f && xmax == 0.0f) { /* all-zero group: any scale works; AutoGPTQ's choice */
            xmin = -1.0f;
            xmax = 1.0f;
        }
        float s = (xmax - xmin) / (float)maxq;
        int z;
        if (sym) {
            z = (maxq + 1) / 2;
        } else {
            z = (int)nearbyintf(-xmin / s);
            if (z < 1) { /* v1 stores zero - 1: zero 0 is not representable; keep max reachable */
                z = 1;
                s = xmax / (float)(maxq - 1);
            }
            if (z > maxq)
                z = maxq;
        }
        uint16_t s16 = qk_f32_to_fp16(s);
        float sf = qk_fp16_to_f32(s16);
        if (!isfinite(sf))
            return qk_error(QK_ELIMIT, "group %" PRId64 ": scale %g overflows fp16 (weights up to %g)", g, (double)s,
                            (double)(-xmin > xmax ? -xmin : xmax));
        scale[g] = s16;
        zero[g] = (uint16_t)z;
        for (int64_t i = 0; i < group_size; i++) {
            /* a scale that underflows to 0 stores every weight as 0 (|w| < 2^-24 * maxq) */
            float v = sf > 0.0f ? nearbyintf(x[i] / sf) + (float)z : (float)z;
            qg[i] = (uint8_t)(v < 0.0f ? 0.0f : v > (float)maxq ? (float)maxq : v);
        }
    }
    return 0;
}

typedef struct {
    const qk_model *m;
    qk_gptq_layer *L;
    float *fbuf;     /* [n][n_in] */
    uint8_t *qbuf;   /* [n][n_in] */
    uint16_t *sbuf;  /* [n][n_groups] */
    uint16_t *zbuf;  /* [n][n_groups] */
    int64_t r0;
    int rc;          /* first error code (message is the worker's) */
    int64_t bad_row; /* row of an encoder error */
} rtn_job;

static void rtn_decode(void *ctx, int64_t i, int thread)
{
    (void)thread;
    rtn_job *j = ctx;
    int rc = qk_model_row_f32(j->m, j->L->t, j->r0 + i, j->fbuf + (size_t)i * (size_t)j->L->n_in);
    if (rc)
        __atomic_store_n(&j->rc, rc, __ATOMIC_RELAXED);
}

static void rtn_encode(void *ctx, int64_t i, int thread)
{
    (void)thread;
    rtn_job *j = ctx;
    const qk_gptq_layer *L = j->L;
    uint8_t *q = j->qbuf + (size_t)i * (size_t)L->n_in;
    uint16_t *s = j->sbuf + (size_t)i * (size_t)L->n_groups, *z = j->zbuf + (size_t)i * (size_t)L->n_groups;
    int rc = qk_gptq_rtn_row(j->fbuf + (size_t)i * (size_t)L->n_in, L->n_in, L->bits, L->group_size, L->sym, q, s, z);
    if (!rc)
        rc = qk_gptq_layer_put_row(j->L, j->r0 + i, q, s, z);
    if (rc) {
        __atomic_store_n(&j->bad_row, j->r0 + i, __ATOMIC_RELAXED);
        __atomic_store_n(&j->rc, rc, __ATOMIC_RELAXED);
    }
}

int qk_gptq_rtn_produce(void *ctx, const qk_model *m, qk_gptq_layer *L, qk_pool *pool)
{
    qk_gptq_rtn_ctx *c = ctx;
    int64_t chunk = (int64_t)(CHUNK_FLOATS / (uint64_t)L->n_in);
    if (chunk < 1)
        chunk = 1;
    if (chunk > L->n_out)
        chunk = L->n_out;
    rtn_job j = {.m = m, .L = L};
    j.fbuf = malloc((size_t)chunk * (size_t)L->n_in * sizeof(float));
    j.qbuf = malloc((size_t)chunk * (size_t)L->n_in);
    j.sbuf = malloc((size_t)chunk * (size_t)L->n_groups * sizeof(uint16_t));
    j.zbuf = malloc((size_t)chunk * (size_t)L->n_groups * sizeof(uint16_t));
    int rc = 0;
    if (!j.fbuf || !j.qbuf || !j.sbuf || !j.zbuf)
        rc = qk_error(QK_ENOMEM, "out of memory for %" PRId64 "-row chunks of '%s'", chunk, L->t->name);
    for (int64_t r0 = 0; r0 < L->n_out && !rc; r0 += chunk) {
        int64_t n = L->n_out - r0 < chunk ? L->n_out - r0 : chunk;
        j.r0 = r0;
        qk_pool_run(pool, n, 0, rtn_decode, &j);
        if ((rc = j.rc)) {
            rc = qk_error(rc, "%s: tensor '%s': cannot decode its rows", c->source, L->t->name);
            break;
        }
        float *f = j.fbuf;
        int64_t ne = n * L->n_in;
        for (int64_t b = qk_find_nonfinite(f, ne); b >= 0 && !rc;) {
            if (!c->allow_nonfinite) {
                rc = qk_error(QK_ENONFINITE,
                              "%s: tensor '%s' element %" PRId64 " (row %" PRId64 ") is %s (use --allow-nonfinite to zero it)",
                              c->source, L->t->name, r0 * L->n_in + b, r0 + b / L->n_in, isnan(f[b]) ? "NaN" : "Inf");
                break;
            }
            f[b] = 0.0f;
            c->n_fixed++;
            int64_t next = qk_find_nonfinite(f + b + 1, ne - b - 1);
            b = next < 0 ? -1 : b + 1 + next;
        }
        if (rc)
            break;
        qk_pool_run(pool, n, 0, rtn_encode, &j);
        if ((rc = j.rc))
            rc = qk_error(rc, "%s: tensor '%s' row %" PRId64 ": %s", c->source, L->t->name, j.bad_row,
                          rc == QK_ELIMIT ? "a GPTQ scale overflows fp16" : "GPTQ encoding failed");
    }
    free(j.fbuf);
    free(j.qbuf);
    free(j.sbuf);
    free(j.zbuf);
    return rc;
}

/* ------------------------------------------------------------ layers */

int qk_gptq_layer_put_row(qk_gptq_layer *L, int64_t r, const uint8_t *q, const uint16_t *scale,
                          const uint16_t *zero)
{
    if (r < 0 || r >= L->n_out)
        return qk_error(QK_EINVAL, "tensor '%s': row %" PRId64 " outside [0, %" PRId64 ")", L->t->name, r, L->n_out);
    if (__atomic_exchange_n(&L->row_done[r], 1, __ATOMIC_RELAXED))
        return qk_error(QK_EINVAL, "tensor '%s': row %" PRId64 " put twice", L->t->name, r);
    int64_t j = L->perm_heads > 0 ? qk_rope_perm_row(r, L->n_out, L->perm_heads) : r;
    return qk_gptq_packed_put_row(&L->packed, j, q, scale, zero);
}

int qk_gptq_export_quantizes(const qk_model_tensor *t)
{
    static const char *const kinds[] = {".attn_q.weight",   ".attn_k.weight",  ".attn_v.weight",
                                        ".attn_output.weight", ".ffn_gate.weight", ".ffn_up.weight",
                                        ".ffn_down.weight"};
    if (t->n_dims != 2 || strncmp(t->name, "blk.", 4))
        return 0;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        size_t n = strlen(t->name), k = strlen(kinds[i]);
        if (n > k && !strcmp(t->name + n - k, kinds[i]))
            return 1;
    }
    return 0;
}

/* Hugging Face name of t without its ".weight" suffix, into buf. */
static int hf_prefix(const qk_model_tensor *t, char *buf, size_t n)
{
    char tmp[128];
    const char *hf = qk_hf_tensor_name(t->name, tmp, sizeof tmp);
    size_t len = hf ? strlen(hf) : 0;
    if (!hf || len < 7 || strcmp(hf + len - 7, ".weight"))
        return qk_error(QK_EUNSUPPORTED, "no Hugging Face name for tensor '%s'", t->name);
    snprintf(buf, n, "%.*s", (int)(len - 7), hf);
    return 0;
}

/* Check every layer's shape before anything is written. */
static int check_layers(const qk_model *m, const qk_gptq_export_params *p)
{
    int rc = qk_gptq_check_shape("--bits", p->bits, 32, 32, 32);
    if (rc)
        return rc;
    if (p->group_size <= 0)
        return qk_error(QK_EINVAL, "group size %" PRId64 " must be positive", p->group_size);
    for (int64_t i = 0; i < qk_model_n_tensors(m); i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        if (!qk_model_tensor_decodable(t))
            return qk_error(QK_EUNSUPPORTED, "%s: tensor '%s' is %s, which quantkit cannot decode", p->source, t->name,
                            qk_type_name(t->type));
        if (!qk_gptq_export_quantizes(t))
            continue;
        int64_t n_in = t->ne[0], n_out = t->ne[1], pf = 32 / p->bits;
        /* the FFN hidden size is the usual misfit (stories260K: 172); --pad-ffn fixes it losslessly */
        int ffn_in = strstr(t->name, ".ffn_down.") != NULL;
        int ffn_out = strstr(t->name, ".ffn_gate.") || strstr(t->name, ".ffn_up.");
        int64_t nff = ffn_in ? n_in : n_out;
        if ((ffn_in && n_in % p->group_size) || ((ffn_in || ffn_out) && nff % pf))
            return qk_error(QK_EINVAL,
                            "%s: tensor '%s': the FFN hidden size %" PRId64 " is not a multiple of the group size %" PRId64
                            " (inputs of ffn_down) and of %" PRId64 " (%d-bit codes per int32 word); pad it losslessly "
                            "with --pad-ffn %" PRId64,
                            p->source, t->name, nff, p->group_size, pf, p->bits, p->group_size);
        if (n_in % p->group_size)
            return qk_error(QK_EINVAL,
                            "%s: tensor '%s' has %" PRId64 " input features, not a multiple of the group size %" PRId64
                            "; use a group size that divides %" PRId64,
                            p->source, t->name, n_in, p->group_size, n_in);
        if ((rc = qk_gptq_check_shape(t->name, p->bits, n_in, n_out, p->group_size)))
            return qk_error_prefix(rc, p->source);
    }
    return 0;
}

/* ------------------------------------------------------------ writing */

typedef struct {
    const qk_model *m;
    const qk_gptq_export_params *p;
    qk_st_writer *w;
    qk_pool *pool;
    qk_gptq_export_stats *stats;
    qk_progress *prog;
} exporter;

/* A float tensor as F16 rows in Hugging Face order. */
static int write_f16_tensor(exporter *x, const qk_model_tensor *t, uint64_t *bytes)
{
    int64_t ne0 = t->ne[0], rows = qk_model_tensor_rows(t);
    int64_t heads = qk_hf_perm_heads(qk_model_cfg(x->m), t->name);
    float *f = malloc((size_t)ne0 * sizeof *f);
    uint16_t *h = malloc((size_t)ne0 * sizeof *h);
    int rc = f && h ? 0 : qk_error(QK_ENOMEM, "out of memory writing '%s'", t->name);
    for (int64_t hr = 0; hr < rows && !rc; hr++) {
        int64_t r = heads > 0 ? qk_rope_unperm_row(hr, rows, heads) : hr;
        if ((rc = qk_model_row_f32(x->m, t, r, f)))
            break;
        qk_f32_to_fp16_row(f, h, ne0);
        for (int64_t k = 0; k < ne0 && !rc; k++) {
            if (isfinite(f[k]) && isfinite(qk_fp16_to_f32(h[k])))
                continue;
            if (!isfinite(f[k]) && x->p->allow_nonfinite) {
                h[k] = 0;
                x->stats->n_fixed++;
                continue;
            }
            rc = isfinite(f[k]) ? qk_error(QK_ENONFINITE, "%s: tensor '%s' element %" PRId64 " (%g) overflows F16",
                                           x->p->source, t->name, r * ne0 + k, (double)f[k])
                                : qk_error(QK_ENONFINITE,
                                           "%s: tensor '%s' element %" PRId64 " is %s (use --allow-nonfinite to zero it)",
                                           x->p->source, t->name, r * ne0 + k, isnan(f[k]) ? "NaN" : "Inf");
        }
        for (int64_t k = 0; k < ne0 && !rc; k++)
            qk_wr_u16((uint8_t *)&h[k], h[k]);
        if (!rc)
            rc = qk_st_writer_write(x->w, h, (size_t)ne0 * sizeof *h);
        qk_progress_add(x->prog, (uint64_t)ne0);
    }
    free(f);
    free(h);
    qk_model_release(t);
    *bytes = (uint64_t)rows * (uint64_t)ne0 * 2;
    return rc;
}

static int write_gptq_tensor(exporter *x, const qk_model_tensor *t, uint64_t *bytes)
{
    const qk_gptq_export_params *p = x->p;
    qk_gptq_layer L = {.t = t, .bits = p->bits, .sym = p->sym, .group_size = p->group_size, .n_in = t->ne[0],
                       .n_out = t->ne[1], .n_groups = t->ne[0] / p->group_size,
                       .perm_heads = qk_hf_perm_heads(qk_model_cfg(x->m), t->name)};
    int rc = qk_gptq_packed_init(&L.packed, p->bits, L.n_in, L.n_out, p->group_size);
    if (rc)
        return qk_error_prefix(rc, t->name);
    L.row_done = calloc((size_t)L.n_out, 1);
    qk_gptq_rtn_ctx rtn = {.source = p->source, .allow_nonfinite = p->allow_nonfinite};
    if (!L.row_done)
        rc = qk_error(QK_ENOMEM, "out of memory");
    else if (p->produce)
        rc = p->produce(p->produce_ctx, x->m, &L, x->pool);
    else
        rc = qk_gptq_rtn_produce(&rtn, x->m, &L, x->pool);
    x->stats->n_fixed += rtn.n_fixed;
    for (int64_t r = 0; r < L.n_out && !rc; r++)
        if (!L.row_done[r])
            rc = qk_error(QK_EINVAL, "tensor '%s': the GPTQ producer left row %" PRId64 " empty", t->name, r);
    if (!rc) {
        qk_gptq_packed_finish(&L.packed);
        const void *part[QK_GPTQ_NPARTS] = {L.packed.qweight, L.packed.qzeros, L.packed.scales, L.packed.g_idx};
        *bytes = 0;
        for (int k = 0; k < QK_GPTQ_NPARTS && !rc; k++) {
            rc = qk_st_writer_write(x->w, part[k], (size_t)L.packed.nbytes[k]);
            *bytes += L.packed.nbytes[k];
        }
    }
    qk_progress_add(x->prog, (uint64_t)(L.n_in * L.n_out));
    qk_model_release(t);
    free(L.row_done);
    qk_gptq_packed_free(&L.packed);
    return rc;
}

static cJSON *quant_config_json(const qk_gptq_export_params *p)
{
    cJSON *q = cJSON_CreateObject();
    if (!q)
        return NULL;
    cJSON_AddNumberToObject(q, "bits", p->bits);
    cJSON_AddNumberToObject(q, "group_size", (double)p->group_size);
    cJSON_AddNumberToObject(q, "damp_percent", 0.01);
    cJSON_AddBoolToObject(q, "desc_act", 0);
    cJSON_AddBoolToObject(q, "static_groups", 0);
    cJSON_AddBoolToObject(q, "sym", p->sym);
    cJSON_AddBoolToObject(q, "true_sequential", 1);
    cJSON_AddStringToObject(q, "model_file_base_name", "model");
    cJSON_AddStringToObject(q, "quant_method", "gptq");
    cJSON_AddStringToObject(q, "checkpoint_format", "gptq");
    return q;
}

int qk_gptq_export(const qk_model *m, const char *dir, const qk_gptq_export_params *p, qk_pool *pool,
                   qk_gptq_export_stats *stats)
{
    qk_gptq_export_stats dummy = {0};
    if (!stats)
        stats = &dummy;
    uint64_t *each = stats->tensor_bytes_each;
    memset(stats, 0, sizeof *stats);
    stats->tensor_bytes_each = each;
    exporter x = {.m = m, .p = p, .pool = pool, .stats = stats};
    qk_adir *d = NULL;
    qk_afile *f = NULL;
    char *path = NULL;
    cJSON *qc = NULL;
    int rc = check_layers(m, p);
    if (rc)
        return rc;
    if ((rc = qk_st_writer_new(&x.w)) || (rc = qk_st_writer_add_meta(x.w, "format", "pt")))
        goto done;
    /* tensor list: canonical order, a GPTQ layer as its four tensors */
    for (int64_t i = 0; i < qk_model_n_tensors(m) && !rc; i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        char pre[128], name[160];
        if ((rc = hf_prefix(t, pre, sizeof pre)))
            break;
        stats->total_elems += (uint64_t)qk_model_tensor_nelem(t);
        if (!qk_gptq_export_quantizes(t)) {
            int64_t shape[2] = {t->n_dims > 1 ? t->ne[1] : t->ne[0], t->ne[0]};
            snprintf(name, sizeof name, "%s.weight", pre);
            rc = qk_st_writer_add_tensor(x.w, name, QK_ST_F16, t->n_dims, shape);
            continue;
        }
        int64_t pf = 32 / p->bits, ng = t->ne[0] / p->group_size, n_in = t->ne[0], n_out = t->ne[1];
        const int64_t shapes[QK_GPTQ_NPARTS][2] = {{n_in / pf, n_out}, {ng, n_out / pf}, {ng, n_out}, {n_in, 0}};
        const int dtypes[QK_GPTQ_NPARTS] = {QK_ST_I32, QK_ST_I32, QK_ST_F16, QK_ST_I32};
        for (int k = 0; k < QK_GPTQ_NPARTS && !rc; k++) {
            snprintf(name, sizeof name, "%s.%s", pre, qk_gptq_part_names[k]);
            rc = qk_st_writer_add_tensor(x.w, name, dtypes[k], k == QK_GPTQ_G_IDX ? 1 : 2, shapes[k]);
        }
    }
    if (rc || (rc = qk_adir_open(&d, dir, p->force)))
        goto done;
    const char *tmp = qk_adir_tmp_path(d);
    if (!(path = qk_path_join(tmp, "model.safetensors"))) {
        rc = qk_error(QK_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = qk_afile_open(&f, path)) || (rc = qk_st_writer_begin(x.w, f)))
        goto done;
    x.prog = qk_progress_start("quantizing", stats->total_elems, "w");
    for (int64_t i = 0; i < qk_model_n_tensors(m) && !rc; i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        uint64_t b = 0;
        int quant = qk_gptq_export_quantizes(t);
        rc = quant ? write_gptq_tensor(&x, t, &b) : write_f16_tensor(&x, t, &b);
        stats->tensor_bytes += b;
        if (each)
            each[i] = b;
        if (quant) {
            stats->n_quantized++;
            stats->quant_elems += (uint64_t)qk_model_tensor_nelem(t);
            stats->quant_bytes += b;
        }
    }
    if (!rc)
        rc = qk_st_writer_finish(x.w);
    if (!rc) {
        stats->file_bytes = qk_afile_tell(f);
        rc = qk_afile_commit(f);
        f = NULL;
    }
    if (rc)
        goto done;
    /* config.json (with quantization_config), quantize_config.json, tokenizer.json */
    if (!(qc = quant_config_json(p))) {
        rc = qk_error(QK_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = qk_hf_write_config(tmp, qk_model_cfg(m), qk_model_vocab(m), QK_TYPE_F16, qc)))
        goto done;
    free(path);
    if (!(path = qk_path_join(tmp, "quantize_config.json"))) {
        rc = qk_error(QK_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = qk_hf_write_json(path, qc)))
        goto done;
    if (qk_model_vocab(m)) {
        free(path);
        if (!(path = qk_path_join(tmp, "tokenizer.json"))) {
            rc = qk_error(QK_ENOMEM, "out of memory");
            goto done;
        }
        if ((rc = qk_vocab_write_tokenizer_json(qk_model_vocab(m), path)))
            goto done;
    }
    rc = qk_adir_commit(d);
    d = NULL;
done:
    if (x.prog)
        qk_progress_finish(x.prog);
    qk_afile_abort(f);
    qk_adir_abort(d);
    qk_st_writer_free(x.w);
    cJSON_Delete(qc);
    free(path);
    return rc;
}
