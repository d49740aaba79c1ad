/* qk_model: one read-only view of a GGUF, Hugging Face safetensors or
 * llama2.c checkpoint under canonical GGUF names (see quantkit/model.h). */
#include "quantkit/model.h"

#include <cJSON.h>
#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quantkit/gptq.h"
#include "quantkit/llama2c.h"
#include "quantkit/safetensors.h"

#define MAX_LAYERS 4096
#define MAX_CONFIG_BYTES (16u << 20)
/* config.json holds a few dozen values a few levels deep; the bounds keep
 * cJSON's tree (64 bytes per value) and recursion small on hostile text. */
#define MAX_CONFIG_DEPTH 64
#define MAX_CONFIG_VALUES (1 << 16)

struct qk_model {
    qk_model_config cfg;
    int kind;
    char *path;
    qk_gguf *gguf;
    qk_st_set *st;
    qk_llama2c *l2c;
    qk_vocab *vocab;
    qk_model_tensor *t;
    qk_gptq_tensor *gq; /* [capacity of t]: GPTQ layers, pointed to by t[i].gptq */
    int64_t n_t;
    const qk_model_tensor **by_name; /* [n_t] sorted by name, built when opening succeeds */
    uint64_t source_bytes;
    float **scales; /* [2 * n_t] or NULL: owned col/row scale vectors (qk_model_set_scales) */
};

/* ------------------------------------------------------------- RoPE rows */

int64_t qk_rope_perm_row(int64_t r, int64_t n_rows, int64_t n_heads)
{
    /* GGUF row h*hd + 2i + j holds HF row h*hd + j*(hd/2) + i. */
    int64_t hd = n_rows / n_heads;
    int64_t h = r / hd, rem = r % hd;
    return h * hd + (rem % 2) * (hd / 2) + rem / 2;
}

int64_t qk_rope_unperm_row(int64_t hr, int64_t n_rows, int64_t n_heads)
{
    int64_t hd = n_rows / n_heads;
    int64_t h = hr / hd, rem = hr % hd;
    return h * hd + 2 * (rem % (hd / 2)) + rem / (hd / 2);
}

/* --------------------------------------------------------------- tensors */

int64_t qk_model_tensor_rows(const qk_model_tensor *t)
{
    int64_t r = 1;
    for (int i = 1; i < t->n_dims; i++)
        r *= t->ne[i];
    return r;
}

int64_t qk_model_tensor_nelem(const qk_model_tensor *t) { return t->ne[0] * qk_model_tensor_rows(t); }

const uint8_t *qk_model_row_raw(const qk_model_tensor *t, int64_t r)
{
    if (t->gptq || t->src_ne0 != t->ne[0] || r >= t->src_rows || t->col_scale || t->row_scale)
        return NULL;
    int64_t sr = t->perm_heads > 0 ? qk_rope_perm_row(r, t->src_rows, t->perm_heads) : r;
    return t->data + (uint64_t)sr * t->src_row_bytes;
}

int qk_model_tensor_decodable(const qk_model_tensor *t)
{
    const qk_type_traits *tr = qk_type_get(t->type);
    return t->gptq || (tr && tr->to_float);
}

int qk_model_row_f32(const qk_model *m, const qk_model_tensor *t, int64_t r, float *dst)
{
    (void)m;
    const qk_type_traits *tr = qk_type_get(t->type);
    if (!qk_model_tensor_decodable(t))
        return qk_error(QK_EUNSUPPORTED, "tensor '%s': quantkit cannot decode type %s", t->name,
                        qk_type_name(t->type));
    if (r >= t->src_rows) {
        memset(dst, 0, (size_t)t->ne[0] * sizeof(float));
        return 0;
    }
    int64_t sr = t->perm_heads > 0 ? qk_rope_perm_row(r, t->src_rows, t->perm_heads) : r;
    if (t->gptq)
        qk_gptq_row_f32(t->gptq, sr, dst);
    else
        tr->to_float(t->data + (uint64_t)sr * t->src_row_bytes, dst, t->src_ne0);
    if (t->src_ne0 < t->ne[0])
        memset(dst + t->src_ne0, 0, (size_t)(t->ne[0] - t->src_ne0) * sizeof(float));
    if (t->col_scale)
        for (int64_t j = 0; j < t->src_ne0; j++)
            dst[j] *= t->col_scale[j];
    if (t->row_scale)
        for (int64_t j = 0; j < t->src_ne0; j++)
            dst[j] *= t->row_scale[r];
    return 0;
}

int qk_model_rows_f32(const qk_model *m, const qk_model_tensor *t, int64_t r0, int64_t n, float *dst)
{
    for (int64_t i = 0; i < n; i++) {
        int rc = qk_model_row_f32(m, t, r0 + i, dst + (size_t)i * (size_t)t->ne[0]);
        if (rc)
            return rc;
    }
    return 0;
}

void qk_model_release(const qk_model_tensor *t)
{
    for (int k = 0; t->gptq && k < QK_GPTQ_NPARTS; k++) {
        const qk_gptq_part *p = &t->gptq->part[k];
        if (p->map && p->data && p->nbytes)
            qk_mmap_release(p->map, (uint64_t)(p->data - p->map->data), p->nbytes);
    }
    if (t->map && t->data && t->nbytes)
        qk_mmap_release(t->map, (uint64_t)(t->data - t->map->data), t->nbytes);
}

void qk_model_release_layer(const qk_model *m, int64_t l)
{
    char prefix[32];
    int np = snprintf(prefix, sizeof prefix, "blk.%lld.", (long long)l);
    for (int64_t i = 0; i < qk_model_n_tensors(m); i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        if (!strncmp(t->name, prefix, (size_t)np))
            qk_model_release(t);
    }
}

