/* llama2.c tokenizer.bin -> qk_vocab, exactly as llama.cpp's
 * convert-llama2c-to-ggml turns it into GGUF tokenizer.ggml.* keys.
 *
 * Byte layout: u32 max_token_len, then per token f32 score, i32 len,
 * bytes[len]. The file has no token count: the model's vocab_size gives it.
 *
 * The rules, checked against llama.cpp's own conversion of stories260K
 * (golden/llamacpp/stories260K-f32.gguf):
 *   id 0 -> text "<unk>", UNKNOWN;  id 1 -> "<s>", CONTROL;  id 2 -> "</s>", CONTROL
 *   (whatever the file holds there: llama2.c stores "\n<s>\n", "\n</s>\n")
 *   empty text -> CONTROL
 *   text matching sscanf "<0x%02hhX>" -> BYTE (the text stays as it is)
 *   anything else -> NORMAL
 *   then every ' ' in the text becomes U+2581 "▁"; scores are copied as is.
 *   model "llama", unknown/bos/eos ids 0/1/2, no padding id.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quantkit/vocab.h"
#include "vocab_internal.h"

/* llama.cpp tests byte tokens with sscanf(text, "<0x%02hhX>", &b) == 1 on
 * the NUL-terminated text; calling sscanf the same way keeps its quirks
 * ("<0x4" and "<0x41junk" also count as bytes). */
static int looks_like_byte(const char *text)
{
    unsigned char b;
    return sscanf(text, "<0x%02hhX>", &b) == 1;
}

/* Replace each ' ' by U+2581 into a new heap string. */
static char *escape_spaces(const char *s, size_t len, size_t *out_len)
{
    size_t n_sp = 0;
    for (size_t i = 0; i < len; i++)
        n_sp += s[i] == ' ';
    size_t n = len + n_sp * (QK_SPM_SPACE_LEN - 1);
    char *r = malloc(n + 1);
    if (!r)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ') {
            memcpy(r + j, QK_SPM_SPACE, QK_SPM_SPACE_LEN);
            j += QK_SPM_SPACE_LEN;
        } else {
            r[j++] = s[i];
        }
    }
    r[j] = 0;
    *out_len = j;
    return r;
}

/* Walk the token records from offset 4. With n > 0 read exactly n tokens
 * (fill v when non-NULL); with n <= 0 count records to the end of file.
 * Returns the number of tokens read or a negative error. */
