/* qk-inspect: metadata, tensors, totals by type and checks of a GGUF,
 * safetensors file, Hugging Face directory or llama2.c checkpoint. */
#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quantkit/common.h"
#include "quantkit/gguf.h"
#include "quantkit/llama2c.h"
#include "quantkit/safetensors.h"
#include "quantkit/tool.h"

typedef struct {
    int json, verify, all_kv;
} opts_t;

static void usage(void)
{
    printf("Usage: qk-inspect FILE|DIR [--json] [--verify] [--all]\n"
           "\n"
           "List a model file: metadata, tensors (name, type, shape, bytes, bits per\n"
           "weight), totals by type, parameter count and file size. FILE: GGUF,\n"
           ".safetensors, model.safetensors.index.json, llama2.c .bin; DIR: a Hugging\n"
           "Face checkpoint directory.\n"
           "\n"
           "Options:\n"
           "      --json      machine-readable output on stdout\n"
           "      --verify    re-read every tensor: check stored checksums (quantkit files),\n"
           "                  decode every block and refuse NaN/Inf; exit 1 on any problem\n"
           "      --all       print long metadata arrays in full\n"
           "  -h, --help      this help\n"
           "      --version   version\n"
           "\n"
           "Exit status: 0 ok, 1 error or failed verification, 2 bad usage.\n");
}

typedef struct {
    int64_t count;
    uint64_t bytes;
    uint64_t elems;
} type_total;

static void kv_value_str(const qk_gguf_kv *kv, char *buf, size_t n, int all)
{
    switch (kv->type) {
    case QK_GGUF_U8: snprintf(buf, n, "%u", kv->v.u8); break;
    case QK_GGUF_I8: snprintf(buf, n, "%d", kv->v.i8); break;
    case QK_GGUF_U16: snprintf(buf, n, "%u", kv->v.u16); break;
    case QK_GGUF_I16: snprintf(buf, n, "%d", kv->v.i16); break;
    case QK_GGUF_U32: snprintf(buf, n, "%u", kv->v.u32); break;
    case QK_GGUF_I32: snprintf(buf, n, "%d", kv->v.i32); break;
    case QK_GGUF_F32: snprintf(buf, n, "%.9g", (double)kv->v.f32); break;
    case QK_GGUF_BOOL: snprintf(buf, n, "%s", kv->v.b ? "true" : "false"); break;
    case QK_GGUF_STRING: snprintf(buf, n, "\"%.200s%s\"", kv->v.str.s, kv->v.str.len > 200 ? "..." : ""); break;
    case QK_GGUF_U64: snprintf(buf, n, "%llu", (unsigned long long)kv->v.u64); break;
    case QK_GGUF_I64: snprintf(buf, n, "%lld", (long long)kv->v.i64); break;
    case QK_GGUF_F64: snprintf(buf, n, "%.17g", kv->v.f64); break;
    case QK_GGUF_ARRAY: {
        size_t k = (size_t)snprintf(buf, n, "[%s x %llu]", qk_gguf_type_name(kv->arr_type),
                                    (unsigned long long)kv->arr_n);
        uint64_t show = all ? kv->arr_n : (kv->arr_n < 8 ? kv->arr_n : 8);
        for (uint64_t i = 0; i < show && k + 40 < n; i++) {
            if (kv->arr_type == QK_GGUF_STRING)
                k += (size_t)snprintf(buf + k, n - k, "%s\"%.30s\"", i ? ", " : " ", kv->strs[i].s);
            else if (kv->arr_type == QK_GGUF_F32)
                k += (size_t)snprintf(buf + k, n - k, "%s%g", i ? ", " : " ", (double)((float *)kv->arr)[i]);
            else if (kv->arr_type == QK_GGUF_I32)
                k += (size_t)snprintf(buf + k, n - k, "%s%d", i ? ", " : " ", ((int32_t *)kv->arr)[i]);
            else if (kv->arr_type == QK_GGUF_U64)
                k += (size_t)snprintf(buf + k, n - k, "%s%016llx", i ? ", " : " ",
                                      (unsigned long long)((uint64_t *)kv->arr)[i]);
            else if (kv->arr_type == QK_GGUF_U32)
                k += (size_t)snprintf(buf + k, n - k, "%s%u", i ? ", " : " ", ((uint32_t *)kv->arr)[i]);
        }
        if (show < kv->arr_n && k + 8 < n)
            snprintf(buf + k, n - k, ", ...");
        break;
    }
    default: snprintf(buf, n, "?");
    }
}