int qk_model_set_scales(qk_model *m, const char *name, const float *col_scale, const float *row_scale)
{
    int64_t i = 0;
    while (i < m->n_t && strcmp(m->t[i].name, name))
        i++;
    if (i == m->n_t)
        return qk_error(QK_ENOTFOUND, "%s: no tensor '%s'", m->path, name);
    qk_model_tensor *t = &m->t[i];
    const int64_t n[2] = {t->ne[0], qk_model_tensor_rows(t)};
    const float *src[2] = {col_scale, row_scale};
    for (int k = 0; k < 2; k++)
        for (int64_t j = 0; src[k] && j < n[k]; j++)
            if (!isfinite(src[k][j]))
                return qk_error(QK_ENONFINITE, "tensor '%s': %s scale %lld is %g", name, k ? "row" : "column",
                                (long long)j, (double)src[k][j]);
    if (!m->scales && !(m->scales = calloc((size_t)m->n_t * 2, sizeof *m->scales)))
        return qk_error(QK_ENOMEM, "out of memory");
    float *v[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++)
        if (src[k] && !(v[k] = malloc((size_t)n[k] * sizeof(float)))) {
            free(v[0]);
            return qk_error(QK_ENOMEM, "out of memory for the scales of '%s'", name);
        }
    for (int k = 0; k < 2; k++) {
        if (v[k])
            memcpy(v[k], src[k], (size_t)n[k] * sizeof(float));
        free(m->scales[2 * i + k]);
        m->scales[2 * i + k] = v[k];
    }
    t->col_scale = v[0];
    t->row_scale = v[1];
    return 0;
}

/* -------------------------------------------------------------- accessors */

const qk_model_config *qk_model_cfg(const qk_model *m) { return &m->cfg; }
int qk_model_source_kind(const qk_model *m) { return m->kind; }
const char *qk_model_path(const qk_model *m) { return m->path; }
const qk_vocab *qk_model_vocab(const qk_model *m) { return m->vocab; }
const qk_gguf *qk_model_gguf(const qk_model *m) { return m->gguf; }
uint64_t qk_model_source_bytes(const qk_model *m) { return m->source_bytes; }
int64_t qk_model_n_tensors(const qk_model *m) { return m->n_t; }
const qk_model_tensor *qk_model_tensor_at(const qk_model *m, int64_t i)
{
    return i >= 0 && i < m->n_t ? &m->t[i] : NULL;
}

int qk_model_verify(const qk_model *m)
{
    if (!m->gguf)
        return 0;
    int rc = qk_gguf_verify_checksums(m->gguf);
    if (rc == QK_ENOTFOUND) /* no checksums stored */
        return 0;
    if (rc) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", qk_errmsg());
        qk_error(rc, "%s (--no-verify to use it anyway)", msg);
    }
    return rc;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const qk_model_tensor *const *)a)->name, (*(const qk_model_tensor *const *)b)->name);
}

/* Binary search once the model is open: callers look up every tensor (up to
 * 9 * MAX_LAYERS + 3 of them), which must not be quadratic. */
const qk_model_tensor *qk_model_find(const qk_model *m, const char *name)
{
    if (!m->by_name) { /* while opening */
        for (int64_t i = 0; i < m->n_t; i++)
            if (!strcmp(m->t[i].name, name))
                return &m->t[i];
        return NULL;
    }
    qk_model_tensor key;
    snprintf(key.name, sizeof key.name, "%s", name);
    if (strlen(name) >= sizeof key.name)
        return NULL;
    const qk_model_tensor *kp = &key;
    const qk_model_tensor **hit = bsearch(&kp, m->by_name, (size_t)m->n_t, sizeof *m->by_name, cmp_tensor_name);
    return hit ? *hit : NULL;
}

void qk_model_close(qk_model *m)
{
    if (!m)
        return;
    qk_gguf_close(m->gguf);
    qk_st_set_close(m->st);
    qk_llama2c_close(m->l2c);
    qk_vocab_free(m->vocab);
    for (int64_t i = 0; m->scales && i < 2 * m->n_t; i++)
        free(m->scales[i]);
    free(m->scales);
    free(m->t);
    free(m->by_name);
    free(m->gq);
    free(m->path);
    free(m);
}

/* ------------------------------------------------------- canonical layout */

/* The canonical tensor list of a llama-family model: name and expected ne. */
typedef struct {
    char name[QK_MODEL_MAX_NAME];
    int n_dims;
    int64_t ne[2];
    int optional;
    int64_t perm_heads; /* for HF sources */
    char hf[96];        /* Hugging Face name */
} canon_tensor;

static int canon_list(const qk_model_config *c, canon_tensor **out, int64_t *n_out)
{
    int64_t n = 1 + 9 * c->n_layer + 2;
    canon_tensor *v = calloc((size_t)n, sizeof *v);
    if (!v)
        return qk_error(QK_ENOMEM, "out of memory");
    int64_t k = 0, q = c->n_head * c->head_dim, kv = c->n_head_kv * c->head_dim;
#define ADD(nm, hfn, d, a, b, opt, ph)                                                                  \
    do {                                                                                                \
        snprintf(v[k].name, sizeof v[k].name, "%s", nm);                                                \
        snprintf(v[k].hf, sizeof v[k].hf, "%s", hfn);                                                   \
        v[k].n_dims = d;                                                                                \
        v[k].ne[0] = a;                                                                                 \
        v[k].ne[1] = b;                                                                                 \
        v[k].optional = opt;                                                                            \
        v[k].perm_heads = ph;                                                                           \
        k++;                                                                                            \
    } while (0)
    ADD("token_embd.weight", "model.embed_tokens.weight", 2, c->n_embd, c->n_vocab, 0, 0);
    for (int64_t l = 0; l < c->n_layer; l++) {
        char nm[QK_MODEL_MAX_NAME], hf[96];
#define LAYER(suffix, hfsuffix, d, a, b, ph)                                                            \
    snprintf(nm, sizeof nm, "blk.%lld.%s", (long long)l, suffix);                                      \
    snprintf(hf, sizeof hf, "model.layers.%lld.%s", (long long)l, hfsuffix);                           \
    ADD(nm, hf, d, a, b, 0, ph)
        LAYER("attn_norm.weight", "input_layernorm.weight", 1, c->n_embd, 1, 0);
        LAYER("attn_q.weight", "self_attn.q_proj.weight", 2, c->n_embd, q, c->n_head);
        LAYER("attn_k.weight", "self_attn.k_proj.weight", 2, c->n_embd, kv, c->n_head_kv);
        LAYER("attn_v.weight", "self_attn.v_proj.weight", 2, c->n_embd, kv, 0);
        LAYER("attn_output.weight", "self_attn.o_proj.weight", 2, q, c->n_embd, 0);
        LAYER("ffn_norm.weight", "post_attention_layernorm.weight", 1, c->n_embd, 1, 0);
        LAYER("ffn_gate.weight", "mlp.gate_proj.weight", 2, c->n_embd, c->n_ff, 0);
        LAYER("ffn_up.weight", "mlp.up_proj.weight", 2, c->n_embd, c->n_ff, 0);
        LAYER("ffn_down.weight", "mlp.down_proj.weight", 2, c->n_ff, c->n_embd, 0);
#undef LAYER
    }
    ADD("output_norm.weight", "model.norm.weight", 1, c->n_embd, 1, 0, 0);
    ADD("output.weight", "lm_head.weight", 2, c->n_embd, c->n_vocab, 1, 0);
#undef ADD
    *out = v;
    *n_out = k;
    return 0;
}

