/* Parsing of sizes and percentages, byte formatting, JSON size limits. */
#include "quantkit/common.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

int qk_parse_size(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return qk_error(QK_EINVAL, "empty size");
    char *end;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v) || v < 0)
        return qk_error(QK_EINVAL, "'%s' is not a size (examples: 4GB, 3.8GiB, 500M, 123456)", s);
    while (*end == ' ')
        end++;
    static const struct {
        const char *suffix;
        double mult;
    } units[] = {
        {"", 1},        {"B", 1},          {"K", 1e3},         {"KB", 1e3},  {"KIB", 1024.0},
        {"M", 1e6},     {"MB", 1e6},       {"MIB", 1048576.0}, {"G", 1e9},   {"GB", 1e9},
        {"GIB", 1073741824.0}, {"T", 1e12}, {"TB", 1e12},      {"TIB", 1099511627776.0},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (!strcasecmp(end, units[i].suffix)) {
            double b = v * units[i].mult;
            if (b >= 1.8e19)
                return qk_error(QK_EINVAL, "size '%s' is too large", s);
            *out = (uint64_t)llround(b);
            return 0;
        }
    }
    return qk_error(QK_EINVAL, "'%s': unknown size unit (use B, KB, MB, GB, KiB, MiB, GiB)", s);
}

int qk_parse_percent(const char *s, double *out)
{
    if (!s || !*s)
        return qk_error(QK_EINVAL, "empty percentage");
    char *end;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v))
        return qk_error(QK_EINVAL, "'%s' is not a number or percentage", s);
    if (*end == '%') {
        v /= 100.0;
        end++;
    }
    if (*end)
        return qk_error(QK_EINVAL, "'%s' is not a number or percentage (examples: 2%%, 0.02)", s);
    *out = v;
    return 0;
}

const char *qk_fmt_bytes(uint64_t n, char buf[32])
{
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    if (i == 0)
        snprintf(buf, 32, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, 32, "%.2f %s", v, u[i]);
    return buf;
}

int qk_json_check_limits(const char *path, const char *what, const char *s, size_t n, int max_depth,
                         int64_t max_values)
{
    int depth = 0;
    int64_t values = 1;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '"') {
            /* skip the string; a backslash escapes the next byte */
            for (i++; i < n && s[i] != '"'; i++)
                if (s[i] == '\\')
                    i++;
            continue;
        }
        if (c == '[' || c == '{') {
            if (++depth > max_depth)
                return qk_error(QK_ELIMIT, "%s: %s nests deeper than %d levels at offset %zu", path, what,
                                max_depth, i);
        } else if (c == ']' || c == '}') {
            depth--; /* unbalanced text is the parser's to reject */
            continue;
        } else if (c != ',') {
            continue;
        }
        if (++values > max_values)
            return qk_error(QK_ELIMIT, "%s: %s holds more than %" PRId64 " values (at offset %zu); not a file quantkit reads",
                            path, what, max_values, i);
    }
    return 0;
}
