/* Type selection per tensor: llama.cpp's quantization mixes (as llama-quantize
 * build b4748 applies them to the llama architecture), user overrides and
 * block-size fallbacks. */
#include "quantkit/quantize.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const qk_ftype_info k_ftypes[] = {
    {"Q4_0", QK_FTYPE_Q4_0, QK_TYPE_Q4_0, "4.5 bpw, 32-blocks, symmetric"},
    {"Q4_1", QK_FTYPE_Q4_1, QK_TYPE_Q4_1, "5.0 bpw, 32-blocks, scale and minimum"},
    {"Q5_0", QK_FTYPE_Q5_0, QK_TYPE_Q5_0, "5.5 bpw, 32-blocks, symmetric"},
    {"Q5_1", QK_FTYPE_Q5_1, QK_TYPE_Q5_1, "6.0 bpw, 32-blocks, scale and minimum"},
    {"Q8_0", QK_FTYPE_Q8_0, QK_TYPE_Q8_0, "8.5 bpw, 32-blocks"},
    {"Q2_K", QK_FTYPE_Q2_K, QK_TYPE_Q2_K, "Q2_K mix (attn_v Q3_K/Q4_K, ffn_down and attn_output Q3_K)"},
    {"Q2_K_S", QK_FTYPE_Q2_K_S, QK_TYPE_Q2_K, "Q2_K, smaller mix"},
    {"Q3_K_S", QK_FTYPE_Q3_K_S, QK_TYPE_Q3_K, "Q3_K everywhere but output"},
    {"Q3_K_M", QK_FTYPE_Q3_K_M, QK_TYPE_Q3_K, "Q3_K mix (attn_v Q5_K/Q4_K, ffn_down Q5_K/Q4_K, attn_output Q4_K)"},
    {"Q3_K", QK_FTYPE_Q3_K_M, QK_TYPE_Q3_K, "alias of Q3_K_M"},
    {"Q3_K_L", QK_FTYPE_Q3_K_L, QK_TYPE_Q3_K, "Q3_K mix (attn_v, ffn_down, attn_output Q5_K)"},
    {"Q4_K_S", QK_FTYPE_Q4_K_S, QK_TYPE_Q4_K, "Q4_K mix (first attn_v and ffn_down Q5_K)"},
    {"Q4_K_M", QK_FTYPE_Q4_K_M, QK_TYPE_Q4_K, "Q4_K mix (half of attn_v and ffn_down Q6_K)"},
    {"Q4_K", QK_FTYPE_Q4_K_M, QK_TYPE_Q4_K, "alias of Q4_K_M"},
    {"Q5_K_S", QK_FTYPE_Q5_K_S, QK_TYPE_Q5_K, "Q5_K everywhere but output"},
    {"Q5_K_M", QK_FTYPE_Q5_K_M, QK_TYPE_Q5_K, "Q5_K mix (half of attn_v and ffn_down Q6_K)"},
    {"Q5_K", QK_FTYPE_Q5_K_M, QK_TYPE_Q5_K, "alias of Q5_K_M"},
    {"Q6_K", QK_FTYPE_Q6_K, QK_TYPE_Q6_K, "6.5625 bpw"},
    {"IQ4_NL", QK_FTYPE_IQ4_NL, QK_TYPE_IQ4_NL, "4.5 bpw, 32-blocks, non-linear codebook"},
    {"IQ4_XS", QK_FTYPE_IQ4_XS, QK_TYPE_IQ4_XS, "4.25 bpw, 256-blocks, non-linear codebook"},
    {"F16", QK_FTYPE_F16, QK_TYPE_F16, "16-bit float"},
    {"BF16", QK_FTYPE_BF16, QK_TYPE_BF16, "bfloat16"},
    {"F32", QK_FTYPE_ALL_F32, QK_TYPE_F32, "32-bit float"},
};

const qk_ftype_info *qk_ftype_find(const char *name)
{
    for (size_t i = 0; i < sizeof k_ftypes / sizeof k_ftypes[0]; i++)
        if (!strcasecmp(k_ftypes[i].name, name))
            return &k_ftypes[i];
    return NULL;
}

const qk_ftype_info *qk_ftype_list(int64_t *n)
{
    *n = (int64_t)(sizeof k_ftypes / sizeof k_ftypes[0]);
    return k_ftypes;
}

