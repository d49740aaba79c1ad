/* Private helpers shared by the vocabulary readers (vocab*.c). Not part of
 * the public API. */
#ifndef QUANTKIT_VOCAB_INTERNAL_H
#define QUANTKIT_VOCAB_INTERNAL_H

#include "quantkit/vocab.h"

/* The U+2581 "▁" that SentencePiece vocabularies use for a space. */
#define QK_SPM_SPACE "\xe2\x96\x81"
#define QK_SPM_SPACE_LEN 3

/* A new vocabulary of n_tokens empty tokens (n in 1..QK_VOCAB_MAX_TOKENS),
 * scores 0, types NORMAL, special ids -1, add_space_prefix 1. */
int qk_vocab_alloc(qk_vocab **out, int64_t n_tokens, int model);
/* Copy `len` bytes as token `id`'s text (replacing any earlier text). */
int qk_vocab_set_token(qk_vocab *v, int64_t id, const void *text, size_t len);
/* Append one merge "left right" (n_merges grows by one). `cap` is the
 * caller's running capacity; the array grows geometrically. */
int qk_vocab_push_merge(qk_vocab *v, int64_t *cap, const char *text, size_t len);
/* Build the text -> id table (the first of duplicate texts wins). Every
 * constructor calls this last. */
int qk_vocab_build_index(qk_vocab *v);
/* Number of tokens whose text repeats an earlier token's; *first_dup and
 * *first_of (may be NULL) get the first such pair. */
int64_t qk_vocab_duplicates(const qk_vocab *v, int64_t *first_dup, int64_t *first_of);
/* Set byte_fallback when the vocabulary has any BYTE token. */
void qk_vocab_detect_byte_fallback(qk_vocab *v);

/* Return rc, first prefixing the current message with "path: " unless it
 * already starts with it (for errors from helpers that do not know the path). */
int qk_vocab_path_error(int rc, const char *path);

/* 1 when [s, s+n) is well-formed UTF-8. */
int qk_utf8_valid(const char *s, size_t n);

#endif
