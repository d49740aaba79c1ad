/* qk_model: one read-only view of any checkpoint.
 *
 * Sources: a Hugging Face directory (config.json + model.safetensors or a
 * sharded index + tokenizer.json / tokenizer.model), a single .safetensors
 * with config.json beside it, a GGUF, a llama2.c .bin (+ tokenizer.bin given
 * as `vocab_path` or found beside it). Architectures: llama family
 * (LlamaForCausalLM, MistralForCausalLM, GGUF "llama").
 *
 * Tensors carry canonical GGUF names and shapes (ne[0] = row length = input
 * features; a PyTorch [out, in] weight has ne = {in, out}). Data stays in the
 * mapped source files; rows are read through qk_model_row_*(), which applies
 * the Hugging Face q/k row permutation into GGUF's interleaved RoPE order and
 * the optional lossless FFN padding.
 */
#ifndef QUANTKIT_MODEL_H
#define QUANTKIT_MODEL_H

#include "quantkit/common.h"
#include "quantkit/ggml_types.h"
#include "quantkit/gguf.h"
#include "quantkit/vocab.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QK_MODEL_MAX_NAME 64

typedef struct qk_model_config {
    char arch[32];          /* "llama" */
    char hf_arch[64];       /* "LlamaForCausalLM", "MistralForCausalLM", "" */
    int64_t n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx;
    float norm_eps;         /* RMSNorm epsilon */
    float rope_base;        /* rope theta */
    int64_t sliding_window; /* 0 = none */
    int tied_embeddings;    /* no output.weight; the output reuses token_embd */
    int64_t n_ff_orig;      /* n_ff before --pad-ffn (== n_ff when not padded) */
    int gptq_bits;          /* > 0: a GPTQ checkpoint (config.json quantization_config, quant_method
                               "gptq"); its linear layers are stored with this many bits */
    int64_t gptq_group_size; /* its group_size (-1: one group per row); informational */
} qk_model_config;

enum { QK_SRC_GGUF = 1, QK_SRC_SAFETENSORS = 2, QK_SRC_LLAMA2C = 3 };

typedef struct qk_model_tensor {
    char name[QK_MODEL_MAX_NAME]; /* canonical GGUF name */
    int type;                     /* qk_type of the stored data */
    int n_dims;
    int64_t ne[4];                /* canonical shape (after padding) */
    const uint8_t *data;          /* first byte in the mapped source */
    uint64_t nbytes;              /* stored bytes (before padding) */
    size_t src_row_bytes;         /* bytes per stored row */
    int64_t src_ne0;              /* stored row length (< ne[0] when columns are padded) */
    int64_t src_rows;             /* stored rows (< rows when rows are padded) */
    int64_t perm_heads;           /* > 0: HF rotate-half rows, permute with this many heads */
    const qk_mmap *map;           /* mapping that holds data (for page release) */
    /* Non-NULL: a GPTQ-layout linear layer (quantkit/gptq.h). Then type is
     * QK_TYPE_I32 (no ggml type describes it), data and map are NULL,
     * nbytes is the bytes of qweight + qzeros + scales + g_idx, and rows
     * are read only through qk_model_row_f32() (qk_model_row_raw() gives
     * NULL). Canonical row r is stored output feature perm(r) as usual. */
    const struct qk_gptq_tensor *gptq;
    /* Folded per-channel scales (qk_model_set_scales; NULL: none). Canonical
     * element (r, j) reads as stored(r, j) * col_scale[j] * row_scale[r]. */
    const float *col_scale;       /* [ne[0]] */
    const float *row_scale;       /* [rows] */
} qk_model_tensor;

typedef struct qk_model_opts {
    const char *vocab_path;  /* tokenizer for llama2.c inputs (tokenizer.bin) */
    int64_t pad_ffn;         /* > 0: pad n_ff up to a multiple of this */
    int no_vocab;            /* do not require a tokenizer */
} qk_model_opts;

typedef struct qk_model qk_model;

int qk_model_open(qk_model **out, const char *path, const qk_model_opts *opts);
void qk_model_close(qk_model *m);

