/* Patterns (literal or PCRE2 regex) and normalizers: NFC/NFD/NFKC/NFKD
 * (utf8proc), Prepend, Replace, Sequence. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/tok_internal.h"

/* ---- patterns ---- */

/* The files' regexes are written for Oniguruma (Ruby syntax), whose
 * shorthand classes differ from PCRE2's; they are rewritten to Oniguruma's
 * sets (as `tokenizers` 0.22 matches them) so both engines split alike:
 * - \s is Unicode White_Space; PCRE2's also takes U+180E;
 * - \w is Alphabetic, marks, Nd and Pc (PCRE2: L and N only), and outside
 *   a class also the Latin-1 digits-like No characters (superscripts and
 *   fractions), an Oniguruma quirk;
 * - \h is a hex digit (PCRE2: horizontal space).
 * \W inside a class keeps PCRE2's meaning (no union can express it). */
#define WHITE_SPACE "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define WORD "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}"
#define WORD_LATIN1 "\\x{B2}\\x{B3}\\x{B9}\\x{BC}-\\x{BE}"
#define HEX "0-9a-fA-F"

static void rewrite_spaces(const char *re, cast_buf *out) {
    int in_class = 0;
    for (const char *s = re; *s; s++) {
        if (*s == '\\' && s[1]) {
            if (s[1] == 'Q') { /* \Q...\E is literal */
                const char *e = strstr(s + 2, "\\E");
                size_t n = e ? (size_t)(e + 2 - s) : strlen(s);
                cast_buf_append(out, s, n);
                s += n - 1;
                continue;
            }
            const char *r = NULL;
            switch (s[1]) {
            case 's': r = in_class ? WHITE_SPACE : "[" WHITE_SPACE "]"; break;
            case 'S': r = in_class ? "\\S\\x{180E}" : "[^" WHITE_SPACE "]"; break;
            case 'w': r = in_class ? WORD : "[" WORD WORD_LATIN1 "]"; break;
            case 'W': r = in_class ? NULL : "[^" WORD WORD_LATIN1 "]"; break;
            case 'h': r = in_class ? HEX : "[" HEX "]"; break;
            case 'H': r = in_class ? NULL : "[^" HEX "]"; break;
            }
            if (r) cast_buf_puts(out, r);
            else cast_buf_append(out, s, 2);
            s++;
            continue;
        }
        if (!in_class && *s == '[') {
            in_class = 1;
            cast_buf_putc(out, *s);
            /* "[^]" and "[]": a ']' right after the opening is literal */
            if (s[1] == '^') cast_buf_putc(out, *++s);
            if (s[1] == ']') cast_buf_putc(out, *++s);
            continue;
        }
        if (in_class && *s == '[' && s[1] == ':') { /* POSIX [:name:] */
            const char *e = strstr(s + 2, ":]");
            size_t n = e ? (size_t)(e + 2 - s) : strlen(s);
            cast_buf_append(out, s, n);
            s += n - 1;
            continue;
        }
        if (in_class && *s == ']') in_class = 0;
        cast_buf_putc(out, *s);
    }
    cast_buf_reserve(out, 0);
    out->data[out->len] = 0;
}

int tok_pattern_regex(tok_pattern *p, const char *regex, const char *what, cast_err *err) {
    memset(p, 0, sizeof *p);
    int code;
    PCRE2_SIZE off;
    cast_buf rw = {0};
    rewrite_spaces(regex, &rw);
    p->re = pcre2_compile((PCRE2_SPTR)rw.data, rw.len, PCRE2_UTF | PCRE2_UCP, &code, &off, NULL);
    cast_buf_free(&rw);
    if (!p->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return cast_fail(err, "%s: regex \"%s\": %s", what, regex, (char *)msg);
    }
    /* JIT is an optimisation only: where it is unavailable the interpreter
     * gives the same matches. */
    pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE);
    return 0;
}

