/* eval/: tokenizer runtime, reference forward pass, perplexity and KL
 * divergence. */
#ifndef QUANTKIT_EVAL_H
#define QUANTKIT_EVAL_H

#include "quantkit/common.h"
#include "quantkit/model.h"
#include "quantkit/vocab.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------- tokenizer
 * SentencePiece-style BPE as llama.cpp's "llama" vocabulary does it
 * (score-ordered merges, dummy-prefix space, U+2581 for spaces, byte
 * fallback <0xNN>, unknown token) and byte-level BPE with merge ranks
 * (tokenizer.json / GGUF "gpt2"). Linear-time-ish: a heap over adjacent
 * pairs, never quadratic rescans. */
typedef struct qk_tokenizer qk_tokenizer;
/* The tokenizer keeps a pointer to v: v must outlive it. */
int qk_tokenizer_new(qk_tokenizer **out, const qk_vocab *v);
void qk_tokenizer_free(qk_tokenizer *t);
/* Encode len bytes of UTF-8 text. add_special: prepend BOS (and append EOS)
 * as the vocabulary's add_bos/add_eos say. *out_ids is heap-allocated. */
int qk_tokenize(const qk_tokenizer *t, const char *text, size_t len, int add_special, int32_t **out_ids,
                int64_t *out_n);
/* Text of one token as it appears in output (U+2581 -> space, <0xNN> -> byte). */
int qk_token_to_piece(const qk_tokenizer *t, int32_t id, char *buf, size_t cap, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
