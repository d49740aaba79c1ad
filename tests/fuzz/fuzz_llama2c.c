/* libFuzzer target: llama2.c legacy checkpoints (header, dims, sizes), and
 * qk_model over one with its tokenizer.bin (the llama2.c mapping, the
 * vocabulary size check, decoding every row).
 *
 * Input: checkpoint [FZ_SEP tokenizer.bin]. */
#include <string.h>

#include "fz_util.h"
#include "quantkit/llama2c.h"
#include "quantkit/model.h"

static void check_arrays(const qk_llama2c *m)
{
    const qk_llama2c_array *a[] = {&m->tok_emb, &m->rms_att, &m->wq, &m->wk, &m->wv, &m->wo, &m->rms_ffn,
                                   &m->w1, &m->w2, &m->w3, &m->rms_final, &m->freq_cis_real, &m->freq_cis_imag,
                                   &m->wcls};
    for (size_t i = 0; i < sizeof a / sizeof *a; i++)
        FZ_CHECK(a[i]->offset <= m->map->size && a[i]->n_elems <= (m->map->size - a[i]->offset) / 4,
                 "array %zu [%llu, +%llu floats) past the file", i, (unsigned long long)a[i]->offset,
                 (unsigned long long)a[i]->n_elems);
}

static void model(const char *path, const char *vocab)
{
    qk_model *m = NULL;
    qk_model_opts o = {.vocab_path = vocab, .no_vocab = vocab == NULL};
    if (qk_model_open(&m, path, &o))
        return;
    float *row = NULL;
    for (int64_t i = 0; i < qk_model_n_tensors(m); i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        float *r = realloc(row, (size_t)t->ne[0] * sizeof *row);
        FZ_CHECK(r, "realloc");
        row = r;
        for (int64_t k = 0; k < qk_model_tensor_rows(t); k++)
            FZ_OK(qk_model_row_f32(m, t, k, row));
    }
    free(row);
    if (qk_model_vocab(m))
        FZ_CHECK(qk_model_vocab(m)->n_tokens == qk_model_cfg(m)->n_vocab, "vocab size");
    qk_model_close(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_part parts[2];
    fz_reset();
    size_t np = fz_split(data, size, parts, 2);
    const char *path = fz_write("model.bin", parts[0].p, parts[0].n);
    const char *vocab = np > 1 ? fz_write("tok.bin", parts[1].p, parts[1].n) : NULL;
    qk_llama2c *m = NULL;
    if (qk_llama2c_open(&m, path) == 0) {
        check_arrays(m);
        qk_llama2c_close(m);
        model(path, vocab);
    }
    qk_error_clear();
    return 0;
}
