/* GPTQ-layout linear layers (AutoGPTQ "gptq" checkpoint format, v1): the
 * packed tensors, a packer and a validating reader.
 *
 * A linear layer with n_in input and n_out output features (PyTorch weight
 * [n_out, n_in]) quantized in groups of G consecutive input features with
 * b bits (b = 4 or 8; pf = 32/b codes per int32 word) is stored as four
 * safetensors tensors named <prefix>.qweight, .qzeros, .scales, .g_idx
 * (<prefix> = the layer name without ".weight"):
 *
 *   qweight  I32 [n_in/pf, n_out]        codes, packed along input features:
 *                                         q[i][j] = (qweight[i/pf][j] >> (b*(i%pf))) & (2^b-1)
 *   qzeros   I32 [n_groups, n_out/pf]    zero points minus one, packed along output features:
 *                                         z[g][j] = ((qzeros[g][j/pf] >> (b*(j%pf))) & (2^b-1)) + 1
 *   scales   F16 [n_groups, n_out]       s[g][j]
 *   g_idx    I32 [n_in]                  group of input i (i / G without act-order)
 *
 *   w[j][i] = (q[i][j] - z[g_idx[i]][j]) * s[g_idx[i]][j]
 *
 * Words are little-endian; bits are numbered from the least significant.
 * n_groups = n_in / G. The stored zero is z - 1 (the "v1" convention), so a
 * zero point must lie in [1, 2^b]; z = 0 cannot be stored.
 */
#ifndef QUANTKIT_GPTQ_H
#define QUANTKIT_GPTQ_H

#include "quantkit/common.h"
#include "quantkit/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The four tensors of a layer, in the order quantkit writes them. */
enum { QK_GPTQ_QWEIGHT = 0, QK_GPTQ_QZEROS, QK_GPTQ_SCALES, QK_GPTQ_G_IDX, QK_GPTQ_NPARTS };
/* Tensor-name suffixes ("qweight", ...), indexed by QK_GPTQ_*. */
extern const char *const qk_gptq_part_names[QK_GPTQ_NPARTS];

/* Check that bits and the layer shape can be stored: bits 4 or 8 (2 and 3
 * are valid GPTQ but not supported: QK_EUNSUPPORTED), n_in a multiple of
 * group_size and of 32/bits, n_out a multiple of 32/bits. Errors name
 * `what` (a tensor name). */
int qk_gptq_check_shape(const char *what, int bits, int64_t n_in, int64_t n_out, int64_t group_size);

/* ------------------------------------------------------------------ packer
 * A layer being filled: codes of each output row are put with
 * qk_gptq_packed_put_row() (in any order, concurrently for distinct rows),
 * then qk_gptq_packed_finish() turns the buffers into the little-endian
 * bytes to write. */
typedef struct qk_gptq_packed {
    int bits;
    int64_t n_in, n_out, group_size, n_groups;
    uint32_t *qweight; /* [n_in/pf][n_out] */
    uint32_t *qzeros;  /* [n_groups][n_out/pf] */
    uint16_t *scales;  /* [n_groups][n_out] fp16 */
    int32_t *g_idx;    /* [n_in] = i / group_size */
    uint64_t nbytes[QK_GPTQ_NPARTS]; /* bytes of each tensor */
    int finished;
} qk_gptq_packed;

/* Allocate the zeroed buffers of a layer (shape checked as above). */
int qk_gptq_packed_init(qk_gptq_packed *p, int bits, int64_t n_in, int64_t n_out, int64_t group_size);
void qk_gptq_packed_free(qk_gptq_packed *p); /* accepts a zeroed or freed p */
/* Store output row j (0 <= j < n_out, stored order): codes q[n_in] in
 * [0, 2^bits - 1], fp16 scales scale[n_groups], zero points zero[n_groups]
 * in [1, 2^bits]. QK_EINVAL for a value out of range (nothing is stored
 * then). Each row may be put once. */
int qk_gptq_packed_put_row(qk_gptq_packed *p, int64_t j, const uint8_t *q, const uint16_t *scale,
                           const uint16_t *zero);
/* Convert the buffers in place to the stored little-endian bytes; after
 * this, (const uint8_t *)p->qweight etc. are the tensor data. */
void qk_gptq_packed_finish(qk_gptq_packed *p);

/* ------------------------------------------------------------------ reader */

typedef struct qk_gptq_part {
    const uint8_t *data;  /* into the mapping */
    uint64_t nbytes;
    const qk_mmap *map;   /* the mapping holding data (for page release), may be NULL */
} qk_gptq_part;

typedef struct qk_gptq_tensor {
    int bits;
    int64_t n_in, n_out, n_groups;
    qk_gptq_part part[QK_GPTQ_NPARTS];
} qk_gptq_tensor;

/* Validate the four tensors of a layer of n_in x n_out features read with
 * `bits` and fill t (pointers stay into the tensors' mappings): dtypes (I32,
 * I32, F16, I32), ranks and shapes as in the layout above, and every g_idx
 * value in [0, n_groups). files[k] names the file of tensor k in messages.
 * t->part[k].map is left NULL for the caller to set. */
int qk_gptq_tensor_init(qk_gptq_tensor *t, int bits, int64_t n_in, int64_t n_out,
                        const qk_st_tensor *const st[QK_GPTQ_NPARTS], const char *const files[QK_GPTQ_NPARTS]);

/* Decode output row j (one output feature over all inputs) into dst[n_in]:
 * dst[i] = (float)(q[i][j] - z[g_idx[i]][j]) * s[g_idx[i]][j]. */
void qk_gptq_row_f32(const qk_gptq_tensor *t, int64_t j, float *dst);

/* Bytes of the four tensors together. */
uint64_t qk_gptq_tensor_bytes(const qk_gptq_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
