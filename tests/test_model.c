/* Tests of convert/model.c: one view of every checkpoint layout. */
#include "qk_test.h"

#include <math.h>

#include "quantkit/model.h"

#define BIN "models/stories260K/stories260K.bin"
#define TOK "models/stories260K/tok512.bin"

START_TEST(test_model_rope_perm_inverse)
{
    for (int64_t heads = 1; heads <= 8; heads *= 2)
        for (int64_t hd = 2; hd <= 16; hd += 2) {
            int64_t rows = heads * hd;
            for (int64_t r = 0; r < rows; r++) {
                int64_t h = qk_rope_perm_row(r, rows, heads);
                ck_assert_int_ge(h, 0);
                ck_assert_int_lt(h, rows);
                ck_assert_int_eq(qk_rope_unperm_row(h, rows, heads), r);
            }
        }
    /* GGUF row h*hd + 2i + j = HF row h*hd + j*hd/2 + i (FORMATS.md) */
    ck_assert_int_eq(qk_rope_perm_row(1, 8, 1), 4);
    ck_assert_int_eq(qk_rope_perm_row(2, 8, 1), 1);
    ck_assert_int_eq(qk_rope_perm_row(8 + 3, 16, 2), 8 + 5);
}
END_TEST

START_TEST(test_model_llama2c_config_and_tensors)
{
    QK_REQUIRE_DATA(bin, BIN);
    QK_REQUIRE_DATA(tok, TOK);
    qk_model *m;
    qk_model_opts o = {.vocab_path = tok};
    ck_assert_msg(qk_model_open(&m, bin, &o) == 0, "%s", qk_errmsg());
    const qk_model_config *c = qk_model_cfg(m);
    ck_assert_int_eq(c->n_embd, 64);
    ck_assert_int_eq(c->n_ff, 172);
    ck_assert_int_eq(c->n_layer, 5);
    ck_assert_int_eq(c->n_head, 8);
    ck_assert_int_eq(c->n_head_kv, 4);
    ck_assert_int_eq(c->head_dim, 8);
    ck_assert_int_eq(c->n_vocab, 512);
    ck_assert_int_eq(c->tied_embeddings, 1);
    ck_assert_int_eq(qk_model_n_tensors(m), 1 + 9 * 5 + 1);
    ck_assert_ptr_null(qk_model_find(m, "output.weight"));
    const qk_model_tensor *k = qk_model_find(m, "blk.2.attn_k.weight");
    ck_assert_ptr_nonnull(k);
    ck_assert_int_eq(k->ne[0], 64);
    ck_assert_int_eq(k->ne[1], 32);
    ck_assert_int_eq(qk_model_vocab(m)->n_tokens, 512);
    qk_model_close(m);
}
END_TEST

/* Every tensor of two views of the same weights is bit-identical row by row. */
static void assert_same_model(qk_model *a, qk_model *b, double tol)
{
    /* b may carry an explicit output.weight where a is tied */
    ck_assert_int_ge(qk_model_n_tensors(b), qk_model_n_tensors(a));
    for (int64_t i = 0; i < qk_model_n_tensors(a); i++) {
        const qk_model_tensor *ta = qk_model_tensor_at(a, i);
        const qk_model_tensor *tb = qk_model_find(b, ta->name);
        ck_assert_msg(tb != NULL, "%s missing", ta->name);
        ck_assert_int_eq(ta->ne[0], tb->ne[0]);
        ck_assert_int_eq(ta->ne[1], tb->ne[1]);
        float *ra = malloc((size_t)ta->ne[0] * 4), *rb = malloc((size_t)ta->ne[0] * 4);
        for (int64_t r = 0; r < qk_model_tensor_rows(ta); r++) {
            ck_assert_int_eq(qk_model_row_f32(a, ta, r, ra), 0);
            ck_assert_int_eq(qk_model_row_f32(b, tb, r, rb), 0);
            for (int64_t j = 0; j < ta->ne[0]; j++) {
                if (tol == 0)
                    ck_assert_msg(memcmp(&ra[j], &rb[j], 4) == 0, "%s row %lld col %lld: %g vs %g", ta->name,
                                  (long long)r, (long long)j, ra[j], rb[j]);
                else
                    ck_assert_msg(fabs(ra[j] - rb[j]) <= tol * (fabs(ra[j]) + 1e-3), "%s row %lld: %g vs %g",
                                  ta->name, (long long)r, ra[j], rb[j]);
            }
        }
        free(ra);
        free(rb);
    }
}

