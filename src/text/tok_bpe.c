/* The BPE model: vocabulary and merges from tokenizer.json or from GPT-2's
 * vocab.json + merges.txt, and the merge loop (a heap of (rank, position)
 * over a linked list of symbols: O(n log n) on long words, which matters for
 * SentencePiece-style files where a whole sentence is one word). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "text/tok_internal.h"

void tok_bpe_free(tok_bpe *m) {
    cast_strmap_free(&m->vocab);
    cast_strmap_free(&m->merges);
    free(m->pieces);
    free(m->piece);
    free(m->prefix);
    free(m->suffix);
    free(m->cp_id);
    memset(m, 0, sizeof *m);
}

static inline int vocab_id(const tok_bpe *m, const char *s, size_t n) {
    const int64_t *id = cast_strmap_find(&m->vocab, s, n);
    return id ? (int)*id : -1;
}

int tok_bpe_lookup(const tok_bpe *m, const char *s, size_t n) { return vocab_id(m, s, n); }

/* The rank of merging (a, b), or -1 when they do not merge; *merged gets the result. */
static inline int merge_rank(const tok_bpe *m, int a, int b, int *merged) {
    const int64_t *v = cast_strmap_find_pair(&m->merges, a, b);
    *merged = v ? (int)(uint32_t)*v : -1;
    return v ? (int)(*v >> 32) : -1;
}

/* Copies the vocabulary object {piece: id} into the arena and the maps. */
static int load_vocab(tok_bpe *m, const cast_json *vocab, const char *path, cast_err *err) {
    if (!cast_json_is_object(vocab)) return cast_fail(err, "%s: model: \"vocab\" must be an object", path);
    size_t total = 0, count = 0;
    int max_id = -1;
    for (const cast_json *e = cast_json_first(vocab); e; e = cast_json_next(e), count++) {
        double d = cast_json_number(e);
        /* ids index a table: beyond 2^24 a hostile file would only make us allocate gigabytes */
        if (!cast_json_is_number(e) || d < 0 || d > 16777215.0 || d != (double)(int)d)
            return cast_fail(err, "%s: vocab entry \"%s\" must map to an integer id in 0..16777215", path, cast_json_key(e));
        total += strlen(cast_json_key(e)) + 1;
        if ((int)d > max_id) max_id = (int)d;
    }
    cast_strmap_reserve(&m->vocab, count);
    m->pieces = cast_xmalloc(total ? total : 1);
    m->n_ids = max_id + 1;
    m->piece = cast_xcalloc((size_t)(m->n_ids ? m->n_ids : 1), sizeof *m->piece);
    char *p = m->pieces;
    for (const cast_json *e = cast_json_first(vocab); e; e = cast_json_next(e)) {
        const char *k = cast_json_key(e);
        size_t len = strlen(k);
        memcpy(p, k, len + 1);
        int id = (int)cast_json_number(e);
        *cast_strmap_upsert(&m->vocab, p, len, id, NULL) = id; /* a repeated piece: the last id wins */
        m->piece[id] = p;
        p += len + 1;
    }
    m->pieces_len = total;
    return 0;
}

/* Tables that spare hashing on the hot path. */
static void build_fast_tables(tok_bpe *m) {
    char s[8];
    for (int b = 0; b < 256; b++) {
        snprintf(s, sizeof s, "<0x%02X>", b);
        m->byte_id[b] = vocab_id(m, s, 6);
    }
    m->cp_id = cast_xmalloc(sizeof(int) * TOK_CP_FAST);
    for (int cp = 0; cp < TOK_CP_FAST; cp++) {
        int len = cast_utf8_encode(cp, s);
        m->cp_id[cp] = vocab_id(m, s, (size_t)len);
    }
}

