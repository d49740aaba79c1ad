/* libFuzzer target: llama2.c tokenizer.bin, read both ways (counting the
 * records to the end of the file, and asking for exactly that many), then
 * the shared vocabulary checks (GGUF round trip, tokenizer runtime). */
#include "fz_util.h"
#include "quantkit/vocab.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_reset();
    const char *path = fz_write("tokenizer.bin", data, size);
    qk_vocab *v = NULL, *v2 = NULL, *v3 = NULL;
    if (qk_vocab_from_llama2c(&v, path, 0) == 0) {
        FZ_OK(qk_vocab_from_llama2c(&v2, path, v->n_tokens));
        FZ_CHECK(v2->n_tokens == v->n_tokens, "token count");
        FZ_CHECK(qk_vocab_from_llama2c(&v3, path, v->n_tokens + 1) != 0 && !v3,
                 "one token more than the file holds was accepted");
        fz_vocab_check(v, data, size < 256 ? size : 256);
    }
    qk_vocab_free(v);
    qk_vocab_free(v2);
    qk_error_clear();
    return 0;
}
