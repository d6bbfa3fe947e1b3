/* The tokenizer: loading (tokenizer.json, or GPT-2's vocab.json + merges.txt,
 * plus tokenizer_config.json), added tokens, the post-processing template,
 * and the encode/decode drivers. The pipeline is the one of Hugging Face
 * `tokenizers`: added tokens are cut out of the raw text first (those with
 * normalized=false) and out of each normalized remainder next (normalized=
 * true); each remaining piece goes through the pre-tokenizers and the model. */
#include "text/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "text/tok_internal.h"

/* ---- added tokens: trie and matching ---- */

static int trie_node(tok_trie *t, unsigned char byte) {
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 256;
        t->nodes = cast_xrealloc(t->nodes, sizeof *t->nodes * (size_t)t->cap);
    }
    tok_trie_node *x = &t->nodes[t->n];
    x->child = x->sibling = x->token = -1;
    x->byte = byte;
    return t->n++;
}

void tok_trie_add(tok_trie *t, const char *s, size_t n, int token) {
    if (!n) return; /* an empty token can never be matched */
    if (!t->n) trie_node(t, 0);
    int cur = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        int c = t->nodes[cur].child;
        while (c >= 0 && t->nodes[c].byte != b) c = t->nodes[c].sibling;
        if (c < 0) {
            c = trie_node(t, b);
            t->nodes[c].sibling = t->nodes[cur].child;
            t->nodes[cur].child = c;
        }
        cur = c;
    }
    t->nodes[cur].token = token;
    t->first[(unsigned char)s[0]] = 1;
}

/* End of the longest token starting at s[i], 0 if none. */
static size_t trie_longest(const tok_trie *t, const char *s, size_t n, size_t i, int *token) {
    int cur = 0;
    size_t best = 0;
    for (size_t k = i; k < n; k++) {
        int c = t->nodes[cur].child;
        while (c >= 0 && t->nodes[c].byte != (unsigned char)s[k]) c = t->nodes[c].sibling;
        if (c < 0) break;
        cur = c;
        if (t->nodes[cur].token >= 0) {
            best = k + 1;
            *token = t->nodes[cur].token;
        }
    }
    return best;
}

/* Whether the first (or last) character of s is a word character in the
 * sense `tokenizers` uses for single_word: Unicode \w (Alphabetic, marks,
 * Nd, Pc, Join_Control), tested with a regex compiled at load time. */
static int is_word_char(const cast_tokenizer *t, pcre2_match_data *md, const char *s, size_t n, int last) {
    if (!n || !t->word_re) return 0;
    size_t i = 0;
    if (last) i = cast_utf8_char_start(s, 0, n - 1);
    int len;
    cast_utf8_decode_valid(s + i, &len);
    return pcre2_match(t->word_re, (PCRE2_SPTR)(s + i), (size_t)len, 0, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK, md, NULL) > 0;
}

typedef struct split {
    size_t a, b;
    int tok; /* index into added[], -1 for text */
} split;

typedef struct split_list {
    split *v;
    int n, cap;
} split_list;

static void split_push(split_list *l, size_t a, size_t b, int tok) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = cast_xrealloc(l->v, sizeof *l->v * (size_t)l->cap);
    }
    l->v[l->n++] = (split){a, b, tok};
}

/* Cuts s into text and added-token pieces: leftmost-longest matches, with
 * single_word / lstrip / rstrip applied the way `tokenizers` does. */
static void added_split(const cast_tokenizer *t, pcre2_match_data *md, const tok_trie *trie, const char *s, size_t n,
                        split_list *out) {
    out->n = 0;
    size_t start_offset = 0, i = 0;
    while (trie->n && i < n) {
        int tk = -1;
        size_t ms = 0, me = 0;
        for (; i < n; i++) {
            if (!trie->first[(unsigned char)s[i]]) continue;
            me = trie_longest(trie, s, n, i, &tk);
            if (me) {
                ms = i;
                break;
            }
        }
        if (!me) break;
        i = me; /* the search goes on after the match itself, stripped spaces or not */
        const tok_added *a = &t->added[tk];
        size_t start = ms, stop = me;
        if (a->single_word &&
            ((start > 0 && is_word_char(t, md, s, start, 1)) || (stop < n && is_word_char(t, md, s + stop, n - stop, 0))))
            continue;
        if (a->lstrip) {
            size_t k = start;
            while (k > 0) {
                size_t p = cast_utf8_char_start(s, 0, k - 1);
                int len;
                if (!tok_is_space(cast_utf8_decode_valid(s + p, &len))) break;
                k = p;
            }
            start = k > start_offset ? k : start_offset;
        }
        if (a->rstrip) {
            while (stop < n) {
                int len;
                if (!tok_is_space(cast_utf8_decode_valid(s + stop, &len))) break;
                stop += (size_t)len;
            }
        }
        if (start > stop) start = stop;
        if (start_offset < start) split_push(out, start_offset, start, -1);
        split_push(out, start, stop, tk);
        start_offset = stop;
    }
    if (start_offset < n) split_push(out, start_offset, n, -1);
}