static cJSON *kv_json(const qk_gguf_kv *kv)
{
    switch (kv->type) {
    case QK_GGUF_U8: return cJSON_CreateNumber(kv->v.u8);
    case QK_GGUF_I8: return cJSON_CreateNumber(kv->v.i8);
    case QK_GGUF_U16: return cJSON_CreateNumber(kv->v.u16);
    case QK_GGUF_I16: return cJSON_CreateNumber(kv->v.i16);
    case QK_GGUF_U32: return cJSON_CreateNumber(kv->v.u32);
    case QK_GGUF_I32: return cJSON_CreateNumber(kv->v.i32);
    case QK_GGUF_F32: return cJSON_CreateNumber(kv->v.f32);
    case QK_GGUF_BOOL: return cJSON_CreateBool(kv->v.b);
    case QK_GGUF_STRING: return cJSON_CreateString(kv->v.str.s);
    case QK_GGUF_U64: return cJSON_CreateNumber((double)kv->v.u64);
    case QK_GGUF_I64: return cJSON_CreateNumber((double)kv->v.i64);
    case QK_GGUF_F64: return cJSON_CreateNumber(kv->v.f64);
    case QK_GGUF_ARRAY: {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", qk_gguf_type_name(kv->arr_type));
        cJSON_AddNumberToObject(o, "length", (double)kv->arr_n);
        return o;
    }
    default: return cJSON_CreateNull();
    }
}

static void shape_str(const int64_t *ne, int n_dims, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < n_dims && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)ne[i]);
    if (k < n)
        snprintf(buf + k, n - k, "]");
}

/* --verify for one tensor: decode every block and count non-finite values. */
static int verify_decode(const char *path, const char *name, int type, const uint8_t *data, int64_t ne0,
                         int64_t rows)
{
    const qk_type_traits *tr = qk_type_get(type);
    if (!tr || !tr->to_float || rows == 0 || ne0 == 0)
        return 0;
    size_t rb;
    if (qk_type_row_bytes(type, ne0, &rb))
        return qk_error_prefix(QK_EFORMAT, path);
    float *buf = malloc((size_t)ne0 * sizeof(float));
    if (!buf)
        return qk_error(QK_ENOMEM, "out of memory");
    int rc = 0;
    for (int64_t r = 0; r < rows && !rc; r++) {
        tr->to_float(data + (uint64_t)r * rb, buf, ne0);
        for (int64_t i = 0; i < ne0; i++)
            if (!isfinite(buf[i])) {
                rc = qk_error(QK_ENONFINITE, "%s: tensor '%s' element %lld decodes to %s", path, name,
                              (long long)(r * ne0 + i), isnan(buf[i]) ? "NaN" : "Inf");
                break;
            }
    }
    free(buf);
    return rc;
}