static int64_t walk(const char *path, const uint8_t *d, uint64_t size, int64_t n, qk_vocab *v)
{
    uint64_t off = 4;
    int64_t i = 0;
    char *tmp = NULL;
    int64_t rc;
    for (; n > 0 ? i < n : off < size; i++) {
        if (i >= QK_VOCAB_MAX_TOKENS) {
            rc = qk_error(QK_ELIMIT, "%s: more than %d tokens", path, QK_VOCAB_MAX_TOKENS);
            goto done;
        }
        if (size - off < 8) {
            rc = qk_error(QK_EFORMAT,
                          "%s: truncated at token %" PRId64 ": record header at offset %" PRIu64
                          " needs 8 bytes, %" PRIu64 " left%s",
                          path, i, off, size - off,
                          n > 0 ? " (does the model's vocab_size match this tokenizer?)" : "");
            goto done;
        }
        float score;
        uint32_t sbits = qk_rd_u32(d + off);
        memcpy(&score, &sbits, sizeof score);
        int32_t len = (int32_t)qk_rd_u32(d + off + 4);
        if (!isfinite(score)) {
            rc = qk_error(QK_ENONFINITE, "%s: token %" PRId64 " has a non-finite score", path, i);
            goto done;
        }
        if (len < 0) {
            rc = qk_error(QK_EFORMAT, "%s: token %" PRId64 " has negative length %d", path, i, (int)len);
            goto done;
        }
        off += 8;
        if ((uint64_t)len > size - off) {
            rc = qk_error(QK_EFORMAT,
                          "%s: token %" PRId64 " of %d bytes at offset %" PRIu64 " ends past the file size %" PRIu64,
                          path, i, (int)len, off, size);
            goto done;
        }
        if (v) {
            static const char *const fixed[3] = {"<unk>", "<s>", "</s>"};
            static const int fixed_type[3] = {QK_TOKEN_UNKNOWN, QK_TOKEN_CONTROL, QK_TOKEN_CONTROL};
            const char *text;
            size_t tlen;
            int type;
            if (i < 3) {
                text = fixed[i];
                tlen = strlen(text);
                type = fixed_type[i];
            } else {
                tmp = malloc((size_t)len + 1);
                if (!tmp) {
                    rc = qk_error(QK_ENOMEM, "%s: out of memory", path);
                    goto done;
                }
                memcpy(tmp, d + off, (size_t)len);
                tmp[len] = 0;
                text = tmp;
                tlen = (size_t)len;
                type = len == 0 ? QK_TOKEN_CONTROL : looks_like_byte(tmp) ? QK_TOKEN_BYTE : QK_TOKEN_NORMAL;
            }
            size_t elen;
            char *esc = escape_spaces(text, tlen, &elen);
            free(tmp);
            tmp = NULL;
            if (!esc) {
                rc = qk_error(QK_ENOMEM, "%s: out of memory", path);
                goto done;
            }
            free(v->tokens[i].s);
            v->tokens[i].s = esc;
            v->tokens[i].len = elen;
            v->scores[i] = score;
            v->types[i] = type;
        }
        off += (uint64_t)len;
    }
    if (n > 0 && off != size) {
        rc = qk_error(QK_EFORMAT,
                      "%s: %" PRIu64 " bytes remain after the %" PRId64
                      " tokens the model's vocab_size asks for; the tokenizer does not belong to this model",
                      path, size - off, n);
        goto done;
    }
    rc = i;
done:
    free(tmp);
    return rc;
}

int qk_vocab_from_llama2c(qk_vocab **out, const char *path, int64_t expected_n_tokens)
{
    *out = NULL;
    qk_mmap *m = NULL;
    qk_vocab *v = NULL;
    int rc;
    if (expected_n_tokens > QK_VOCAB_MAX_TOKENS)
        return qk_error(QK_ELIMIT, "%s: %" PRId64 " tokens asked for, more than the limit of %d", path,
                        expected_n_tokens, QK_VOCAB_MAX_TOKENS);
    if ((rc = qk_mmap_open(&m, path)))
        return rc;
    if (m->size < 4) {
        rc = qk_error(QK_EFORMAT, "%s: %" PRIu64 " bytes is shorter than the 4-byte tokenizer.bin header", path,
                      m->size);
        goto done;
    }
    /* Validate the whole file (and count tokens) before allocating. */
    int64_t n = walk(path, m->data, m->size, expected_n_tokens, NULL);
    if (n < 0) {
        rc = (int)n;
        goto done;
    }
    if (n == 0) {
        rc = qk_error(QK_EFORMAT, "%s: no tokens after the header", path);
        goto done;
    }
    if ((rc = qk_vocab_alloc(&v, n, QK_VOCAB_SPM)))
        goto done;
    int64_t n2 = walk(path, m->data, m->size, n, v);
    if (n2 < 0) {
        rc = (int)n2;
        goto done;
    }
    v->unk_id = n > 0 ? 0 : -1;
    v->bos_id = n > 1 ? 1 : -1;
    v->eos_id = n > 2 ? 2 : -1;
    v->pad_id = -1;
    v->add_bos = 1;
    v->add_eos = 0;
    v->add_space_prefix = 1;
    qk_vocab_detect_byte_fallback(v);
    if ((rc = qk_vocab_build_index(v)))
        goto done;
    *out = v;
    v = NULL;
done:
    qk_vocab_free(v);
    qk_mmap_close(m);
    return qk_vocab_path_error(rc, path);
}
