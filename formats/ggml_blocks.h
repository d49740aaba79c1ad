/* Codecs of the ggml block types (internal to the library).
 *
 * Byte layouts (every multi-byte field little-endian; "half" = IEEE binary16):
 *
 *   type    elems bytes layout
 *   Q4_0     32    18   half d; u8 qs[16]                      x = d*(q-8)
 *   Q4_1     32    20   half d, m; u8 qs[16]                   x = d*q + m
 *   Q5_0     32    22   half d; u8 qh[4]; u8 qs[16]            x = d*(q-16)
 *   Q5_1     32    24   half d, m; u8 qh[4]; u8 qs[16]         x = d*q + m
 *   Q8_0     32    34   half d; i8 qs[32]                      x = d*q
 *   Q2_K    256    84   u8 scales[16]; u8 qs[64]; half d, dmin
 *   Q3_K    256   110   u8 hmask[32]; u8 qs[64]; u8 scales[12]; half d
 *   Q4_K    256   144   half d, dmin; u8 scales[12]; u8 qs[128]
 *   Q5_K    256   176   half d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
 *   Q6_K    256   210   u8 ql[128]; u8 qh[64]; i8 scales[16]; half d
 *   IQ4_NL   32    18   half d; u8 qs[16]                      x = d*K[q]
 *   IQ4_XS  256   136   half d; u16 scales_h; u8 scales_l[4]; u8 qs[128]
 *
 * 32-element nibble types keep element j in the low nibble of qs[j] and
 * element j+16 in the high nibble; the 5th bits of Q5_0/Q5_1 are bit j of qh
 * read as a little-endian u32. The K-type bit placements are documented at
 * each codec in blocks_k.c.
 *
 * Each QK_BLOCKS_<T> macro expands to the traits-table fields
 * `to_float, from_float_ref, from_float` of that type. All functions take n
 * elements, a multiple of the type's block size (asserted).
 *
 *  - to_float decodes exactly as llama.cpp's dequantize_row_* does (same
 *    float operations in the same order), so results are bit-identical.
 *  - from_float_ref writes llama.cpp's bytes (llama-quantize, build b4748):
 *    for Q8_0 quantize_row_q8_0_ref (importance ignored); for Q4_0/Q4_1/
 *    Q5_0/Q5_1 and the K types quantize_row_*_ref when importance is NULL
 *    and the weighted quantize_row_*_impl path otherwise; for IQ4_NL/IQ4_XS
 *    quantize_iq4_* (the scale search llama-quantize runs, with or without
 *    importance). importance, when given, holds n weights (the
 *    importance-matrix entries of the row's columns). Every encoder works
 *    block by block (sigma2 and the like are per super-block), so a row may
 *    be encoded in one call or in any split at block boundaries -- except
 *    the weighted paths of Q4_0/Q4_1/Q5_0/Q5_1, whose sigma2 is the mean
 *    square of the whole call's n elements (llama.cpp's n_per_row): give
 *    them exactly one row per call.
 *  - from_float, where not NULL, is a faster encoder that writes the same
 *    bytes as from_float_ref for every input (blocks_avx2.c: the reference's
 *    float operations in the reference's order, vectorized over elements or
 *    over independent sub-blocks; chosen once at run time when the CPU has
 *    AVX2, else it calls the reference). tests/test_blocks.c pins the
 *    equality on random and adversarial data.
 */
#ifndef QK_GGML_BLOCKS_H
#define QK_GGML_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------ block structs
 * Plain byte arrays: scales are read with qk_rd_u16 / written with qk_wr_u16
 * so nothing depends on host endianness or struct padding. */

#define QK_QK_K 256

