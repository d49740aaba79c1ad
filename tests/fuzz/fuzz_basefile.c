/* libFuzzer target: the saved-base file of qk-eval (--load-base), and the
 * round trip load -> save -> load. The input's last 8 bytes are replaced by
 * the XXH3-64 of the rest, as the format wants, so mutations reach the
 * header and payload checks instead of stopping at the checksum (which
 * tests/test_eval.c covers). */
#include <stdlib.h>
#include <string.h>

#include "fz_util.h"
#include "quantkit/metrics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_reset();
    uint8_t *copy = malloc(size + 1);
    FZ_CHECK(copy, "malloc");
    memcpy(copy, data, size);
    if (size >= 8)
        qk_wr_u64(copy + size - 8, qk_hash64(copy, size - 8));
    const char *path = fz_write("base.qkbase", copy, size);
    free(copy);
    qk_base_results *a = NULL, *b = NULL;
    if (qk_base_results_load(&a, path) == 0) {
        const char *p2 = fz_path("rt.qkbase");
        FZ_OK(qk_base_results_save(a, p2));
        FZ_OK(qk_base_results_load(&b, p2));
        FZ_CHECK(a->n_pos == b->n_pos && a->k == b->k && a->n_vocab == b->n_vocab && a->n_ctx == b->n_ctx &&
                     a->n_chunks == b->n_chunks && a->score_all == b->score_all && a->text_hash == b->text_hash &&
                     a->vocab_hash == b->vocab_hash && a->model_hash == b->model_hash,
                 "header differs after the round trip");
        size_t np = (size_t)a->n_pos, nk = (size_t)a->n_pos * (size_t)a->k;
        FZ_CHECK(!memcmp(a->lp_correct, b->lp_correct, np * 4) && !memcmp(a->top1, b->top1, np * 4) &&
                     !memcmp(a->ids, b->ids, nk * 4) && !memcmp(a->lps, b->lps, nk * 4),
                 "arrays differ after the round trip");
        for (size_t i = 0; i < nk; i++)
            FZ_CHECK(a->ids[i] >= 0 && a->ids[i] < a->n_vocab, "id out of range");
    }
    qk_base_results_free(a);
    qk_base_results_free(b);
    qk_error_clear();
    return 0;
}
