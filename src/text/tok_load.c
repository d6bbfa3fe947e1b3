/* Loading a tokenizer: tokenizer.json (or .gz), or GPT-2's vocab.json +
 * merges.txt; the post-processor reduced to one template for a single
 * sequence; added tokens; tokenizer_config.json. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "text/tok_internal.h"

/* ---- post-processors: everything reduces to one template ---- */

static tok_tmpl_item special_item(const int *ids, char *const *tokens, int n) {
    tok_tmpl_item it = {0};
    it.n = n;
    it.ids = cast_xmalloc(sizeof(int) * (size_t)(n ? n : 1));
    it.tokens = cast_xmalloc(sizeof(char *) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        it.ids[i] = ids[i];
        it.tokens[i] = cast_xstrdup(tokens[i]);
    }
    return it;
}

static void items_free(tok_tmpl_item *v, int n) {
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < v[i].n; k++) free(v[i].tokens[k]);
        free(v[i].tokens);
        free(v[i].ids);
    }
    free(v);
}

typedef struct tmpl {
    tok_tmpl_item *v;
    int n;
} tmpl;

static void tmpl_push(tmpl *t, tok_tmpl_item it) {
    t->v = cast_xrealloc(t->v, sizeof *t->v * (size_t)(t->n + 1));
    t->v[t->n++] = it;
}

/* Wraps the current template in a new one: each sequence item of `outer`
 * becomes a copy of `cur`. Consumes outer. */
static void tmpl_wrap(tmpl *cur, tmpl *outer) {
    tmpl r = {0};
    for (int i = 0; i < outer->n; i++) {
        if (!outer->v[i].is_seq) {
            tmpl_push(&r, outer->v[i]);
            continue;
        }
        for (int k = 0; k < cur->n; k++) {
            tok_tmpl_item c = cur->v[k];
            tmpl_push(&r, c.is_seq ? c : special_item(c.ids, c.tokens, c.n));
        }
        free(outer->v[i].ids);
        free(outer->v[i].tokens);
    }
    free(outer->v);
    items_free(cur->v, cur->n);
    *cur = r;
}

static int parse_template(const cast_json *j, tmpl *out, const char *path, cast_err *err) {
    const cast_json *single = cast_json_get(j, "single"), *specials = cast_json_get(j, "special_tokens");
    if (!cast_json_is_array(single)) return cast_fail(err, "%s: TemplateProcessing without a \"single\" list", path);
    for (const cast_json *e = cast_json_first(single); e; e = cast_json_next(e)) {
        const cast_json *seq = cast_json_get(e, "Sequence"), *sp = cast_json_get(e, "SpecialToken");
        if (seq) {
            tok_tmpl_item it = {0};
            it.is_seq = 1;
            tmpl_push(out, it);
            continue;
        }
        const char *name = cast_json_string(cast_json_get(sp, "id"));
        if (!name) return cast_fail(err, "%s: TemplateProcessing: item is neither Sequence nor SpecialToken", path);
        const cast_json *def = cast_json_get(specials, name);
        const cast_json *ids = cast_json_get(def, "ids"), *toks = cast_json_get(def, "tokens");
        int n = cast_json_array_size(ids);
        if (!def || !cast_json_is_array(ids) || cast_json_array_size(toks) != n)
            return cast_fail(err, "%s: TemplateProcessing: special token \"%s\" has no ids/tokens in special_tokens", path, name);
        int *iv;
        int ni;
        if (cast_json_int_array(ids, &iv, &ni, path, err)) return -1;
        for (int k = 0; k < ni; k++)
            if (iv[k] < 0 || iv[k] > 16777215) {
                int bad_id = iv[k];
                free(iv);
                return cast_fail(err, "%s: TemplateProcessing: special token \"%s\" has id %d, not in 0..16777215", path,
                                 name, bad_id);
            }
        char **tv = cast_xmalloc(sizeof(char *) * (size_t)(n ? n : 1));
        int bad = 0;
        for (int k = 0; k < n; k++) {
            tv[k] = (char *)cast_json_string(cast_json_array_item(toks, k));
            if (!tv[k]) bad = 1;
        }
        if (!bad) tmpl_push(out, special_item(iv, tv, n));
        free(iv);
        free(tv);
        if (bad) return cast_fail(err, "%s: TemplateProcessing: tokens of \"%s\" must be strings", path, name);
    }
    return 0;
}

