/* libFuzzer target: safetensors reader (header length, UTF-8 and JSON
 * pre-checks, cJSON, entries, offsets, overlaps) and the writer round trip:
 * open -> qk_st_writer -> open gives the same metadata and tensors. */
#include <string.h>

#include "fz_util.h"
#include "quantkit/safetensors.h"

static void exercise(const qk_safetensors *st)
{
    const qk_mmap *m = qk_safetensors_map(st);
    for (int64_t i = 0; i < qk_safetensors_n_tensors(st); i++) {
        const qk_st_tensor *t = qk_safetensors_tensor_at(st, i);
        FZ_CHECK(qk_safetensors_find(st, t->name) == t, "find('%s')", t->name);
        uint64_t n = qk_st_dtype_size(t->dtype);
        for (int d = 0; d < t->n_dims; d++)
            n *= (uint64_t)t->shape[d];
        FZ_CHECK(n == t->nbytes, "nbytes");
        FZ_CHECK(t->offset + t->nbytes <= m->size && t->data == m->data + t->offset, "tensor '%s' out of the file",
                 t->name);
        if (i > 0) {
            const qk_st_tensor *p = qk_safetensors_tensor_at(st, i - 1);
            FZ_CHECK(p->offset <= t->offset, "tensors not in offset order");
        }
        if (t->nbytes)
            FZ_CHECK((t->data[0] | t->data[t->nbytes - 1]) >= 0, "read");
    }
    for (int64_t i = 0; i < qk_safetensors_n_meta(st); i++)
        FZ_CHECK(qk_safetensors_find_meta(st, qk_safetensors_meta_key(st, i)) == qk_safetensors_meta_value(st, i),
                 "find_meta");
}

static void roundtrip(const qk_safetensors *st)
{
    qk_st_writer *w = NULL;
    qk_afile *f = NULL;
    qk_safetensors *st2 = NULL;
    FZ_OK(qk_st_writer_new(&w));
    for (int64_t i = 0; i < qk_safetensors_n_meta(st); i++)
        FZ_OK(qk_st_writer_add_meta(w, qk_safetensors_meta_key(st, i), qk_safetensors_meta_value(st, i)));
    for (int64_t i = 0; i < qk_safetensors_n_tensors(st); i++) {
        const qk_st_tensor *t = qk_safetensors_tensor_at(st, i);
        FZ_OK(qk_st_writer_add_tensor(w, t->name, t->dtype, t->n_dims, t->shape));
    }
    const char *path = fz_path("rt.safetensors");
    FZ_OK(qk_afile_open(&f, path));
    FZ_OK(qk_st_writer_begin(w, f));
    for (int64_t i = 0; i < qk_safetensors_n_tensors(st); i++) {
        const qk_st_tensor *t = qk_safetensors_tensor_at(st, i);
        FZ_OK(qk_st_writer_write(w, t->data, (size_t)t->nbytes));
    }
    FZ_OK(qk_st_writer_finish(w));
    FZ_OK(qk_afile_commit(f));
    qk_st_writer_free(w);

    FZ_OK(qk_safetensors_open(&st2, path));
    FZ_CHECK(qk_safetensors_n_meta(st2) == qk_safetensors_n_meta(st), "metadata count");
    for (int64_t i = 0; i < qk_safetensors_n_meta(st); i++) {
        const char *v = qk_safetensors_find_meta(st2, qk_safetensors_meta_key(st, i));
        FZ_CHECK(v && !strcmp(v, qk_safetensors_meta_value(st, i)), "metadata '%s'", qk_safetensors_meta_key(st, i));
    }
    FZ_CHECK(qk_safetensors_n_tensors(st2) == qk_safetensors_n_tensors(st), "tensor count");
    for (int64_t i = 0; i < qk_safetensors_n_tensors(st); i++) {
        const qk_st_tensor *a = qk_safetensors_tensor_at(st, i), *b = qk_safetensors_find(st2, a->name);
        FZ_CHECK(b && a->dtype == b->dtype && a->n_dims == b->n_dims &&
                     !memcmp(a->shape, b->shape, (size_t)a->n_dims * sizeof *a->shape) && a->nbytes == b->nbytes &&
                     (a->nbytes == 0 || !memcmp(a->data, b->data, (size_t)a->nbytes)),
                 "tensor '%s' differs after the round trip", a->name);
    }
    qk_safetensors_close(st2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_reset();
    const char *path = fz_write("in.safetensors", data, size);
    qk_safetensors *st = NULL;
    if (qk_safetensors_open(&st, path) == 0) {
        exercise(st);
        roundtrip(st);
        qk_safetensors_close(st);
    }
    qk_error_clear();
    return 0;
}