/* ---- encoding ---- */

static void ctx_free(tok_ctx *c) {
    if (c->md) pcre2_match_data_free(c->md);
    for (int i = 0; i <= TOK_MAX_PRE; i++) {
        cast_buf_free(&c->lvl_a[i]);
        cast_buf_free(&c->lvl_b[i]);
    }
    for (int i = 0; i < TOK_MAX_PRE; i++) free(c->seg[i]);
    free(c->sym);
    free(c->heap);
    cast_buf_free(&c->tmp);
}

static void apply_template(const cast_tokenizer *t, tok_out *o) {
    tok_out r = {0};
    r.want_pieces = o->want_pieces;
    for (int i = 0; i < t->n_tmpl; i++) {
        const tok_tmpl_item *it = &t->tmpl[i];
        if (it->is_seq) {
            for (int k = 0; k < o->n; k++) {
                const char *p = o->want_pieces ? o->pieces.data + o->piece_off[k] : NULL;
                tok_out_push(&r, o->ids[k], p, p ? strlen(p) : 0);
            }
        } else
            for (int k = 0; k < it->n; k++) tok_out_push(&r, it->ids[k], it->tokens[k], strlen(it->tokens[k]));
    }
    tok_out_free(o);
    *o = r;
}

static int encode(const cast_tokenizer *t, const char *text, size_t len, int add_special, tok_out *out,
                  cast_err *err) {
    size_t ok = cast_utf8_valid_prefix(text, len);
    if (ok != len) return cast_fail(err, "text is not valid UTF-8 (byte %zu)", ok);
    tok_ctx c;
    memset(&c, 0, sizeof c);
    c.t = t;
    c.out = out;
    c.md = pcre2_match_data_create(t->max_captures + 1, NULL);
    split_list raw = {0}, sub = {0};
    cast_buf na = {0}, nb = {0};
    added_split(t, c.md, &t->trie_raw, text, len, &raw);
    for (int i = 0; i < raw.n; i++) {
        const split *r = &raw.v[i];
        if (r->tok >= 0) {
            tok_out_push(out, t->added[r->tok].id, text + r->a, r->b - r->a);
            continue;
        }
        const char *s;
        size_t n;
        tok_norm_apply(t->norm, t->n_norm, c.md, text + r->a, r->b - r->a, &na, &nb, &s, &n);
        added_split(t, c.md, &t->trie_norm, s, n, &sub);
        for (int k = 0; k < sub.n; k++) {
            const split *q = &sub.v[k];
            if (q->tok >= 0) tok_out_push(out, t->added[q->tok].id, s + q->a, q->b - q->a);
            else tok_pre_run(&c, 0, s + q->a, q->b - q->a, r->a == 0 && q->a == 0);
        }
    }
    free(raw.v);
    free(sub.v);
    cast_buf_free(&na);
    cast_buf_free(&nb);
    ctx_free(&c);
    if (add_special && t->tmpl) apply_template(t, out);
    return 0;
}

int cast_tokenizer_encode(const cast_tokenizer *t, const char *text, size_t len, int add_special, int **ids, int *n,
                          cast_err *err) {
    tok_out o = {0};
    *ids = NULL;
    *n = 0;
    if (encode(t, text, len, add_special, &o, err)) {
        tok_out_free(&o);
        return -1;
    }
    *ids = o.ids ? o.ids : cast_xmalloc(sizeof(int));
    *n = o.n;
    o.ids = NULL;
    tok_out_free(&o);
    return 0;
}

int cast_tokenizer_encode_tokens(const cast_tokenizer *t, const char *text, size_t len, int add_special, int **ids,
                                 char ***tokens, int *n, cast_err *err) {
    tok_out o = {0};
    o.want_pieces = 1;
    *ids = NULL;
    *tokens = NULL;
    *n = 0;
    if (encode(t, text, len, add_special, &o, err)) {
        tok_out_free(&o);
        return -1;
    }
    /* one block: the pointer array, then the strings */
    size_t head = sizeof(char *) * (size_t)(o.n + 1);
    char **tv = cast_xmalloc(head + o.pieces.len);
    char *strs = (char *)tv + head;
    if (o.pieces.len) memcpy(strs, o.pieces.data, o.pieces.len);
    for (int i = 0; i < o.n; i++) tv[i] = strs + o.piece_off[i];
    tv[o.n] = NULL;
    *tokens = tv;
    *ids = o.ids ? o.ids : cast_xmalloc(sizeof(int));
    *n = o.n;
    o.ids = NULL;
    tok_out_free(&o);
    return 0;
}