/* Fill a model tensor from stored data with stored shape ne (GGUF order). */
static int set_tensor(qk_model *m, qk_model_tensor *t, const canon_tensor *c, int type, int n_dims,
                      const int64_t *ne, const uint8_t *data, uint64_t nbytes, const qk_mmap *map)
{
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", c->name);
    /* shape check against the canonical shape (trailing 1s ignored) */
    int64_t want[4] = {c->ne[0], c->n_dims > 1 ? c->ne[1] : 1, 1, 1};
    int64_t got[4] = {1, 1, 1, 1};
    for (int i = 0; i < n_dims && i < 4; i++)
        got[i] = ne[i];
    if (n_dims > 4 || got[0] != want[0] || got[1] != want[1] || got[2] != 1 || got[3] != 1)
        return qk_error(QK_EFORMAT, "%s: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                        m->path, c->name, (long long)got[0], (long long)got[1], (long long)got[2],
                        (long long)got[3], (long long)want[0], (long long)want[1]);
    const qk_type_traits *tr = qk_type_get(type);
    if (!tr)
        return qk_error(QK_EUNSUPPORTED, "%s: tensor '%s' has unknown type %d", m->path, c->name, type);
    t->type = type;
    t->n_dims = c->n_dims;
    t->ne[0] = want[0];
    t->ne[1] = c->n_dims > 1 ? want[1] : 1;
    t->ne[2] = t->ne[3] = 1;
    t->data = data;
    t->nbytes = nbytes;
    t->map = map;
    t->src_ne0 = t->ne[0];
    t->src_rows = t->ne[1];
    int rc = qk_type_row_bytes(type, t->ne[0], &t->src_row_bytes);
    if (rc)
        return qk_error_prefix(rc, m->path);
    if ((uint64_t)t->src_row_bytes * (uint64_t)t->src_rows != nbytes)
        return qk_error(QK_EFORMAT, "%s: tensor '%s' holds %llu bytes, its shape needs %llu", m->path, c->name,
                        (unsigned long long)nbytes,
                        (unsigned long long)((uint64_t)t->src_row_bytes * (uint64_t)t->src_rows));
    m->source_bytes += nbytes;
    return 0;
}

static int check_config(qk_model *m)
{
    qk_model_config *c = &m->cfg;
    if (c->n_embd <= 0 || c->n_layer <= 0 || c->n_head <= 0 || c->n_head_kv <= 0 || c->n_ff <= 0 ||
        c->n_vocab <= 0)
        return qk_error(QK_EFORMAT,
                        "%s: model dimensions must be positive (n_embd %lld, n_layer %lld, n_head %lld, "
                        "n_head_kv %lld, n_ff %lld, n_vocab %lld)",
                        m->path, (long long)c->n_embd, (long long)c->n_layer, (long long)c->n_head,
                        (long long)c->n_head_kv, (long long)c->n_ff, (long long)c->n_vocab);
    if (c->n_layer > MAX_LAYERS || c->n_embd > (1 << 20) || c->n_ff > (1 << 22) || c->n_vocab > (1 << 24) ||
        c->n_head > (1 << 16))
        return qk_error(QK_ELIMIT, "%s: model dimensions beyond quantkit's limits", m->path);
    if (c->head_dim <= 0)
        c->head_dim = c->n_embd / c->n_head;
    if (c->head_dim <= 0 || c->head_dim % 2 || c->head_dim > 65536)
        return qk_error(QK_EFORMAT, "%s: head dimension %lld must be positive, even and at most 65536", m->path,
                        (long long)c->head_dim);
    if (c->n_head * c->head_dim > (1 << 22) || c->n_head_kv > c->n_head)
        return qk_error(QK_ELIMIT, "%s: %lld heads of dimension %lld (%lld KV heads) are beyond quantkit's limits",
                        m->path, (long long)c->n_head, (long long)c->head_dim, (long long)c->n_head_kv);
    if (c->n_head % c->n_head_kv)
        return qk_error(QK_EFORMAT, "%s: %lld attention heads are not a multiple of %lld KV heads", m->path,
                        (long long)c->n_head, (long long)c->n_head_kv);
    if (!(c->norm_eps > 0) || !isfinite(c->norm_eps))
        return qk_error(QK_EFORMAT, "%s: RMS norm epsilon %g is not positive", m->path, (double)c->norm_eps);
    if (!(c->rope_base > 0) || !isfinite(c->rope_base))
        return qk_error(QK_EFORMAT, "%s: rope base %g is not positive", m->path, (double)c->rope_base);
    if (c->n_ff_orig == 0)
        c->n_ff_orig = c->n_ff;
    return 0;
}

/* Apply --pad-ffn: grow n_ff, mark gate/up rows and down columns as padded. */
static int apply_pad(qk_model *m, int64_t pad)
{
    qk_model_config *c = &m->cfg;
    if (pad <= 0)
        return 0;
    int64_t nff = (c->n_ff + pad - 1) / pad * pad;
    if (nff == c->n_ff)
        return 0;
    for (int64_t i = 0; i < m->n_t; i++) {
        qk_model_tensor *t = &m->t[i];
        int gate = strstr(t->name, ".ffn_gate.") || strstr(t->name, ".ffn_up.");
        int down = strstr(t->name, ".ffn_down.") != NULL;
        if (!gate && !down)
            continue;
        const qk_type_traits *tr = qk_type_get(t->type);
        if (down && !t->gptq && (tr->is_quantized || !tr->to_float))
            return qk_error(QK_EUNSUPPORTED, "%s: cannot pad '%s' stored as %s (pad a float model)", m->path,
                            t->name, tr->name);
        if (gate)
            t->ne[1] = nff;
        else
            t->ne[0] = nff;
    }
    c->n_ff_orig = c->n_ff;
    c->n_ff = nff;
    return 0;
}

