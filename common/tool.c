/* Shared command-line plumbing for the tools: messages and exit codes. */
#include "quantkit/tool.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>

static const char *g_name = "quantkit";

void qk_tool_init(const char *name)
{
    g_name = name;
    qk_log_set_prefix(name);
    qk_cleanup_install();
}

const char *qk_tool_name(void) { return g_name; }

int qk_tool_fail(void)
{
    const char *m = qk_errmsg();
    fprintf(stderr, "%s: %s\n", g_name, *m ? m : "unknown error");
    return QK_EXIT_ERROR;
}

int qk_tool_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", g_name);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help'.\n", g_name);
    return QK_EXIT_USAGE;
}

int qk_tool_parse_int(const char *opt, const char *s, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        qk_tool_usage("%s '%s': expected an integer in [%lld, %lld]", opt, s, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

void qk_tool_version(void) { printf("%s (quantkit) %s\n", g_name, QK_VERSION); }