typedef struct { uint8_t d[2]; uint8_t qs[16]; } qk_block_q4_0;
typedef struct { uint8_t d[2]; uint8_t m[2]; uint8_t qs[16]; } qk_block_q4_1;
typedef struct { uint8_t d[2]; uint8_t qh[4]; uint8_t qs[16]; } qk_block_q5_0;
typedef struct { uint8_t d[2]; uint8_t m[2]; uint8_t qh[4]; uint8_t qs[16]; } qk_block_q5_1;
typedef struct { uint8_t d[2]; int8_t qs[32]; } qk_block_q8_0;
typedef struct { uint8_t scales[16]; uint8_t qs[64]; uint8_t d[2]; uint8_t dmin[2]; } qk_block_q2_k;
typedef struct { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint8_t d[2]; } qk_block_q3_k;
typedef struct { uint8_t d[2]; uint8_t dmin[2]; uint8_t scales[12]; uint8_t qs[128]; } qk_block_q4_k;
typedef struct { uint8_t d[2]; uint8_t dmin[2]; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } qk_block_q5_k;
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint8_t d[2]; } qk_block_q6_k;
typedef struct { uint8_t d[2]; uint8_t qs[16]; } qk_block_iq4_nl;
typedef struct { uint8_t d[2]; uint8_t scales_h[2]; uint8_t scales_l[4]; uint8_t qs[128]; } qk_block_iq4_xs;

_Static_assert(sizeof(qk_block_q4_0) == 18, "Q4_0 block is 18 bytes");
_Static_assert(sizeof(qk_block_q4_1) == 20, "Q4_1 block is 20 bytes");
_Static_assert(sizeof(qk_block_q5_0) == 22, "Q5_0 block is 22 bytes");
_Static_assert(sizeof(qk_block_q5_1) == 24, "Q5_1 block is 24 bytes");
_Static_assert(sizeof(qk_block_q8_0) == 34, "Q8_0 block is 34 bytes");
_Static_assert(sizeof(qk_block_q2_k) == 84, "Q2_K block is 84 bytes");
_Static_assert(sizeof(qk_block_q3_k) == 110, "Q3_K block is 110 bytes");
_Static_assert(sizeof(qk_block_q4_k) == 144, "Q4_K block is 144 bytes");
_Static_assert(sizeof(qk_block_q5_k) == 176, "Q5_K block is 176 bytes");
_Static_assert(sizeof(qk_block_q6_k) == 210, "Q6_K block is 210 bytes");
_Static_assert(sizeof(qk_block_iq4_nl) == 18, "IQ4_NL block is 18 bytes");
_Static_assert(sizeof(qk_block_iq4_xs) == 136, "IQ4_XS block is 136 bytes");

/* The IQ4_NL / IQ4_XS codebook. */
extern const int8_t qk_iq4nl_values[16];

/* ----------------------------------------------------------------- codecs */

void qk_blocks_q4_0_to_float(const void *src, float *dst, int64_t n);
void qk_blocks_q4_1_to_float(const void *src, float *dst, int64_t n);
void qk_blocks_q5_0_to_float(const void *src, float *dst, int64_t n);
void qk_blocks_q5_1_to_float(const void *src, float *dst, int64_t n);
void qk_blocks_q8_0_to_float(const void *src, float *dst, int64_t n);
void qk_blocks_q2_k_to_float(const void *src, float *dst, int64_t n);
void qk_blocks_q3_k_to_float(const void *src, float *dst, int64_t n);
void qk_blocks_q4_k_to_float(const void *src, float *dst, int64_t n);
void qk_blocks_q5_k_to_float(const void *src, float *dst, int64_t n);
void qk_blocks_q6_k_to_float(const void *src, float *dst, int64_t n);
void qk_blocks_iq4_nl_to_float(const void *src, float *dst, int64_t n);
void qk_blocks_iq4_xs_to_float(const void *src, float *dst, int64_t n);

void qk_blocks_q4_0_from_float_ref(const float *src, void *dst, int64_t n, const float *importance);
void qk_blocks_q4_1_from_float_ref(const float *src, void *dst, int64_t n, const float *importance);
void qk_blocks_q5_0_from_float_ref(const float *src, void *dst, int64_t n, const float *importance);
void qk_blocks_q5_1_from_float_ref(const float *src, void *dst, int64_t n, const float *importance);
void qk_blocks_q8_0_from_float_ref(const float *src, void *dst, int64_t n, const float *importance);
void qk_blocks_q2_k_from_float_ref(const float *src, void *dst, int64_t n, const float *importance);
void qk_blocks_q3_k_from_float_ref(const float *src, void *dst, int64_t n, const float *importance);
void qk_blocks_q4_k_from_float_ref(const float *src, void *dst, int64_t n, const float *importance);
void qk_blocks_q5_k_from_float_ref(const float *src, void *dst, int64_t n, const float *importance);
void qk_blocks_q6_k_from_float_ref(const float *src, void *dst, int64_t n, const float *importance);
void qk_blocks_iq4_nl_from_float_ref(const float *src, void *dst, int64_t n, const float *importance);
void qk_blocks_iq4_xs_from_float_ref(const float *src, void *dst, int64_t n, const float *importance);

