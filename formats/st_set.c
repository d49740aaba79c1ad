/* A checkpoint as one safetensors file or several shards behind
 * model.safetensors.index.json:
 *   {"metadata": {"total_size": N}, "weight_map": {"<tensor>": "<shard file>", ...}}
 *
 * The set's tensors are exactly the weight_map entries, in shard order
 * (shard file names sorted) and within a shard in data-offset order. Each
 * shard is opened once; every indexed tensor must be in its shard, and a
 * tensor the index assigns to one shard must not be stored in another.
 * Tensors a shard holds that the index does not name are left out.
 */
#include "quantkit/safetensors.h"

#include <assert.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "st_internal.h"

#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"

struct qk_st_set {
    qk_safetensors **shards;       /* [n_shards] */
    int64_t n_shards;
    const qk_st_tensor **tensors;  /* [n]: into the shards */
    int64_t *shard_of;             /* [n]: index into shards */
    int64_t n;
    const qk_st_tensor **by_name;  /* [n] sorted by name */
};

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const qk_st_tensor *const *)a)->name, (*(const qk_st_tensor *const *)b)->name);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int is_regular(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Allocates the tensor arrays once every shard is open, n entries. */
static int set_alloc(qk_st_set *s, int64_t n, const char *path)
{
    s->tensors = calloc((size_t)n + 1, sizeof *s->tensors);
    s->shard_of = calloc((size_t)n + 1, sizeof *s->shard_of);
    s->by_name = calloc((size_t)n + 1, sizeof *s->by_name);
    if (!s->tensors || !s->shard_of || !s->by_name)
        return qk_error(QK_ENOMEM, "%s: out of memory for %" PRId64 " tensors", path, n);
    return 0;
}

static void set_sort_names(qk_st_set *s)
{
    memcpy(s->by_name, s->tensors, (size_t)s->n * sizeof *s->by_name);
    qsort(s->by_name, (size_t)s->n, sizeof *s->by_name, cmp_tensor_name);
}

static int open_single(qk_st_set *s, const char *path)
{
    s->shards = calloc(1, sizeof *s->shards);
    if (!s->shards)
        return qk_error(QK_ENOMEM, "%s: out of memory", path);
    int rc = qk_safetensors_open(&s->shards[0], path);
    if (rc < 0)
        return rc;
    s->n_shards = 1;
    int64_t n = qk_safetensors_n_tensors(s->shards[0]);
    if ((rc = set_alloc(s, n, path)) < 0)
        return rc;
    for (int64_t i = 0; i < n; i++) {
        s->tensors[i] = qk_safetensors_tensor_at(s->shards[0], i);
        s->shard_of[i] = 0;
    }
    s->n = n;
    set_sort_names(s);
    return 0;
}

/* One weight_map entry. */
typedef struct st_entry {
    const char *name;  /* tensor (owned by the cJSON tree) */
    const char *shard; /* file name (owned by the cJSON tree) */
    int64_t shard_idx;
    int found;
} st_entry;

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

/* A shard file name must stay inside the index's directory. */
static int shard_name_ok(const char *s)
{
    return *s && !strchr(s, '/') && !strchr(s, '\\') && !strstr(s, "..");
}

static int open_index(qk_st_set *s, const char *path)
{
    int rc = 0;
    char *text = NULL, *dir = NULL, *shard_path = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    st_entry *entries = NULL;
    const char **shard_names = NULL;
    char nm[QK_ST_SHOW_CAP], nm2[QK_ST_SHOW_CAP], nm3[QK_ST_SHOW_CAP];

    if ((rc = qk_read_file(&text, &len, path, QK_ST_MAX_HEADER)) < 0)
        goto done;
    if ((rc = qk_st_json_precheck(path, "index JSON", (const uint8_t *)text, len)) < 0)
        goto done;
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);
    if (!root) {
        size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        rc = qk_error(QK_EFORMAT, "%s: index is not valid JSON (error near byte %zu of %zu)", path, at, len);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        rc = qk_error(QK_EFORMAT, "%s: index JSON is not an object", path);
        goto done;
    }
    const cJSON *wm = NULL, *c;
    cJSON_ArrayForEach(c, root)
    {
        if (strcmp(c->string, "weight_map") != 0)
            continue;
        if (wm) {
            rc = qk_error(QK_EFORMAT, "%s: index has two weight_map entries", path);
            goto done;
        }
        wm = c;
    }
    if (!wm || !cJSON_IsObject(wm)) {
        rc = qk_error(QK_EFORMAT, "%s: index has no weight_map object", path);
        goto done;
    }
    int64_t n = cJSON_GetArraySize(wm);
    if (n == 0) {
        rc = qk_error(QK_EFORMAT, "%s: index weight_map is empty", path);
        goto done;
    }
    entries = calloc((size_t)n, sizeof *entries);
    shard_names = calloc((size_t)n, sizeof *shard_names);
    if (!entries || !shard_names) {
        rc = qk_error(QK_ENOMEM, "%s: out of memory for %" PRId64 " index entries", path, n);
        goto done;
    }
    int64_t k = 0;
    cJSON_ArrayForEach(c, wm)
    {
        qk_st_show(nm, sizeof nm, c->string);
        if (!cJSON_IsString(c)) {
            rc = qk_error(QK_EFORMAT, "%s: weight_map value for '%s' is not a string", path, nm);
            goto done;
        }
        if (!shard_name_ok(c->valuestring)) {
            rc = qk_error(QK_EFORMAT,
                          "%s: weight_map puts '%s' in '%s'; shard names must be plain file names in the index's "
                          "directory (no '/', '\\' or '..')",
                          path, nm, qk_st_show(nm2, sizeof nm2, c->valuestring));
            goto done;
        }
        entries[k].name = c->string;
        entries[k].shard = c->valuestring;
        shard_names[k] = c->valuestring;
        k++;
    }

    qsort(entries, (size_t)n, sizeof *entries, cmp_entry);
    for (int64_t i = 1; i < n; i++)
        if (!strcmp(entries[i].name, entries[i - 1].name)) {
            rc = qk_error(QK_EFORMAT, "%s: tensor '%s' appears twice in weight_map", path,
                          qk_st_show(nm, sizeof nm, entries[i].name));
            goto done;
        }

    /* Distinct shard names, sorted: shard order is file-name order. */
    qsort(shard_names, (size_t)n, sizeof *shard_names, cmp_str);
    int64_t n_shards = 0;
    for (int64_t i = 0; i < n; i++)
        if (i == 0 || strcmp(shard_names[i], shard_names[n_shards - 1]) != 0)
            shard_names[n_shards++] = shard_names[i];
    for (int64_t i = 0; i < n; i++) {
        const char **hit = bsearch(&entries[i].shard, shard_names, (size_t)n_shards, sizeof *shard_names, cmp_str);
        assert(hit);
        entries[i].shard_idx = hit - shard_names;
    }

    const char *slash = strrchr(path, '/');
    dir = slash ? strndup(path, (size_t)(slash - path + (slash == path))) : strdup(".");
    s->shards = calloc((size_t)n_shards, sizeof *s->shards);
    if (!dir || !s->shards) {
        rc = qk_error(QK_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int64_t j = 0; j < n_shards; j++) {
        free(shard_path);
        if (!(shard_path = qk_path_join(dir, shard_names[j]))) {
            rc = qk_error(QK_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        if (!qk_file_exists(shard_path)) {
            rc = qk_error(QK_ENOTFOUND, "%s: shard '%s' named in weight_map does not exist (looked for %s)", path,
                          qk_st_show(nm, sizeof nm, shard_names[j]), qk_st_show(nm2, sizeof nm2, shard_path));
            goto done;
        }
        if ((rc = qk_safetensors_open(&s->shards[j], shard_path)) < 0)
            goto done;
        s->n_shards = j + 1;
    }

    if ((rc = set_alloc(s, n, path)) < 0)
        goto done;
    for (int64_t j = 0; j < n_shards; j++) {
        const qk_safetensors *sh = s->shards[j];
        for (int64_t i = 0; i < qk_safetensors_n_tensors(sh); i++) {
            const qk_st_tensor *t = qk_safetensors_tensor_at(sh, i);
            st_entry key = {.name = t->name};
            st_entry *e = bsearch(&key, entries, (size_t)n, sizeof *entries, cmp_entry);
            if (!e)
                continue;
            if (e->shard_idx != j) {
                rc = qk_error(QK_EFORMAT, "%s: tensor '%s' is stored in %s but weight_map assigns it to %s", path,
                              qk_st_show(nm, sizeof nm, t->name), qk_st_show(nm2, sizeof nm2, shard_names[j]),
                              qk_st_show(nm3, sizeof nm3, e->shard));
                goto done;
            }
            e->found = 1;
            s->tensors[s->n] = t;
            s->shard_of[s->n] = j;
            s->n++;
        }
    }
    for (int64_t i = 0; i < n; i++)
        if (!entries[i].found) {
            rc = qk_error(QK_EFORMAT, "%s: weight_map puts tensor '%s' in %s, but that shard does not hold it",
                          path, qk_st_show(nm, sizeof nm, entries[i].name), qk_st_show(nm2, sizeof nm2, entries[i].shard));
            goto done;
        }
    assert(s->n == n);
    set_sort_names(s);
done:
    free(shard_path);
    free(dir);
    free(shard_names);
    free(entries);
    cJSON_Delete(root);
    free(text);
    return rc;
}

/* A directory: the index if present, else model.safetensors, else its only
 * *.safetensors file. Sets *out to the chosen path (heap) and *is_index. */
static int pick_in_dir(char **out, int *is_index, const char *path)
{
    int rc = 0;
    DIR *d = NULL;
    char **names = NULL, *cand = NULL;
    size_t n = 0, cap = 0;
    *out = NULL;
    *is_index = 0;

    if (!(cand = qk_path_join(path, ST_INDEX_NAME)))
        goto oom;
    if (is_regular(cand)) {
        *out = cand;
        *is_index = 1;
        return 0;
    }
    free(cand);
    if (!(cand = qk_path_join(path, ST_SINGLE_NAME)))
        goto oom;
    if (is_regular(cand)) {
        *out = cand;
        return 0;
    }
    free(cand);
    cand = NULL;

    if (!(d = opendir(path))) {
        rc = qk_error(QK_EIO, "%s: cannot list the directory", path);
        goto done;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !has_suffix(e->d_name, ".safetensors"))
            continue;
        char *full = qk_path_join(path, e->d_name);
        if (!full)
            goto oom;
        int reg = is_regular(full);
        free(full);
        if (!reg)
            continue;
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 8;
            char **nn = realloc(names, nc * sizeof *names);
            if (!nn)
                goto oom;
            names = nn;
            cap = nc;
        }
        if (!(names[n] = strdup(e->d_name)))
            goto oom;
        n++;
    }
    if (n == 0) {
        rc = qk_error(QK_ENOTFOUND, "%s: no %s, %s or other *.safetensors file in this directory", path,
                      ST_INDEX_NAME, ST_SINGLE_NAME);
        goto done;
    }
    qsort(names, n, sizeof *names, cmp_str);
    if (n > 1) {
        char list[512];
        size_t len = 0;
        list[0] = 0;
        for (size_t i = 0; i < n && i < 4; i++) {
            char nm[QK_ST_SHOW_CAP];
            int w = snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", qk_st_show(nm, sizeof nm, names[i]));
            if (w > 0)
                len += (size_t)w < sizeof list - len ? (size_t)w : sizeof list - len - 1;
        }
        rc = qk_error(QK_EFORMAT, "%s: %zu .safetensors files (%s%s) but no %s to say which tensors each holds",
                      path, n, list, n > 4 ? ", ..." : "", ST_INDEX_NAME);
        goto done;
    }
    if (!(*out = qk_path_join(path, names[0])))
        goto oom;
    goto done;
oom:
    rc = qk_error(QK_ENOMEM, "%s: out of memory", path);
done:
    free(cand);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (d)
        closedir(d);
    return rc;
}

int qk_st_set_open(qk_st_set **out, const char *path)
{
    assert(out && path);
    *out = NULL;
    int rc = 0, is_index = 0;
    char *chosen = NULL;
    qk_st_set *s = calloc(1, sizeof *s);
    if (!s) {
        rc = qk_error(QK_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    if (qk_is_dir(path)) {
        if ((rc = pick_in_dir(&chosen, &is_index, path)) < 0)
            goto done;
        path = chosen;
    } else {
        is_index = has_suffix(path, ".json");
    }
    rc = is_index ? open_index(s, path) : open_single(s, path);
    if (rc < 0)
        goto done;
    *out = s;
    s = NULL;
done:
    free(chosen);
    qk_st_set_close(s);
    return rc;
}

void qk_st_set_close(qk_st_set *s)
{
    if (!s)
        return;
    for (int64_t i = 0; i < s->n_shards; i++)
        qk_safetensors_close(s->shards[i]);
    free(s->shards);
    free(s->tensors);
    free(s->shard_of);
    free(s->by_name);
    free(s);
}

int64_t qk_st_set_n_tensors(const qk_st_set *s) { return s->n; }

const qk_st_tensor *qk_st_set_tensor_at(const qk_st_set *s, int64_t i)
{
    return i >= 0 && i < s->n ? s->tensors[i] : NULL;
}

const qk_st_tensor *qk_st_set_find(const qk_st_set *s, const char *name)
{
    qk_st_tensor key = {.name = (char *)name};
    const qk_st_tensor *kp = &key;
    const qk_st_tensor **hit = bsearch(&kp, s->by_name, (size_t)s->n, sizeof *s->by_name, cmp_tensor_name);
    return hit ? *hit : NULL;
}

const qk_safetensors *qk_st_set_shard_of(const qk_st_set *s, int64_t i)
{
    return i >= 0 && i < s->n ? s->shards[s->shard_of[i]] : NULL;
}

int64_t qk_st_set_n_shards(const qk_st_set *s) { return s->n_shards; }

const qk_safetensors *qk_st_set_shard(const qk_st_set *s, int64_t i)
{
    return i >= 0 && i < s->n_shards ? s->shards[i] : NULL;
}
