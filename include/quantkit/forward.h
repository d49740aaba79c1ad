/* The reference forward pass of the llama family (Llama, Mistral).
 *
 * RMSNorm, RoPE (llama.cpp's interleaved pairs, base from the model),
 * grouped-query causal attention (optional sliding window), SwiGLU FFN, tied
 * or separate output. Activations are FP32; every linear layer is one
 * matmul over all tokens of the batch (quantkit's AVX-512 kernel, or
 * OpenBLAS sgemm on other CPUs). F32 tensors stored as is are
 * used in place from the mapped file; weights of any other type quantkit
 * decodes (F16, BF16, ggml block types) are dequantized per tensor into a
 * reusable buffer as each layer runs (or kept, when the whole model fits
 * opts.cache_bytes), so memory is one layer's working set plus the mapped
 * file, whatever the model size.
 *
 * Sequences are independent windows that each start at position 0 (the
 * perplexity protocol). Several sequences are processed together layer by
 * layer, so each layer's weights are dequantized once per call. Every step
 * but the matmuls is per token or per sequence, so a sequence's logits do
 * not depend on what it is batched with (bit-identical with the AVX-512
 * kernel; with OpenBLAS up to its choice of kernel by matrix size,
 * ~1e-5 for tiny matrices).
 *
 * opts.n_threads threads share the work (the matmuls are split by
 * output columns, so results do not depend on the thread count). One
 * qk_forward is used by one thread at a time. qk_forward_run sets
 * OpenBLAS's process-wide thread count to 1; code that wants OpenBLAS's own
 * threading sets it back.
 */
#ifndef QUANTKIT_FORWARD_H
#define QUANTKIT_FORWARD_H

#include "quantkit/common.h"
#include "quantkit/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qk_forward_opts {
    int n_threads;       /* <= 0: all CPUs */
    int64_t max_tokens;  /* most tokens per call (n_seq * n_ctx); sizes the buffers; <= 0: the model's n_ctx */
    int64_t cache_bytes; /* when the whole model dequantized to floats fits in this many bytes, it is
                          * kept across calls (fast for small models on many chunks); 0: 256 MiB;
                          * < 0: never cache, dequantize each layer on every call */
    int emulate_llamacpp; /* round like llama.cpp's CPU backend: activations entering a matmul with a
                           * quantized weight to its dot-product type (Q8_0 for 32-blocks, Q8_K for
                           * 256-blocks), with F16/BF16 weights to F16/BF16, and q, k, v and the
                           * attention probabilities to F16 (its default F16 KV cache) */
} qk_forward_opts;

/* Which linear layer a hook sees. */
enum {
    QK_LIN_Q, QK_LIN_K, QK_LIN_V, QK_LIN_O, QK_LIN_GATE, QK_LIN_UP, QK_LIN_DOWN, QK_LIN_OUTPUT, QK_LIN_COUNT
};

/* Called for every linear layer of every layer, in execution order, with
 * the input activations x [n_tokens][n_in] (row-major, one token per row)
 * just before the matmul (y == NULL), and again with the output
 * y [n_tokens][n_out] just after it (the hook may modify y). Q, K and V see
 * the same x; rows are sequence-major (row s*n_ctx + i). Layer is -1 for the
 * output projection, whose rows are only the scored positions (pos >=
 * first_logit of each sequence, in order) and whose weight is token_embd
 * when the embeddings are tied. A non-zero return aborts the pass with that
 * code. */
typedef struct qk_linear_event {
    int layer;
    int kind;                       /* QK_LIN_* */
    const qk_model_tensor *weight;  /* the model tensor (canonical name) */
    const float *x;
    int64_t n_tokens, n_in;
    float *y;
    int64_t n_out;
} qk_linear_event;
typedef int (*qk_linear_hook)(void *ctx, const qk_linear_event *ev);

typedef struct qk_forward qk_forward;
/* The model must outlive the forward pass. o may be NULL (defaults). Fails
 * with QK_EUNSUPPORTED when a tensor's type cannot be decoded yet, and with
 * QK_EFORMAT when a tensor's shape does not match the configuration. */
int qk_forward_new(qk_forward **out, const qk_model *m, const qk_forward_opts *o);
void qk_forward_free(qk_forward *f);
void qk_forward_set_hook(qk_forward *f, qk_linear_hook fn, void *ctx);

