/* libFuzzer target: a Hugging Face directory as qk_model opens it:
 * config.json (with or without a GPTQ quantization_config) and
 * model.safetensors, the HF -> canonical mapping, the GPTQ layer checks
 * (qk_gptq_tensor_init: dtypes, shapes, g_idx) and the decoding of every
 * row, plain or GPTQ.
 *
 * Input: config.json FZ_SEP model.safetensors. */
#include "fz_util.h"
#include "quantkit/gptq.h"
#include "quantkit/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_part parts[2];
    fz_reset();
    size_t np = fz_split(data, size, parts, 2);
    fz_write("config.json", parts[0].p, parts[0].n);
    if (np > 1)
        fz_write("model.safetensors", parts[1].p, parts[1].n);
    qk_model *m = NULL;
    qk_model_opts o = {.no_vocab = 1};
    if (qk_model_open(&m, fz_dir(), &o) == 0) {
        float *row = NULL;
        for (int64_t i = 0; i < qk_model_n_tensors(m); i++) {
            const qk_model_tensor *t = qk_model_tensor_at(m, i);
            if (!qk_model_tensor_decodable(t))
                continue;
            float *r = realloc(row, (size_t)t->ne[0] * sizeof *row);
            FZ_CHECK(r, "realloc");
            row = r;
            for (int64_t k = 0; k < qk_model_tensor_rows(t); k++)
                FZ_OK(qk_model_row_f32(m, t, k, row));
            if (t->gptq)
                FZ_CHECK(qk_model_row_raw(t, 0) == NULL, "GPTQ rows have no raw bytes");
        }
        free(row);
        qk_model_close(m);
    }
    qk_error_clear();
    return 0;
}
