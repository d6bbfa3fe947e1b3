/* Pre-tokenizers: Split (regex or string, five delimiter behaviours, invert),
 * ByteLevel, Metaspace, Sequence (flattened). Applied depth-first: each piece
 * one pre-tokenizer produces goes through the rest, then to the model, so no
 * list of pieces is ever built. */
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

const char tok_gpt2_regex[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static tok_pre *pre_add(tok_pre **list, int *n) {
    *list = cast_xrealloc(*list, sizeof **list * (size_t)(*n + 1));
    tok_pre *x = &(*list)[(*n)++];
    memset(x, 0, sizeof *x);
    return x;
}

int tok_pre_parse(const cast_json *j, tok_pre **list, int *n, const char *path, cast_err *err) {
    const char *type = cast_json_string(cast_json_get(j, "type"));
    if (!type) return cast_fail(err, "%s: pre_tokenizer without a \"type\"", path);
    if (!strcmp(type, "Sequence")) {
        const cast_json *arr = cast_json_get(j, "pretokenizers");
        if (!cast_json_is_array(arr)) return cast_fail(err, "%s: Sequence pre_tokenizer without \"pretokenizers\"", path);
        for (const cast_json *c = cast_json_first(arr); c; c = cast_json_next(c))
            if (tok_pre_parse(c, list, n, path, err)) return -1;
        return 0;
    }
    if (*n >= TOK_MAX_PRE) return cast_fail(err, "%s: more than %d pre-tokenizers", path, TOK_MAX_PRE);
    if (!strcmp(type, "Split")) {
        tok_pre *x = pre_add(list, n);
        x->kind = PRE_SPLIT;
        const char *beh = cast_json_string(cast_json_get(j, "behavior"));
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        int found = -1;
        for (int i = 0; i < 5; i++)
            if (beh && !strcmp(beh, names[i])) found = i;
        if (found < 0) return cast_fail(err, "%s: Split pre_tokenizer: unsupported behavior \"%s\"", path, beh ? beh : "(none)");
        x->behavior = (tok_split_behavior)found;
        if (cast_json_opt_bool(j, "invert", 0, &x->invert, path, err)) return -1;
        cast_buf what = {0};
        cast_buf_printf(&what, "%s: Split pre_tokenizer", path);
        int rc = tok_pattern_parse(&x->pat, cast_json_get(j, "pattern"), what.data, err);
        cast_buf_free(&what);
        return rc;
    }
    if (!strcmp(type, "ByteLevel")) {
        tok_pre *x = pre_add(list, n);
        x->kind = PRE_BYTELEVEL;
        /* trim_offsets only changes offsets, which we do not report */
        if (cast_json_opt_bool(j, "add_prefix_space", 1, &x->add_prefix_space, path, err) ||
            cast_json_opt_bool(j, "use_regex", 1, &x->use_regex, path, err))
            return -1;
        if (x->use_regex) return tok_pattern_regex(&x->pat, tok_gpt2_regex, path, err);
        return 0;
    }
    if (!strcmp(type, "Metaspace")) {
        tok_pre *x = pre_add(list, n);
        x->kind = PRE_METASPACE;
        const char *r = cast_json_string(cast_json_get(j, "replacement"));
        if (!r) r = "\xE2\x96\x81"; /* ▁ */
        size_t rl = strlen(r);
        if (cast_utf8_one_char(r, rl) < 0)
            return cast_fail(err, "%s: Metaspace replacement must be one character", path);
        memcpy(x->repl, r, rl);
        x->repl_len = (int)rl;
        const char *scheme = cast_json_string(cast_json_get(j, "prepend_scheme"));
        if (scheme) {
            if (!strcmp(scheme, "first")) x->scheme = PREPEND_FIRST;
            else if (!strcmp(scheme, "always")) x->scheme = PREPEND_ALWAYS;
            else if (!strcmp(scheme, "never")) x->scheme = PREPEND_NEVER;
            else return cast_fail(err, "%s: Metaspace: unsupported prepend_scheme \"%s\"", path, scheme);
        } else {
            /* files older than prepend_scheme carry add_prefix_space */
            int aps;
            if (cast_json_opt_bool(j, "add_prefix_space", 1, &aps, path, err)) return -1;
            x->scheme = aps ? PREPEND_ALWAYS : PREPEND_NEVER;
        }
        return cast_json_opt_bool(j, "split", 1, &x->split, path, err);
    }
    return cast_fail(err, "%s: unsupported pre_tokenizer \"%s\"", path, type);
}

void tok_pre_free_list(tok_pre *list, int n) {
    for (int i = 0; i < n; i++) tok_pattern_free(&list[i].pat);
    free(list);
}

/* ---- running ---- */

static void seg_push(tok_ctx *c, int level, size_t *n, size_t a, size_t b, size_t m) {
    if ((*n + 1) * 3 > c->seg_cap[level]) {
        c->seg_cap[level] = c->seg_cap[level] ? c->seg_cap[level] * 2 : 96;
        c->seg[level] = cast_xrealloc(c->seg[level], c->seg_cap[level] * sizeof(size_t));
    }
    size_t *s = c->seg[level] + *n * 3;
    s[0] = a;
    s[1] = b;
    s[2] = m;
    (*n)++;
}

static void run_split(tok_ctx *c, int level, const tok_pre *p, const char *s, size_t n, int at_start) {
    /* segments covering s: (start, end, is_match) */
    size_t ns = 0, pos = 0, prev = 0, ms, me;
    long last = -1;
    while (tok_pattern_next(&p->pat, c->md, s, n, &pos, &last, &ms, &me)) {
        if (prev != ms) seg_push(c, level, &ns, prev, ms, 0);
        seg_push(c, level, &ns, ms, me, 1);
        prev = me;
    }
    if (prev != n) seg_push(c, level, &ns, prev, n, 0);
    size_t *g = c->seg[level];
    if (p->invert)
        for (size_t i = 0; i < ns; i++) g[i * 3 + 2] ^= 1;

    /* fold in place into pieces (start, end, removed) */
    size_t np = 0, first = 0;
    switch (p->behavior) {
    case SPLIT_ISOLATED:
        for (size_t i = 0; i < ns; i++) g[i * 3 + 2] = 0;
        np = ns;
        break;
    case SPLIT_REMOVED: np = ns; break;
    case SPLIT_CONTIGUOUS:
    case SPLIT_PREV: {
        int prev_match = 0;
        for (size_t i = 0; i < ns; i++) {
            int m = (int)g[i * 3 + 2];
            int merge = p->behavior == SPLIT_CONTIGUOUS ? m == prev_match : (m && !prev_match);
            if (merge && np) g[(np - 1) * 3 + 1] = g[i * 3 + 1];
            else {
                g[np * 3] = g[i * 3];
                g[np * 3 + 1] = g[i * 3 + 1];
                np++;
            }
            prev_match = m;
        }
        for (size_t i = 0; i < np; i++) g[i * 3 + 2] = 0;
        break;
    }
    case SPLIT_NEXT: {
        /* right to left: a match followed by a non-match joins it */
        int prev_match = 0;
        size_t w = ns; /* pieces fill g[w..ns) */
        for (size_t i = ns; i-- > 0;) {
            int m = (int)g[i * 3 + 2];
            if (m && !prev_match && w < ns) g[w * 3] = g[i * 3];
            else {
                w--;
                g[w * 3] = g[i * 3];
                g[w * 3 + 1] = g[i * 3 + 1];
            }
            prev_match = m;
        }
        for (size_t i = w; i < ns; i++) g[i * 3 + 2] = 0;
        first = w;
        np = ns;
        break;
    }
    }
    for (size_t i = first; i < np; i++) {
        /* re-read through c->seg: deeper levels use their own arrays */
        size_t a = c->seg[level][i * 3], b = c->seg[level][i * 3 + 1], rm = c->seg[level][i * 3 + 2];
        if (rm || a == b) continue;
        tok_pre_run(c, level + 1, s + a, b - a, at_start && a == 0);
    }
}

static void bytelevel_piece(tok_ctx *c, int level, const char *s, size_t n, int at_start) {
    const cast_bytelevel *bm = &c->t->bytes;
    cast_buf *b = &c->lvl_b[level];
    b->len = 0;
    cast_buf_reserve(b, n * 2);
    char *o = b->data;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)s[i];
        o[0] = bm->utf8[x][0];
        if (bm->len[x] == 2) o[1] = bm->utf8[x][1];
        o += bm->len[x];
    }
    b->len = (size_t)(o - b->data);
    tok_pre_run(c, level + 1, b->data, b->len, at_start);
}