/* ------------------------------------------------------------------- GGUF */

static int gguf_u(const qk_gguf *g, const char *key, int64_t *out, int required, const char *path)
{
    uint64_t v;
    int rc = qk_gguf_get_uint(g, key, &v);
    if (rc == QK_ENOTFOUND && !required)
        return 0;
    if (rc == QK_ENOTFOUND)
        return qk_error(QK_EFORMAT, "%s: missing metadata key '%s'", path, key);
    if (rc)
        return rc;
    if (v > INT64_MAX)
        return qk_error(QK_EFORMAT, "%s: '%s' = %llu is too large", path, key, (unsigned long long)v);
    *out = (int64_t)v;
    return 0;
}

static int open_gguf(qk_model *m, const qk_model_opts *o)
{
    int rc = qk_gguf_open(&m->gguf, m->path);
    if (rc)
        return rc;
    const qk_gguf *g = m->gguf;
    const char *arch = NULL;
    rc = qk_gguf_get_str(g, "general.architecture", &arch);
    if (rc)
        return rc == QK_ENOTFOUND ? qk_error(QK_EFORMAT, "%s: no general.architecture key", m->path) : rc;
    if (strcmp(arch, "llama") && strcmp(arch, "mistral"))
        return qk_error(QK_EUNSUPPORTED, "%s: architecture '%s' is not supported (supported: llama, mistral)",
                        m->path, arch);
    qk_model_config *c = &m->cfg;
    snprintf(c->arch, sizeof c->arch, "llama");
    char key[128];
#define K(suffix) (snprintf(key, sizeof key, "%s.%s", arch, suffix), key)
    if ((rc = gguf_u(g, K("embedding_length"), &c->n_embd, 1, m->path)) ||
        (rc = gguf_u(g, K("block_count"), &c->n_layer, 1, m->path)) ||
        (rc = gguf_u(g, K("feed_forward_length"), &c->n_ff, 1, m->path)) ||
        (rc = gguf_u(g, K("attention.head_count"), &c->n_head, 1, m->path)))
        return rc;
    c->n_head_kv = c->n_head;
    c->n_ctx = 2048;
    if ((rc = gguf_u(g, K("attention.head_count_kv"), &c->n_head_kv, 0, m->path)) ||
        (rc = gguf_u(g, K("context_length"), &c->n_ctx, 0, m->path)) ||
        (rc = gguf_u(g, K("vocab_size"), &c->n_vocab, 0, m->path)) ||
        (rc = gguf_u(g, K("attention.key_length"), &c->head_dim, 0, m->path)))
        return rc;
    double d;
    c->norm_eps = 1e-5f;
    c->rope_base = 10000.0f;
    rc = qk_gguf_get_float(g, K("attention.layer_norm_rms_epsilon"), &d);
    if (rc == 0)
        c->norm_eps = (float)d;
    else if (rc != QK_ENOTFOUND)
        return rc;
    rc = qk_gguf_get_float(g, K("rope.freq_base"), &d);
    if (rc == 0)
        c->rope_base = (float)d;
    else if (rc != QK_ENOTFOUND)
        return rc;
    int64_t sw = 0;
    if ((rc = gguf_u(g, K("attention.sliding_window"), &sw, 0, m->path)))
        return rc;
    c->sliding_window = sw;
    /* RoPE variants the reference forward pass does not implement are refused
     * rather than silently computed wrong. */
    const char *stype = NULL;
    if (qk_gguf_get_str(g, K("rope.scaling.type"), &stype) == 0 && strcmp(stype, "none"))
        return qk_error(QK_EUNSUPPORTED, "%s: rope scaling '%s' is not supported yet", m->path, stype);
    if (qk_gguf_find_tensor(g, "rope_freqs.weight"))
        return qk_error(QK_EUNSUPPORTED, "%s: per-frequency rope factors (rope_freqs.weight) are not supported yet",
                        m->path);
    int64_t rdim = 0;
    if ((rc = gguf_u(g, K("rope.dimension_count"), &rdim, 0, m->path)))
        return rc;
#undef K
    const qk_gguf_tensor *emb = qk_gguf_find_tensor(g, "token_embd.weight");
    if (!emb)
        return qk_error(QK_EFORMAT, "%s: missing tensor 'token_embd.weight'", m->path);
    if (c->n_vocab == 0)
        c->n_vocab = emb->ne[1];
    if ((rc = check_config(m)))
        return rc;
    if (rdim && rdim != c->head_dim)
        return qk_error(QK_EUNSUPPORTED, "%s: partial rotary embeddings (rope.dimension_count %lld, head dimension "
                        "%lld) are not supported", m->path, (long long)rdim, (long long)c->head_dim);

    canon_tensor *cl = NULL;
    int64_t ncl = 0;
    if ((rc = canon_list(c, &cl, &ncl)))
        return rc;
    m->t = calloc((size_t)ncl, sizeof *m->t);
    if (!m->t) {
        free(cl);
        return qk_error(QK_ENOMEM, "out of memory");
    }
    /* used[i]: GGUF tensor i is a canonical one */
    uint8_t *used = calloc((size_t)qk_gguf_n_tensors(g) + 1, 1);
    if (!used)
        rc = qk_error(QK_ENOMEM, "out of memory");
    for (int64_t i = 0; i < ncl && !rc; i++) {
        const qk_gguf_tensor *gt = qk_gguf_find_tensor(g, cl[i].name);
        if (!gt) {
            if (!cl[i].optional)
                rc = qk_error(QK_EFORMAT, "%s: missing tensor '%s'", m->path, cl[i].name);
            continue;
        }
        used[gt - qk_gguf_tensor_at(g, 0)] = 1;
        rc = set_tensor(m, &m->t[m->n_t], &cl[i], gt->type, gt->n_dims, gt->ne, gt->data, gt->nbytes,
                        qk_gguf_map(g));
        if (!rc)
            m->n_t++;
    }
    /* tensors the llama layout does not know are reported, not silently dropped */
    for (int64_t i = 0; i < qk_gguf_n_tensors(g) && !rc; i++)
        if (!used[i])
            qk_log(QK_LOG_WARN, "%s: ignoring tensor '%s' that the llama layout does not use", m->path,
                   qk_gguf_tensor_at(g, i)->name);
    free(used);
    free(cl);
    if (rc)
        return rc;
    c->tied_embeddings = qk_model_find(m, "output.weight") == NULL;
    if ((rc = apply_pad(m, o->pad_ffn)))
        return rc;
    if (o->vocab_path)
        return 0; /* loaded by the caller */
    rc = qk_vocab_from_gguf(&m->vocab, g);
    if (rc == QK_ENOTFOUND && o->no_vocab)
        return 0;
    return rc;
}