START_TEST(test_model_hf_f32_equals_llama2c)
{
    QK_REQUIRE_DATA(bin, BIN);
    QK_REQUIRE_DATA(tok, TOK);
    QK_REQUIRE_DATA(st, "models/stories260K-hf/float32/model.safetensors");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", st);
    *strrchr(dir, '/') = 0;
    qk_model *a, *b;
    qk_model_opts o = {.vocab_path = tok};
    ck_assert_msg(qk_model_open(&a, bin, &o) == 0, "%s", qk_errmsg());
    ck_assert_msg(qk_model_open(&b, dir, &o) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(qk_model_source_kind(b), QK_SRC_SAFETENSORS);
    ck_assert_ptr_nonnull(qk_model_find(b, "blk.0.attn_q.weight"));
    ck_assert_int_gt(qk_model_find(b, "blk.0.attn_q.weight")->perm_heads, 0);
    assert_same_model(a, b, 0); /* the q/k permutation is exactly right */
    qk_model_close(a);
    qk_model_close(b);
}
END_TEST

START_TEST(test_model_hf_bf16_close_to_f32)
{
    QK_REQUIRE_DATA(bin, BIN);
    QK_REQUIRE_DATA(st, "models/stories260K-hf/bfloat16/model.safetensors");
    qk_model *a, *b;
    qk_model_opts o = {.no_vocab = 1};
    ck_assert_msg(qk_model_open(&a, bin, &o) == 0, "%s", qk_errmsg());
    ck_assert_msg(qk_model_open(&b, st, &o) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(qk_model_find(b, "token_embd.weight")->type, QK_TYPE_BF16);
    assert_same_model(a, b, 1.0 / 128);
    qk_model_close(a);
    qk_model_close(b);
}
END_TEST

START_TEST(test_model_gguf_equals_llama2c)
{
    QK_REQUIRE_DATA(bin, BIN);
    QK_REQUIRE_DATA(gg, "models/stories260K/stories260K.gguf");
    qk_model *a, *b;
    qk_model_opts o = {.no_vocab = 1};
    ck_assert_msg(qk_model_open(&a, bin, &o) == 0, "%s", qk_errmsg());
    ck_assert_msg(qk_model_open(&b, gg, NULL) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(qk_model_source_kind(b), QK_SRC_GGUF);
    ck_assert_int_eq(qk_model_vocab(b)->n_tokens, 512);
    assert_same_model(a, b, 0);
    qk_model_close(a);
    qk_model_close(b);
}
END_TEST

START_TEST(test_model_pad_ffn_is_zero_padding)
{
    QK_REQUIRE_DATA(bin, BIN);
    qk_model *a, *b;
    qk_model_opts o = {.no_vocab = 1}, p = {.no_vocab = 1, .pad_ffn = 32};
    ck_assert_int_eq(qk_model_open(&a, bin, &o), 0);
    ck_assert_int_eq(qk_model_open(&b, bin, &p), 0);
    ck_assert_int_eq(qk_model_cfg(b)->n_ff, 192);
    ck_assert_int_eq(qk_model_cfg(b)->n_ff_orig, 172);
    const qk_model_tensor *ga = qk_model_find(a, "blk.1.ffn_gate.weight"), *gb = qk_model_find(b, "blk.1.ffn_gate.weight");
    const qk_model_tensor *da = qk_model_find(a, "blk.1.ffn_down.weight"), *db = qk_model_find(b, "blk.1.ffn_down.weight");
    ck_assert_int_eq(gb->ne[1], 192);
    ck_assert_int_eq(db->ne[0], 192);
    float ra[192], rb[192];
    for (int64_t r = 0; r < 192; r++) {
        ck_assert_int_eq(qk_model_row_f32(b, gb, r, rb), 0);
        if (r < 172) {
            qk_model_row_f32(a, ga, r, ra);
            ck_assert_int_eq(memcmp(ra, rb, 64 * 4), 0);
            ck_assert_ptr_nonnull(qk_model_row_raw(gb, r));
        } else {
            for (int j = 0; j < 64; j++)
                ck_assert(rb[j] == 0.0f);
            ck_assert_ptr_null(qk_model_row_raw(gb, r));
        }
    }
    for (int64_t r = 0; r < 64; r++) {
        qk_model_row_f32(a, da, r, ra);
        qk_model_row_f32(b, db, r, rb);
        ck_assert_int_eq(memcmp(ra, rb, 172 * 4), 0);
        for (int j = 172; j < 192; j++)
            ck_assert(rb[j] == 0.0f);
    }
    qk_model_close(a);
    qk_model_close(b);
}
END_TEST

START_TEST(test_model_mistral_config_maps)
{
    const char *cfg = "{\n"
                      "  \"architectures\": [\"MistralForCausalLM\"],\n"
                      "  \"attention_dropout\": 0.0, \"bos_token_id\": 1, \"eos_token_id\": 2,\n"
                      "  \"head_dim\": 128, \"hidden_act\": \"silu\", \"hidden_size\": 4096,\n"
                      "  \"initializer_range\": 0.02, \"intermediate_size\": 14336,\n"
                      "  \"max_position_embeddings\": 32768, \"model_type\": \"mistral\",\n"
                      "  \"num_attention_heads\": 32, \"num_hidden_layers\": 32, \"num_key_value_heads\": 8,\n"
                      "  \"rms_norm_eps\": 1e-05, \"rope_theta\": 1000000.0, \"sliding_window\": null,\n"
                      "  \"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\",\n"
                      "  \"transformers_version\": \"4.42.0.dev0\", \"use_cache\": true, \"vocab_size\": 32768\n"
                      "}\n";
    const char *p = qk_test_tmp("config.json");
    qk_test_write_file(p, cfg, strlen(cfg));
    qk_model_config c;
    ck_assert_msg(qk_model_read_hf_config(&c, p) == 0, "%s", qk_errmsg());
    ck_assert_str_eq(c.arch, "llama");
    ck_assert_str_eq(c.hf_arch, "MistralForCausalLM");
    ck_assert_int_eq(c.n_embd, 4096);
    ck_assert_int_eq(c.n_layer, 32);
    ck_assert_int_eq(c.n_head, 32);
    ck_assert_int_eq(c.n_head_kv, 8);
    ck_assert_int_eq(c.head_dim, 128);
    ck_assert_int_eq(c.n_ff, 14336);
    ck_assert_int_eq(c.n_vocab, 32768);
    ck_assert_int_eq(c.n_ctx, 32768);
    ck_assert_int_eq(c.sliding_window, 0);
    ck_assert_int_eq(c.tied_embeddings, 0);
    ck_assert(c.rope_base == 1e6f);
    ck_assert(c.norm_eps == 1e-5f);
}
END_TEST

START_TEST(test_model_rejects_unsupported_arch)
{
    const char *cfg = "{\"architectures\": [\"GPT2LMHeadModel\"], \"hidden_size\": 8}";
    const char *p = qk_test_tmp("config.json");
    qk_test_write_file(p, cfg, strlen(cfg));
    qk_model_config c;
    ck_assert_int_eq(qk_model_read_hf_config(&c, p), QK_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "GPT2LMHeadModel"));
    const char *bad = "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8}";
    qk_test_write_file(p, bad, strlen(bad));
    ck_assert_int_eq(qk_model_read_hf_config(&c, p), QK_EFORMAT);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "num_hidden_layers"));
}
END_TEST