static int add_merge(tok_bpe *m, const char *a, size_t al, const char *b, size_t bl, int rank, const char *path,
                     const char *unit, long no, cast_err *err) {
    int ia = vocab_id(m, a, al), ib = vocab_id(m, b, bl);
    if (ia < 0 || ib < 0)
        return cast_fail(err, "%s: %s %ld (\"%.*s %.*s\"): \"%.*s\" is not in the vocabulary", path, unit, no, (int)al, a,
                         (int)bl, b, ia < 0 ? (int)al : (int)bl, ia < 0 ? a : b);
    /* the merged token drops the right part's continuing-subword prefix */
    size_t skip = m->prefix ? strlen(m->prefix) : 0;
    if (skip > bl) skip = bl;
    char stack[256];
    size_t nl = al + bl - skip;
    char *joined = nl <= sizeof stack ? stack : cast_xmalloc(nl);
    memcpy(joined, a, al);
    memcpy(joined + al, b + skip, bl - skip);
    int merged = vocab_id(m, joined, nl);
    if (joined != stack) free(joined);
    if (merged < 0)
        return cast_fail(err, "%s: %s %ld (\"%.*s %.*s\"): the merged token is not in the vocabulary", path, unit, no, (int)al,
                         a, (int)bl, b);
    *cast_strmap_upsert_pair(&m->merges, ia, ib, 0, NULL) = (int64_t)rank << 32 | (uint32_t)merged;
    return 0;
}

/* "a b" form: exactly one space. unit and no name it in messages. */
static int add_merge_line(tok_bpe *m, const char *line, size_t n, int rank, const char *path, const char *unit,
                          long no, cast_err *err) {
    const char *sp = memchr(line, ' ', n);
    if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp - line) - 1))
        return cast_fail(err, "%s: %s %ld (\"%.*s\") must be two tokens separated by one space", path, unit, no, (int)n, line);
    return add_merge(m, line, (size_t)(sp - line), sp + 1, n - (size_t)(sp - line) - 1, rank, path, unit, no, err);
}

static int opt_affix(const cast_json *model, const char *key, char **out, const char *path, cast_err *err) {
    const char *s;
    if (cast_json_opt_string(model, key, &s, path, err)) return -1;
    /* an empty prefix or suffix is the same as none */
    *out = s && *s ? cast_xstrdup(s) : NULL;
    return 0;
}

int tok_bpe_from_json(tok_bpe *m, const cast_json *model, const char *path, cast_err *err) {
    memset(m, 0, sizeof *m);
    m->unk = -1;
    const char *type = cast_json_string(cast_json_get(model, "type"));
    if (type && strcmp(type, "BPE")) return cast_fail(err, "%s: unsupported model \"%s\"", path, type);
    if (!type && !cast_json_get(model, "merges"))
        return cast_fail(err, "%s: model has no \"type\" and is not BPE", path);
    const cast_json *dropout = cast_json_get(model, "dropout");
    if (dropout && cast_json_number(dropout) != 0.0)
        return cast_fail(err, "%s: unsupported BPE option \"dropout\" (only null or 0)", path);
    if (opt_affix(model, "continuing_subword_prefix", &m->prefix, path, err) ||
        opt_affix(model, "end_of_word_suffix", &m->suffix, path, err) ||
        cast_json_opt_bool(model, "fuse_unk", 0, &m->fuse_unk, path, err) ||
        cast_json_opt_bool(model, "byte_fallback", 0, &m->byte_fallback, path, err) ||
        cast_json_opt_bool(model, "ignore_merges", 0, &m->ignore_merges, path, err))
        return -1;
    if (load_vocab(m, cast_json_get(model, "vocab"), path, err)) return -1;
    const char *unk;
    if (cast_json_opt_string(model, "unk_token", &unk, path, err)) return -1;
    if (unk) {
        m->unk = vocab_id(m, unk, strlen(unk));
        if (m->unk < 0) return cast_fail(err, "%s: unk_token \"%s\" is not in the vocabulary", path, unk);
    }
    const cast_json *merges = cast_json_get(model, "merges");
    if (merges && !cast_json_is_array(merges)) return cast_fail(err, "%s: model: \"merges\" must be an array", path);
    cast_strmap_reserve(&m->merges, (size_t)cast_json_array_size(merges));
    int rank = 0;
    for (const cast_json *e = cast_json_first(merges); e; e = cast_json_next(e), rank++) {
        const char *s = cast_json_string(e);
        if (s) {
            if (add_merge_line(m, s, strlen(s), rank, path, "merge", rank + 1L, err)) return -1;
            continue;
        }
        const char *a = cast_json_string(cast_json_array_item(e, 0)), *b = cast_json_string(cast_json_array_item(e, 1));
        if (cast_json_array_size(e) != 2 || !a || !b)
            return cast_fail(err, "%s: merge %d must be \"a b\" or [\"a\", \"b\"]", path, rank + 1);
        if (add_merge(m, a, strlen(a), b, strlen(b), rank, path, "merge", rank + 1L, err)) return -1;
    }
    build_fast_tables(m);
    return 0;
}

