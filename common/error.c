/* Thread-local one-line error messages. */
#include "quantkit/common.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char t_msg[1024];

int qk_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_msg, sizeof t_msg, fmt, ap);
    va_end(ap);
    /* One line: a message never carries a newline from formatted data. */
    for (char *p = t_msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return code;
}

int qk_error_prefix(int code, const char *prefix)
{
    char tmp[2 * sizeof t_msg];
    snprintf(tmp, sizeof tmp, "%.500s: %s", prefix, t_msg);
    memcpy(t_msg, tmp, sizeof t_msg - 1);
    t_msg[sizeof t_msg - 1] = 0;
    return code;
}

const char *qk_errmsg(void) { return t_msg; }

void qk_error_clear(void) { t_msg[0] = 0; }

const char *qk_strerror(int code)
{
    switch (code) {
    case QK_OK: return "ok";
    case QK_EINVAL: return "invalid argument";
    case QK_EIO: return "I/O error";
    case QK_EFORMAT: return "format error";
    case QK_ENOMEM: return "out of memory";
    case QK_EUNSUPPORTED: return "unsupported";
    case QK_ELIMIT: return "limit exceeded";
    case QK_ECHECKSUM: return "checksum mismatch";
    case QK_ENOTFOUND: return "not found";
    case QK_ENONFINITE: return "non-finite value";
    default: return "error";
    }
}