/* BertProcessing / RobertaProcessing: cls A sep, with ["token", id] pairs. */
static int parse_cls_sep(const cast_json *j, tmpl *out, const char *type, const char *path, cast_err *err) {
    const char *keys[2] = {"cls", "sep"};
    tok_tmpl_item items[2];
    for (int i = 0; i < 2; i++) {
        const cast_json *p = cast_json_get(j, keys[i]);
        const char *tok = cast_json_string(cast_json_array_item(p, 0));
        const cast_json *id = cast_json_array_item(p, 1);
        double idv = cast_json_number(id);
        if (cast_json_array_size(p) != 2 || !tok || !cast_json_is_number(id) || !(idv >= 0 && idv <= 16777215.0) ||
            idv != (double)(int)idv) {
            if (i) {
                free(items[0].ids);
                free(items[0].tokens[0]);
                free(items[0].tokens);
            }
            return cast_fail(err, "%s: %s: \"%s\" must be [token, id]", path, type, keys[i]);
        }
        int v = (int)cast_json_number(id);
        char *tv = (char *)tok;
        items[i] = special_item(&v, &tv, 1);
    }
    tok_tmpl_item seq = {0};
    seq.is_seq = 1;
    tmpl_push(out, items[0]);
    tmpl_push(out, seq);
    tmpl_push(out, items[1]);
    return 0;
}

static int parse_post(const cast_json *j, tmpl *cur, const char *path, cast_err *err) {
    const char *type = cast_json_string(cast_json_get(j, "type"));
    if (!type) return cast_fail(err, "%s: post_processor without a \"type\"", path);
    if (!strcmp(type, "ByteLevel")) return 0; /* changes offsets only */
    if (!strcmp(type, "Sequence")) {
        const cast_json *arr = cast_json_get(j, "processors");
        if (!cast_json_is_array(arr)) return cast_fail(err, "%s: Sequence post_processor without \"processors\"", path);
        for (const cast_json *c = cast_json_first(arr); c; c = cast_json_next(c))
            if (parse_post(c, cur, path, err)) return -1;
        return 0;
    }
    tmpl outer = {0};
    int rc;
    if (!strcmp(type, "TemplateProcessing")) rc = parse_template(j, &outer, path, err);
    else if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing"))
        rc = parse_cls_sep(j, &outer, type, path, err);
    else return cast_fail(err, "%s: unsupported post_processor \"%s\"", path, type);
    if (rc) {
        items_free(outer.v, outer.n);
        return -1;
    }
    tmpl_wrap(cur, &outer);
    return 0;
}

/* ---- added tokens ---- */

static void add_token(cast_tokenizer *t, const char *content, int id, int special, int normalized, int lstrip,
                      int rstrip, int single_word) {
    t->added = cast_xrealloc(t->added, sizeof *t->added * (size_t)(t->n_added + 1));
    tok_added *a = &t->added[t->n_added++];
    a->content = cast_xstrdup(content);
    a->len = strlen(content);
    a->id = id;
    a->special = special;
    a->normalized = normalized;
    a->lstrip = lstrip;
    a->rstrip = rstrip;
    a->single_word = single_word;
}