static void run_bytelevel(tok_ctx *c, int level, const tok_pre *p, const char *s, size_t n, int at_start) {
    if (p->add_prefix_space && s[0] != ' ') {
        cast_buf *a = &c->lvl_a[level];
        a->len = 0;
        cast_buf_putc(a, ' ');
        cast_buf_append(a, s, n);
        s = a->data;
        n = a->len;
    }
    if (!p->use_regex) {
        bytelevel_piece(c, level, s, n, at_start);
        return;
    }
    size_t pos = 0, prev = 0, ms, me;
    long last = -1;
    while (tok_pattern_next(&p->pat, c->md, s, n, &pos, &last, &ms, &me)) {
        if (prev != ms) bytelevel_piece(c, level, s + prev, ms - prev, at_start && prev == 0);
        if (me > ms) bytelevel_piece(c, level, s + ms, me - ms, at_start && ms == 0);
        prev = me;
    }
    if (prev != n) bytelevel_piece(c, level, s + prev, n - prev, at_start && prev == 0);
}

static void run_metaspace(tok_ctx *c, int level, const tok_pre *p, const char *s, size_t n, int at_start) {
    cast_buf *a = &c->lvl_a[level];
    a->len = 0;
    size_t rl = (size_t)p->repl_len;
    int starts = n >= rl && !memcmp(s, p->repl, rl);
    if (!starts && s[0] == ' ') starts = 1; /* the space becomes the replacement */
    if (!starts && (p->scheme == PREPEND_ALWAYS || (p->scheme == PREPEND_FIRST && at_start)))
        cast_buf_append(a, p->repl, rl);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') cast_buf_append(a, p->repl, rl);
        else cast_buf_putc(a, s[i]);
    }
    const char *t = a->data;
    size_t tn = a->len;
    if (!p->split) {
        tok_pre_run(c, level + 1, t, tn, at_start);
        return;
    }
    /* MergedWithNext on the replacement: a piece starts at each occurrence */
    size_t start = 0;
    for (size_t i = 1; i + rl <= tn; i++) {
        if (t[i] == p->repl[0] && !memcmp(t + i, p->repl, rl)) {
            tok_pre_run(c, level + 1, t + start, i - start, at_start && start == 0);
            start = i;
            i += rl - 1;
        }
    }
    if (start < tn) tok_pre_run(c, level + 1, t + start, tn - start, at_start && start == 0);
}

void tok_pre_run(tok_ctx *c, int level, const char *s, size_t n, int at_start) {
    if (!n) return;
    const struct cast_tokenizer *t = c->t;
    if (level == t->n_pre) {
        tok_bpe_word(c, &t->bpe, s, n);
        return;
    }
    const tok_pre *p = &t->pre[level];
    switch (p->kind) {
    case PRE_SPLIT: run_split(c, level, p, s, n, at_start); break;
    case PRE_BYTELEVEL: run_bytelevel(c, level, p, s, n, at_start); break;
    case PRE_METASPACE: run_metaspace(c, level, p, s, n, at_start); break;
    }
}
