/* SentencePiece tokenizer.model (a protobuf ModelProto) -> qk_vocab.
 *
 * Protobuf wire format: a message is a sequence of fields, each a varint key
 * (field_number << 3 | wire_type) and a value: wire type 0 varint (<= 10
 * bytes, 7 bits each, little-endian groups), 1 fixed 8 bytes, 2 varint length
 * + bytes (strings, sub-messages), 5 fixed 4 bytes; 3/4 (groups) are not
 * used by sentencepiece and are refused. Unknown fields are skipped.
 *
 * The fields read (sentencepiece_model.proto):
 *   ModelProto     1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
 *   SentencePiece  1 piece string, 2 score float, 3 type enum
 *                  (NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6 —
 *                  the same numbers as GGUF token types)
 *   TrainerSpec    35 byte_fallback bool, 40 unk_id, 41 bos_id, 42 eos_id, 43 pad_id (int32;
 *                  defaults 0, 1, 2, -1)
 *   NormalizerSpec 3 add_dummy_prefix bool (default true)
 * llama.cpp copies pieces, scores and types unchanged into GGUF (model "llama").
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quantkit/vocab.h"
#include "vocab_internal.h"

enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_I32 = 5 };

/* A bounded cursor over [p, end); `base` gives file offsets for messages. */
typedef struct pb {
    const uint8_t *p, *end, *base;
    const char *path;
} pb;

static int pb_varint(pb *b, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (b->p >= b->end)
            return qk_error(QK_EFORMAT, "%s: truncated varint at offset %td", b->path, b->p - b->base);
        uint8_t c = *b->p++;
        /* the 10th byte holds bit 63 only */
        if (i == 9 && c > 1)
            return qk_error(QK_EFORMAT, "%s: varint overflows 64 bits at offset %td", b->path, b->p - 1 - b->base);
        v |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return qk_error(QK_EFORMAT, "%s: varint longer than 10 bytes at offset %td", b->path, b->p - b->base);
}

/* Read one field key and its value. A LEN value comes back as a sub-cursor
 * in *sub; VARINT in *v; I32/I64 as raw little-endian bits in *v. */
static int pb_field(pb *b, uint32_t *field, int *wire, uint64_t *v, pb *sub)
{
    uint64_t key;
    int rc;
    const uint8_t *at = b->p;
    if ((rc = pb_varint(b, &key)))
        return rc;
    *wire = (int)(key & 7);
    uint64_t f = key >> 3;
    if (f == 0 || f > 0x1fffffff)
        return qk_error(QK_EFORMAT, "%s: field number %" PRIu64 " at offset %td is not valid protobuf", b->path, f,
                        at - b->base);
    *field = (uint32_t)f;
    size_t left;
    switch (*wire) {
    case PB_VARINT:
        return pb_varint(b, v);
    case PB_I64:
        if (b->end - b->p < 8)
            return qk_error(QK_EFORMAT, "%s: field %u at offset %td: fixed64 runs past the end", b->path, *field,
                            at - b->base);
        *v = qk_rd_u64(b->p);
        b->p += 8;
        return 0;
    case PB_I32:
        if (b->end - b->p < 4)
            return qk_error(QK_EFORMAT, "%s: field %u at offset %td: fixed32 runs past the end", b->path, *field,
                            at - b->base);
        *v = qk_rd_u32(b->p);
        b->p += 4;
        return 0;
    case PB_LEN:
        if ((rc = pb_varint(b, v)))
            return rc;
        left = (size_t)(b->end - b->p);
        if (*v > left)
            return qk_error(QK_EFORMAT,
                            "%s: field %u at offset %td: length %" PRIu64 " runs past the end (%zu bytes left)",
                            b->path, *field, at - b->base, *v, left);
        sub->p = b->p;
        sub->end = b->p + *v;
        sub->base = b->base;
        sub->path = b->path;
        b->p += *v;
        return 0;
    default:
        return qk_error(QK_EFORMAT, "%s: field %u at offset %td has wire type %d, which sentencepiece never writes",
                        b->path, *field, at - b->base, *wire);
    }
}

