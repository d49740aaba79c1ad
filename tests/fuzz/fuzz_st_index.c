/* libFuzzer target: sharded safetensors (model.safetensors.index.json and
 * its shards) through qk_st_set_open on a directory, and the index writer
 * round trip: the set -> qk_st_write_index -> the same set.
 *
 * Input: index JSON FZ_SEP a.safetensors FZ_SEP b.safetensors FZ_SEP
 * c.safetensors (an empty first part: no index, so the directory's single
 * .safetensors file is used). */
#include <string.h>

#include "fz_util.h"
#include "quantkit/safetensors.h"

static const char *const k_names[3] = {"a.safetensors", "b.safetensors", "c.safetensors"};

static void roundtrip(const qk_st_set *s)
{
    int64_t n = qk_st_set_n_tensors(s);
    const char **names = calloc((size_t)n + 1, sizeof *names), **shard = calloc((size_t)n + 1, sizeof *shard);
    FZ_CHECK(names && shard, "calloc");
    for (int64_t i = 0; i < n; i++) {
        const qk_st_tensor *t = qk_st_set_tensor_at(s, i);
        FZ_CHECK(qk_st_set_find(s, t->name) == t, "find('%s')", t->name);
        const qk_safetensors *sh = qk_st_set_shard_of(s, i);
        FZ_CHECK(qk_safetensors_find(sh, t->name) == t, "tensor '%s' not in its shard", t->name);
        names[i] = t->name;
        const char *p = strrchr(qk_safetensors_path(sh), '/');
        shard[i] = p ? p + 1 : qk_safetensors_path(sh);
    }
    if (n == 0) {
        free(names);
        free(shard);
        return; /* an index with no entries is refused: nothing to write */
    }
    const char *path = fz_path("rt.index.json");
    FZ_OK(qk_st_write_index(path, 0, names, shard, n));
    qk_st_set *s2 = NULL;
    FZ_OK(qk_st_set_open(&s2, path));
    FZ_CHECK(qk_st_set_n_tensors(s2) == n, "tensor count");
    for (int64_t i = 0; i < n; i++) {
        const qk_st_tensor *a = qk_st_set_tensor_at(s, i), *b = qk_st_set_find(s2, a->name);
        FZ_CHECK(b && a->dtype == b->dtype && a->nbytes == b->nbytes && a->offset == b->offset,
                 "tensor '%s' differs after the round trip", a->name);
    }
    qk_st_set_close(s2);
    free(names);
    free(shard);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_part parts[4];
    fz_reset();
    size_t np = fz_split(data, size, parts, 4);
    if (parts[0].n)
        fz_write("model.safetensors.index.json", parts[0].p, parts[0].n);
    for (size_t i = 1; i < np; i++)
        fz_write(k_names[i - 1], parts[i].p, parts[i].n);
    qk_st_set *s = NULL;
    if (qk_st_set_open(&s, fz_dir()) == 0) {
        roundtrip(s);
        qk_st_set_close(s);
    }
    qk_error_clear();
    return 0;
}