/* ---------------------------------------------------------- Hugging Face */

static int json_int(const cJSON *o, const char *key, int64_t *out, int required, const char *path)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (required)
            return qk_error(QK_EFORMAT, "%s: missing \"%s\"", path, key);
        return 0;
    }
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || d != floor(d) || d < 0 || d > 9.0e15)
        return qk_error(QK_EFORMAT, "%s: \"%s\" must be a non-negative integer", path, key);
    *out = (int64_t)d;
    return 0;
}

static int json_num(const cJSON *o, const char *key, float *out, const char *path)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    /* stored as float: a finite double beyond FLT_MAX would become Inf */
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > FLT_MAX)
        return qk_error(QK_EFORMAT, "%s: \"%s\" must be a number within float range", path, key);
    *out = (float)v->valuedouble;
    return 0;
}

/* "quantization_config": only GPTQ v1 (AutoGPTQ's "gptq" checkpoint format)
 * with 4 or 8 bits; anything else is refused rather than misread. */
static int read_quant_config(qk_model_config *c, const cJSON *q, const char *path)
{
    if (!q || cJSON_IsNull(q))
        return 0;
    if (!cJSON_IsObject(q))
        return qk_error(QK_EFORMAT, "%s: \"quantization_config\" must be an object", path);
    const cJSON *meth = cJSON_GetObjectItemCaseSensitive(q, "quant_method");
    if (!cJSON_IsString(meth) || strcmp(meth->valuestring, "gptq"))
        return qk_error(QK_EUNSUPPORTED, "%s: quantization_config.quant_method %s%s%s is not supported (supported: gptq)",
                        path, cJSON_IsString(meth) ? "'" : "", cJSON_IsString(meth) ? meth->valuestring : "(missing)",
                        cJSON_IsString(meth) ? "'" : "");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(q, "checkpoint_format");
    if (fmt && !cJSON_IsNull(fmt) && (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "gptq")))
        return qk_error(QK_EUNSUPPORTED,
                        "%s: quantization_config.checkpoint_format %s is not supported (supported: gptq, the v1 layout)",
                        path, cJSON_IsString(fmt) ? fmt->valuestring : "(not a string)");
    int64_t bits = 0, gs = -1;
    int rc = json_int(q, "bits", &bits, 1, path);
    if (rc)
        return rc;
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(q, "group_size");
    if (cJSON_IsNumber(g) && g->valuedouble == -1)
        gs = -1;
    else if ((rc = json_int(q, "group_size", &gs, 0, path)))
        return rc;
    if (gs == 0 || gs > (1 << 24))
        return qk_error(QK_EFORMAT, "%s: quantization_config.group_size %lld: expected -1 or a positive size", path,
                        (long long)gs);
    if (bits != 4 && bits != 8)
        return qk_error(bits == 2 || bits == 3 ? QK_EUNSUPPORTED : QK_EFORMAT,
                        "%s: quantization_config.bits %lld is not supported (supported: 4, 8)", path,
                        (long long)bits);
    c->gptq_bits = (int)bits;
    c->gptq_group_size = gs;
    return 0;
}

int qk_model_read_hf_config(qk_model_config *c, const char *cfg_path)
{
    char *txt = NULL;
    size_t len = 0;
    int rc = qk_read_file(&txt, &len, cfg_path, MAX_CONFIG_BYTES);
    if (rc)
        return rc;
    if ((rc = qk_json_check_limits(cfg_path, "config JSON", txt, len, MAX_CONFIG_DEPTH, MAX_CONFIG_VALUES))) {
        free(txt);
        return rc;
    }
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return qk_error(QK_EFORMAT, "%s: not a JSON object", cfg_path);
    }
    memset(c, 0, sizeof *c);
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(j, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    const char *hf = cJSON_IsString(a0) ? a0->valuestring : NULL;
    const char *mts = cJSON_IsString(mt) ? mt->valuestring : "";
    if (hf && strcmp(hf, "LlamaForCausalLM") && strcmp(hf, "MistralForCausalLM")) {
        rc = qk_error(QK_EUNSUPPORTED,
                      "%s: architecture '%s' is not supported (supported: LlamaForCausalLM, MistralForCausalLM)",
                      cfg_path, hf);
        goto done;
    }
    if (!hf && strcmp(mts, "llama") && strcmp(mts, "mistral")) {
        rc = qk_error(QK_EUNSUPPORTED, "%s: no supported \"architectures\" or \"model_type\" (llama, mistral)",
                      cfg_path);
        goto done;
    }
    snprintf(c->arch, sizeof c->arch, "llama");
    snprintf(c->hf_arch, sizeof c->hf_arch, "%s",
             hf ? hf : (!strcmp(mts, "mistral") ? "MistralForCausalLM" : "LlamaForCausalLM"));
    c->n_ctx = 2048;
    c->norm_eps = 1e-6f;
    c->rope_base = 10000.0f;
    if ((rc = json_int(j, "hidden_size", &c->n_embd, 1, cfg_path)) ||
        (rc = json_int(j, "num_hidden_layers", &c->n_layer, 1, cfg_path)) ||
        (rc = json_int(j, "num_attention_heads", &c->n_head, 1, cfg_path)) ||
        (rc = json_int(j, "intermediate_size", &c->n_ff, 1, cfg_path)) ||
        (rc = json_int(j, "vocab_size", &c->n_vocab, 1, cfg_path)) ||
        (rc = json_int(j, "max_position_embeddings", &c->n_ctx, 0, cfg_path)) ||
        (rc = json_int(j, "head_dim", &c->head_dim, 0, cfg_path)) ||
        (rc = json_int(j, "sliding_window", &c->sliding_window, 0, cfg_path)) ||
        (rc = json_num(j, "rms_norm_eps", &c->norm_eps, cfg_path)) ||
        (rc = json_num(j, "rope_theta", &c->rope_base, cfg_path)))
        goto done;
    c->n_head_kv = c->n_head;
    if ((rc = json_int(j, "num_key_value_heads", &c->n_head_kv, 0, cfg_path)))
        goto done;
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) {
        rc = qk_error(QK_EUNSUPPORTED, "%s: rope_scaling is not supported yet", cfg_path);
        goto done;
    }
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings");
    c->tied_embeddings = cJSON_IsTrue(tie);
    rc = read_quant_config(c, cJSON_GetObjectItemCaseSensitive(j, "quantization_config"), cfg_path);
