#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int cast_fail(cast_err *err, const char *fmt, ...) {
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    /* one line: the CLI prints it as is */
    for (char *p = err->msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return -1;
}

int cast_fail_prefix(cast_err *err, const char *prefix) {
    if (!err) return -1;
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    return cast_fail(err, "%s: %s", prefix, old);
}