/* llama.cpp's "use more bits" layers: the first and last eighth and every
 * third layer in between. */
static int use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

enum { CAT_OTHER, CAT_EMBD, CAT_OUTPUT, CAT_Q, CAT_K, CAT_V, CAT_O, CAT_GATE, CAT_UP, CAT_DOWN };

static int category(const char *name, int64_t *layer)
{
    long long l = -1;
    *layer = sscanf(name, "blk.%lld.", &l) == 1 ? l : -1;
    if (!strcmp(name, "token_embd.weight")) return CAT_EMBD;
    if (!strcmp(name, "output.weight")) return CAT_OUTPUT;
    if (strstr(name, "attn_q.weight")) return CAT_Q;
    if (strstr(name, "attn_k.weight")) return CAT_K;
    if (strstr(name, "attn_v.weight")) return CAT_V;
    if (strstr(name, "attn_output.weight")) return CAT_O;
    if (strstr(name, "ffn_gate")) return CAT_GATE;
    if (strstr(name, "ffn_up")) return CAT_UP;
    if (strstr(name, "ffn_down")) return CAT_DOWN;
    return CAT_OTHER;
}

/* llama.cpp's mix rules for the llama architecture (no experts). */
static int mix_type(const qk_model_config *c, const qk_quant_params *p, int cat, int64_t layer, int64_t ne0,
                    int tied)
{
    int ft = p->target->ftype;
    int t = p->target->base_type;
    int64_t n = c->n_layer;
    int64_t gqa = c->n_head_kv ? c->n_head / c->n_head_kv : 1;
    if (cat == CAT_OUTPUT || (tied && cat == CAT_EMBD)) {
        if (ne0 % 256)
            return QK_TYPE_Q8_0;
        return t != QK_TYPE_Q8_0 ? QK_TYPE_Q6_K : t;
    }
    switch (cat) {
    case CAT_V:
        if (ft == QK_FTYPE_Q2_K) t = gqa >= 4 ? QK_TYPE_Q4_K : QK_TYPE_Q3_K;
        else if (ft == QK_FTYPE_Q2_K_S && gqa >= 4) t = QK_TYPE_Q4_K;
        else if (ft == QK_FTYPE_Q3_K_M) t = layer < 2 ? QK_TYPE_Q5_K : QK_TYPE_Q4_K;
        else if (ft == QK_FTYPE_Q3_K_L) t = QK_TYPE_Q5_K;
        else if ((ft == QK_FTYPE_IQ4_NL || ft == QK_FTYPE_IQ4_XS) && gqa >= 4) t = QK_TYPE_Q5_K;
        else if ((ft == QK_FTYPE_Q4_K_M || ft == QK_FTYPE_Q5_K_M) && use_more_bits(layer, n)) t = QK_TYPE_Q6_K;
        else if (ft == QK_FTYPE_Q4_K_S && layer < 4) t = QK_TYPE_Q5_K;
        break;
    case CAT_DOWN:
        if (ft == QK_FTYPE_Q2_K) t = QK_TYPE_Q3_K;
        else if (ft == QK_FTYPE_Q2_K_S) { if (layer < n / 8) t = QK_TYPE_Q4_K; }
        else if (ft == QK_FTYPE_Q3_K_M) t = layer < n / 16 ? QK_TYPE_Q5_K : QK_TYPE_Q4_K;
        else if (ft == QK_FTYPE_Q3_K_L) t = QK_TYPE_Q5_K;
        else if (ft == QK_FTYPE_Q4_K_M) { if (use_more_bits(layer, n)) t = QK_TYPE_Q6_K; }
        else if (layer < n / 8 && (ft == QK_FTYPE_IQ4_NL || ft == QK_FTYPE_IQ4_XS) && !p->has_imatrix) t = QK_TYPE_Q5_K;
        else if (ft == QK_FTYPE_Q5_K_M && use_more_bits(layer, n)) t = QK_TYPE_Q6_K;
        else if (ft == QK_FTYPE_Q4_K_S && layer < n / 8) t = QK_TYPE_Q5_K;
        else if ((ft == QK_FTYPE_Q4_0 || ft == QK_FTYPE_Q5_0) && p->has_imatrix && layer < n / 8)
            t = ft == QK_FTYPE_Q4_0 ? QK_TYPE_Q4_1 : QK_TYPE_Q5_1;
        break;
    case CAT_O:
        if (ft == QK_FTYPE_Q2_K) t = QK_TYPE_Q3_K;
        else if (ft == QK_FTYPE_Q3_K_M) t = QK_TYPE_Q4_K;
        else if (ft == QK_FTYPE_Q3_K_L) t = QK_TYPE_Q5_K;
        break;
    default: break;
    }
    return t;
}