/* Found by fuzzing (tests/fuzz/cases/hf_config/rms-norm-eps-1e308.json): a
 * finite double beyond float range used to be stored as Inf. */
START_TEST(test_model_config_float_out_of_range)
{
    const char *cfg = "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"num_hidden_layers\": 1,"
                      " \"num_attention_heads\": 2, \"intermediate_size\": 8, \"vocab_size\": 4,"
                      " \"rms_norm_eps\": 1e308}";
    const char *p = qk_test_tmp("config.json");
    qk_test_write_file(p, cfg, strlen(cfg));
    qk_model_config c;
    ck_assert_int_eq(qk_model_read_hf_config(&c, p), QK_EFORMAT);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "rms_norm_eps"));
}
END_TEST

START_TEST(test_model_missing_tokenizer_is_an_error)
{
    QK_REQUIRE_DATA(st, "models/stories260K-hf/float32/model.safetensors");
    qk_model *m = NULL;
    int rc = qk_model_open(&m, st, NULL);
    ck_assert_int_eq(rc, QK_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "--vocab"));
    ck_assert_ptr_null(m);
}
END_TEST

Suite *qk_test_suite_model(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_model_rope_perm_inverse);
    tcase_add_test(tc, test_model_llama2c_config_and_tensors);
    tcase_add_test(tc, test_model_hf_f32_equals_llama2c);
    tcase_add_test(tc, test_model_hf_bf16_close_to_f32);
    tcase_add_test(tc, test_model_gguf_equals_llama2c);
    tcase_add_test(tc, test_model_pad_ffn_is_zero_padding);
    tcase_add_test(tc, test_model_mistral_config_maps);
    tcase_add_test(tc, test_model_rejects_unsupported_arch);
    tcase_add_test(tc, test_model_config_float_out_of_range);
    tcase_add_test(tc, test_model_missing_tokenizer_is_an_error);
    suite_add_tcase(s, tc);
    return s;
}