/* Fast encoders (blocks_avx2.c): same bytes as the _ref ones. */
void qk_blocks_q4_0_from_float(const float *src, void *dst, int64_t n, const float *importance);
void qk_blocks_q8_0_from_float(const float *src, void *dst, int64_t n, const float *importance);
void qk_blocks_q4_k_from_float(const float *src, void *dst, int64_t n, const float *importance);
void qk_blocks_q5_k_from_float(const float *src, void *dst, int64_t n, const float *importance);
void qk_blocks_q6_k_from_float(const float *src, void *dst, int64_t n, const float *importance);

#define QK_BLOCKS_Q4_0 qk_blocks_q4_0_to_float, qk_blocks_q4_0_from_float_ref, qk_blocks_q4_0_from_float
#define QK_BLOCKS_Q4_1 qk_blocks_q4_1_to_float, qk_blocks_q4_1_from_float_ref, NULL
#define QK_BLOCKS_Q5_0 qk_blocks_q5_0_to_float, qk_blocks_q5_0_from_float_ref, NULL
#define QK_BLOCKS_Q5_1 qk_blocks_q5_1_to_float, qk_blocks_q5_1_from_float_ref, NULL
#define QK_BLOCKS_Q8_0 qk_blocks_q8_0_to_float, qk_blocks_q8_0_from_float_ref, qk_blocks_q8_0_from_float
#define QK_BLOCKS_Q2_K qk_blocks_q2_k_to_float, qk_blocks_q2_k_from_float_ref, NULL
#define QK_BLOCKS_Q3_K qk_blocks_q3_k_to_float, qk_blocks_q3_k_from_float_ref, NULL
#define QK_BLOCKS_Q4_K qk_blocks_q4_k_to_float, qk_blocks_q4_k_from_float_ref, qk_blocks_q4_k_from_float
#define QK_BLOCKS_Q5_K qk_blocks_q5_k_to_float, qk_blocks_q5_k_from_float_ref, qk_blocks_q5_k_from_float
#define QK_BLOCKS_Q6_K qk_blocks_q6_k_to_float, qk_blocks_q6_k_from_float_ref, qk_blocks_q6_k_from_float
#define QK_BLOCKS_IQ4_NL qk_blocks_iq4_nl_to_float, qk_blocks_iq4_nl_from_float_ref, NULL
#define QK_BLOCKS_IQ4_XS qk_blocks_iq4_xs_to_float, qk_blocks_iq4_xs_from_float_ref, NULL

/* ------------------------------------------------- shared numeric helpers */

/* llama.cpp's scale searches (blocks_k.c), shared with the weighted paths of
 * the 32-element types. make_qx_quants: symmetric codes L[i] = l + nmax,
 * l in [-nmax, nmax-1], scale fitted by weighted least squares (weights qw,
 * else chosen by rmse_type); returns the scale. make_qkx3_quants: asymmetric
 * codes L in [0, nmax] for x ~ scale*L - *the_min, weights (x^2 when NULL);
 * returns the scale. Laux [n] is scratch. */
float qk_blocks_make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type, const float *qw);
float qk_blocks_make_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                                 uint8_t *Laux, float rmin, float rdelta, int nstep, _Bool use_mad);