static int inspect_gguf(const char *path, const opts_t *o)
{
    qk_gguf *g = NULL;
    int rc = qk_gguf_open(&g, path);
    if (rc)
        return rc;
    type_total tot[QK_TYPE_COUNT] = {{0}};
    uint64_t n_params = 0, data_bytes = 0;
    cJSON *j = o->json ? cJSON_CreateObject() : NULL;
    cJSON *jt = NULL;
    if (j) {
        cJSON_AddStringToObject(j, "file", path);
        cJSON_AddStringToObject(j, "format", "gguf");
        cJSON_AddNumberToObject(j, "version", qk_gguf_version(g));
        cJSON_AddNumberToObject(j, "file_size", (double)qk_gguf_file_size(g));
        cJSON_AddNumberToObject(j, "alignment", qk_gguf_alignment(g));
        cJSON *jm = cJSON_AddObjectToObject(j, "metadata");
        for (int64_t i = 0; i < qk_gguf_n_kv(g); i++)
            cJSON_AddItemToObject(jm, qk_gguf_kv_at(g, i)->key.s, kv_json(qk_gguf_kv_at(g, i)));
        jt = cJSON_AddArrayToObject(j, "tensors");
    } else {
        printf("file: %s\nformat: GGUF v%u, %lld metadata keys, %lld tensors, alignment %u\n", path,
               qk_gguf_version(g), (long long)qk_gguf_n_kv(g), (long long)qk_gguf_n_tensors(g), qk_gguf_alignment(g));
        printf("\nmetadata:\n");
        for (int64_t i = 0; i < qk_gguf_n_kv(g); i++) {
            const qk_gguf_kv *kv = qk_gguf_kv_at(g, i);
            char val[4096];
            kv_value_str(kv, val, sizeof val, o->all_kv);
            printf("  %-44s %-6s %s\n", kv->key.s, qk_gguf_type_name(kv->type), val);
        }
        if (qk_gguf_n_tensors(g))
            printf("\ntensors:\n  %-36s %-8s %-22s %12s %7s\n", "name", "type", "shape (ne)", "bytes", "bpw");
    }
    for (int64_t i = 0; i < qk_gguf_n_tensors(g); i++) {
        const qk_gguf_tensor *t = qk_gguf_tensor_at(g, i);
        uint64_t ne = 1;
        for (int d = 0; d < t->n_dims; d++)
            ne *= (uint64_t)t->ne[d];
        n_params += ne;
        data_bytes += t->nbytes;
        tot[t->type].count++;
        tot[t->type].bytes += t->nbytes;
        tot[t->type].elems += ne;
        double bpw = ne ? 8.0 * (double)t->nbytes / (double)ne : 0;
        if (j) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "name", t->name);
            cJSON_AddStringToObject(x, "type", qk_type_name(t->type));
            cJSON *sh = cJSON_AddArrayToObject(x, "ne");
            for (int d = 0; d < t->n_dims; d++)
                cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->ne[d]));
            cJSON_AddNumberToObject(x, "offset", (double)(qk_gguf_data_offset(g) + t->offset));
            cJSON_AddNumberToObject(x, "bytes", (double)t->nbytes);
            cJSON_AddNumberToObject(x, "bpw", bpw);
            cJSON_AddItemToArray(jt, x);
        } else {
            char sh[64];
            shape_str(t->ne, t->n_dims, sh, sizeof sh);
            printf("  %-36s %-8s %-22s %12llu %7.3f\n", t->name, qk_type_name(t->type), sh,
                   (unsigned long long)t->nbytes, bpw);
        }
    }
    int vrc = 0;
    const char *checks = "none stored";
    if (o->verify) {
        vrc = qk_gguf_verify_checksums(g);
        if (vrc == 0)
            checks = "all tensors match their stored XXH3-64";
        else if (vrc == QK_ENOTFOUND)
            vrc = 0;
        for (int64_t i = 0; i < qk_gguf_n_tensors(g) && !vrc; i++) {
            const qk_gguf_tensor *t = qk_gguf_tensor_at(g, i);
            int64_t rows = 1;
            for (int d = 1; d < t->n_dims; d++)
                rows *= t->ne[d];
            vrc = verify_decode(path, t->name, t->type, t->data, t->ne[0], rows);
            qk_mmap_release(qk_gguf_map(g), qk_gguf_data_offset(g) + t->offset, t->nbytes);
        }
    }
    if (j) {
        cJSON *jtot = cJSON_AddArrayToObject(j, "totals");
        for (int ty = 0; ty < QK_TYPE_COUNT; ty++)
            if (tot[ty].count) {
                cJSON *x = cJSON_CreateObject();
                cJSON_AddStringToObject(x, "type", qk_type_name(ty));
                cJSON_AddNumberToObject(x, "tensors", (double)tot[ty].count);
                cJSON_AddNumberToObject(x, "elements", (double)tot[ty].elems);
                cJSON_AddNumberToObject(x, "bytes", (double)tot[ty].bytes);
                cJSON_AddItemToArray(jtot, x);
            }
        cJSON_AddNumberToObject(j, "parameters", (double)n_params);
        cJSON_AddNumberToObject(j, "tensor_bytes", (double)data_bytes);
        cJSON_AddNumberToObject(j, "bpw", n_params ? 8.0 * (double)data_bytes / (double)n_params : 0);
        if (o->verify) {
            cJSON_AddBoolToObject(j, "verified", vrc == 0);
            if (vrc)
                cJSON_AddStringToObject(j, "verify_error", qk_errmsg());
        }
        char *s = cJSON_Print(j);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(j);
    } else {
        char b1[32], b2[32];
        printf("\ntotals by type:\n");
        for (int ty = 0; ty < QK_TYPE_COUNT; ty++)
            if (tot[ty].count)
                printf("  %-8s %5lld tensors %14llu elements %14llu bytes %7.3f bpw\n", qk_type_name(ty),
                       (long long)tot[ty].count, (unsigned long long)tot[ty].elems,
                       (unsigned long long)tot[ty].bytes,
                       tot[ty].elems ? 8.0 * (double)tot[ty].bytes / (double)tot[ty].elems : 0.0);
        printf("parameters: %llu\ntensor data: %s (%.3f bits per weight)\nfile size: %s\n",
               (unsigned long long)n_params, qk_fmt_bytes(data_bytes, b1),
               n_params ? 8.0 * (double)data_bytes / (double)n_params : 0.0,
               qk_fmt_bytes(qk_gguf_file_size(g), b2));
        if (o->verify && !vrc)
            printf("verify: ok (structure valid, every tensor decoded finite; checksums: %s)\n", checks);
    }
    qk_gguf_close(g);
    return vrc;
}