/* ---- decoding ---- */

int cast_tokenizer_decode(const cast_tokenizer *t, const int *ids, int n, int skip_special, char **text,
                          cast_err *err) {
    CAST_UNUSED(err);
    tok_strlist l = {0};
    for (int i = 0; i < n; i++) {
        int id = ids[i];
        /* ids without a token are dropped, as `tokenizers` does */
        if (id < 0 || id >= t->vocab_size) continue;
        int ai = t->added_of_id[id];
        if (ai >= 0) {
            if (skip_special && t->added[ai].special) continue;
            tok_strlist_add(&l, t->added[ai].content, t->added[ai].len);
        } else if (id < t->bpe.n_ids && t->bpe.piece[id])
            tok_strlist_add(&l, t->bpe.piece[id], strlen(t->bpe.piece[id]));
    }
    cast_buf out = {0};
    if (t->has_decoder) {
        pcre2_match_data *md = pcre2_match_data_create(t->max_captures + 1, NULL);
        tok_dec_run(t->dec, t->n_dec, &t->bytes, md, &l, &out);
        pcre2_match_data_free(md);
    } else {
        /* without a decoder `tokenizers` joins the tokens with spaces */
        for (int i = 0; i < l.n; i++) {
            if (i) cast_buf_putc(&out, ' ');
            cast_buf_append(&out, l.text.data + l.off[i], l.off[i + 1] - l.off[i]);
        }
    }
    tok_strlist_free(&l);
    cast_buf_reserve(&out, 0);
    out.data[out.len] = 0;
    *text = cast_buf_steal(&out);
    return 0;
}

/* ---- lookups ---- */

int cast_tokenizer_vocab_size(const cast_tokenizer *t) { return t->vocab_size; }

const char *cast_tokenizer_piece(const cast_tokenizer *t, int id) {
    if (id < 0 || id >= t->vocab_size) return NULL;
    if (t->added_of_id[id] >= 0) return t->added[t->added_of_id[id]].content;
    return id < t->bpe.n_ids ? t->bpe.piece[id] : NULL;
}

int cast_tokenizer_token_id(const cast_tokenizer *t, const char *piece) {
    if (!piece) return -1;
    size_t n = strlen(piece);
    for (int i = t->n_added - 1; i >= 0; i--)
        if (t->added[i].len == n && !memcmp(t->added[i].content, piece, n)) return t->added[i].id;
    return tok_bpe_lookup(&t->bpe, piece, n);
}

int cast_tokenizer_is_special(const cast_tokenizer *t, int id) {
    return id >= 0 && id < t->vocab_size && t->added_of_id[id] >= 0 && t->added[t->added_of_id[id]].special;
}

const char *cast_tokenizer_bos(const cast_tokenizer *t) { return t->bos; }
const char *cast_tokenizer_eos(const cast_tokenizer *t) { return t->eos; }
const char *cast_tokenizer_pad(const cast_tokenizer *t) { return t->pad; }
int cast_tokenizer_bos_id(const cast_tokenizer *t) { return cast_tokenizer_token_id(t, t->bos); }
int cast_tokenizer_eos_id(const cast_tokenizer *t) { return cast_tokenizer_token_id(t, t->eos); }
int cast_tokenizer_pad_id(const cast_tokenizer *t) { return cast_tokenizer_token_id(t, t->pad); }
const char *cast_tokenizer_chat_template(const cast_tokenizer *t) { return t->chat_template; }

/* ---- freeing ---- */

static void tmpl_free(tok_tmpl_item *v, int n) {
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < v[i].n; k++) free(v[i].tokens[k]);
        free(v[i].tokens);
        free(v[i].ids);
    }
    free(v);
}

void cast_tokenizer_free(cast_tokenizer *t) {
    if (!t) return;
    free(t->path);
    tok_bpe_free(&t->bpe);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    free(t->added_of_id);
    free(t->trie_raw.nodes);
    free(t->trie_norm.nodes);
    if (t->word_re) pcre2_code_free(t->word_re);
    tok_norm_free_list(t->norm, t->n_norm);
    tok_pre_free_list(t->pre, t->n_pre);
    tok_dec_free_list(t->dec, t->n_dec);
    tmpl_free(t->tmpl, t->n_tmpl);
    free(t->bos);
    free(t->eos);
    free(t->pad);
    free(t->chat_template);
    free(t);
}
