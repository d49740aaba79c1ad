/* Hugging Face directory export helpers shared by qk-convert (--to
 * safetensors) and qk-quantize (--format gptq): tensor names, the q/k row
 * order, and config.json.
 *
 * Hugging Face llama/mistral names (PyTorch [out, in] weights):
 *   model.embed_tokens.weight, model.norm.weight, lm_head.weight,
 *   model.layers.{i}.{input_layernorm,post_attention_layernorm}.weight,
 *   model.layers.{i}.self_attn.{q,k,v,o}_proj.weight,
 *   model.layers.{i}.mlp.{gate,up,down}_proj.weight.
 * Hugging Face stores q/k rows in rotate-half order: HF row h of a canonical
 * tensor is canonical row qk_rope_unperm_row(h, rows, heads).
 */
#ifndef QUANTKIT_HF_H
#define QUANTKIT_HF_H

#include "quantkit/common.h"
#include "quantkit/model.h"
#include "quantkit/vocab.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cJSON;

/* The Hugging Face name of canonical tensor `name` ("blk.3.attn_q.weight" ->
 * "model.layers.3.self_attn.q_proj.weight"), written into buf[n] when it is
 * per-layer (the result may be buf or a constant string); NULL when the name
 * has no Hugging Face counterpart. */
const char *qk_hf_tensor_name(const char *name, char *buf, size_t n);

/* Heads of the rotate-half permutation of canonical tensor `name` in
 * Hugging Face order (attn_q: n_head, attn_k: n_head_kv), 0 for the others. */
int64_t qk_hf_perm_heads(const qk_model_config *c, const char *name);

/* Write DIR/config.json (architectures, model_type, the llama dimensions,
 * torch_dtype from `dtype` (QK_TYPE_F32/F16/BF16), bos/eos from the vocab
 * when given) through an atomic file. `quantization_config`, when not NULL,
 * is copied in under that key. */
int qk_hf_write_config(const char *dir, const qk_model_config *c, const qk_vocab *v, int dtype,
                       const struct cJSON *quantization_config);

/* Write a JSON value, pretty-printed with a final newline, to `path`
 * through an atomic file. */
int qk_hf_write_json(const char *path, const struct cJSON *j);

#ifdef __cplusplus
}
#endif
#endif
