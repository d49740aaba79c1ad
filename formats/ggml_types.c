/* The ggml type traits table: one row per type id. Codecs for the block
 * types live in ggml_blocks.c; the float types are handled here. */
#include "quantkit/ggml_types.h"

#include <string.h>
#include <strings.h>

#include "quantkit/common.h"
#include "ggml_blocks.h"

static void f32_to_float(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }
static void f32_from_float(const float *src, void *dst, int64_t n, const float *imp)
{
    (void)imp;
    memcpy(dst, src, (size_t)n * sizeof(float));
}
static void f16_to_float(const void *src, float *dst, int64_t n) { qk_fp16_to_f32_row(src, dst, n); }
static void f16_from_float(const float *src, void *dst, int64_t n, const float *imp)
{
    (void)imp;
    qk_f32_to_fp16_row(src, dst, n);
}
static void bf16_to_float(const void *src, float *dst, int64_t n) { qk_bf16_to_f32_row(src, dst, n); }
static void bf16_from_float(const float *src, void *dst, int64_t n, const float *imp)
{
    (void)imp;
    qk_f32_to_bf16_row(src, dst, n);
}

/* name, block, bytes, quantized, float, to_float, from_float_ref, from_float */
static const qk_type_traits k_traits[QK_TYPE_COUNT] = {
    [QK_TYPE_F32] = {"F32", 1, 4, 0, 1, f32_to_float, f32_from_float, NULL},
    [QK_TYPE_F16] = {"F16", 1, 2, 0, 1, f16_to_float, f16_from_float, NULL},
    [QK_TYPE_Q4_0] = {"Q4_0", 32, 18, 1, 0, QK_BLOCKS_Q4_0},
    [QK_TYPE_Q4_1] = {"Q4_1", 32, 20, 1, 0, QK_BLOCKS_Q4_1},
    [QK_TYPE_Q5_0] = {"Q5_0", 32, 22, 1, 0, QK_BLOCKS_Q5_0},
    [QK_TYPE_Q5_1] = {"Q5_1", 32, 24, 1, 0, QK_BLOCKS_Q5_1},
    [QK_TYPE_Q8_0] = {"Q8_0", 32, 34, 1, 0, QK_BLOCKS_Q8_0},
    [QK_TYPE_Q8_1] = {"Q8_1", 32, 36, 1, 0, NULL, NULL, NULL},
    [QK_TYPE_Q2_K] = {"Q2_K", 256, 84, 1, 0, QK_BLOCKS_Q2_K},
    [QK_TYPE_Q3_K] = {"Q3_K", 256, 110, 1, 0, QK_BLOCKS_Q3_K},
    [QK_TYPE_Q4_K] = {"Q4_K", 256, 144, 1, 0, QK_BLOCKS_Q4_K},
    [QK_TYPE_Q5_K] = {"Q5_K", 256, 176, 1, 0, QK_BLOCKS_Q5_K},
    [QK_TYPE_Q6_K] = {"Q6_K", 256, 210, 1, 0, QK_BLOCKS_Q6_K},
    [QK_TYPE_Q8_K] = {"Q8_K", 256, 292, 1, 0, NULL, NULL, NULL},
    [QK_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66, 1, 0, NULL, NULL, NULL},
    [QK_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74, 1, 0, NULL, NULL, NULL},
    [QK_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98, 1, 0, NULL, NULL, NULL},
    [QK_TYPE_IQ1_S] = {"IQ1_S", 256, 50, 1, 0, NULL, NULL, NULL},
    [QK_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18, 1, 0, QK_BLOCKS_IQ4_NL},
    [QK_TYPE_IQ3_S] = {"IQ3_S", 256, 110, 1, 0, NULL, NULL, NULL},
    [QK_TYPE_IQ2_S] = {"IQ2_S", 256, 82, 1, 0, NULL, NULL, NULL},
    [QK_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136, 1, 0, QK_BLOCKS_IQ4_XS},
    [QK_TYPE_I8] = {"I8", 1, 1, 0, 0, NULL, NULL, NULL},
    [QK_TYPE_I16] = {"I16", 1, 2, 0, 0, NULL, NULL, NULL},
    [QK_TYPE_I32] = {"I32", 1, 4, 0, 0, NULL, NULL, NULL},
    [QK_TYPE_I64] = {"I64", 1, 8, 0, 0, NULL, NULL, NULL},
    [QK_TYPE_F64] = {"F64", 1, 8, 0, 1, NULL, NULL, NULL},
    [QK_TYPE_IQ1_M] = {"IQ1_M", 256, 56, 1, 0, NULL, NULL, NULL},
    [QK_TYPE_BF16] = {"BF16", 1, 2, 0, 1, bf16_to_float, bf16_from_float, NULL},
    [QK_TYPE_TQ1_0] = {"TQ1_0", 256, 54, 1, 0, NULL, NULL, NULL},
    [QK_TYPE_TQ2_0] = {"TQ2_0", 256, 66, 1, 0, NULL, NULL, NULL},
};

const qk_type_traits *qk_type_get(int type)
{
    if (type < 0 || type >= QK_TYPE_COUNT || !k_traits[type].name)
        return NULL;
    return &k_traits[type];
}

const char *qk_type_name(int type)
{
    const qk_type_traits *t = qk_type_get(type);
    return t ? t->name : "?";
}

int qk_type_from_name(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < QK_TYPE_COUNT; i++)
        if (k_traits[i].name && !strcasecmp(k_traits[i].name, name))
            return i;
    return -1;
}

int qk_type_row_bytes(int type, int64_t ne0, size_t *out)
{
    const qk_type_traits *t = qk_type_get(type);
    if (!t)
        return qk_error(QK_EUNSUPPORTED, "unknown ggml type id %d", type);
    if (ne0 < 0 || ne0 % t->block_size)
        return qk_error(QK_EFORMAT, "row length %lld is not a multiple of %s's block size %lld",
                        (long long)ne0, t->name, (long long)t->block_size);
    uint64_t b;
    if (qk_mul_u64((uint64_t)(ne0 / t->block_size), t->type_size, &b) || b > SIZE_MAX)
        return qk_error(QK_ELIMIT, "row of %lld %s elements overflows", (long long)ne0, t->name);
    *out = (size_t)b;
    return 0;
}

int qk_type_tensor_bytes(int type, const int64_t *ne, int n_dims, uint64_t *out)
{
    size_t row;
    int rc = qk_type_row_bytes(type, n_dims > 0 ? ne[0] : 1, &row);
    if (rc)
        return rc;
    uint64_t total = row;
    for (int i = 1; i < n_dims; i++) {
        if (ne[i] < 0)
            return qk_error(QK_EFORMAT, "negative dimension %lld", (long long)ne[i]);
        if (qk_mul_u64(total, (uint64_t)ne[i], &total))
            return qk_error(QK_ELIMIT, "tensor size overflows 64 bits");
    }
    *out = total;
    return 0;
}

double qk_type_bpw(int type)
{
    const qk_type_traits *t = qk_type_get(type);
    return t ? 8.0 * (double)t->type_size / (double)t->block_size : 0.0;
}
