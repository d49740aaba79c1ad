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
 * pairs, never quadratic rescans. A tokenizer is read-only after creation:
 * one may be used from several threads at once. */
typedef struct qk_tokenizer qk_tokenizer;
/* The tokenizer keeps a pointer to v: v must outlive it. */
int qk_tokenizer_new(qk_tokenizer **out, const qk_vocab *v);
void qk_tokenizer_free(qk_tokenizer *t);

/* Flags of qk_tokenize_ex. */
enum {
    QK_TOKENIZE_ADD_SPECIAL = 1,  /* BOS / EOS as the vocabulary's add_bos / add_eos say */
    QK_TOKENIZE_PARSE_SPECIAL = 2 /* CONTROL and UNKNOWN token texts in the input become those tokens */
};
/* Encode len bytes of text (any bytes; see below for invalid UTF-8).
 * *out_ids is heap-allocated (never NULL on success, even for 0 ids); the
 * caller frees it. USER_DEFINED token texts are always cut out of the text
 * first and become their tokens (llama.cpp does the same); with
 * QK_TOKENIZE_PARSE_SPECIAL so are CONTROL and UNKNOWN ones.
 * Invalid UTF-8: SPM splits the text at lead bytes as llama.cpp does, and a
 * piece that is no token falls back to its bytes (so it round-trips when the
 * vocabulary has byte tokens); byte-level BPE reads each invalid byte as
 * U+FFFD, as llama.cpp does. */
int qk_tokenize_ex(const qk_tokenizer *t, const char *text, size_t len, unsigned flags, int32_t **out_ids,
                   int64_t *out_n);
/* qk_tokenize_ex with flags 0, or with add_special: ADD_SPECIAL for SPM
 * vocabularies (llama.cpp's tokenizer with parse_special=false, as its
 * perplexity tool runs it) and ADD_SPECIAL|PARSE_SPECIAL for byte-level BPE. */
int qk_tokenize(const qk_tokenizer *t, const char *text, size_t len, int add_special, int32_t **out_ids,
                int64_t *out_n);
/* Text of one token as it appears in output: U+2581 -> space (SPM), the
 * GPT-2 byte alphabet -> bytes (BPE), <0xNN> -> that byte, USER_DEFINED as
 * is, CONTROL / UNKNOWN / UNUSED -> empty (llama.cpp with special=false).
 * Writes *out_len bytes (no NUL). When cap is too small, returns QK_ELIMIT,
 * writes nothing and sets *out_len to the length needed. */
int qk_token_to_piece(const qk_tokenizer *t, int32_t id, char *buf, size_t cap, size_t *out_len);
/* The concatenated pieces of n ids as a NUL-terminated heap string (*out_len
 * excludes the NUL). For SPM vocabularies with add_space_prefix, one leading
 * space of the first non-empty piece is dropped (the dummy prefix), so
 * decoding qk_tokenize's output gives the text back. */
int qk_detokenize(const qk_tokenizer *t, const int32_t *ids, int64_t n, char **out, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
