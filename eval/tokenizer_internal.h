/* Private parts of the tokenizer runtime shared by eval/tokenizer.c (the
 * public API, special-token partitioning, SentencePiece-style merging,
 * pieces) and eval/tokenizer_bpe.c (Unicode classes, GPT-2 / Llama-3
 * pre-tokenization, byte-level BPE). Not part of the public API; tests
 * include it to check the pre-tokenizer's word boundaries directly. */
#ifndef QUANTKIT_TOKENIZER_INTERNAL_H
#define QUANTKIT_TOKENIZER_INTERNAL_H

#include "quantkit/eval.h"

/* Pre-tokenizer regexes, as llama.cpp's hand-written matchers run them. */
enum {
    QK_PRE_GPT2 = 0,  /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    QK_PRE_LLAMA3 = 1 /* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
                         ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
};

/* A growable array of token ids. */
typedef struct qk_idvec {
    int32_t *a;
    int64_t n, cap;
} qk_idvec;

int qk_idvec_push(qk_idvec *o, int32_t id);

/* Open-addressing map from a merge "left right" to its rank (BPE). */
typedef struct qk_merge_map {
    uint64_t mask;
    int32_t *slots;  /* [mask+1] merge index, -1 empty */
    uint32_t *split; /* [n_merges] byte length of "left" (UINT32_MAX: no space, never matches) */
} qk_merge_map;

/* A set of 64-bit keys (adjacent character pairs inside tokens, SPM). */
typedef struct qk_u64set {
    uint64_t mask;
    uint64_t *keys; /* [mask+1] */
    uint8_t *used;  /* [mask+1] */
} qk_u64set;

struct qk_tokenizer {
    const qk_vocab *v;
    /* Tokens the partitioner cuts out of the text before anything else:
     * CONTROL, UNKNOWN and USER_DEFINED tokens with non-empty text, by
     * descending text length, then ascending id. */
    int32_t *special;
    int64_t n_special;

    /* SPM: token per byte for byte fallback ("<0xNN>", else the one-byte
     * text), -1 when neither exists. */
    int32_t byte_tok[256];
    /* SPM: every adjacent character pair inside a token text; a boundary
     * between two characters that form no such pair can never be crossed
     * by a merge, so the text is merged in independent pieces there. */
    qk_u64set pairs;
    /* SPM: merge the text in pieces of at least this many bytes, cut at
     * such boundaries. Default 1 (cut at every one: the heaps stay small and
     * in cache, ~3x faster than whole fragments); SIZE_MAX merges whole
     * fragments as llama.cpp does (tests compare the two). */
    size_t spm_chunk;

    /* BPE */
    int pre;           /* QK_PRE_* */
    int ignore_merges; /* llama.cpp's tokenizer_ignore_merges (Llama 3): a word that is a token is taken whole */
    qk_merge_map merges;
};

/* BPE side (tokenizer_bpe.c). */
int qk_bpe_init(qk_tokenizer *t);
void qk_bpe_free(qk_tokenizer *t);
/* Tokenize one raw fragment [text, text+len) with the byte-level BPE. */
int qk_bpe_tokenize(const qk_tokenizer *t, const char *text, size_t len, qk_idvec *out);
/* Byte length of the pre-tokenizer word that starts at byte `pos` of the
 * fragment [s, s+n) (pos < n). Words partition the fragment. */
size_t qk_pretok_word(int pre, const char *s, size_t n, size_t pos);
/* Decode a byte-level BPE token text (GPT-2 byte-to-unicode alphabet) back
 * to bytes into out (capacity >= len); returns the byte count. Characters
 * outside the alphabet are copied as they are. */
size_t qk_bpe_decode_text(const char *text, size_t len, char *out);

/* Unicode classes as llama.cpp's unicode_cpt_flags defines them. */
int qk_unicode_is_letter(uint32_t cp);
int qk_unicode_is_number(uint32_t cp);
int qk_unicode_is_space(uint32_t cp);

#endif