/* Replace the weights of one tensor for subsequent passes with dequantized
 * floats w [rows][ne0] (copied), e.g. a quantized layer during sequential
 * GPTQ; NULL restores the model's own weights. Any model tensor may be
 * replaced (norms too); token_embd.weight also replaces a tied output.
 * QK_ENOTFOUND for a name the model does not have. */
int qk_forward_override_weight(qk_forward *f, const char *name, const float *w);

/* Run n_seq independent sequences of n_ctx tokens each (tokens[s*n_ctx + i]).
 * For every sequence and every position whose index is in
 * [first_logit, n_ctx), the logits (n_vocab floats) are passed to
 * on_logits(ctx, seq, pos, logits), in order; pass first_logit = n_ctx to
 * skip the output projection entirely (calibration; on_logits may then be
 * NULL). A non-zero return from on_logits or a hook ends the pass with that
 * value. QK_EINVAL for n_seq * n_ctx > max_tokens, an empty call, token ids
 * outside the vocabulary or first_logit outside [0, n_ctx]. The logits of
 * all scored positions are held at once (n_scored * n_vocab floats). */
typedef int (*qk_logits_fn)(void *ctx, int64_t seq, int64_t pos, const float *logits);
int qk_forward_run(qk_forward *f, const int32_t *tokens, int64_t n_seq, int64_t n_ctx, int64_t first_logit,
                   qk_logits_fn on_logits, void *ctx);


/* ---- Layer-major passes: the hidden states of many windows (more than one
 * call holds) carried through the model one layer at a time, e.g. by
 * calibration and sequential GPTQ, which then need one layer's statistics
 * at a time. x is [n_tokens][n_embd] floats, one token per row, windows of
 * n_ctx tokens each starting at position 0. Chaining qk_forward_embed, every
 * qk_forward_layer in order and qk_forward_final gives bit-identical logits
 * to qk_forward_run on the same windows and batch; hooks fire as there. */

/* x [n_tokens][n_embd] = the embeddings of tokens (any n_tokens; QK_EINVAL
 * for ids outside the vocabulary). */
int qk_forward_embed(qk_forward *f, const int32_t *tokens, int64_t n_tokens, float *x);

/* Parts of a layer for qk_forward_layer. */
enum { QK_FORWARD_ATTN = 1, QK_FORWARD_FFN = 2, QK_FORWARD_BLOCK = 3 };
/* Run layer `layer` on n_seq windows of n_ctx tokens (n_seq * n_ctx <=
 * max_tokens), x [n_seq*n_ctx][n_embd] in place: QK_FORWARD_ATTN adds the
 * attention block, QK_FORWARD_FFN the feed-forward block (alone: x must be
 * the residual after this layer's attention), QK_FORWARD_BLOCK both. A
 * non-zero return from a hook ends the call with that value and leaves x
 * unchanged. */
int qk_forward_layer(qk_forward *f, int64_t layer, int parts, float *x, int64_t n_seq, int64_t n_ctx);

/* The end of a part of layer `layer` from that part's last input: x += in
 * W^T with W attn_output (kind QK_LIN_O, in = the attention output
 * [n_seq*n_ctx][n_head*head_dim]) or ffn_down (QK_LIN_DOWN, in = the SwiGLU
 * output [..][n_ff]), as seen by a hook just before that matmul. Given the
 * same in, x comes out bit-identical to qk_forward_layer's ATTN or FFN part
 * (its hooks fire for that one linear layer). Lets a caller that kept the
 * input skip recomputing the part. */
int qk_forward_layer_tail(qk_forward *f, int64_t layer, int kind, const float *in, float *x, int64_t n_seq,
                          int64_t n_ctx);

/* The output projection of the final hidden states x [n_seq*n_ctx][n_embd]
 * (after the last layer): on_logits for positions [first_logit, n_ctx) of
 * every window, as qk_forward_run (first_logit < n_ctx). */
int qk_forward_final(qk_forward *f, const float *x, int64_t n_seq, int64_t n_ctx, int64_t first_logit,
                     qk_logits_fn on_logits, void *ctx);

/* Most tokens per call (opts.max_tokens after defaults). */
int64_t qk_forward_max_tokens(const qk_forward *f);

#ifdef __cplusplus
}
#endif
#endif
