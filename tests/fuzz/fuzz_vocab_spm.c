/* libFuzzer target: SentencePiece tokenizer.model (protobuf), then the
 * shared vocabulary checks (GGUF round trip, tokenizer runtime). */
#include "fz_util.h"
#include "quantkit/vocab.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_reset();
    const char *path = fz_write("tokenizer.model", data, size);
    qk_vocab *v = NULL;
    if (qk_vocab_from_spm_model(&v, path) == 0) {
        fz_vocab_check(v, data, size < 256 ? size : 256);
        qk_vocab_free(v);
    }
    qk_error_clear();
    return 0;
}