static int want_wire(const pb *b, const char *what, uint32_t field, int wire, int expected)
{
    if (wire == expected)
        return 0;
    return qk_error(QK_EFORMAT, "%s: %s field %u has wire type %d, expected %d", b->path, what, field, wire,
                    expected);
}

/* An int32 field as protobuf encodes it (negative values sign-extended to 64 bits). */
static int pb_int32(const pb *b, const char *name, uint64_t v, int32_t *out)
{
    int64_t s = (int64_t)v;
    if (s < INT32_MIN || s > INT32_MAX)
        return qk_error(QK_EFORMAT, "%s: %s = %" PRId64 " does not fit int32", b->path, name, s);
    *out = (int32_t)s;
    return 0;
}

typedef struct spm_piece {
    const uint8_t *text;
    size_t len;
    float score;
    int32_t type;
} spm_piece;

static int parse_piece(pb *b, int64_t index, spm_piece *out)
{
    int rc;
    out->text = NULL;
    out->len = 0;
    out->score = 0.0f;
    out->type = QK_TOKEN_NORMAL;
    int have_piece = 0;
    while (b->p < b->end) {
        uint32_t f;
        int w;
        uint64_t v;
        pb sub;
        if ((rc = pb_field(b, &f, &w, &v, &sub)))
            return rc;
        if (f == 1) {
            if ((rc = want_wire(b, "SentencePiece", f, w, PB_LEN)))
                return rc;
            out->text = sub.p;
            out->len = (size_t)(sub.end - sub.p);
            have_piece = 1;
        } else if (f == 2) {
            if ((rc = want_wire(b, "SentencePiece", f, w, PB_I32)))
                return rc;
            uint32_t bits = (uint32_t)v;
            memcpy(&out->score, &bits, sizeof bits);
            if (isnan(out->score))
                return qk_error(QK_ENONFINITE, "%s: piece %" PRId64 " has a NaN score", b->path, index);
        } else if (f == 3) {
            if ((rc = want_wire(b, "SentencePiece", f, w, PB_VARINT)))
                return rc;
            if (v < QK_TOKEN_NORMAL || v > QK_TOKEN_BYTE)
                return qk_error(QK_EFORMAT, "%s: piece %" PRId64 " has type %" PRIu64 ", not one of 1..6", b->path,
                                index, v);
            out->type = (int32_t)v;
        }
    }
    if (!have_piece || out->len == 0)
        return qk_error(QK_EFORMAT, "%s: piece %" PRId64 " has no text (sentencepiece forbids empty pieces)",
                        b->path, index);
    return 0;
}

typedef struct spm_spec {
    int32_t unk_id, bos_id, eos_id, pad_id;
    int byte_fallback, add_dummy_prefix;
} spm_spec;

static int parse_trainer(pb *b, spm_spec *s)
{
    int rc;
    while (b->p < b->end) {
        uint32_t f;
        int w;
        uint64_t v;
        pb sub;
        if ((rc = pb_field(b, &f, &w, &v, &sub)))
            return rc;
        if (f == 35 || (f >= 40 && f <= 43)) {
            if ((rc = want_wire(b, "TrainerSpec", f, w, PB_VARINT)))
                return rc;
        }
        if (f == 35)
            s->byte_fallback = v != 0;
        else if (f == 40)
            rc = pb_int32(b, "trainer_spec.unk_id", v, &s->unk_id);
        else if (f == 41)
            rc = pb_int32(b, "trainer_spec.bos_id", v, &s->bos_id);
        else if (f == 42)
            rc = pb_int32(b, "trainer_spec.eos_id", v, &s->eos_id);
        else if (f == 43)
            rc = pb_int32(b, "trainer_spec.pad_id", v, &s->pad_id);
        if (rc)
            return rc;
    }
    return 0;
}

static int parse_normalizer(pb *b, spm_spec *s)
{
    int rc;
    while (b->p < b->end) {
        uint32_t f;
        int w;
        uint64_t v;
        pb sub;
        if ((rc = pb_field(b, &f, &w, &v, &sub)))
            return rc;
        if (f == 3) {
            if ((rc = want_wire(b, "NormalizerSpec", f, w, PB_VARINT)))
                return rc;
            s->add_dummy_prefix = v != 0;
        }
    }
    return 0;
}