/* A whole file that must be UTF-8, as Rust reads it. */
static int read_utf8(const char *path, char **text, size_t *len, cast_err *err) {
    if (cast_read_file(path, text, len, err)) return -1;
    size_t ok = cast_utf8_valid_prefix(*text, *len);
    if (ok == *len) return 0;
    free(*text);
    *text = NULL;
    return cast_fail(err, "%s: not valid UTF-8 (byte %zu)", path, ok);
}

int tok_bpe_from_files(tok_bpe *m, const char *vocab_path, const char *merges_path, cast_err *err) {
    memset(m, 0, sizeof *m);
    m->unk = -1;
    char *text;
    size_t len;
    if (read_utf8(vocab_path, &text, &len, err)) return -1;
    cast_json *vocab = cast_json_parse(text, len, vocab_path, err);
    free(text);
    if (!vocab) return -1;
    int rc = load_vocab(m, vocab, vocab_path, err);
    cast_json_free(vocab);
    if (rc) return -1;
    if (read_utf8(merges_path, &text, &len, err)) return -1;
    size_t lines = 1;
    for (const char *nl = text; (nl = memchr(nl, '\n', len - (size_t)(nl - text))); nl++) lines++;
    cast_strmap_reserve(&m->merges, lines);
    int rank = 0;
    size_t line_no = 0;
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && text[e] != '\n') e++;
        size_t n = e - i;
        if (n && text[i + n - 1] == '\r') n--;
        line_no++;
        if (n && !(n >= 8 && !memcmp(text + i, "#version", 8))) {
            if (add_merge_line(m, text + i, n, rank, merges_path, "line", (long)line_no, err)) {
                free(text);
                return -1;
            }
            rank++;
        }
        i = e + 1;
    }
    free(text);
    build_fast_tables(m);
    return 0;
}

/* ---- tokenizing one word ---- */

static void sym_add(tok_ctx *c, int *ns, int id, int len) {
    if ((size_t)*ns >= c->sym_cap) {
        c->sym_cap = c->sym_cap ? c->sym_cap * 2 : 256;
        c->sym = cast_xrealloc(c->sym, c->sym_cap * sizeof *c->sym);
    }
    tok_bpe_sym *s = &c->sym[*ns];
    s->id = id;
    s->len = len;
    s->prev = *ns - 1;
    s->next = *ns + 1;
    (*ns)++;
}

static void heap_push(tok_ctx *c, size_t *hn, uint64_t key) {
    if (*hn >= c->heap_cap) {
        c->heap_cap = c->heap_cap ? c->heap_cap * 2 : 256;
        c->heap = cast_xrealloc(c->heap, c->heap_cap * sizeof *c->heap);
    }
    uint64_t *h = c->heap;
    size_t i = (*hn)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= key) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = key;
}

static uint64_t heap_pop(tok_ctx *c, size_t *hn) {
    uint64_t *h = c->heap, top = h[0], last = h[--(*hn)];
    size_t i = 0, n = *hn;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n) break;
        if (l + 1 < n && h[l + 1] < h[l]) l++;
        if (h[l] >= last) break;
        h[i] = h[l];
        i = l;
    }
    if (n) h[i] = last;
    return top;
}

/* Id of the character s[0..clen) as a symbol of the word, with the
 * continuing-subword prefix (not first) and end-of-word suffix (last). */