void tok_pattern_literal(tok_pattern *p, const char *s, size_t n) {
    memset(p, 0, sizeof *p);
    p->literal = cast_xstrndup(s, n);
    p->literal_len = n;
}

int tok_pattern_parse(tok_pattern *p, const cast_json *j, const char *what, cast_err *err) {
    memset(p, 0, sizeof *p);
    const char *s = cast_json_string(cast_json_get(j, "String"));
    if (s) {
        tok_pattern_literal(p, s, strlen(s));
        return 0;
    }
    const char *r = cast_json_string(cast_json_get(j, "Regex"));
    if (r) return tok_pattern_regex(p, r, what, err);
    return cast_fail(err, "%s: pattern must be {\"String\": ...} or {\"Regex\": ...}", what);
}

void tok_pattern_free(tok_pattern *p) {
    free(p->literal);
    if (p->re) pcre2_code_free(p->re);
    memset(p, 0, sizeof *p);
}

int tok_pattern_next(const tok_pattern *p, pcre2_match_data *md, const char *s, size_t n, size_t *pos,
                     long *last_end, size_t *ms, size_t *me) {
    if (!p->re) {
        /* literal: non-overlapping occurrences; an empty literal never matches */
        size_t k = p->literal_len;
        if (!k || *pos + k > n) return 0;
        for (size_t i = *pos; i + k <= n; i++) {
            if (s[i] == p->literal[0] && !memcmp(s + i, p->literal, k)) {
                *ms = i;
                *me = *pos = i + k;
                return 1;
            }
        }
        *pos = n;
        return 0;
    }
    while (*pos <= n) {
        int rc = pcre2_match(p->re, (PCRE2_SPTR)s, n, *pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc < 0) return 0; /* no match (other errors cannot occur on valid UTF-8) */
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t st = ov[0], en = ov[1];
        if (st == en && (long)en == *last_end) {
            /* an empty match right after the previous one: step one character */
            if (*pos >= n) return 0;
            *pos += (size_t)cast_utf8_seq_len((unsigned char)s[*pos]);
            continue;
        }
        *ms = st;
        *me = en;
        *pos = en;
        *last_end = (long)en;
        return 1;
    }
    return 0;
}

/* ---- normalizers ---- */

static int parse_one(const cast_json *j, tok_norm **list, int *n, const char *path, cast_err *err);

int tok_norm_parse(const cast_json *j, tok_norm **list, int *n, const char *path, cast_err *err) {
    return parse_one(j, list, n, path, err);
}

static tok_norm *norm_add(tok_norm **list, int *n) {
    *list = cast_xrealloc(*list, sizeof **list * (size_t)(*n + 1));
    tok_norm *x = &(*list)[(*n)++];
    memset(x, 0, sizeof *x);
    return x;
}