static int inspect_st(const char *path, const opts_t *o)
{
    qk_st_set *s = NULL;
    int rc = qk_st_set_open(&s, path);
    if (rc)
        return rc;
    uint64_t n_params = 0, bytes = 0;
    cJSON *j = o->json ? cJSON_CreateObject() : NULL, *jt = NULL;
    if (j) {
        cJSON_AddStringToObject(j, "file", path);
        cJSON_AddStringToObject(j, "format", "safetensors");
        cJSON_AddNumberToObject(j, "shards", (double)qk_st_set_n_shards(s));
        jt = cJSON_AddArrayToObject(j, "tensors");
    } else {
        printf("file: %s\nformat: safetensors, %lld shard(s), %lld tensors\n", path,
               (long long)qk_st_set_n_shards(s), (long long)qk_st_set_n_tensors(s));
        for (int64_t k = 0; k < qk_st_set_n_shards(s); k++) {
            const qk_safetensors *sh = qk_st_set_shard(s, k);
            for (int64_t i = 0; i < qk_safetensors_n_meta(sh); i++)
                printf("  %s: %s = \"%s\"\n", qk_safetensors_path(sh), qk_safetensors_meta_key(sh, i),
                       qk_safetensors_meta_value(sh, i));
        }
        printf("\ntensors:\n  %-52s %-6s %-20s %12s\n", "name", "dtype", "shape", "bytes");
    }
    for (int64_t i = 0; i < qk_st_set_n_tensors(s); i++) {
        const qk_st_tensor *t = qk_st_set_tensor_at(s, i);
        uint64_t ne = 1;
        for (int d = 0; d < t->n_dims; d++)
            ne *= (uint64_t)t->shape[d];
        n_params += ne;
        bytes += t->nbytes;
        if (j) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "name", t->name);
            cJSON_AddStringToObject(x, "dtype", qk_st_dtype_name(t->dtype));
            cJSON *sh = cJSON_AddArrayToObject(x, "shape");
            for (int d = 0; d < t->n_dims; d++)
                cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
            cJSON_AddNumberToObject(x, "bytes", (double)t->nbytes);
            cJSON_AddItemToArray(jt, x);
        } else {
            char sh[64];
            shape_str(t->shape, t->n_dims, sh, sizeof sh);
            printf("  %-52s %-6s %-20s %12llu\n", t->name, qk_st_dtype_name(t->dtype), sh,
                   (unsigned long long)t->nbytes);
        }
    }
    int vrc = 0;
    if (o->verify) {
        for (int64_t i = 0; i < qk_st_set_n_tensors(s) && !vrc; i++) {
            const qk_st_tensor *t = qk_st_set_tensor_at(s, i);
            int type = qk_st_dtype_type(t->dtype);
            const qk_type_traits *tr = qk_type_get(type);
            if (tr && tr->is_float && t->n_dims >= 1) {
                int64_t ne0 = t->shape[t->n_dims - 1];
                vrc = verify_decode(path, t->name, type, t->data, ne0, ne0 ? (int64_t)(t->nbytes / tr->type_size) / ne0 : 0);
            }
        }
    }
    if (j) {
        cJSON_AddNumberToObject(j, "parameters", (double)n_params);
        cJSON_AddNumberToObject(j, "tensor_bytes", (double)bytes);
        if (o->verify)
            cJSON_AddBoolToObject(j, "verified", vrc == 0);
        char *str = cJSON_Print(j);
        printf("%s\n", str);
        free(str);
        cJSON_Delete(j);
    } else {
        char b[32];
        printf("parameters: %llu\ntensor data: %s\n", (unsigned long long)n_params, qk_fmt_bytes(bytes, b));
        if (o->verify && !vrc)
            printf("verify: ok (structure valid, every float tensor finite)\n");
    }
    qk_st_set_close(s);
    return vrc;
}