static int char_id(tok_ctx *c, const tok_bpe *m, const char *s, int clen, int first, int last) {
    if (!m->prefix && !m->suffix) {
        if (clen <= 2) {
            int dummy, cp = cast_utf8_decode_valid(s, &dummy);
            if (cp < TOK_CP_FAST) return m->cp_id[cp];
        }
        return vocab_id(m, s, (size_t)clen);
    }
    cast_buf *b = &c->tmp;
    b->len = 0;
    if (!first && m->prefix) cast_buf_puts(b, m->prefix);
    cast_buf_append(b, s, (size_t)clen);
    if (last && m->suffix) cast_buf_puts(b, m->suffix);
    return vocab_id(m, b->data, b->len);
}

void tok_bpe_word(tok_ctx *c, const tok_bpe *m, const char *s, size_t n) {
    if (m->ignore_merges) {
        int id = vocab_id(m, s, n);
        if (id >= 0) {
            tok_out_push(c->out, id, s, n);
            return;
        }
    }
    int ns = 0, unk_len = 0, unk_pending = 0;
    for (size_t i = 0; i < n;) {
        int clen = cast_utf8_seq_len((unsigned char)s[i]);
        int first = i == 0, last = i + (size_t)clen >= n;
        int id = char_id(c, m, s + i, clen, first, last);
        if (id >= 0) {
            if (unk_pending) sym_add(c, &ns, m->unk, unk_len);
            unk_pending = 0;
            sym_add(c, &ns, id, clen);
        } else {
            int done = 0;
            if (m->byte_fallback) {
                /* the bytes of the symbol as looked up (affixes included) */
                const char *bs = s + i;
                size_t bn = (size_t)clen;
                if (m->prefix || m->suffix) {
                    bs = c->tmp.data;
                    bn = c->tmp.len;
                }
                size_t k = 0;
                while (k < bn && m->byte_id[(unsigned char)bs[k]] >= 0) k++;
                if (k == bn) {
                    /* like `tokenizers`, a pending unknown is not flushed here */
                    for (k = 0; k < bn; k++) sym_add(c, &ns, m->byte_id[(unsigned char)bs[k]], 1);
                    done = 1;
                }
            }
            if (!done && m->unk >= 0) {
                if (unk_pending && m->fuse_unk) unk_len += clen;
                else {
                    if (unk_pending) sym_add(c, &ns, m->unk, unk_len);
                    unk_pending = 1;
                    unk_len = clen;
                }
            }
        }
        i += (size_t)clen;
    }
    if (unk_pending) sym_add(c, &ns, m->unk, unk_len);
    if (!ns) return;
    c->sym[ns - 1].next = -1;

    tok_bpe_sym *y = c->sym;
    size_t hn = 0;
    int merged;
    for (int i = 0; i + 1 < ns; i++) {
        int r = merge_rank(m, y[i].id, y[i + 1].id, &merged);
        if (r >= 0) heap_push(c, &hn, (uint64_t)r << 32 | (uint32_t)i);
    }
    while (hn) {
        uint64_t key = heap_pop(c, &hn);
        int rank = (int)(key >> 32), pos = (int)(uint32_t)key;
        int nx = y[pos].next;
        if (!y[pos].len || nx < 0) continue;
        /* a stale entry: the pair at pos changed since it was queued */
        if (merge_rank(m, y[pos].id, y[nx].id, &merged) != rank) continue;
        y[pos].id = merged;
        y[pos].len += y[nx].len;
        y[pos].next = y[nx].next;
        if (y[nx].next >= 0) y[y[nx].next].prev = pos;
        y[nx].len = 0;
        int pv = y[pos].prev, r, mm;
        if (pv >= 0 && (r = merge_rank(m, y[pv].id, merged, &mm)) >= 0)
            heap_push(c, &hn, (uint64_t)r << 32 | (uint32_t)pv);
        if (y[pos].next >= 0 && (r = merge_rank(m, merged, y[y[pos].next].id, &mm)) >= 0)
            heap_push(c, &hn, (uint64_t)r << 32 | (uint32_t)pos);
    }
    for (int i = 0; i >= 0; i = y[i].next) {
        const char *p = m->piece[y[i].id];
        tok_out_push(c->out, y[i].id, p, p ? strlen(p) : 0);
    }
}