done:
    cJSON_Delete(j);
    return rc;
}

/* The shard holding st (NULL when st is not in the set): each shard keeps
 * its tensors in one array, so this is a range test per shard rather than
 * a scan of every tensor (which made opening quadratic in tensors). */
static const qk_safetensors *shard_of(const qk_st_set *s, const qk_st_tensor *st)
{
    for (int64_t j = 0; j < qk_st_set_n_shards(s); j++) {
        const qk_safetensors *sh = qk_st_set_shard(s, j);
        int64_t n = qk_safetensors_n_tensors(sh);
        uintptr_t p = (uintptr_t)st, lo = (uintptr_t)qk_safetensors_tensor_at(sh, 0),
                  hi = (uintptr_t)qk_safetensors_tensor_at(sh, n - 1);
        if (n > 0 && p >= lo && p <= hi)
            return sh;
    }
    return NULL;
}

/* A GPTQ linear layer: <prefix>.qweight/.qzeros/.scales/.g_idx in place of
 * <prefix>.weight. *found = 0 (and no error) when there is no qweight. */
static int open_gptq_tensor(qk_model *m, const canon_tensor *c, int *found)
{
    char prefix[96], nm[QK_GPTQ_NPARTS][128];
    size_t n = strlen(c->hf);
    *found = 0;
    if (n < 7 || strcmp(c->hf + n - 7, ".weight"))
        return 0;
    snprintf(prefix, sizeof prefix, "%.*s", (int)(n - 7), c->hf);
    const qk_st_tensor *st[QK_GPTQ_NPARTS];
    const char *files[QK_GPTQ_NPARTS];
    const qk_safetensors *sh[QK_GPTQ_NPARTS];
    for (int k = 0; k < QK_GPTQ_NPARTS; k++) {
        snprintf(nm[k], sizeof nm[k], "%s.%s", prefix, qk_gptq_part_names[k]);
        st[k] = qk_st_set_find(m->st, nm[k]);
        if (!st[k] && k == QK_GPTQ_QWEIGHT)
            return 0;
        if (!st[k])
            return qk_error(QK_EFORMAT, "%s: missing tensor '%s' (GPTQ layer '%s' for %s)", m->path, nm[k],
                            nm[QK_GPTQ_QWEIGHT], c->name);
        sh[k] = shard_of(m->st, st[k]);
        files[k] = sh[k] ? qk_safetensors_path(sh[k]) : m->path;
    }
    qk_gptq_tensor *g = &m->gq[m->n_t];
    int rc = qk_gptq_tensor_init(g, m->cfg.gptq_bits, c->ne[0], c->ne[1], st, files);
    if (rc)
        return rc;
    for (int k = 0; k < QK_GPTQ_NPARTS; k++)
        g->part[k].map = sh[k] ? qk_safetensors_map(sh[k]) : NULL;
    qk_model_tensor *t = &m->t[m->n_t];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", c->name);
    t->type = QK_TYPE_I32;
    t->n_dims = 2;
    t->ne[0] = t->src_ne0 = c->ne[0];
    t->ne[1] = t->src_rows = c->ne[1];
    t->ne[2] = t->ne[3] = 1;
    t->nbytes = qk_gptq_tensor_bytes(g);
    t->perm_heads = c->perm_heads;
    t->gptq = g;
    if (c->perm_heads && t->src_rows % c->perm_heads)
        return qk_error(QK_EFORMAT, "%s: '%s' rows do not divide into %lld heads", m->path, nm[QK_GPTQ_QWEIGHT],
                        (long long)c->perm_heads);
    m->source_bytes += t->nbytes;
    m->n_t++;
    *found = 1;
    return 0;
}

static int open_hf(qk_model *m, const char *dir, const char *st_path, const qk_model_opts *o)
{
    char *cfg_path = qk_path_join(dir, "config.json");
    if (!cfg_path)
        return qk_error(QK_ENOMEM, "out of memory");
    if (!qk_file_exists(cfg_path)) {
        int rc = qk_error(QK_ENOTFOUND, "%s: no config.json beside the safetensors (needed for the model shape)",
                          m->path);
        free(cfg_path);
        return rc;
    }
    int rc = qk_model_read_hf_config(&m->cfg, cfg_path);
    free(cfg_path);
    if (rc || (rc = check_config(m)))
        return rc;
    if ((rc = qk_st_set_open(&m->st, st_path)))
        return rc;
    canon_tensor *cl = NULL;
    int64_t ncl = 0;
    if ((rc = canon_list(&m->cfg, &cl, &ncl)))
        return rc;
    m->t = calloc((size_t)ncl, sizeof *m->t);
    m->gq = m->cfg.gptq_bits ? calloc((size_t)ncl, sizeof *m->gq) : NULL;
    if (!m->t || (m->cfg.gptq_bits && !m->gq)) {
        free(cl);
        return qk_error(QK_ENOMEM, "out of memory");
    }
    for (int64_t i = 0; i < ncl && !rc; i++) {
        if (m->cfg.gptq_bits && cl[i].n_dims == 2 && strcmp(cl[i].name, "token_embd.weight")) {
            int found = 0;
            if ((rc = open_gptq_tensor(m, &cl[i], &found)))
                break;
            if (found)
                continue;
        }
        const qk_st_tensor *st = qk_st_set_find(m->st, cl[i].hf);
        if (!st) {
            if (!cl[i].optional)
                rc = qk_error(QK_EFORMAT, "%s: missing tensor '%s' (for %s)", m->path, cl[i].hf, cl[i].name);
            continue;
        }
        int type = qk_st_dtype_type(st->dtype);
        const qk_type_traits *tr = qk_type_get(type);
        if (!tr || !tr->is_float || !tr->to_float) {
            rc = qk_error(QK_EUNSUPPORTED, "%s: tensor '%s' has dtype %s (supported: F32, F16, BF16)", m->path,
                          st->name, qk_st_dtype_name(st->dtype));
            break;
        }
        /* PyTorch shape [out, in] -> ne {in, out} */
        int64_t ne[QK_ST_MAX_DIMS];
        for (int d = 0; d < st->n_dims; d++)
            ne[d] = st->shape[st->n_dims - 1 - d];
        const qk_safetensors *sh = shard_of(m->st, st);
        const qk_mmap *map = sh ? qk_safetensors_map(sh) : NULL;
        rc = set_tensor(m, &m->t[m->n_t], &cl[i], type, st->n_dims, ne, st->data, st->nbytes, map);
        if (!rc) {
            m->t[m->n_t].perm_heads = cl[i].perm_heads;
            if (cl[i].perm_heads && m->t[m->n_t].src_rows % cl[i].perm_heads)
                rc = qk_error(QK_EFORMAT, "%s: '%s' rows do not divide into %lld heads", m->path, st->name,
                              (long long)cl[i].perm_heads);
            m->n_t++;
        }
    }
    free(cl);
    if (rc)
        return rc;
    /* an untied config without lm_head is an incomplete checkpoint */
    int has_out = qk_model_find(m, "output.weight") != NULL;
    if (!m->cfg.tied_embeddings && !has_out)
        return qk_error(QK_EFORMAT, "%s: missing tensor 'lm_head.weight' (config says tie_word_embeddings false)",
                        m->path);
    m->cfg.tied_embeddings = !has_out;
    if ((rc = apply_pad(m, o->pad_ffn)))
        return rc;
    if (o->vocab_path)
        return 0;
    /* tokenizer.model (SentencePiece) is preferred, as llama.cpp does */
    char *spm = qk_path_join(dir, "tokenizer.model");
    char *tj = qk_path_join(dir, "tokenizer.json");
    if (!spm || !tj)
        rc = qk_error(QK_ENOMEM, "out of memory");
    else if (qk_file_exists(spm))
        rc = qk_vocab_from_spm_model(&m->vocab, spm);
    else if (qk_file_exists(tj))
        rc = qk_vocab_from_tokenizer_json(&m->vocab, tj);
    else if (!o->no_vocab)
        rc = qk_error(QK_ENOTFOUND, "%s: no tokenizer.model or tokenizer.json found; give one with --vocab FILE",
                      m->path);
    free(spm);
    free(tj);
    return rc;
}

