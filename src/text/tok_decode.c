/* Decoders: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace and
 * Sequence (flattened). Each maps a list of token strings to a new list; the
 * decoded text is the concatenation of the last list. */
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

void tok_strlist_add(tok_strlist *l, const char *s, size_t n) {
    if (l->n + 2 > l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->off = cast_xrealloc(l->off, sizeof *l->off * (size_t)l->cap);
    }
    if (!l->n) l->off[0] = l->text.len;
    cast_buf_reserve(&l->text, n); /* data is never NULL, even for "" */
    cast_buf_append(&l->text, s, n);
    l->off[++l->n] = l->text.len;
}

void tok_strlist_free(tok_strlist *l) {
    cast_buf_free(&l->text);
    free(l->off);
    memset(l, 0, sizeof *l);
}

static void strlist_clear(tok_strlist *l) {
    l->n = 0;
    l->text.len = 0;
}

#define ITEM(l, i) ((l)->text.data + (l)->off[i])
#define ITEM_LEN(l, i) ((l)->off[(i) + 1] - (l)->off[i])

static tok_dec *dec_add(tok_dec **list, int *n) {
    *list = cast_xrealloc(*list, sizeof **list * (size_t)(*n + 1));
    tok_dec *x = &(*list)[(*n)++];
    memset(x, 0, sizeof *x);
    return x;
}

/* One character given as a JSON string (Metaspace replacement, Strip content). */
static int one_char(const char *s, char *out, int *out_len, int32_t *cp) {
    size_t n = s ? strlen(s) : 0;
    int32_t c = cast_utf8_one_char(s, n);
    if (c < 0) return -1;
    if (out) memcpy(out, s, n);
    if (out_len) *out_len = (int)n;
    if (cp) *cp = c;
    return 0;
}

int tok_dec_parse(const cast_json *j, tok_dec **list, int *n, const char *path, cast_err *err) {
    const char *type = cast_json_string(cast_json_get(j, "type"));
    if (!type) return cast_fail(err, "%s: decoder without a \"type\"", path);
    if (!strcmp(type, "Sequence")) {
        const cast_json *arr = cast_json_get(j, "decoders");
        if (!cast_json_is_array(arr)) return cast_fail(err, "%s: Sequence decoder without \"decoders\"", path);
        for (const cast_json *c = cast_json_first(arr); c; c = cast_json_next(c))
            if (tok_dec_parse(c, list, n, path, err)) return -1;
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) {
        dec_add(list, n)->kind = DEC_BYTELEVEL; /* its options only concern offsets */
        return 0;
    }
    if (!strcmp(type, "ByteFallback")) {
        dec_add(list, n)->kind = DEC_BYTEFALLBACK;
        return 0;
    }
    if (!strcmp(type, "Fuse")) {
        dec_add(list, n)->kind = DEC_FUSE;
        return 0;
    }
    if (!strcmp(type, "Metaspace")) {
        tok_dec *x = dec_add(list, n);
        x->kind = DEC_METASPACE;
        const char *r = cast_json_string(cast_json_get(j, "replacement"));
        if (one_char(r ? r : "\xE2\x96\x81", x->repl, &x->repl_len, NULL))
            return cast_fail(err, "%s: Metaspace decoder: replacement must be one character", path);
        const char *scheme = cast_json_string(cast_json_get(j, "prepend_scheme"));
        if (scheme) x->prepend = strcmp(scheme, "never") != 0;
        else if (cast_json_opt_bool(j, "add_prefix_space", 1, &x->prepend, path, err)) return -1;
        return 0;
    }
    if (!strcmp(type, "Strip")) {
        tok_dec *x = dec_add(list, n);
        x->kind = DEC_STRIP;
        int64_t a, b;
        if (one_char(cast_json_string(cast_json_get(j, "content")), NULL, NULL, &x->strip_char))
            return cast_fail(err, "%s: Strip decoder: content must be one character", path);
        if (cast_json_opt_int(j, "start", 0, &a, path, err) || cast_json_opt_int(j, "stop", 0, &b, path, err)) return -1;
        if (a < 0 || b < 0 || a > 1000000 || b > 1000000)
            return cast_fail(err, "%s: Strip decoder: start and stop must be small non-negative integers", path);
        x->strip_start = (int)a;
        x->strip_stop = (int)b;
        return 0;
    }
    if (!strcmp(type, "Replace")) {
        tok_dec *x = dec_add(list, n);
        x->kind = DEC_REPLACE;
        const char *content = cast_json_string(cast_json_get(j, "content"));
        if (!content) return cast_fail(err, "%s: Replace decoder without \"content\"", path);
        x->content = cast_xstrdup(content);
        x->content_len = strlen(content);
        cast_buf what = {0};
        cast_buf_printf(&what, "%s: Replace decoder", path);
        int rc = tok_pattern_parse(&x->pat, cast_json_get(j, "pattern"), what.data, err);
        cast_buf_free(&what);
        return rc;
    }
    return cast_fail(err, "%s: unsupported decoder \"%s\"", path, type);
}

void tok_dec_free_list(tok_dec *list, int n) {
    for (int i = 0; i < n; i++) {
        tok_pattern_free(&list[i].pat);
        free(list[i].content);
    }
    free(list);
}

/* Tokens back to bytes through the byte-level alphabet; a token holding a
 * character outside it (an added token, say) is taken as its own bytes. The
 * whole is then read as UTF-8, lossily. */
