/* libFuzzer target: Hugging Face config.json (qk_model_read_hf_config,
 * including quantization_config) and the round trip through
 * qk_hf_write_config: read -> write -> read gives the same configuration. */
#include <cJSON.h>
#include <string.h>

#include "fz_util.h"
#include "quantkit/ggml_types.h"
#include "quantkit/hf.h"
#include "quantkit/model.h"

static void same(const qk_model_config *a, const qk_model_config *b)
{
    FZ_CHECK(!strcmp(a->arch, b->arch) && !strcmp(a->hf_arch, b->hf_arch), "arch %s/%s -> %s/%s", a->arch,
             a->hf_arch, b->arch, b->hf_arch);
    FZ_CHECK(a->n_embd == b->n_embd && a->n_layer == b->n_layer && a->n_head == b->n_head &&
                 a->n_head_kv == b->n_head_kv && a->head_dim == b->head_dim && a->n_ff == b->n_ff &&
                 a->n_vocab == b->n_vocab && a->n_ctx == b->n_ctx && a->sliding_window == b->sliding_window,
             "dimensions differ");
    FZ_CHECK(!memcmp(&a->norm_eps, &b->norm_eps, sizeof(float)) && !memcmp(&a->rope_base, &b->rope_base, sizeof(float)),
             "eps %g -> %g, rope %g -> %g", (double)a->norm_eps, (double)b->norm_eps, (double)a->rope_base,
             (double)b->rope_base);
    FZ_CHECK(a->tied_embeddings == b->tied_embeddings, "tied");
    FZ_CHECK(a->gptq_bits == b->gptq_bits && a->gptq_group_size == b->gptq_group_size, "gptq %d/%lld -> %d/%lld",
             a->gptq_bits, (long long)a->gptq_group_size, b->gptq_bits, (long long)b->gptq_group_size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_reset();
    const char *path = fz_write("config.json", data, size);
    qk_model_config c, c2;
    if (qk_model_read_hf_config(&c, path) == 0) {
        cJSON *q = NULL;
        if (c.gptq_bits) {
            q = cJSON_CreateObject();
            FZ_CHECK(q, "cJSON");
            cJSON_AddStringToObject(q, "quant_method", "gptq");
            cJSON_AddNumberToObject(q, "bits", c.gptq_bits);
            cJSON_AddNumberToObject(q, "group_size", (double)c.gptq_group_size);
        }
        char dir[600];
        snprintf(dir, sizeof dir, "%s", fz_dir());
        remove(path);
        FZ_OK(qk_hf_write_config(dir, &c, NULL, QK_TYPE_F32, q));
        cJSON_Delete(q);
        FZ_OK(qk_model_read_hf_config(&c2, path));
        same(&c, &c2);
    }
    qk_error_clear();
    return 0;
}