static int parse_added(cast_tokenizer *t, const cast_json *arr, const char *path, cast_err *err) {
    if (!arr) return 0;
    if (!cast_json_is_array(arr)) return cast_fail(err, "%s: \"added_tokens\" must be a list", path);
    int i = 0;
    cast_buf what = {0};
    for (const cast_json *e = cast_json_first(arr); e; e = cast_json_next(e), i++) {
        what.len = 0;
        cast_buf_printf(&what, "%s: added_tokens[%d]", path, i);
        const char *w = what.data;
        int64_t id;
        const char *content;
        int special, normalized, lstrip, rstrip, single_word;
        int bad = cast_json_req_int(e, "id", &id, w, err) || cast_json_opt_string(e, "content", &content, w, err) ||
                  cast_json_opt_bool(e, "special", 0, &special, w, err) ||
                  cast_json_opt_bool(e, "normalized", !special, &normalized, w, err) ||
                  cast_json_opt_bool(e, "lstrip", 0, &lstrip, w, err) ||
                  cast_json_opt_bool(e, "rstrip", 0, &rstrip, w, err) ||
                  cast_json_opt_bool(e, "single_word", 0, &single_word, w, err);
        if (!bad && !content) bad = cast_fail(err, "%s: no \"content\"", w);
        if (bad) {
            cast_buf_free(&what);
            return -1;
        }
        if (!*content) continue; /* never matched; `tokenizers` skips it too */
        /* The file's id is not used, as in `tokenizers`: a token of the model's
         * vocabulary keeps its id, a repeated one its first id, a new one
         * takes the next free id after the vocabulary. They agree in files
         * saved by the library. */
        tok_added *old = NULL;
        for (int k = 0; k < t->n_added; k++)
            if (!strcmp(t->added[k].content, content)) old = &t->added[k];
        if (old) {
            old->special |= special;
            old->normalized = normalized;
            old->lstrip = lstrip;
            old->rstrip = rstrip;
            old->single_word = single_word;
            continue;
        }
        int new_id = tok_bpe_lookup(&t->bpe, content, strlen(content));
        if (new_id < 0) {
            int nvocab = (int)t->bpe.vocab.n, max = -1;
            for (int k = 0; k < t->n_added; k++)
                if (t->added[k].id > max) max = t->added[k].id;
            new_id = max < 0 ? nvocab : (max >= nvocab || !nvocab) ? max + 1 : nvocab;
        }
        add_token(t, content, new_id, special, normalized, lstrip, rstrip, single_word);
    }
    cast_buf_free(&what);
    return 0;
}

/* ---- tokenizer.json ---- */

static int load_json_text(cast_tokenizer *t, const char *text, size_t n, const char *path, tmpl *post, cast_err *err) {
    /* Rust `tokenizers` only reads UTF-8; checking the whole text once keeps
     * every string taken from it (vocabulary, added tokens, replacements)
     * valid UTF-8, which encoding and decoding rely on */
    size_t ok = cast_utf8_valid_prefix(text, n);
    if (ok != n) return cast_fail(err, "%s: not valid UTF-8 (byte %zu)", path, ok);
    cast_json *root = cast_json_parse(text, n, path, err);
    if (!root) return -1;
    int rc = -1;
    const cast_json *x;
    if (!cast_json_is_object(root)) {
        cast_fail(err, "%s: not a tokenizer.json (expected a JSON object)", path);
        goto done;
    }
    x = cast_json_get(root, "model");
    if (!cast_json_is_object(x)) {
        cast_fail(err, "%s: no \"model\" object", path);
        goto done;
    }
    if (tok_bpe_from_json(&t->bpe, x, path, err)) goto done;
    if ((x = cast_json_get(root, "normalizer")) && tok_norm_parse(x, &t->norm, &t->n_norm, path, err)) goto done;
    if ((x = cast_json_get(root, "pre_tokenizer")) && tok_pre_parse(x, &t->pre, &t->n_pre, path, err)) goto done;
    if ((x = cast_json_get(root, "decoder"))) {
        t->has_decoder = 1;
        if (tok_dec_parse(x, &t->dec, &t->n_dec, path, err)) goto done;
    }
    if ((x = cast_json_get(root, "post_processor")) && parse_post(x, post, path, err)) goto done;
    if (parse_added(t, cast_json_get(root, "added_tokens"), path, err)) goto done;
    /* "truncation" and "padding" are not applied: transformers resets them
     * on every call unless asked, and so do we. */
    rc = 0;
done:
    cast_json_free(root);
    return rc;
}

static int load_json(cast_tokenizer *t, const char *path, tmpl *post, cast_err *err) {
    char *text;
    size_t n;
    if (cast_read_file(path, &text, &n, err)) return -1;
    int rc = load_json_text(t, text, n, path, post, err);
    free(text);
    return rc;
}