static void dec_bytelevel(const cast_bytelevel *bm, const tok_strlist *in, tok_strlist *out, cast_buf *tmp) {
    tmp->len = 0;
    for (int i = 0; i < in->n; i++) {
        const char *s = ITEM(in, i);
        size_t n = ITEM_LEN(in, i), start = tmp->len, k = 0;
        int ok = 1;
        while (k < n) {
            int len;
            int32_t cp = cast_utf8_decode_valid(s + k, &len);
            if (cp >= CAST_BYTELEVEL_CPS || bm->cp_to_byte[cp] < 0) {
                ok = 0;
                break;
            }
            cast_buf_putc(tmp, (char)bm->cp_to_byte[cp]);
            k += (size_t)len;
        }
        if (!ok) {
            tmp->len = start;
            cast_buf_append(tmp, s, n);
        }
    }
    cast_buf lossy = {0};
    cast_utf8_lossy(&lossy, tmp->data ? tmp->data : "", tmp->len);
    tok_strlist_add(out, lossy.data ? lossy.data : "", lossy.len);
    cast_buf_free(&lossy);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "<0xXX>" tokens gathered into bytes; a run that is not valid UTF-8
 * becomes one U+FFFD per byte. */
static void dec_bytefallback(const tok_strlist *in, tok_strlist *out, cast_buf *tmp) {
    tmp->len = 0;
    for (int i = 0; i <= in->n; i++) {
        int byte = -1;
        if (i < in->n) {
            const char *s = ITEM(in, i);
            if (ITEM_LEN(in, i) == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && hexval(s[3]) >= 0 && hexval(s[4]) >= 0)
                byte = hexval(s[3]) * 16 + hexval(s[4]);
        }
        if (byte >= 0) {
            cast_buf_putc(tmp, (char)byte);
            continue;
        }
        if (tmp->len) {
            if (cast_utf8_valid_prefix(tmp->data, tmp->len) == tmp->len) tok_strlist_add(out, tmp->data, tmp->len);
            else
                for (size_t k = 0; k < tmp->len; k++) tok_strlist_add(out, CAST_UTF8_REPLACEMENT, 3);
            tmp->len = 0;
        }
        if (i < in->n) tok_strlist_add(out, ITEM(in, i), ITEM_LEN(in, i));
    }
}

static void dec_metaspace(const tok_dec *x, const tok_strlist *in, tok_strlist *out, cast_buf *tmp) {
    size_t rl = (size_t)x->repl_len;
    for (int i = 0; i < in->n; i++) {
        const char *s = ITEM(in, i);
        size_t n = ITEM_LEN(in, i);
        tmp->len = 0;
        for (size_t k = 0; k < n;) {
            if (k + rl <= n && !memcmp(s + k, x->repl, rl)) {
                /* the first token loses every replacement character, as in `tokenizers` */
                if (!(i == 0 && x->prepend)) cast_buf_putc(tmp, ' ');
                k += rl;
            } else cast_buf_putc(tmp, s[k++]);
        }
        tok_strlist_add(out, tmp->data ? tmp->data : "", tmp->len);
    }
}

static void dec_strip(const tok_dec *x, const tok_strlist *in, tok_strlist *out) {
    char enc[4];
    size_t cl = (size_t)cast_utf8_encode(x->strip_char, enc);
    for (int i = 0; i < in->n; i++) {
        const char *s = ITEM(in, i);
        size_t a = 0, b = ITEM_LEN(in, i);
        for (int k = 0; k < x->strip_start && a + cl <= b && !memcmp(s + a, enc, cl); k++) a += cl;
        for (int k = 0; k < x->strip_stop && b >= a + cl && !memcmp(s + b - cl, enc, cl); k++) b -= cl;
        tok_strlist_add(out, s + a, b - a);
    }
}

static void dec_replace(const tok_dec *x, pcre2_match_data *md, const tok_strlist *in, tok_strlist *out,
                        cast_buf *tmp) {
    for (int i = 0; i < in->n; i++) {
        const char *s = ITEM(in, i);
        size_t n = ITEM_LEN(in, i), pos = 0, done = 0, ms, me;
        long last = -1;
        tmp->len = 0;
        while (tok_pattern_next(&x->pat, md, s, n, &pos, &last, &ms, &me)) {
            cast_buf_append(tmp, s + done, ms - done);
            cast_buf_append(tmp, x->content, x->content_len);
            done = me;
        }
        cast_buf_append(tmp, s + done, n - done);
        tok_strlist_add(out, tmp->data, tmp->len);
    }
}

void tok_dec_run(const tok_dec *list, int n, const cast_bytelevel *bm, pcre2_match_data *md, tok_strlist *tokens,
                 cast_buf *out) {
    tok_strlist other = {0}, *in = tokens, *res = &other;
    cast_buf tmp = {0};
    for (int d = 0; d < n; d++) {
        const tok_dec *x = &list[d];
        strlist_clear(res);
        switch (x->kind) {
        case DEC_BYTELEVEL: dec_bytelevel(bm, in, res, &tmp); break;
        case DEC_BYTEFALLBACK: dec_bytefallback(in, res, &tmp); break;
        case DEC_METASPACE: dec_metaspace(x, in, res, &tmp); break;
        case DEC_STRIP: dec_strip(x, in, res); break;
        case DEC_REPLACE: dec_replace(x, md, in, res, &tmp); break;
        case DEC_FUSE:
            tok_strlist_add(res, in->n ? ITEM(in, 0) : "", in->n ? in->off[in->n] - in->off[0] : 0);
            break;
        }
        tok_strlist *t = in;
        in = res;
        res = t;
    }
    if (in->n) cast_buf_append(out, ITEM(in, 0), in->off[in->n] - in->off[0]);
    cast_buf_reserve(out, 0);
    out->data[out->len] = 0;
    cast_buf_free(&tmp);
    tok_strlist_free(&other);
}
