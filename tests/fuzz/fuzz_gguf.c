/* libFuzzer target: GGUF reader (header, metadata, tensor infos, data
 * bounds), the GGUF vocabulary reader, qk_model over a GGUF (row decoding
 * of every ggml type quantkit knows), and the writer round trip:
 * open -> qk_gguf_writer -> open gives the same KVs and tensors. */
#include <string.h>

#include "fz_util.h"
#include "quantkit/gguf.h"
#include "quantkit/model.h"
#include "quantkit/vocab.h"

static void exercise(const qk_gguf *g)
{
    const uint64_t fsize = qk_gguf_file_size(g);
    for (int64_t i = 0; i < qk_gguf_n_kv(g); i++) {
        const qk_gguf_kv *kv = qk_gguf_kv_at(g, i);
        FZ_CHECK(kv && kv->key.s && kv->key.s[kv->key.len] == 0, "KV %lld", (long long)i);
        if (strlen(kv->key.s) == kv->key.len)
            FZ_CHECK(qk_gguf_find_kv(g, kv->key.s) == kv, "find_kv('%s')", kv->key.s);
        uint32_t u32;
        uint64_t u64;
        float f;
        double d;
        int b;
        const char *s;
        (void)qk_gguf_get_u32(g, kv->key.s, &u32);
        (void)qk_gguf_get_uint(g, kv->key.s, &u64);
        (void)qk_gguf_get_f32(g, kv->key.s, &f);
        (void)qk_gguf_get_float(g, kv->key.s, &d);
        (void)qk_gguf_get_bool(g, kv->key.s, &b);
        if (qk_gguf_get_str(g, kv->key.s, &s) == 0)
            FZ_CHECK(s, "string value NULL");
    }
    FZ_CHECK(qk_gguf_data_offset(g) % qk_gguf_alignment(g) == 0, "data offset not aligned");
    for (int64_t i = 0; i < qk_gguf_n_tensors(g); i++) {
        const qk_gguf_tensor *t = qk_gguf_tensor_at(g, i);
        FZ_CHECK(qk_gguf_find_tensor(g, t->name) == t, "find_tensor('%s')", t->name);
        uint64_t nb = 0;
        FZ_OK(qk_type_tensor_bytes(t->type, t->ne, t->n_dims, &nb));
        FZ_CHECK(nb == t->nbytes, "nbytes");
        const uint8_t *base = qk_gguf_map(g)->data;
        FZ_CHECK(t->nbytes == 0 || (t->data >= base && (uint64_t)(t->data - base) + t->nbytes <= fsize),
                 "tensor '%s' data out of the file", t->name);
        /* touch the first and last byte so ASan sees an out-of-map pointer */
        if (t->nbytes)
            FZ_CHECK((t->data[0] | t->data[t->nbytes - 1]) >= 0, "read");
    }
    (void)qk_gguf_verify_checksums(g);
}

static int is_checksum_key(const qk_gguf_kv *kv)
{
    return kv->key.len == strlen(QK_GGUF_CHECKSUM_KEY) && !memcmp(kv->key.s, QK_GGUF_CHECKSUM_KEY, (size_t)kv->key.len);
}

/* open -> write -> open: the same KVs (the writer owns the checksum key)
 * and the same tensors. */
static void roundtrip(const qk_gguf *g)
{
    qk_gguf_writer *w = NULL;
    qk_afile *f = NULL;
    qk_gguf *g2 = NULL;
    FZ_OK(qk_gguf_writer_new(&w, qk_gguf_alignment(g)));
    for (int64_t i = 0; i < qk_gguf_n_kv(g); i++)
        FZ_OK(qk_gguf_writer_set_kv(w, qk_gguf_kv_at(g, i)));
    for (int64_t i = 0; i < qk_gguf_n_tensors(g); i++) {
        const qk_gguf_tensor *t = qk_gguf_tensor_at(g, i);
        FZ_OK(qk_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne));
    }
    const char *path = fz_path("rt.gguf");
    FZ_OK(qk_afile_open(&f, path));
    FZ_OK(qk_gguf_writer_begin(w, f));
    for (int64_t i = 0; i < qk_gguf_n_tensors(g); i++) {
        const qk_gguf_tensor *t = qk_gguf_tensor_at(g, i);
        FZ_OK(qk_gguf_writer_write(w, t->data, (size_t)t->nbytes));
        FZ_OK(qk_gguf_writer_end_tensor(w));
    }
    FZ_OK(qk_gguf_writer_finish(w));
    FZ_OK(qk_afile_commit(f));
    qk_gguf_writer_free(w);

    FZ_OK(qk_gguf_open(&g2, path));
    /* Same set of keys (positions may move: a non-default alignment puts
     * general.alignment first), the checksum key aside. */
    int64_t n1 = 0, n2 = 0;
    for (int64_t i = 0; i < qk_gguf_n_kv(g); i++) {
        const qk_gguf_kv *a = qk_gguf_kv_at(g, i);
        if (is_checksum_key(a))
            continue;
        n1++;
        const qk_gguf_kv *b = NULL;
        for (int64_t k = 0; k < qk_gguf_n_kv(g2) && !b; k++) {
            const qk_gguf_kv *c = qk_gguf_kv_at(g2, k);
            if (c->key.len == a->key.len && !memcmp(c->key.s, a->key.s, (size_t)a->key.len))
                b = c;
        }
        FZ_CHECK(b && fz_kv_equal(a, b), "KV %lld '%s' differs after the round trip", (long long)i, a->key.s);
    }
    for (int64_t k = 0; k < qk_gguf_n_kv(g2); k++)
        n2 += !is_checksum_key(qk_gguf_kv_at(g2, k));
    FZ_CHECK(n1 == n2, "%lld KVs -> %lld", (long long)n1, (long long)n2);
    FZ_CHECK(qk_gguf_n_tensors(g2) == qk_gguf_n_tensors(g), "tensor count");
    for (int64_t i = 0; i < qk_gguf_n_tensors(g); i++) {
        const qk_gguf_tensor *a = qk_gguf_tensor_at(g, i), *b = qk_gguf_tensor_at(g2, i);
        FZ_CHECK(!strcmp(a->name, b->name) && a->type == b->type && a->n_dims == b->n_dims &&
                     !memcmp(a->ne, b->ne, sizeof a->ne) && a->nbytes == b->nbytes &&
                     (a->nbytes == 0 || !memcmp(a->data, b->data, (size_t)a->nbytes)),
                 "tensor %lld '%s' differs after the round trip", (long long)i, a->name);
    }
    if (qk_gguf_n_tensors(g))
        FZ_OK(qk_gguf_verify_checksums(g2));
    qk_gguf_close(g2);
}

/* A GGUF that is a llama model: decode every row of every tensor. */
static void model(const char *path)
{
    qk_model *m = NULL;
    qk_model_opts o = {.no_vocab = 1};
    if (qk_model_open(&m, path, &o))
        return;
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
    }
    free(row);
    qk_model_close(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_reset();
    const char *path = fz_write("in.gguf", data, size);
    qk_gguf *g = NULL;
    if (qk_gguf_open(&g, path) == 0) {
        exercise(g);
        roundtrip(g);
        qk_vocab *v = NULL;
        if (qk_vocab_from_gguf(&v, g) == 0) {
            fz_vocab_check(v, NULL, 0);
            qk_vocab_free(v);
        }
        qk_gguf_close(g);
        model(path);
    }
    qk_error_clear();
    return 0;
}
