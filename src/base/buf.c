#include "base/buf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(void) {
    fputs("cast: out of memory\n", stderr);
    abort();
}

void *cast_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom();
    return p;
}

void *cast_xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) oom();
    return p;
}

void *cast_xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) oom();
    return q;
}

char *cast_xstrdup(const char *s) { return cast_xstrndup(s, strlen(s)); }

char *cast_xstrndup(const char *s, size_t n) {
    char *p = cast_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

float *cast_alloc_floats(size_t n) {
    void *p = NULL;
    size_t bytes = (n ? n : 1) * sizeof(float);
    bytes = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, bytes) != 0) oom();
    memset(p, 0, bytes);
    return p;
}

void cast_buf_free(cast_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void cast_buf_reserve(cast_buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) cap *= 2;
    b->data = cast_xrealloc(b->data, cap);
    b->cap = cap;
}

void cast_buf_append(cast_buf *b, const void *data, size_t n) {
    cast_buf_reserve(b, n);
    if (n) memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = 0;
}

void cast_buf_puts(cast_buf *b, const char *s) { cast_buf_append(b, s, strlen(s)); }

void cast_buf_putc(cast_buf *b, char c) { cast_buf_append(b, &c, 1); }

void cast_buf_printf(cast_buf *b, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    cast_buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
}

void cast_buf_json_string(cast_buf *b, const char *s, size_t n) {
    cast_buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': cast_buf_puts(b, "\\\""); break;
        case '\\': cast_buf_puts(b, "\\\\"); break;
        case '\n': cast_buf_puts(b, "\\n"); break;
        case '\r': cast_buf_puts(b, "\\r"); break;
        case '\t': cast_buf_puts(b, "\\t"); break;
        case '\b': cast_buf_puts(b, "\\b"); break;
        case '\f': cast_buf_puts(b, "\\f"); break;
        default:
            if (c < 0x20) cast_buf_printf(b, "\\u%04x", c);
            else cast_buf_putc(b, (char)c);
        }
    }
    cast_buf_putc(b, '"');
}

void cast_buf_json_number(cast_buf *b, double v) {
    if (!isfinite(v)) {
        cast_buf_puts(b, "null");
        return;
    }
    /* the range test first: converting a double beyond long long is undefined */
    if (fabs(v) < 1e15 && v == (double)(long long)v) {
        cast_buf_printf(b, "%lld", (long long)v);
        return;
    }
    char tmp[64];
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    cast_buf_puts(b, tmp);
}

char *cast_buf_steal(cast_buf *b) {
    char *p = b->data ? b->data : cast_xstrdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
