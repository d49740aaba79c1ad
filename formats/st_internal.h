/* Helpers shared by the safetensors reader (safetensors.c), sharded sets
 * (st_set.c) and the writer (st_writer.c). Not a public header. */
#ifndef QK_ST_INTERNAL_H
#define QK_ST_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* safetensors headers nest three levels deep ({ tensor: { shape: [ ] } });
 * anything much deeper is hostile, and cJSON recurses per level. */
#define QK_ST_MAX_NESTING 64
/* cJSON allocates a 64-byte node per value, so a 100 MB header of "0," would
 * cost 3+ GB; 4 Mi values (~300 MB of nodes) is 8 values per tensor for half
 * a million tensors, or an index of 4 million weight_map entries. */
#define QK_ST_MAX_JSON_VALUES (1u << 22)

/* Offset of the first byte of s[0..n) that is not strict UTF-8 (stray
 * continuation bytes, overlong forms, surrogates, code points above
 * U+10FFFF, sequences cut short), or n when all of it is valid. */
size_t qk_st_utf8_check(const uint8_t *s, size_t n);

/* Checks JSON text for what cJSON lets through, before it is parsed:
 * strict UTF-8, no NUL byte, no raw control character inside a string,
 * \u escapes that are well formed (four hex digits, surrogates paired, no
 * \u0000, which cJSON would turn into a truncated C string), nesting no
 * deeper than QK_ST_MAX_NESTING and at most QK_ST_MAX_JSON_VALUES values.
 * Errors name `path` and call the text `what` ("header JSON"). */
int qk_st_json_precheck(const char *path, const char *what, const uint8_t *s, size_t n);

/* s made fit for a one-line message: control bytes become '?', and text
 * longer than cap-1 bytes is cut with "...". Returns buf. */
const char *qk_st_show(char *buf, size_t cap, const char *s);
#define QK_ST_SHOW_CAP 128

#endif