/* ---------------------------------------------------------------- llama2.c */

static int open_llama2c(qk_model *m, const qk_model_opts *o, char **found_vocab)
{
    int rc = qk_llama2c_open(&m->l2c, m->path);
    if (rc)
        return rc;
    const qk_llama2c *l = m->l2c;
    const qk_llama2c_config *lc = &l->cfg;
    qk_model_config *c = &m->cfg;
    snprintf(c->arch, sizeof c->arch, "llama");
    c->n_embd = lc->dim;
    c->n_layer = lc->n_layers;
    c->n_head = lc->n_heads;
    c->n_head_kv = lc->n_kv_heads;
    c->n_ff = lc->hidden_dim;
    c->n_vocab = lc->vocab_size;
    c->n_ctx = lc->seq_len;
    c->norm_eps = 1e-5f;
    c->rope_base = 10000.0f;
    if ((rc = check_config(m)))
        return rc;
    canon_tensor *cl = NULL;
    int64_t ncl = 0;
    if ((rc = canon_list(c, &cl, &ncl)))
        return rc;
    m->t = calloc((size_t)ncl, sizeof *m->t);
    if (!m->t) {
        free(cl);
        return qk_error(QK_ENOMEM, "out of memory");
    }
    const uint8_t *base = l->map->data;
    int64_t D = c->n_embd, F = c->n_ff, V = c->n_vocab, KV = c->n_head_kv * c->head_dim, L = c->n_layer;
    for (int64_t i = 0; i < ncl && !rc; i++) {
        const canon_tensor *ct = &cl[i];
        const qk_llama2c_array *arr = NULL;
        uint64_t per_layer = 0;
        long long layer = -1;
        char kind[48] = "";
        if (sscanf(ct->name, "blk.%lld.%47s", &layer, kind) != 2)
            layer = -1;
        if (!strcmp(ct->name, "token_embd.weight")) arr = &l->tok_emb, per_layer = (uint64_t)V * D;
        else if (!strcmp(ct->name, "output_norm.weight")) arr = &l->rms_final, per_layer = (uint64_t)D;
        else if (!strcmp(ct->name, "output.weight")) {
            if (lc->shared_classifier)
                continue;
            arr = &l->wcls, per_layer = (uint64_t)V * D;
        } else if (!strcmp(kind, "attn_norm.weight")) arr = &l->rms_att, per_layer = (uint64_t)D;
        else if (!strcmp(kind, "attn_q.weight")) arr = &l->wq, per_layer = (uint64_t)D * D;
        else if (!strcmp(kind, "attn_k.weight")) arr = &l->wk, per_layer = (uint64_t)KV * D;
        else if (!strcmp(kind, "attn_v.weight")) arr = &l->wv, per_layer = (uint64_t)KV * D;
        else if (!strcmp(kind, "attn_output.weight")) arr = &l->wo, per_layer = (uint64_t)D * D;
        else if (!strcmp(kind, "ffn_norm.weight")) arr = &l->rms_ffn, per_layer = (uint64_t)D;
        else if (!strcmp(kind, "ffn_gate.weight")) arr = &l->w1, per_layer = (uint64_t)F * D;
        else if (!strcmp(kind, "ffn_down.weight")) arr = &l->w2, per_layer = (uint64_t)D * F;
        else if (!strcmp(kind, "ffn_up.weight")) arr = &l->w3, per_layer = (uint64_t)F * D;
        if (!arr) {
            rc = qk_error(QK_EFORMAT, "%s: no llama2.c array for '%s'", m->path, ct->name);
            break;
        }
        uint64_t off = arr->offset + (layer >= 0 ? (uint64_t)layer * per_layer * 4 : 0);
        int64_t ne[2] = {ct->ne[0], ct->n_dims > 1 ? ct->ne[1] : 1};
        rc = set_tensor(m, &m->t[m->n_t], ct, QK_TYPE_F32, ct->n_dims, ne, base + off, per_layer * 4, l->map);
        if (!rc)
            m->n_t++;
    }
    (void)L;
    free(cl);
    if (rc)
        return rc;
    c->tied_embeddings = lc->shared_classifier;
    if ((rc = apply_pad(m, o->pad_ffn)))
        return rc;
    if (o->vocab_path)
        return 0;
    /* a tokenizer.bin or tok<V>.bin beside the checkpoint */
    char *copy = strdup(m->path);
    if (!copy)
        return qk_error(QK_ENOMEM, "out of memory");
    char *slash = strrchr(copy, '/');
    const char *dir = ".";
    if (slash) {
        *slash = 0;
        dir = copy;
    }
    char name[64];
    const char *cands[2] = {"tokenizer.bin", name};
    snprintf(name, sizeof name, "tok%lld.bin", (long long)c->n_vocab);
    for (int i = 0; i < 2 && !*found_vocab; i++) {
        char *p = qk_path_join(dir, cands[i]);
        if (p && qk_file_exists(p))
            *found_vocab = p;
        else
            free(p);
    }
    free(copy);
    if (!*found_vocab && !o->no_vocab)
        return qk_error(QK_ENOTFOUND,
                        "%s: llama2.c checkpoints carry no tokenizer; give one with --vocab tokenizer.bin", m->path);
    return 0;
}

