#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int fail_v(cast_err *err, int code, const char *fmt, va_list ap) {
    if (!err) return -1;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    err->code = code;
    /* one line: the CLI prints it as is */
    for (char *p = err->msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return -1;
}

int cast_fail(cast_err *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = fail_v(err, CAST_E_FORMAT, fmt, ap);
    va_end(ap);
    return rc;
}

int cast_fail_as(cast_err *err, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = fail_v(err, code, fmt, ap);
    va_end(ap);
    return rc;
}

int cast_fail_prefix(cast_err *err, const char *prefix) {
    if (!err) return -1;
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    return cast_fail_as(err, err->code, "%s: %s", prefix, old);
}