const qk_model_config *qk_model_cfg(const qk_model *m);
int qk_model_source_kind(const qk_model *m);     /* QK_SRC_* */
const char *qk_model_path(const qk_model *m);
/* The vocabulary (NULL when opened with no_vocab and none was found). */
const qk_vocab *qk_model_vocab(const qk_model *m);
/* The source GGUF when the input is one (for carrying its metadata), else NULL. */
const qk_gguf *qk_model_gguf(const qk_model *m);
/* A GGUF model's quantkit checksums (quantkit.tensor_xxh3), when it has
 * them: 0, or the error of qk_gguf_verify_checksums naming the first tensor
 * whose bytes do not match (the message suggests --no-verify). Other
 * models: 0. Reads every tensor once. */
int qk_model_verify(const qk_model *m);
/* Total bytes of the source tensor data. */
uint64_t qk_model_source_bytes(const qk_model *m);

int64_t qk_model_n_tensors(const qk_model *m);
/* Tensors in canonical order: token_embd, per layer (attn_norm, q, k, v,
 * output, ffn_norm, gate, up, down), output_norm, output. */
const qk_model_tensor *qk_model_tensor_at(const qk_model *m, int64_t i);
const qk_model_tensor *qk_model_find(const qk_model *m, const char *name);
int64_t qk_model_tensor_rows(const qk_model_tensor *t); /* product of ne[1..] */
int64_t qk_model_tensor_nelem(const qk_model_tensor *t);

/* 1 when qk_model_row_f32() can decode t (float and ggml block types
 * quantkit decodes, GPTQ layers), else 0. */
int qk_model_tensor_decodable(const qk_model_tensor *t);
/* Row r (canonical order) as float, ne[0] values (padding gives zeros).
 * Errors only for types quantkit cannot decode. */
int qk_model_row_f32(const qk_model *m, const qk_model_tensor *t, int64_t r, float *dst);
/* Rows [r0, r0+n) as float into dst[n * ne[0]]. */
int qk_model_rows_f32(const qk_model *m, const qk_model_tensor *t, int64_t r0, int64_t n, float *dst);
/* Pointer to the stored bytes of canonical row r when the row can be used as
 * is (no column padding, no folded scales); NULL for padding rows, GPTQ
 * tensors and scaled tensors. */
const uint8_t *qk_model_row_raw(const qk_model_tensor *t, int64_t r);
/* Release the tensor's mapped pages after use (bounded memory). */
void qk_model_release(const qk_model_tensor *t);
/* qk_model_release for every tensor of layer l ("blk.L."): the layer is
 * done, so the resident set stays about one layer's weights. */
void qk_model_release_layer(const qk_model *m, int64_t l);

/* Fold per-channel scales into the view of tensor `name` (AWQ, see
 * quantkit/awq.h): every reader (qk_model_row_f32/rows_f32, so the forward
 * pass, quantization and export) then sees stored(r, j) * col_scale[j] *
 * row_scale[r]. col_scale has ne[0] values, row_scale one per row
 * (qk_model_tensor_rows); both are copied, NULL removes that scale. A 1-D
 * tensor (a norm weight) takes col_scale. The stored bytes, nbytes and
 * source checksums do not change. Set scales before creating a forward pass
 * over m (it caches decoded weights) and not while other threads read rows.
 * QK_ENOTFOUND for an unknown name, QK_ENONFINITE for a NaN/Inf scale. */
int qk_model_set_scales(qk_model *m, const char *name, const float *col_scale, const float *row_scale);

/* Rows of the HF q/k permutation: canonical (GGUF) row r of a tensor with
 * n_rows rows and n_heads heads comes from HF row qk_rope_perm_row(...). */
int64_t qk_rope_perm_row(int64_t r, int64_t n_rows, int64_t n_heads);
/* Inverse: HF row h comes from canonical row qk_rope_unperm_row(h, ...). */
int64_t qk_rope_unperm_row(int64_t h, int64_t n_rows, int64_t n_heads);

/* Read a Hugging Face config.json into cfg (llama/mistral families). A
 * "quantization_config" must be GPTQ v1 (quant_method "gptq", checkpoint_format
 * "gptq" or absent) with bits 4 or 8; it sets gptq_bits/gptq_group_size. */
int qk_model_read_hf_config(qk_model_config *cfg, const char *config_json_path);

/* Write the llama.cpp metadata keys for cfg (general.architecture,
 * llama.* with the exact types llama.cpp checks). */
int qk_model_cfg_to_gguf(const qk_model_config *cfg, qk_gguf_writer *w);

#ifdef __cplusplus
}
#endif
#endif