/* Walk the top-level message. With v == NULL count the pieces and read the
 * specs; with v fill its tokens. */
static int parse_model(pb top, spm_spec *spec, int64_t *n_pieces, qk_vocab *v)
{
    int rc;
    int64_t n = 0;
    while (top.p < top.end) {
        uint32_t f;
        int w;
        uint64_t val;
        pb sub;
        if ((rc = pb_field(&top, &f, &w, &val, &sub)))
            return rc;
        if (f == 1) {
            if ((rc = want_wire(&top, "ModelProto", f, w, PB_LEN)))
                return rc;
            if (n >= QK_VOCAB_MAX_TOKENS)
                return qk_error(QK_ELIMIT, "%s: more than %d pieces", top.path, QK_VOCAB_MAX_TOKENS);
            spm_piece piece;
            if ((rc = parse_piece(&sub, n, &piece)))
                return rc;
            if (v) {
                if ((rc = qk_vocab_set_token(v, n, piece.text, piece.len)))
                    return rc;
                v->scores[n] = piece.score;
                v->types[n] = piece.type;
            }
            n++;
        } else if (f == 2 && !v) {
            if ((rc = want_wire(&top, "ModelProto", f, w, PB_LEN)) || (rc = parse_trainer(&sub, spec)))
                return rc;
        } else if (f == 3 && !v) {
            if ((rc = want_wire(&top, "ModelProto", f, w, PB_LEN)) || (rc = parse_normalizer(&sub, spec)))
                return rc;
        }
    }
    *n_pieces = n;
    return 0;
}

/* A special id from the trainer spec: negative means none; past the end is an error. */
static int spec_id(const char *path, const char *name, int32_t id, int64_t n, int32_t *out)
{
    if (id < 0) {
        *out = -1;
        return 0;
    }
    if (id >= n)
        return qk_error(QK_EFORMAT, "%s: trainer_spec.%s = %d but the model has %" PRId64 " pieces", path, name,
                        (int)id, n);
    *out = id;
    return 0;
}

int qk_vocab_from_spm_model(qk_vocab **out, const char *path)
{
    *out = NULL;
    qk_mmap *m = NULL;
    qk_vocab *v = NULL;
    int rc;
    if ((rc = qk_mmap_open(&m, path)))
        return rc;
    spm_spec spec = {0, 1, 2, -1, 0, 1};
    int64_t n = 0;
    if (m->size == 0) { /* then m->data is NULL: no cursor over it */
        rc = qk_error(QK_EFORMAT, "%s: empty file, not a SentencePiece model", path);
        goto done;
    }
    pb top = {m->data, m->data + m->size, m->data, path};
    if ((rc = parse_model(top, &spec, &n, NULL)))
        goto done;
    if (n == 0) {
        rc = qk_error(QK_EFORMAT, "%s: no pieces: not a SentencePiece model", path);
        goto done;
    }
    if ((rc = qk_vocab_alloc(&v, n, QK_VOCAB_SPM)))
        goto done;
    int64_t n2;
    if ((rc = parse_model(top, &spec, &n2, v)))
        goto done;
    if ((rc = spec_id(path, "unk_id", spec.unk_id, n, &v->unk_id)) ||
        (rc = spec_id(path, "bos_id", spec.bos_id, n, &v->bos_id)) ||
        (rc = spec_id(path, "eos_id", spec.eos_id, n, &v->eos_id)) ||
        (rc = spec_id(path, "pad_id", spec.pad_id, n, &v->pad_id)))
        goto done;
    v->byte_fallback = spec.byte_fallback;
    v->add_space_prefix = spec.add_dummy_prefix;
    v->add_bos = 1; /* llama.cpp's defaults for SentencePiece vocabularies */
    v->add_eos = 0;
    if ((rc = qk_vocab_build_index(v)))
        goto done;
    *out = v;
    v = NULL;
done:
    qk_vocab_free(v);
    qk_mmap_close(m);
    return qk_vocab_path_error(rc, path);
}
