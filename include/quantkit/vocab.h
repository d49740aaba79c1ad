/* One vocabulary structure for every tokenizer file quantkit reads:
 * llama2.c tokenizer.bin, Hugging Face tokenizer.json, SentencePiece
 * tokenizer.model (protobuf) and GGUF tokenizer.ggml.* metadata. The
 * tokenizer runtime (eval/) and the GGUF writer (convert/) use it.
 *
 * llama2.c tokenizer.bin: u32 max_token_len, then per token
 *   f32 score, i32 len, bytes[len].
 */
#ifndef QUANTKIT_VOCAB_H
#define QUANTKIT_VOCAB_H

#include "quantkit/common.h"
#include "quantkit/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Token types as GGUF's tokenizer.ggml.token_type stores them. */
enum {
    QK_TOKEN_NORMAL = 1, QK_TOKEN_UNKNOWN = 2, QK_TOKEN_CONTROL = 3,
    QK_TOKEN_USER_DEFINED = 4, QK_TOKEN_UNUSED = 5, QK_TOKEN_BYTE = 6
};

/* Tokenizer model families. */
enum {
    QK_VOCAB_SPM = 1, /* SentencePiece-style BPE, GGUF "llama" */
    QK_VOCAB_BPE = 2  /* byte-level BPE with merges, GGUF "gpt2" */
};

#define QK_VOCAB_MAX_TOKENS (1 << 24) /* refuse vocabularies larger than this */

typedef struct qk_vocab {
    int model;            /* QK_VOCAB_* */
    char *pre;            /* pre-tokenizer name for BPE ("default" when unknown); NULL for SPM */
    int64_t n_tokens;
    qk_str *tokens;       /* token text, with U+2581 for spaces in SPM vocabularies */
    float *scores;        /* [n_tokens] */
    int32_t *types;       /* [n_tokens] QK_TOKEN_* */
    int64_t n_merges;
    qk_str *merges;       /* BPE merges "left right", in rank order (empty for SPM) */
    int32_t bos_id, eos_id, unk_id, pad_id; /* -1 when absent */
    int add_bos, add_eos;
    int add_space_prefix; /* SPM dummy prefix (default 1) */
    int byte_fallback;
    struct qk_vocab_index *index; /* private: text -> id table, built by every constructor */
} qk_vocab;

void qk_vocab_free(qk_vocab *v);
int qk_vocab_from_llama2c(qk_vocab **out, const char *path, int64_t expected_n_tokens);
int qk_vocab_from_tokenizer_json(qk_vocab **out, const char *path);
int qk_vocab_from_spm_model(qk_vocab **out, const char *path);
int qk_vocab_from_gguf(qk_vocab **out, const qk_gguf *g);
/* Write tokenizer.ggml.* keys (model, tokens, scores, token_type, merges,
 * special ids, add_bos/add_eos). */
int qk_vocab_to_gguf(const qk_vocab *v, qk_gguf_writer *w);
/* Write a tokenizer file beside an exported HF checkpoint: tokenizer.json
 * (BPE or SPM-as-BPE with byte fallback, as HF does for Llama). */
int qk_vocab_write_tokenizer_json(const qk_vocab *v, const char *path);
/* Token id of an exact text, -1 if absent (hash lookup). */
int32_t qk_vocab_find(const qk_vocab *v, const char *text, size_t len);

#ifdef __cplusplus
}
#endif
#endif