static int inspect_llama2c(const char *path, const opts_t *o)
{
    qk_llama2c *m = NULL;
    int rc = qk_llama2c_open(&m, path);
    if (rc)
        return rc;
    const qk_llama2c_config *c = &m->cfg;
    uint64_t n = (m->map->size - QK_LLAMA2C_HEADER_BYTES) / 4;
    if (o->json) {
        printf("{\"file\": \"%s\", \"format\": \"llama2c\", \"dim\": %d, \"hidden_dim\": %d, \"n_layers\": %d, "
               "\"n_heads\": %d, \"n_kv_heads\": %d, \"vocab_size\": %d, \"seq_len\": %d, "
               "\"shared_classifier\": %s, \"floats\": %llu}\n",
               path, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, c->seq_len,
               c->shared_classifier ? "true" : "false", (unsigned long long)n);
    } else {
        printf("file: %s\nformat: llama2.c v0 checkpoint (F32)\n"
               "dim %d, hidden_dim %d, n_layers %d, n_heads %d, n_kv_heads %d, vocab_size %d, seq_len %d, "
               "%s classifier\nfloats: %llu (%llu bytes)\n",
               path, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, c->seq_len,
               c->shared_classifier ? "shared" : "separate", (unsigned long long)n, (unsigned long long)m->map->size);
    }
    if (o->verify) {
        const float *f = (const float *)(m->map->data + QK_LLAMA2C_HEADER_BYTES);
        for (uint64_t i = 0; i < n; i++) {
            float v;
            memcpy(&v, f + i, 4);
            if (!isfinite(v)) {
                rc = qk_error(QK_ENONFINITE, "%s: float %llu is not finite", path, (unsigned long long)i);
                break;
            }
        }
        if (!rc && !o->json)
            printf("verify: ok (size and header consistent, all floats finite)\n");
    }
    qk_llama2c_close(m);
    return rc;
}

int main(int argc, char **argv)
{
    qk_tool_init("qk-inspect");
    opts_t o = {0};
    enum { O_JSON = 1000, O_VERIFY, O_ALL, O_VERSION };
    static const struct option lo[] = {
        {"json", no_argument, 0, O_JSON}, {"verify", no_argument, 0, O_VERIFY}, {"all", no_argument, 0, O_ALL},
        {"help", no_argument, 0, 'h'},    {"version", no_argument, 0, O_VERSION}, {0, 0, 0, 0},
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case O_JSON: o.json = 1; break;
        case O_VERIFY: o.verify = 1; break;
        case O_ALL: o.all_kv = 1; break;
        case 'h': usage(); return 0;
        case O_VERSION: qk_tool_version(); return 0;
        default: return qk_tool_usage("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return qk_tool_usage(optind >= argc ? "missing FILE" : "expected one FILE");
    const char *path = argv[optind];
    int rc;
    size_t n = strlen(path);
    uint8_t magic[4] = {0};
    FILE *f = qk_is_dir(path) ? NULL : fopen(path, "rb");
    size_t got = f ? fread(magic, 1, 4, f) : 0;
    if (f)
        fclose(f);
    if (qk_is_dir(path) || (n > 12 && !strcmp(path + n - 12, ".safetensors")) ||
        (n > 5 && !strcmp(path + n - 5, ".json")))
        rc = inspect_st(path, &o);
    else if (got == 4 && !memcmp(magic, "GGUF", 4))
        rc = inspect_gguf(path, &o);
    else if (!qk_file_exists(path))
        rc = qk_error(QK_ENOTFOUND, "%s: no such file or directory", path);
    else if (n > 4 && !strcmp(path + n - 4, ".bin"))
        rc = inspect_llama2c(path, &o);
    else
        rc = qk_error(QK_EFORMAT, "%s: not a GGUF, safetensors or llama2.c file", path);
    return rc ? qk_tool_fail() : 0;
}