/* The type to use when `t`'s block does not divide the row length. */
static int fallback_type(int t, int64_t ne0)
{
    const qk_type_traits *tr = qk_type_get(t);
    if (!tr || ne0 % tr->block_size == 0)
        return t;
    int f;
    switch (t) {
    case QK_TYPE_Q2_K:
    case QK_TYPE_Q3_K:
    case QK_TYPE_IQ4_XS: f = QK_TYPE_IQ4_NL; break;
    case QK_TYPE_Q4_K: f = QK_TYPE_Q5_0; break;
    case QK_TYPE_Q5_K: f = QK_TYPE_Q5_1; break;
    case QK_TYPE_Q6_K: f = QK_TYPE_Q8_0; break;
    default: f = QK_TYPE_F16; break;
    }
    if (ne0 % qk_type_get(f)->block_size)
        f = QK_TYPE_F16;
    return f;
}

int qk_quant_plan(const qk_model *m, const qk_quant_params *p, qk_plan_entry *plan)
{
    const qk_model_config *c = qk_model_cfg(m);
    int tied = qk_model_find(m, "output.weight") == NULL;
    for (int64_t i = 0; i < qk_model_n_tensors(m); i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        qk_plan_entry *e = &plan[i];
        memset(e, 0, sizeof *e);
        if (t->n_dims < 2) {
            e->type = e->wanted = QK_TYPE_F32;
            e->reason = QK_PLAN_KEEP;
            continue;
        }
        int64_t layer;
        int cat = category(t->name, &layer);
        int type = p->target->base_type;
        int reason = QK_PLAN_BASE;
        const qk_type_traits *bt = qk_type_get(type);
        int manual = 0;
        for (int64_t k = 0; k < p->n_overrides; k++)
            if (regexec(&p->overrides[k].re, t->name, 0, NULL, 0) == 0) {
                type = p->overrides[k].type;
                reason = QK_PLAN_OVERRIDE;
                manual = 1;
                break;
            }
        if (!manual && !p->pure && bt->is_quantized) {
            int mt = mix_type(c, p, cat, layer, t->ne[0], tied);
            if (mt != type)
                reason = QK_PLAN_MIX;
            type = mt;
        }
        if (p->embed_type >= 0 && cat == CAT_EMBD) {
            type = p->embed_type;
            reason = QK_PLAN_OPTION;
        }
        if (p->output_type >= 0 && (cat == CAT_OUTPUT || (tied && cat == CAT_EMBD && p->embed_type < 0))) {
            type = p->output_type;
            reason = QK_PLAN_OPTION;
        }
        e->wanted = type;
        e->type = fallback_type(type, t->ne[0]);
        e->fallback = e->type != type;
        e->reason = reason;
    }
    return 0;
}

/* The largest exponent field of x[i, i+len) is all ones: an Inf or NaN.
 * A max over the masked bits: a loop the compiler vectorizes (an early-exit
 * search it does not). */
static inline int has_nonfinite(const float *x, int64_t len)
{
    uint32_t m = 0;
    for (int64_t k = 0; k < len; k++) {
        uint32_t u;
        memcpy(&u, x + k, sizeof u);
        u &= 0x7f800000u;
        m = m > u ? m : u;
    }
    return m == 0x7f800000u;
}

int64_t qk_find_nonfinite(const float *x, int64_t n)
{
    /* blocks of 256, then 32, skip finite data; the index is searched only
     * from the first block that has one */
    int64_t i = 0;
    while (i + 256 <= n && !has_nonfinite(x + i, 256))
        i += 256;
    while (i + 32 <= n && !has_nonfinite(x + i, 32))
        i += 32;
    for (; i < n; i++)
        if (!isfinite(x[i]))
            return i;
    return -1;
}
