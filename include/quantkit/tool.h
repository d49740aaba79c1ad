/* Helpers shared by the command-line tools (not used by the library). */
#ifndef QUANTKIT_TOOL_H
#define QUANTKIT_TOOL_H

#include <getopt.h>
#include <stdio.h>

#include "quantkit/common.h"

/* Exit statuses shared by every tool. */
enum { QK_EXIT_OK = 0, QK_EXIT_ERROR = 1, QK_EXIT_USAGE = 2, QK_EXIT_GATE = 3 };

/* Record the tool name (for messages), install output cleanup on signals. */
void qk_tool_init(const char *name);
const char *qk_tool_name(void);
/* Print "tool: <qk_errmsg()>" to stderr and return QK_EXIT_ERROR. */
int qk_tool_fail(void);
/* Print "tool: <message>" and "Try 'tool --help'." to stderr; return QK_EXIT_USAGE. */
int qk_tool_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parse a positive integer option value; on error prints usage and returns -1. */
int qk_tool_parse_int(const char *opt, const char *s, long long min, long long max, long long *out);
/* Print the version line. */
void qk_tool_version(void);

#endif
