/* libFuzzer target: Hugging Face tokenizer.json (+ tokenizer_config.json
 * beside it), the shared vocabulary checks (GGUF round trip, tokenizer
 * runtime), and the tokenizer.json round trip: read -> write -> read gives
 * the same tokens, types, merges and flags. Scores of SentencePiece-style
 * vocabularies are not compared: tokenizer.json has none, the reader
 * derives them from the merge order and the writer regenerates merges from
 * scores, so only their order is meaningful (docs in vocab_hfjson.c).
 *
 * Input: tokenizer.json [FZ_SEP tokenizer_config.json]. */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fz_util.h"
#include "quantkit/vocab.h"

static int str_eq(const qk_str *a, const qk_str *b)
{
    return a->len == b->len && (a->len == 0 || !memcmp(a->s, b->s, (size_t)a->len));
}

static void json_roundtrip(const qk_vocab *a)
{
    /* in a subdirectory: no tokenizer_config.json beside the copy */
    char sub[600];
    snprintf(sub, sizeof sub, "%s/rt", fz_dir());
    mkdir(sub, 0700);
    char path[700];
    snprintf(path, sizeof path, "%s/tokenizer.json", sub);
    int rc = qk_vocab_write_tokenizer_json(a, path);
    if (rc) {
        FZ_CHECK(rc == QK_EUNSUPPORTED, "write_tokenizer_json refused: %d", rc);
        return;
    }
    qk_vocab *b = NULL;
    FZ_OK(qk_vocab_from_tokenizer_json(&b, path));
    remove(path);
    rmdir(sub);
    FZ_CHECK(a->model == b->model && a->n_tokens == b->n_tokens, "model/count");
    for (int64_t i = 0; i < a->n_tokens; i++) {
        FZ_CHECK(str_eq(&a->tokens[i], &b->tokens[i]), "token %lld text", (long long)i);
        /* The unknown token may have been found by its text ("<unk>", or
         * tokenizer_config.json) rather than model.unk_token; the writer
         * names it there, so it reads back typed UNKNOWN. */
        int unk_retyped = i == a->unk_id && b->types[i] == QK_TOKEN_UNKNOWN;
        FZ_CHECK(a->types[i] == b->types[i] || unk_retyped, "token %lld type %d -> %d", (long long)i, a->types[i],
                 b->types[i]);
    }
    if (a->model == QK_VOCAB_BPE) {
        FZ_CHECK(a->n_merges == b->n_merges, "merge count");
        for (int64_t i = 0; i < a->n_merges; i++)
            FZ_CHECK(str_eq(&a->merges[i], &b->merges[i]), "merge %lld", (long long)i);
    }
    FZ_CHECK(a->unk_id == b->unk_id, "unk id %d -> %d", a->unk_id, b->unk_id);
    int abos = a->add_bos && a->bos_id >= 0, aeos = a->add_eos && a->eos_id >= 0;
    FZ_CHECK(!abos == !b->add_bos && !aeos == !b->add_eos, "add_bos/eos");
    if (abos)
        FZ_CHECK(a->bos_id == b->bos_id, "bos id %d -> %d", a->bos_id, b->bos_id);
    if (aeos)
        FZ_CHECK(a->eos_id == b->eos_id, "eos id %d -> %d", a->eos_id, b->eos_id);
    FZ_CHECK(!a->add_space_prefix == !b->add_space_prefix && !a->byte_fallback == !b->byte_fallback, "flags");
    qk_vocab_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_part parts[2];
    fz_reset();
    size_t np = fz_split(data, size, parts, 2);
    const char *path = fz_write("tokenizer.json", parts[0].p, parts[0].n);
    if (np > 1)
        fz_write("tokenizer_config.json", parts[1].p, parts[1].n);
    qk_vocab *v = NULL;
    if (qk_vocab_from_tokenizer_json(&v, path) == 0) {
        fz_vocab_check(v, parts[0].p, parts[0].n < 256 ? parts[0].n : 256);
        json_roundtrip(v);
        qk_vocab_free(v);
    }
    qk_error_clear();
    return 0;
}