/* The K-quant encoders with a replaceable sub-block search (importance
 * NULL; with importance the reference's weighted search runs whatever
 * `search` is), so a SIMD search shares the rest of the reference code.
 * A search takes nb consecutive super-blocks x[nb*256] (Q4_K/Q5_K: nb up to
 * QK_BLOCKS_SEARCH_GROUP, so a SIMD search may interleave them; Q6_K: 1).
 * qk45 search (Q4_K nmax 15, Q5_K nmax 31): for each sub-block of 32,
 * make_qkx2_quants with weights av_x + |x| -> scales[nb*8], mins[nb*8]
 * (the_min, >= 0 unless the data is not finite), codes L[nb*256].
 * Q6_K search: make_qx_quants(16, 32, x^2 weights) on each sub-block of 16
 * -> scales[nb*16], codes L[nb*256] (l + 32).
 * qk45 requant (NULL: the reference loop): the final codes of a sub-block
 * of 32 from its stored scale, L[i] = clamp(nearest_int((x[i] + dm) / d),
 * 0, nmax). */
#define QK_BLOCKS_SEARCH_GROUP 2
/* Cap the fast encoders' instruction set (tests, benchmarks): 2 AVX-512,
 * 1 AVX2, 0 reference code only; never above what the CPU has (also
 * QK_SIMD=avx2|none in the environment). Returns the level in force. */
int qk_blocks_set_simd(int level);

typedef void (*qk_blocks_qk45_search_fn)(const float *x, int nb, int nmax, uint8_t *L, float *scales, float *mins);
typedef void (*qk_blocks_q6_k_search_fn)(const float *x, int nb, int8_t *L, float *scales);
typedef void (*qk_blocks_qk45_requant_fn)(const float *x, float dm, float d, int nmax, uint8_t *L);
/* The importance path's sub-block search of one super-block: for each of
 * its 8 sub-blocks j, make_qkx3_quants(32, nmax, x + 32j, w + 32j, ...,
 * -0.9, 0.05, 36) -> L, scales[j], mins[j]. */
typedef void (*qk_blocks_qk45_wsearch_fn)(const float *x, const float *w, int nmax, uint8_t *L, float *scales,
                                          float *mins);
void qk_blocks_qk45_wsearch_ref(const float *x, const float *w, int nmax, uint8_t *L, float *scales, float *mins);
void qk_blocks_qk45_search_ref(const float *x, int nb, int nmax, uint8_t *L, float *scales, float *mins);
void qk_blocks_q6_k_search_ref(const float *x, int nb, int8_t *L, float *scales);
void qk_blocks_q4_k_encode(const float *src, void *dst, int64_t n, const float *importance,
                           qk_blocks_qk45_search_fn search, qk_blocks_qk45_wsearch_fn wsearch,
                           qk_blocks_qk45_requant_fn requant);
void qk_blocks_q5_k_encode(const float *src, void *dst, int64_t n, const float *importance,
                           qk_blocks_qk45_search_fn search, qk_blocks_qk45_wsearch_fn wsearch,
                           qk_blocks_qk45_requant_fn requant);
void qk_blocks_q6_k_encode(const float *src, void *dst, int64_t n, const float *importance,
                           qk_blocks_q6_k_search_fn search);

/* Round to nearest, ties to even, as ggml's nearest_int: add 1.5*2^23 and
 * read the mantissa. Exact for |f| <= 2^22 - 1; larger or non-finite inputs
 * give an arbitrary (but defined) int that callers clamp. */
static inline int qk_blocks_nearest_int(float f)
{
    union { float f; int32_t i; } u;
    u.f = f + 12582912.f;
    return (u.i & 0x007fffff) - 0x00400000;
}

/* C's float -> int truncation as x86 cvttss2si performs it: NaN and values
 * outside int32 give INT32_MIN (a plain cast would be undefined there). */
static inline int32_t qk_blocks_trunc_i32(float f)
{
    if (f >= -2147483648.0f && f < 2147483648.0f)
        return (int32_t)f;
    return INT32_MIN;
}

/* (int8_t)f as compiled by gcc/clang on x86-64: truncate to int32, keep the
 * low byte. */
static inline int8_t qk_blocks_trunc_i8(float f)
{
    return (int8_t)(uint8_t)((uint32_t)qk_blocks_trunc_i32(f) & 0xff);
}

#endif