static int parse_one(const cast_json *j, tok_norm **list, int *n, const char *path, cast_err *err) {
    const char *type = cast_json_string(cast_json_get(j, "type"));
    if (!type) return cast_fail(err, "%s: normalizer without a \"type\"", path);
    if (!strcmp(type, "Sequence")) {
        const cast_json *arr = cast_json_get(j, "normalizers");
        if (!cast_json_is_array(arr)) return cast_fail(err, "%s: Sequence normalizer without \"normalizers\"", path);
        for (const cast_json *c = cast_json_first(arr); c; c = cast_json_next(c))
            if (parse_one(c, list, n, path, err)) return -1;
        return 0;
    }
    static const struct {
        const char *name;
        tok_norm_kind kind;
    } unicode[] = {{"NFC", NORM_NFC}, {"NFD", NORM_NFD}, {"NFKC", NORM_NFKC}, {"NFKD", NORM_NFKD}};
    for (size_t i = 0; i < sizeof unicode / sizeof unicode[0]; i++)
        if (!strcmp(type, unicode[i].name)) {
            norm_add(list, n)->kind = unicode[i].kind;
            return 0;
        }
    if (!strcmp(type, "Prepend")) {
        const char *s = cast_json_string(cast_json_get(j, "prepend"));
        if (!s) return cast_fail(err, "%s: Prepend normalizer without \"prepend\"", path);
        tok_norm *x = norm_add(list, n);
        x->kind = NORM_PREPEND;
        x->str = cast_xstrdup(s);
        x->str_len = strlen(s);
        return 0;
    }
    if (!strcmp(type, "Replace")) {
        const char *content = cast_json_string(cast_json_get(j, "content"));
        if (!content) return cast_fail(err, "%s: Replace normalizer without \"content\"", path);
        tok_norm *x = norm_add(list, n);
        x->kind = NORM_REPLACE;
        x->str = cast_xstrdup(content);
        x->str_len = strlen(content);
        cast_buf what = {0};
        cast_buf_printf(&what, "%s: Replace normalizer", path);
        int rc = tok_pattern_parse(&x->pat, cast_json_get(j, "pattern"), what.data, err);
        cast_buf_free(&what);
        return rc;
    }
    return cast_fail(err, "%s: unsupported normalizer \"%s\"", path, type);
}

void tok_norm_free_list(tok_norm *list, int n) {
    for (int i = 0; i < n; i++) {
        free(list[i].str);
        tok_pattern_free(&list[i].pat);
    }
    free(list);
}

static int all_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return 0;
    return 1;
}

/* Applies one normalizer from (s, n) into out; returns 0 when the text is
 * unchanged (out untouched). */
static int norm_one(const tok_norm *x, pcre2_match_data *md, const char *s, size_t n, cast_buf *out) {
    out->len = 0;
    switch (x->kind) {
    case NORM_NFC:
    case NORM_NFD:
    case NORM_NFKC:
    case NORM_NFKD: {
        if (all_ascii(s, n)) return 0; /* ASCII is invariant under all four forms */
        int opt = UTF8PROC_STABLE;
        if (x->kind == NORM_NFC || x->kind == NORM_NFKC) opt |= UTF8PROC_COMPOSE;
        else opt |= UTF8PROC_DECOMPOSE;
        if (x->kind == NORM_NFKC || x->kind == NORM_NFKD) opt |= UTF8PROC_COMPAT;
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, (utf8proc_option_t)opt);
        if (r < 0) { /* cannot happen on validated UTF-8; keep the text as is */
            free(dst);
            return 0;
        }
        cast_buf_append(out, dst, (size_t)r);
        free(dst);
        return 1;
    }
    case NORM_PREPEND:
        if (!n) return 0;
        cast_buf_append(out, x->str, x->str_len);
        cast_buf_append(out, s, n);
        return 1;
    case NORM_REPLACE: {
        size_t pos = 0, done = 0, ms, me;
        long last = -1;
        int any = 0;
        while (tok_pattern_next(&x->pat, md, s, n, &pos, &last, &ms, &me)) {
            cast_buf_append(out, s + done, ms - done);
            cast_buf_append(out, x->str, x->str_len);
            done = me;
            any = 1;
        }
        if (!any) return 0;
        cast_buf_append(out, s + done, n - done);
        return 1;
    }
    }
    return 0;
}

void tok_norm_apply(const tok_norm *list, int n, pcre2_match_data *md, const char *s, size_t len, cast_buf *a,
                    cast_buf *b, const char **out, size_t *out_len) {
    const char *cur = s;
    size_t cur_len = len;
    cast_buf *next = a, *other = b;
    for (int i = 0; i < n; i++) {
        if (norm_one(&list[i], md, cur, cur_len, next)) {
            cast_buf_reserve(next, 0);
            cur = next->data;
            cur_len = next->len;
            cast_buf *t = next;
            next = other;
            other = t;
        }
    }
    *out = cur;
    *out_len = cur_len;
}
