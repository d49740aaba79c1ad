/* Hugging Face directory export helpers (see quantkit/hf.h). */
#include "quantkit/hf.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *qk_hf_tensor_name(const char *name, char *buf, size_t n)
{
    static const struct {
        const char *gguf, *hf;
    } map[] = {
        {"attn_norm.weight", "input_layernorm.weight"},    {"attn_q.weight", "self_attn.q_proj.weight"},
        {"attn_k.weight", "self_attn.k_proj.weight"},      {"attn_v.weight", "self_attn.v_proj.weight"},
        {"attn_output.weight", "self_attn.o_proj.weight"}, {"ffn_norm.weight", "post_attention_layernorm.weight"},
        {"ffn_gate.weight", "mlp.gate_proj.weight"},       {"ffn_up.weight", "mlp.up_proj.weight"},
        {"ffn_down.weight", "mlp.down_proj.weight"},
    };
    long long l;
    char kind[48];
    if (!strcmp(name, "token_embd.weight"))
        return "model.embed_tokens.weight";
    if (!strcmp(name, "output_norm.weight"))
        return "model.norm.weight";
    if (!strcmp(name, "output.weight"))
        return "lm_head.weight";
    if (sscanf(name, "blk.%lld.%47s", &l, kind) == 2)
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
            if (!strcmp(kind, map[i].gguf)) {
                snprintf(buf, n, "model.layers.%lld.%s", l, map[i].hf);
                return buf;
            }
    return NULL;
}

int64_t qk_hf_perm_heads(const qk_model_config *c, const char *name)
{
    if (strstr(name, ".attn_q."))
        return c->n_head;
    if (strstr(name, ".attn_k."))
        return c->n_head_kv;
    return 0;
}

int qk_hf_write_json(const char *path, const struct cJSON *j)
{
    char *txt = cJSON_Print(j);
    if (!txt)
        return qk_error(QK_ENOMEM, "out of memory");
    int rc = qk_write_file_atomic(path, txt, strlen(txt), "\n");
    free(txt);
    return rc;
}

int qk_hf_write_config(const char *dir, const qk_model_config *c, const qk_vocab *v, int dtype,
                       const struct cJSON *quantization_config)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return qk_error(QK_ENOMEM, "out of memory");
    cJSON *a = cJSON_AddArrayToObject(j, "architectures");
    int mistral = !strcmp(c->hf_arch, "MistralForCausalLM");
    cJSON_AddItemToArray(a, cJSON_CreateString(mistral ? "MistralForCausalLM" : "LlamaForCausalLM"));
    cJSON_AddStringToObject(j, "model_type", mistral ? "mistral" : "llama");
    cJSON_AddNumberToObject(j, "hidden_size", (double)c->n_embd);
    cJSON_AddNumberToObject(j, "intermediate_size", (double)c->n_ff);
    cJSON_AddNumberToObject(j, "num_hidden_layers", (double)c->n_layer);
    cJSON_AddNumberToObject(j, "num_attention_heads", (double)c->n_head);
    cJSON_AddNumberToObject(j, "num_key_value_heads", (double)c->n_head_kv);
    cJSON_AddNumberToObject(j, "head_dim", (double)c->head_dim);
    cJSON_AddNumberToObject(j, "vocab_size", (double)c->n_vocab);
    cJSON_AddNumberToObject(j, "max_position_embeddings", (double)c->n_ctx);
    cJSON_AddNumberToObject(j, "rms_norm_eps", (double)c->norm_eps);
    cJSON_AddNumberToObject(j, "rope_theta", (double)c->rope_base);
    if (c->sliding_window > 0)
        cJSON_AddNumberToObject(j, "sliding_window", (double)c->sliding_window);
    else
        cJSON_AddNullToObject(j, "sliding_window");
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tied_embeddings);
    cJSON_AddStringToObject(j, "torch_dtype",
                            dtype == QK_TYPE_F16 ? "float16" : dtype == QK_TYPE_BF16 ? "bfloat16" : "float32");
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    if (v && v->bos_id >= 0)
        cJSON_AddNumberToObject(j, "bos_token_id", v->bos_id);
    if (v && v->eos_id >= 0)
        cJSON_AddNumberToObject(j, "eos_token_id", v->eos_id);
    if (quantization_config)
        cJSON_AddItemToObject(j, "quantization_config", cJSON_Duplicate(quantization_config, 1));
    char *path = qk_path_join(dir, "config.json");
    int rc = path ? qk_hf_write_json(path, j) : qk_error(QK_ENOMEM, "out of memory");
    free(path);
    cJSON_Delete(j);
    return rc;
}
