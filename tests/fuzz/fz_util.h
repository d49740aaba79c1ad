/* Helpers shared by the libFuzzer targets in tests/fuzz/ (see docs/SECURITY.md).
 *
 * The readers take paths, so each input is written to a file in a private
 * scratch directory (under /dev/shm when it exists: tmpfs, no disk I/O) and
 * opened from there. Inputs that hold several files (an index and its
 * shards, a config.json and a model.safetensors, ...) are split on the
 * separator FZ_SEP; tests/fuzz/fuzz.dict names it so the fuzzer finds it.
 */
#ifndef QK_FZ_UTIL_H
#define QK_FZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "quantkit/common.h"

/* Separator between the files of one input. */
#define FZ_SEP "\n@@QKFILE@@\n"
#define FZ_SEP_LEN (sizeof FZ_SEP - 1)
#define FZ_MAX_PARTS 8

typedef struct fz_part {
    const uint8_t *p;
    size_t n;
} fz_part;

/* The scratch directory of this process (created on first use, removed at
 * exit). */
const char *fz_dir(void);
/* Remove every file in the scratch directory (call at the start of each
 * input, so files of an earlier input never leak into this one). */
void fz_reset(void);
/* Write n bytes to fz_dir()/name; returns the full path (static ring of 16). */
const char *fz_write(const char *name, const void *data, size_t n);
/* fz_dir()/name without writing (static ring of 16). */
const char *fz_path(const char *name);
/* Split [d, d+n) on FZ_SEP into at most max parts (the last part keeps any
 * further separators). Returns the number of parts (>= 1). */
size_t fz_split(const uint8_t *d, size_t n, fz_part *parts, size_t max);
/* Read a whole file (NULL when it cannot be read); *n gets its size. */
uint8_t *fz_read(const char *path, size_t *n);

/* A broken invariant: print and abort, so libFuzzer records the input. */
#define FZ_CHECK(cond, ...)                                                                       \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "FZ_CHECK failed at %s:%d: %s: ", __FILE__, __LINE__, #cond);         \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fprintf(stderr, " (last error: %s)\n", qk_errmsg());                                  \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

/* A library call that must succeed on data a reader accepted. */
#define FZ_OK(call) FZ_CHECK((call) == 0, "%s", #call)

#endif

/* ------------------------------------------------ checks shared by targets */
#include "quantkit/gguf.h"
#include "quantkit/vocab.h"

/* Deep equality of two KVs (same key, type and bytes). */
int fz_kv_equal(const qk_gguf_kv *a, const qk_gguf_kv *b);
/* Everything that can be said about a vocabulary a reader accepted:
 * lookups agree with the token table, it round-trips through GGUF
 * (qk_vocab_to_gguf -> qk_gguf_open -> qk_vocab_from_gguf gives the same
 * structure) unless the writer refuses it for a documented reason, the
 * tokenizer.json writer makes a file the reader takes back with the same
 * token texts, and the tokenizer runtime builds on it and encodes/decodes
 * text without error. */
void fz_vocab_check(const qk_vocab *v, const uint8_t *text, size_t text_len);
