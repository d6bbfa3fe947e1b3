/* The template lexer: text, {{ }} and {% %} tags with their whitespace
 * control (trim_blocks, lstrip_blocks, `-` and `+`), {# #} comments,
 * {% raw %}, and inside tags names, numbers, Python string literals and
 * operators. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/jinja_internal.h"
#include "text/utf8.h"

typedef struct lexer {
    arena *a;
    const char *src;
    size_t n;
    tok *toks;
    int nt, cap;
    const char *what;
    cast_err *err;
    size_t line_pos; /* line_at() cache: positions mostly increase */
    int line_no;
} lexer;

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static int is_ident0(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_ident(char c) { return is_ident0(c) || (c >= '0' && c <= '9'); }

static int line_at(lexer *L, size_t pos) {
    if (pos < L->line_pos || L->line_no == 0) {
        L->line_pos = 0;
        L->line_no = 1;
    }
    for (; L->line_pos < pos && L->line_pos < L->n; L->line_pos++) L->line_no += L->src[L->line_pos] == '\n';
    return L->line_no;
}

static tok *emit(lexer *L, int t, size_t pos, const char *p, size_t n) {
    L->toks = jinja_grow(L->a, L->toks, L->nt, &L->cap, sizeof(tok));
    tok *k = &L->toks[L->nt++];
    memset(k, 0, sizeof *k);
    k->t = t;
    k->line = line_at(L, pos);
    k->p = p;
    k->n = n;
    return k;
}

static int lex_fail(lexer *L, size_t pos, const char *msg) {
    return cast_fail(L->err, "%s: chat template line %d: %s", L->what, line_at(L, pos), msg);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A string literal at src[*pos] (the quote); decodes Python escapes. */
static int lex_string(lexer *L, size_t *pos) {
    size_t start = *pos;
    char q = L->src[start];
    size_t i = start + 1;
    cast_buf b = {0};
    while (i < L->n && L->src[i] != q) {
        char c = L->src[i];
        if (c != '\\' || i + 1 >= L->n) {
            cast_buf_putc(&b, c);
            i++;
            continue;
        }
        char e = L->src[i + 1];
        i += 2;
        switch (e) {
        case 'n': cast_buf_putc(&b, '\n'); break;
        case 't': cast_buf_putc(&b, '\t'); break;
        case 'r': cast_buf_putc(&b, '\r'); break;
        case 'a': cast_buf_putc(&b, '\a'); break;
        case 'b': cast_buf_putc(&b, '\b'); break;
        case 'f': cast_buf_putc(&b, '\f'); break;
        case 'v': cast_buf_putc(&b, '\v'); break;
        case '\\': cast_buf_putc(&b, '\\'); break;
        case '\'': cast_buf_putc(&b, '\''); break;
        case '"': cast_buf_putc(&b, '"'); break;
        case '\n': break; /* line continuation */
        case 'x':
        case 'u':
        case 'U': {
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t cp = 0; /* unsigned: 8 hex digits may exceed INT32_MAX */
            for (int d = 0; d < digits; d++) {
                int h = i + (size_t)d < L->n ? hexval(L->src[i + (size_t)d]) : -1;
                if (h < 0) {
                    cast_buf_free(&b);
                    return lex_fail(L, start, "bad escape in string literal");
                }
                cp = cp * 16 + (uint32_t)h;
            }
            i += (size_t)digits;
            if (cp > 0x10FFFF || !utf8proc_codepoint_valid((utf8proc_int32_t)cp)) {
                cast_buf_free(&b);
                return lex_fail(L, start, "bad code point in string literal");
            }
            cast_utf8_append(&b, (int32_t)cp);
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                int32_t cp = e - '0';
                for (int d = 0; d < 2 && i < L->n && L->src[i] >= '0' && L->src[i] <= '7'; d++) cp = cp * 8 + (L->src[i++] - '0');
                cast_utf8_append(&b, cp);
            } else {
                /* Python keeps unknown escapes as written */
                cast_buf_putc(&b, '\\');
                cast_buf_putc(&b, e);
            }
        }
    }
    if (i >= L->n) {
        cast_buf_free(&b);
        return lex_fail(L, start, "unterminated string literal");
    }
    tok *k = emit(L, TK_STR, start, NULL, 0);
    k->p = jinja_strndup(L->a, b.data ? b.data : "", b.len);
    k->n = b.len;
    cast_buf_free(&b);
    *pos = i + 1;
    return 0;
}

static const char *const OPS[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "(", ")",
                                  "[",  "]",  "{",  "}",  ",",  ".",  ":", "|", "=", "<", ">", NULL};

/* Lexes the inside of {{ }} or {% %} starting at *pos; stops after the closer.
 * Returns the closer's whitespace-control sign ('-' or 0) through *strip. */
static int lex_tag(lexer *L, size_t *pos, int block, int *strip) {
    const char close = block ? '%' : '}';
    int depth = 0;
    size_t i = *pos, open = *pos;
    for (;;) {
        while (i < L->n && is_ws(L->src[i])) i++;
        if (i >= L->n) return lex_fail(L, open, block ? "unclosed {% tag" : "unclosed {{ tag");
        const char *s = L->src + i;
        size_t left = L->n - i;
        if (depth == 0) {
            if (left >= 3 && s[0] == '-' && s[1] == close && s[2] == '}') {
                emit(L, block ? TK_BEND : TK_VEND, i, s, 3);
                *pos = i + 3;
                *strip = '-';
                return 0;
            }
            if (left >= 2 && s[0] == close && s[1] == '}') {
                emit(L, block ? TK_BEND : TK_VEND, i, s, 2);
                *pos = i + 2;
                *strip = 0;
                return 0;
            }
        }
        char c = s[0];
        if (c == '\'' || c == '"') {
            if (lex_string(L, &i)) return -1;
            continue;
        }
        if (is_ident0(c)) {
            size_t j = i;
            while (j < L->n && is_ident(L->src[j])) j++;
            emit(L, TK_NAME, i, s, j - i);
            i = j;
            continue;
        }
        if (c >= '0' && c <= '9') {
            size_t j = i;
            int is_float = 0;
            while (j < L->n && ((L->src[j] >= '0' && L->src[j] <= '9') || L->src[j] == '_')) j++;
            if (j + 1 < L->n && L->src[j] == '.' && L->src[j + 1] >= '0' && L->src[j + 1] <= '9') {
                is_float = 1;
                j++;
                while (j < L->n && ((L->src[j] >= '0' && L->src[j] <= '9') || L->src[j] == '_')) j++;
            }
            if (j < L->n && (L->src[j] == 'e' || L->src[j] == 'E')) {
                size_t k = j + 1;
                if (k < L->n && (L->src[k] == '+' || L->src[k] == '-')) k++;
                if (k < L->n && L->src[k] >= '0' && L->src[k] <= '9') {
                    is_float = 1;
                    j = k;
                    while (j < L->n && L->src[j] >= '0' && L->src[j] <= '9') j++;
                }
            }
            char tmp[64];
            size_t m = 0;
            for (size_t k = i; k < j && m < sizeof tmp - 1; k++)
                if (L->src[k] != '_') tmp[m++] = L->src[k];
            tmp[m] = 0;
            tok *k = emit(L, is_float ? TK_FLOAT : TK_INT, i, s, j - i);
            if (is_float) k->f = strtod(tmp, NULL);
            else k->i = strtoll(tmp, NULL, 10);
            i = j;
            continue;
        }
        int matched = 0;
        for (int o = 0; OPS[o]; o++) {
            size_t m = strlen(OPS[o]);
            if (left >= m && memcmp(s, OPS[o], m) == 0) {
                emit(L, TK_OP, i, s, m);
                if (c == '(' || c == '[' || c == '{') depth++;
                if ((c == ')' || c == ']' || c == '}') && depth > 0) depth--;
                i += m;
                matched = 1;
                break;
            }
        }
        if (!matched) {
            char msg[64];
            snprintf(msg, sizeof msg, "unexpected character '%c'", c);
            return lex_fail(L, i, msg);
        }
    }
}

/* After a tag closer: `-` strips all following whitespace; trim_blocks drops
 * one newline after a block or comment tag. */
static size_t after_tag(const lexer *L, size_t i, int strip, int trim) {
    if (strip == '-') {
        while (i < L->n && is_ws(L->src[i])) i++;
    } else if (trim && i < L->n && L->src[i] == '\n') {
        i++;
    }
    return i;
}

/* Matches `{%[-+]? WORD [-]?%}` at pos; sets *end after it and *rstrip. */
static int match_simple_tag(const lexer *L, size_t pos, const char *word, size_t *end, int *rstrip, int *lsign) {
    const char *s = L->src;
    size_t i = pos;
    if (i + 1 >= L->n || s[i] != '{' || s[i + 1] != '%') return 0;
    i += 2;
    *lsign = 0;
    if (i < L->n && (s[i] == '-' || s[i] == '+')) *lsign = s[i++];
    while (i < L->n && is_ws(s[i])) i++;
    size_t m = strlen(word);
    if (i + m > L->n || memcmp(s + i, word, m) != 0 || (i + m < L->n && is_ident(s[i + m]))) return 0;
    i += m;
    while (i < L->n && is_ws(s[i])) i++;
    *rstrip = 0;
    if (i < L->n && s[i] == '-') {
        *rstrip = '-';
        i++;
    }
    if (i + 1 >= L->n || s[i] != '%' || s[i + 1] != '}') return 0;
    *end = i + 2;
    return 1;
}

static void emit_text(lexer *L, size_t pos, const char *p, size_t n) {
    if (n) emit(L, TK_TEXT, pos, p, n);
}

static int lex(lexer *L) {
    size_t p = 0;
    int line_starting = 1;
    while (p < L->n) {
        /* next tag opener */
        size_t q = p;
        while (q + 1 < L->n && !(L->src[q] == '{' && (L->src[q + 1] == '{' || L->src[q + 1] == '%' || L->src[q + 1] == '#')))
            q++;
        if (q + 1 >= L->n) {
            emit_text(L, p, L->src + p, L->n - p);
            break;
        }
        char kind = L->src[q + 1];
        char sign = (q + 2 < L->n && (L->src[q + 2] == '-' || L->src[q + 2] == '+')) ? L->src[q + 2] : 0;
        size_t tlen = q - p;
        const char *text = L->src + p;
        if (sign == '-') {
            while (tlen > 0 && is_ws(text[tlen - 1])) tlen--;
        } else if (sign != '+' && kind != '{') {
            /* lstrip_blocks: a block/comment tag alone at the start of its line */
            size_t lpos = tlen;
            while (lpos > 0 && text[lpos - 1] != '\n') lpos--;
            if (lpos > 0 || line_starting) {
                int only_ws = lpos < tlen;
                for (size_t k = lpos; k < tlen; k++)
                    if (!is_ws(text[k])) only_ws = 0;
                if (only_ws) tlen = lpos;
            }
        }
        emit_text(L, p, text, tlen);
        size_t inner = q + 2 + (sign ? 1 : 0);
        size_t after;
        if (kind == '#') {
            const char *end = NULL;
            for (size_t k = inner; k + 1 < L->n; k++)
                if (L->src[k] == '#' && L->src[k + 1] == '}') {
                    end = L->src + k;
                    break;
                }
            if (!end) return lex_fail(L, q, "unclosed comment");
            size_t e = (size_t)(end - L->src);
            int strip = (e > inner && L->src[e - 1] == '-') ? '-' : 0;
            after = after_tag(L, e + 2, strip, 1);
        } else if (kind == '%') {
            size_t raw_end;
            int rstrip, lsign;
            if (match_simple_tag(L, q, "raw", &raw_end, &rstrip, &lsign)) {
                size_t k = after_tag(L, raw_end, rstrip, 1);
                size_t body = k, close_end = 0;
                int close_rstrip = 0, close_lsign = 0;
                while (k < L->n && !match_simple_tag(L, k, "endraw", &close_end, &close_rstrip, &close_lsign)) k++;
                if (k >= L->n) return lex_fail(L, q, "unclosed {% raw %}");
                size_t blen = k - body;
                if (close_lsign == '-')
                    while (blen > 0 && is_ws(L->src[body + blen - 1])) blen--;
                emit_text(L, body, L->src + body, blen);
                after = after_tag(L, close_end, close_rstrip, 1);
            } else {
                emit(L, TK_BBEGIN, q, L->src + q, inner - q);
                int strip;
                size_t k = inner;
                if (lex_tag(L, &k, 1, &strip)) return -1;
                after = after_tag(L, k, strip, 1);
            }
        } else {
            emit(L, TK_VBEGIN, q, L->src + q, inner - q);
            int strip;
            size_t k = inner;
            if (lex_tag(L, &k, 0, &strip)) return -1;
            after = after_tag(L, k, strip, 0);
        }
        line_starting = after > 0 && L->src[after - 1] == '\n';
        p = after;
    }
    emit(L, TK_EOF, L->n, L->src + L->n, 0);
    return 0;
}

int jinja_lex(arena *a, const char *src, size_t n, const char *what, cast_err *err, tok **toks, int *n_toks) {
    lexer L = {.a = a, .src = src, .n = n, .what = what, .err = err};
    if (lex(&L)) return -1;
    *toks = L.toks;
    *n_toks = L.nt;
    return 0;
}