/* A vocabulary file given explicitly: tokenizer.bin (llama2.c), tokenizer.json,
 * tokenizer.model (SentencePiece) or a GGUF (vocab-only or full). */
static int load_vocab_file(qk_vocab **out, const char *path, int64_t n_vocab)
{
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".json"))
        return qk_vocab_from_tokenizer_json(out, path);
    if (n >= 6 && !strcmp(path + n - 6, ".model"))
        return qk_vocab_from_spm_model(out, path);
    if (n >= 5 && !strcmp(path + n - 5, ".gguf")) {
        qk_gguf *g = NULL;
        int rc = qk_gguf_open(&g, path);
        if (!rc)
            rc = qk_vocab_from_gguf(out, g);
        qk_gguf_close(g);
        return rc;
    }
    return qk_vocab_from_llama2c(out, path, n_vocab);
}

static int has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int qk_model_open(qk_model **out, const char *path, const qk_model_opts *opts)
{
    *out = NULL;
    qk_model_opts o = {0};
    if (opts)
        o = *opts;
    if (o.pad_ffn < 0 || o.pad_ffn > 4096)
        return qk_error(QK_EINVAL, "--pad-ffn %lld: must be between 1 and 4096", (long long)o.pad_ffn);
    qk_model *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return qk_error(QK_ENOMEM, "out of memory");
    }
    char *found_vocab = NULL;
    int rc;
    if (qk_is_dir(path)) {
        m->kind = QK_SRC_SAFETENSORS;
        rc = open_hf(m, path, path, &o);
    } else if (!qk_file_exists(path)) {
        rc = qk_error(QK_ENOTFOUND, "%s: no such file or directory", path);
    } else if (has_suffix(path, ".safetensors") || has_suffix(path, ".index.json")) {
        m->kind = QK_SRC_SAFETENSORS;
        char *copy = strdup(path);
        char *slash = copy ? strrchr(copy, '/') : NULL;
        if (slash)
            *slash = 0;
        rc = copy ? open_hf(m, slash ? copy : ".", path, &o) : qk_error(QK_ENOMEM, "out of memory");
        free(copy);
    } else {
        /* sniff: GGUF magic, else llama2.c */
        uint8_t magic[4] = {0};
        FILE *f = fopen(path, "rb");
        size_t got = f ? fread(magic, 1, 4, f) : 0;
        if (f)
            fclose(f);
        if (got == 4 && !memcmp(magic, "GGUF", 4)) {
            m->kind = QK_SRC_GGUF;
            rc = open_gguf(m, &o);
        } else if (has_suffix(path, ".bin")) {
            m->kind = QK_SRC_LLAMA2C;
            rc = open_llama2c(m, &o, &found_vocab);
        } else {
            rc = qk_error(QK_EFORMAT,
                          "%s: not a GGUF, safetensors, llama2.c .bin or Hugging Face directory", path);
        }
    }
    const char *vp = o.vocab_path ? o.vocab_path : found_vocab;
    if (!rc && vp && !m->vocab)
        rc = load_vocab_file(&m->vocab, vp, m->cfg.n_vocab);
    if (!rc && m->vocab && m->vocab->n_tokens != m->cfg.n_vocab)
        rc = qk_error(QK_EFORMAT, "%s: tokenizer has %lld tokens but the model's vocabulary is %lld", vp ? vp : path,
                      (long long)m->vocab->n_tokens, (long long)m->cfg.n_vocab);
    free(found_vocab);
    if (!rc) {
        const qk_model_tensor **ix = malloc(((size_t)m->n_t + 1) * sizeof *ix);
        if (!ix) {
            rc = qk_error(QK_ENOMEM, "out of memory");
        } else {
            for (int64_t i = 0; i < m->n_t; i++)
                ix[i] = &m->t[i];
            qsort(ix, (size_t)m->n_t, sizeof *ix, cmp_tensor_name);
            m->by_name = ix;
        }
    }
    if (rc) {
        qk_model_close(m);
        return rc;
    }
    *out = m;
    return 0;
}

/* ------------------------------------------------------------ GGUF keys */

int qk_model_cfg_to_gguf(const qk_model_config *c, qk_gguf_writer *w)
{
    int rc;
    if ((rc = qk_gguf_writer_set_str(w, "general.architecture", "llama")) ||
        (rc = qk_gguf_writer_set_u32(w, "llama.context_length", (uint32_t)c->n_ctx)) ||
        (rc = qk_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)c->n_embd)) ||
        (rc = qk_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)c->n_layer)) ||
        (rc = qk_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)c->n_ff)) ||
        (rc = qk_gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)c->head_dim)) ||
        (rc = qk_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)c->n_head)) ||
        (rc = qk_gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_head_kv)) ||
        (rc = qk_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps)) ||
        (rc = qk_gguf_writer_set_f32(w, "llama.rope.freq_base", c->rope_base)) ||
        (rc = qk_gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)c->n_vocab)))
        return rc;
    if (c->head_dim * c->n_head != c->n_embd) {
        if ((rc = qk_gguf_writer_set_u32(w, "llama.attention.key_length", (uint32_t)c->head_dim)) ||
            (rc = qk_gguf_writer_set_u32(w, "llama.attention.value_length", (uint32_t)c->head_dim)))
            return rc;
    }
    return 0;
}
