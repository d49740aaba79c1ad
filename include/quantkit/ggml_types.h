/* ggml tensor types: ids as stored in GGUF, and one traits row per type.
 *
 * Every type GGUF may name has a row with its block size and bytes per block
 * so files can be validated and sized. Types quantkit can decode and encode
 * also carry function pointers; adding a type means filling its row in
 * formats/ggml_types.c (and its codec in formats/ggml_blocks.c), nothing else.
 */
#ifndef QUANTKIT_GGML_TYPES_H
#define QUANTKIT_GGML_TYPES_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qk_type {
    QK_TYPE_F32 = 0,
    QK_TYPE_F16 = 1,
    QK_TYPE_Q4_0 = 2,
    QK_TYPE_Q4_1 = 3,
    QK_TYPE_Q5_0 = 6,
    QK_TYPE_Q5_1 = 7,
    QK_TYPE_Q8_0 = 8,
    QK_TYPE_Q8_1 = 9,
    QK_TYPE_Q2_K = 10,
    QK_TYPE_Q3_K = 11,
    QK_TYPE_Q4_K = 12,
    QK_TYPE_Q5_K = 13,
    QK_TYPE_Q6_K = 14,
    QK_TYPE_Q8_K = 15,
    QK_TYPE_IQ2_XXS = 16,
    QK_TYPE_IQ2_XS = 17,
    QK_TYPE_IQ3_XXS = 18,
    QK_TYPE_IQ1_S = 19,
    QK_TYPE_IQ4_NL = 20,
    QK_TYPE_IQ3_S = 21,
    QK_TYPE_IQ2_S = 22,
    QK_TYPE_IQ4_XS = 23,
    QK_TYPE_I8 = 24,
    QK_TYPE_I16 = 25,
    QK_TYPE_I32 = 26,
    QK_TYPE_I64 = 27,
    QK_TYPE_F64 = 28,
    QK_TYPE_IQ1_M = 29,
    QK_TYPE_BF16 = 30,
    QK_TYPE_TQ1_0 = 34,
    QK_TYPE_TQ2_0 = 35,
    QK_TYPE_COUNT = 39
} qk_type;

/* Decode n elements (n a multiple of block_size) of packed data to float. */
typedef void (*qk_to_float_fn)(const void *src, float *dst, int64_t n);
/* Encode n elements (a multiple of block_size) of one row. importance is a
 * per-element weight vector of length n (NULL = unweighted). */
typedef void (*qk_from_float_fn)(const float *src, void *dst, int64_t n, const float *importance);

typedef struct qk_type_traits {
    const char *name;       /* "Q4_0", "F32", ... (upper case) */
    int64_t block_size;     /* elements per block */
    size_t type_size;       /* bytes per block */
    int is_quantized;       /* a block type (not F32/F16/BF16/integers) */
    int is_float;           /* F32, F16, BF16, F64 */
    qk_to_float_fn to_float;           /* NULL when quantkit cannot decode it */
    qk_from_float_fn from_float_ref;   /* reference encoder (llama.cpp-identical bytes where defined); NULL if none */
    qk_from_float_fn from_float;       /* best encoder (scale search, SIMD); NULL = use from_float_ref */
} qk_type_traits;

/* The row for `type`, or NULL for ids that are not ggml types. */
const qk_type_traits *qk_type_get(int type);
/* Name for a type id ("?" when unknown). */
const char *qk_type_name(int type);
/* Type id for a name, case-insensitive ("q4_k" -> QK_TYPE_Q4_K); -1 if none. */
int qk_type_from_name(const char *name);
/* Bytes of a row of ne0 elements: error when ne0 is not a multiple of the
 * block size, the type is unknown, or the size overflows. */
int qk_type_row_bytes(int type, int64_t ne0, size_t *out);
/* Bytes of a tensor with ne[0..n_dims-1]; overflow-checked; ne[0] must be a
 * multiple of the block size. */
int qk_type_tensor_bytes(int type, const int64_t *ne, int n_dims, uint64_t *out);
/* Bits per weight of a type (8 * type_size / block_size). */
double qk_type_bpw(int type);

#ifdef __cplusplus
}
#endif
#endif
