/* llama2.c legacy (v0) checkpoints.
 *
 * Byte layout: int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size, seq_len (vocab_size < 0: an unshared classifier follows), then
 * float32 arrays in this order:
 *   tok_emb[V][D] rms_att[L][D] wq[L][D][D] wk[L][kvD][D] wv[L][kvD][D]
 *   wo[L][D][D] rms_ffn[L][D] w1[L][F][D] w2[L][D][F] w3[L][F][D] rms_final[D]
 *   freq_cis_real[seq][hd/2] freq_cis_imag[seq][hd/2] [wcls[V][D]]
 * with kvD = D * n_kv_heads / n_heads, hd = D / n_heads. The file size must
 * match exactly. Weights are already in GGUF's interleaved RoPE order.
 */
#ifndef QUANTKIT_LLAMA2C_H
#define QUANTKIT_LLAMA2C_H

#include "quantkit/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QK_LLAMA2C_HEADER_BYTES 28

typedef struct qk_llama2c_config {
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int shared_classifier; /* 1 when the header's vocab_size was positive */
} qk_llama2c_config;

/* One weight array of the checkpoint: absolute file offset and element count. */
typedef struct qk_llama2c_array {
    uint64_t offset;
    uint64_t n_elems;
} qk_llama2c_array;

typedef struct qk_llama2c {
    qk_llama2c_config cfg;
    qk_mmap *map;
    /* All layers of a kind are one contiguous array; layer l of wq starts at
     * wq.offset + l * (dim*dim) * 4, and so on. */
    qk_llama2c_array tok_emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final,
        freq_cis_real, freq_cis_imag, wcls; /* wcls.n_elems == 0 when shared */
} qk_llama2c;

/* Open and validate (positive dims, divisibility, exact file size, overflow). */
int qk_llama2c_open(qk_llama2c **out, const char *path);
void qk_llama2c_close(qk_llama2c *m);

#ifdef __cplusplus
}
#endif
#endif
