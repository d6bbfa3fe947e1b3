/* A growable byte buffer used to build strings (JSON, CSV, SVG) and byte arrays. */
#ifndef CAST_BASE_BUF_H
#define CAST_BASE_BUF_H

#include <stddef.h>

typedef struct cast_buf {
    char *data;  /* always NUL-terminated when len > 0 or after any append */
    size_t len;
    size_t cap;
} cast_buf;

void cast_buf_free(cast_buf *b);
void cast_buf_reserve(cast_buf *b, size_t extra);
void cast_buf_append(cast_buf *b, const void *data, size_t n);
void cast_buf_puts(cast_buf *b, const char *s);
void cast_buf_putc(cast_buf *b, char c);
void cast_buf_printf(cast_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal, quotes included. */
void cast_buf_json_string(cast_buf *b, const char *s, size_t n);
/* Appends a float in shortest round-trip form; non-finite values become null. */
void cast_buf_json_number(cast_buf *b, double v);
/* Takes ownership of the data (caller frees); leaves b empty. */
char *cast_buf_steal(cast_buf *b);

/* Memory helpers that abort on exhaustion: out of memory is not a recoverable
 * input error for this tool, and checking every small allocation obscures code. */
void *cast_xmalloc(size_t n);
void *cast_xcalloc(size_t count, size_t size);
void *cast_xrealloc(void *p, size_t n);
char *cast_xstrdup(const char *s);
char *cast_xstrndup(const char *s, size_t n);
/* 64-byte aligned, zeroed; free with free(). */
float *cast_alloc_floats(size_t n);

#endif