/* GPT-2's files: byte-level BPE with <|endoftext|> as the special token. */
static int load_gpt2(cast_tokenizer *t, const char *vocab, const char *merges, cast_err *err) {
    if (tok_bpe_from_files(&t->bpe, vocab, merges, err)) return -1;
    t->pre = cast_xcalloc(1, sizeof *t->pre);
    t->n_pre = 1;
    t->pre[0].kind = PRE_BYTELEVEL;
    t->pre[0].use_regex = 1;
    if (tok_pattern_regex(&t->pre[0].pat, tok_gpt2_regex, vocab, err)) return -1;
    t->dec = cast_xcalloc(1, sizeof *t->dec);
    t->n_dec = 1;
    t->has_decoder = 1;
    t->dec[0].kind = DEC_BYTELEVEL;
    int id = tok_bpe_lookup(&t->bpe, "<|endoftext|>", 13);
    add_token(t, "<|endoftext|>", id >= 0 ? id : t->bpe.n_ids, 1, 0, 0, 0, 0);
    return 0;
}

/* ---- tokenizer_config.json ---- */

static int config_token(const cast_json *cfg, const char *key, char **out, const char *path, cast_err *err) {
    const cast_json *v = cast_json_get(cfg, key);
    if (!v) return 0;
    const char *s = cast_json_string(v);
    if (!s) s = cast_json_string(cast_json_get(v, "content"));
    if (!s) return cast_fail(err, "%s: \"%s\" must be a string or an object with \"content\"", path, key);
    *out = cast_xstrdup(s);
    return 0;
}

static int load_config(cast_tokenizer *t, const char *dir, cast_err *err) {
    char *path = cast_path_join(dir, "tokenizer_config.json");
    int rc = 0;
    if (cast_file_exists(path)) {
        cast_json *cfg = cast_json_parse_file(path, err);
        rc = -1;
        if (cfg) {
            rc = 0;
            if (config_token(cfg, "bos_token", &t->bos, path, err) || config_token(cfg, "eos_token", &t->eos, path, err) ||
                config_token(cfg, "pad_token", &t->pad, path, err))
                rc = -1;
            const cast_json *ct = cast_json_get(cfg, "chat_template");
            if (!rc && ct) {
                if (cast_json_string(ct)) t->chat_template = cast_xstrdup(cast_json_string(ct));
                else if (cast_json_is_array(ct)) {
                    /* named templates: the one called "default" */
                    for (const cast_json *e = cast_json_first(ct); e; e = cast_json_next(e)) {
                        const char *name = cast_json_string(cast_json_get(e, "name"));
                        const char *tpl = cast_json_string(cast_json_get(e, "template"));
                        if (name && tpl && !strcmp(name, "default")) t->chat_template = cast_xstrdup(tpl);
                    }
                } else rc = cast_fail(err, "%s: \"chat_template\" must be a string or a list of {name, template}", path);
            }
            cast_json_free(cfg);
        }
    }
    free(path);
    if (rc || t->chat_template) return rc;
    /* newer folders keep the template in its own file */
    path = cast_path_join(dir, "chat_template.jinja");
    if (cast_file_exists(path)) {
        size_t n;
        rc = cast_read_file(path, &t->chat_template, &n, err);
    }
    free(path);
    return rc;
}

/* ---- assembling ---- */

static void max_captures(const tok_pattern *p, uint32_t *m) {
    uint32_t c = 0;
    if (p->re && !pcre2_pattern_info(p->re, PCRE2_INFO_CAPTURECOUNT, &c) && c > *m) *m = c;
}

