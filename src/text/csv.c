#include "text/csv.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

void cast_csv_init(cast_csv *c, const char *text, size_t len, const char *path) {
    memset(c, 0, sizeof *c);
    c->text = text;
    c->len = len;
    c->path = path;
    c->line = 1;
}

static void clear_row(cast_csv *c) {
    for (int i = 0; i < c->n; i++) free(c->fields[i]);
    c->n = 0;
}

void cast_csv_free(cast_csv *c) {
    clear_row(c);
    free(c->fields);
    c->fields = NULL;
    c->cap = 0;
}

static void push_field(cast_csv *c, cast_buf *f) {
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->fields = cast_xrealloc(c->fields, sizeof(char *) * (size_t)c->cap);
    }
    c->fields[c->n++] = f->data ? cast_buf_steal(f) : cast_xstrdup("");
}

/* At a row end (LF, CRLF or a lone CR)? Consumes it. */
static int eat_newline(cast_csv *c) {
    const char *t = c->text;
    if (c->pos < c->len && t[c->pos] == '\n') {
        c->pos++;
        c->line++;
        return 1;
    }
    if (c->pos < c->len && t[c->pos] == '\r') {
        c->pos++;
        if (c->pos < c->len && t[c->pos] == '\n') c->pos++;
        c->line++;
        return 1;
    }
    return 0;
}

int cast_csv_next(cast_csv *c, cast_err *err) {
    clear_row(c);
    const char *t = c->text;
    /* blank lines carry no record */
    while (c->pos < c->len && eat_newline(c)) {
    }
    if (c->pos >= c->len) return 0;
    c->row_line = c->line;
    cast_buf f = {0};
    for (;;) {
        /* one field */
        if (c->pos < c->len && t[c->pos] == '"') {
            int start_line = c->line;
            c->pos++;
            for (;;) {
                if (c->pos >= c->len) {
                    cast_buf_free(&f);
                    return cast_fail(err, "%s:%d: unterminated quoted field", c->path, start_line);
                }
                char ch = t[c->pos++];
                if (ch == '"') {
                    if (c->pos < c->len && t[c->pos] == '"') {
                        cast_buf_putc(&f, '"');
                        c->pos++;
                        continue;
                    }
                    break;
                }
                if (ch == '\n') c->line++;
                else if (ch == '\r' && !(c->pos < c->len && t[c->pos] == '\n')) c->line++;
                cast_buf_putc(&f, ch);
            }
            if (c->pos < c->len && t[c->pos] != ',' && t[c->pos] != '\n' && t[c->pos] != '\r') {
                cast_buf_free(&f);
                return cast_fail(err, "%s:%d: unexpected character after a closing quote", c->path, c->line);
            }
        } else {
            size_t s = c->pos;
            while (c->pos < c->len && t[c->pos] != ',' && t[c->pos] != '\n' && t[c->pos] != '\r') c->pos++;
            cast_buf_append(&f, t + s, c->pos - s);
        }
        push_field(c, &f);
        if (c->pos < c->len && t[c->pos] == ',') {
            c->pos++;
            continue;
        }
        eat_newline(c);
        return 1;
    }
}