static void finish(cast_tokenizer *t) {
    for (int i = 0; i < t->n_norm; i++) max_captures(&t->norm[i].pat, &t->max_captures);
    for (int i = 0; i < t->n_pre; i++) max_captures(&t->pre[i].pat, &t->max_captures);
    for (int i = 0; i < t->n_dec; i++) max_captures(&t->dec[i].pat, &t->max_captures);
    t->vocab_size = t->bpe.n_ids;
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id >= t->vocab_size) t->vocab_size = t->added[i].id + 1;
    t->added_of_id = cast_xmalloc(sizeof(int) * (size_t)(t->vocab_size ? t->vocab_size : 1));
    for (int i = 0; i < t->vocab_size; i++) t->added_of_id[i] = -1;
    pcre2_match_data *md = pcre2_match_data_create(t->max_captures + 1, NULL);
    cast_buf a = {0}, b = {0};
    for (int i = 0; i < t->n_added; i++) {
        tok_added *x = &t->added[i];
        t->added_of_id[x->id] = i;
        if (x->single_word && !t->word_re) {
            int code;
            PCRE2_SIZE off;
            t->word_re = pcre2_compile((PCRE2_SPTR) "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]",
                                       PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code, &off, NULL);
            if (!t->word_re) /* PCRE2 before 10.40 has no binary properties */
                t->word_re = pcre2_compile((PCRE2_SPTR) "[\\p{L}\\p{Nl}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]",
                                           PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code, &off, NULL);
        }
        if (!x->normalized) {
            tok_trie_add(&t->trie_raw, x->content, x->len, i);
            continue;
        }
        /* matched on normalized text, so in its normalized form */
        const char *s;
        size_t n;
        tok_norm_apply(t->norm, t->n_norm, md, x->content, x->len, &a, &b, &s, &n);
        tok_trie_add(&t->trie_norm, s, n, i);
    }
    cast_buf_free(&a);
    cast_buf_free(&b);
    pcre2_match_data_free(md);
}

static cast_tokenizer *tok_new(const char *what, tmpl *post) {
    cast_tokenizer *t = cast_xcalloc(1, sizeof *t);
    t->path = cast_xstrdup(what);
    t->bpe.unk = -1;
    cast_bytelevel_init(&t->bytes);
    tok_tmpl_item seq = {0};
    seq.is_seq = 1;
    tmpl_push(post, seq);
    return t;
}

/* Completes a load (rc 0) or frees what was built (rc -1). */
static int tok_done(cast_tokenizer *t, tmpl *post, int rc, cast_tokenizer **out) {
    if (rc) {
        items_free(post->v, post->n);
        cast_tokenizer_free(t);
        return -1;
    }
    /* a template that is just the sequence adds nothing */
    if (post->n == 1 && post->v[0].is_seq) items_free(post->v, post->n);
    else {
        t->tmpl = post->v;
        t->n_tmpl = post->n;
    }
    post->v = NULL;
    finish(t);
    *out = t;
    return 0;
}

int cast_tokenizer_load_json(cast_tokenizer **out, const char *text, size_t n, const char *what, cast_err *err) {
    *out = NULL;
    tmpl post = {0};
    cast_tokenizer *t = tok_new(what ? what : "tokenizer.json", &post);
    return tok_done(t, &post, load_json_text(t, text, n, t->path, &post, err), out);
}

int cast_tokenizer_load(cast_tokenizer **out, const char *dir, cast_err *err) {
    *out = NULL;
    tmpl post = {0};
    cast_tokenizer *t = tok_new(dir, &post);
    int rc = -1;
    char *json = NULL, *gz = NULL, *vocab = NULL, *merges = NULL;
    if (cast_file_exists(dir) && !cast_dir_exists(dir)) {
        /* a tokenizer.json given directly: no folder, so no config */
        rc = load_json(t, dir, &post, err);
        goto done;
    }
    if (!cast_dir_exists(dir)) {
        cast_fail(err, "%s: no such folder", dir);
        goto done;
    }
    json = cast_path_join(dir, "tokenizer.json");
    gz = cast_path_join(dir, "tokenizer.json.gz");
    vocab = cast_path_join(dir, "vocab.json");
    merges = cast_path_join(dir, "merges.txt");
    if (cast_file_exists(json)) rc = load_json(t, json, &post, err);
    else if (cast_file_exists(gz)) rc = load_json(t, gz, &post, err);
    else if (cast_file_exists(vocab) && cast_file_exists(merges)) rc = load_gpt2(t, vocab, merges, err);
    else cast_fail(err, "%s: no tokenizer.json, tokenizer.json.gz, or vocab.json + merges.txt", dir);
    if (!rc) rc = load_config(t, dir, err);
done:
    free(json);
    free(gz);
    free(vocab);
    free(merges);
    return tok_done(t, &post, rc, out);
}
