#include "organism/tokenizer_gen.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "base/strmap.h"
#include "text/chat.h"
#include "text/tokenizer.h"

const char cast_qwen2_pattern[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                                  "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const char cast_chatml_template[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/* ------------------------------------------------------------ training */

typedef struct word {
    int *sym, n;
    int64_t count;
} word;

static void add_token(cast_bpe_model *m, int *cap, const char *s, size_t n) {
    if (m->n_tokens == *cap) {
        *cap = *cap ? *cap * 2 : 512;
        m->bytes = cast_xrealloc(m->bytes, sizeof *m->bytes * (size_t)*cap);
        m->len = cast_xrealloc(m->len, sizeof *m->len * (size_t)*cap);
    }
    m->bytes[m->n_tokens] = cast_xmalloc(n + 1);
    memcpy(m->bytes[m->n_tokens], s, n);
    m->bytes[m->n_tokens][n] = 0;
    m->len[m->n_tokens++] = n;
}

/* Counts the pre-tokens of every text. */
static int count_words(cast_strmap *words, const char *const *texts, const int64_t *weights, size_t n, const char *pattern,
                       cast_err *err) {
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return cast_fail(err, "BPE trainer: bad pre-tokenizer pattern at offset %zu: %s", (size_t)off, (char *)msg);
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const char *s = texts[i];
        size_t len = strlen(s), pos = 0, gap = 0;
        int64_t w = weights ? weights[i] : 1;
        while (pos < len) {
            int m = pcre2_match(re, (PCRE2_SPTR)s, len, pos, 0, md, NULL);
            if (m == PCRE2_ERROR_NOMATCH) break;
            if (m < 0) {
                rc = cast_fail(err, "BPE trainer: text %zu is not valid UTF-8 (or the pattern failed: %d)", i, m);
                break;
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            if (ov[0] > gap) *cast_strmap_upsert(words, s + gap, ov[0] - gap, 0, NULL) += w; /* unmatched span */
            if (ov[1] > ov[0]) *cast_strmap_upsert(words, s + ov[0], ov[1] - ov[0], 0, NULL) += w;
            pos = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
            gap = ov[1] > ov[0] ? ov[1] : ov[0];
        }
        if (!rc && gap < len) *cast_strmap_upsert(words, s + gap, len - gap, 0, NULL) += w;
    }
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc;
}

int cast_bpe_train(cast_bpe_model *m, const char *const *texts, const int64_t *weights, size_t n, const char *pattern,
                   int n_tokens, cast_err *err) {
    memset(m, 0, sizeof *m);
    if (n_tokens < 256) return cast_fail(err, "BPE trainer: %d tokens is fewer than the 256 byte symbols", n_tokens);
    cast_strmap counts = {0};
    if (count_words(&counts, texts, weights, n, pattern, err)) {
        cast_strmap_free(&counts);
        return -1;
    }
    int cap = 0, merge_cap = 0;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        add_token(m, &cap, &c, 1);
    }
    cast_strmap index = {0}; /* token bytes → id */
    for (int b = 0; b < 256; b++) cast_strmap_upsert(&index, m->bytes[b], 1, b, NULL);
    size_t nw = counts.n;
    word *words = cast_xcalloc(nw ? nw : 1, sizeof *words);
    for (size_t i = 0; i < nw; i++) {
        size_t len;
        const char *key = cast_strmap_key(&counts, i, &len);
        words[i].n = (int)len;
        words[i].count = cast_strmap_value(&counts, i);
        words[i].sym = cast_xmalloc(sizeof(int) * (len ? len : 1));
        for (size_t j = 0; j < len; j++) words[i].sym[j] = (unsigned char)key[j];
    }
    cast_strmap_free(&counts);
    cast_strmap pairs = {0}; /* adjacent (a, b) → count, recounted every step */
    cast_buf merged = {0};
    while (m->n_tokens < n_tokens) {
        cast_strmap_clear(&pairs);
        for (size_t i = 0; i < nw; i++)
            for (int j = 0; j + 1 < words[i].n; j++)
                *cast_strmap_upsert_pair(&pairs, words[i].sym[j], words[i].sym[j + 1], 0, NULL) += words[i].count;
        int64_t best = 1;
        uint64_t best_key = 0; /* a << 32 | b: ties go to the smallest */
        for (size_t u = 0; u < pairs.n; u++) {
            int32_t pa, pb;
            cast_strmap_pair_at(&pairs, u, &pa, &pb);
            uint64_t key = (uint64_t)(uint32_t)pa << 32 | (uint32_t)pb;
            int64_t count = cast_strmap_value(&pairs, u);
            if (count > best || (count == best && best > 1 && key < best_key)) {
                best = count;
                best_key = key;
            }
        }
        if (best < 2) break;
        int a = (int)(best_key >> 32), b = (int)(best_key & 0xffffffffu);
        merged.len = 0;
        cast_buf_append(&merged, m->bytes[a], m->len[a]);
        cast_buf_append(&merged, m->bytes[b], m->len[b]);
        int added;
        int64_t *id = cast_strmap_upsert(&index, merged.data, merged.len, m->n_tokens, &added);
        if (added) add_token(m, &cap, merged.data, merged.len);
        int t = (int)*id;
        if (m->n_merges == merge_cap) {
            merge_cap = merge_cap ? merge_cap * 2 : 512;
            m->merge_a = cast_xrealloc(m->merge_a, sizeof(int) * (size_t)merge_cap);
            m->merge_b = cast_xrealloc(m->merge_b, sizeof(int) * (size_t)merge_cap);
        }
        m->merge_a[m->n_merges] = a;
        m->merge_b[m->n_merges++] = b;
        for (size_t i = 0; i < nw; i++) {
            word *w = &words[i];
            int k = 0;
            for (int j = 0; j < w->n; j++) {
                if (j + 1 < w->n && w->sym[j] == a && w->sym[j + 1] == b) {
                    w->sym[k++] = t;
                    j++;
                } else w->sym[k++] = w->sym[j];
            }
            w->n = k;
        }
    }
    cast_buf_free(&merged);
    cast_strmap_free(&pairs);
    for (size_t i = 0; i < nw; i++) free(words[i].sym);
    free(words);
    cast_strmap_free(&index);
    return 0;
}

void cast_bpe_model_free(cast_bpe_model *m) {
    for (int i = 0; i < m->n_tokens; i++) free(m->bytes[i]);
    free(m->bytes);
    free(m->len);
    free(m->merge_a);
    free(m->merge_b);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------ writing */

/* A token as its vocabulary piece: each byte as its byte-level character. */
static void piece_utf8(cast_buf *s, const cast_bytelevel *bl, const cast_bpe_model *m, int id) {
    for (size_t i = 0; i < m->len[id]; i++) {
        unsigned char b = (unsigned char)m->bytes[id][i];
        cast_buf_append(s, bl->utf8[b], bl->len[b]);
    }
}

static void piece_json(cast_buf *b, const cast_bytelevel *bl, const cast_bpe_model *m, int id) {
    cast_buf s = {0};
    piece_utf8(&s, bl, m, id);
    cast_buf_json_string(b, s.data, s.len);
    cast_buf_free(&s);
}

static void json_opt(cast_buf *b, const char *s) {
    if (s) cast_buf_json_string(b, s, strlen(s));
    else cast_buf_puts(b, "null");
}

static const char BYTELEVEL[] = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false}";

int cast_bpe_write_hf(const cast_bpe_model *m, const cast_hf_tokenizer_spec *spec, const char *dir, cast_err *err) {
    if (cast_mkdirs(dir, err)) return -1;
    cast_bytelevel bl;
    cast_bytelevel_init(&bl);
    cast_buf b = {0};
    cast_buf_puts(&b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [");
    for (int i = 0; i < spec->n_specials; i++) {
        cast_buf_printf(&b, "%s\n    {\"id\": %d, \"content\": ", i ? "," : "", m->n_tokens + i);
        cast_buf_json_string(&b, spec->specials[i], strlen(spec->specials[i]));
        cast_buf_puts(&b, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}");
    }
    cast_buf_puts(&b, "\n  ],\n  \"normalizer\": null,\n  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [\n"
                      "    {\"type\": \"Split\", \"pattern\": {\"Regex\": ");
    cast_buf_json_string(&b, spec->pattern, strlen(spec->pattern));
    cast_buf_printf(&b, "}, \"behavior\": \"Isolated\", \"invert\": false},\n    %s]},\n", BYTELEVEL);
    cast_buf_printf(&b, "  \"post_processor\": %s,\n  \"decoder\": %s,\n", BYTELEVEL, BYTELEVEL);
    cast_buf_puts(&b, "  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": \"\", "
                      "\"end_of_word_suffix\": \"\", \"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": false,\n"
                      "    \"vocab\": {");
    for (int i = 0; i < m->n_tokens; i++) {
        cast_buf_puts(&b, i ? ",\n      " : "\n      ");
        piece_json(&b, &bl, m, i);
        cast_buf_printf(&b, ": %d", i);
    }
    cast_buf_puts(&b, "\n    },\n    \"merges\": [");
    /* "a b" strings, which every version of `tokenizers` reads (byte-level
     * pieces never hold a space) */
    cast_buf pair = {0};
    for (int i = 0; i < m->n_merges; i++) {
        pair.len = 0;
        piece_utf8(&pair, &bl, m, m->merge_a[i]);
        cast_buf_putc(&pair, ' ');
        piece_utf8(&pair, &bl, m, m->merge_b[i]);
        cast_buf_puts(&b, i ? ",\n      " : "\n      ");
        cast_buf_json_string(&b, pair.data, pair.len);
    }
    cast_buf_free(&pair);
    cast_buf_puts(&b, "\n    ]\n  }\n}\n");
    char *path = cast_path_join(dir, "tokenizer.json");
    int rc = cast_write_file_atomic(path, b.data, b.len, err);
    free(path);
    if (rc) {
        cast_buf_free(&b);
        return -1;
    }

    b.len = 0;
    cast_buf_puts(&b, "{\n  \"add_bos_token\": false,\n  \"add_prefix_space\": false,\n  \"added_tokens_decoder\": {");
    for (int i = 0; i < spec->n_specials; i++) {
        cast_buf_printf(&b, "%s\n    \"%d\": {\"content\": ", i ? "," : "", m->n_tokens + i);
        cast_buf_json_string(&b, spec->specials[i], strlen(spec->specials[i]));
        cast_buf_puts(&b, ", \"lstrip\": false, \"normalized\": false, \"rstrip\": false, \"single_word\": false, \"special\": true}");
    }
    cast_buf_puts(&b, "\n  },\n  \"additional_special_tokens\": [");
    for (int i = 0, k = 0; i < spec->n_specials; i++) {
        const char *s = spec->specials[i];
        if ((spec->bos && !strcmp(s, spec->bos)) || (spec->pad && !strcmp(s, spec->pad))) continue;
        if (k++) cast_buf_puts(&b, ", ");
        cast_buf_json_string(&b, s, strlen(s));
    }
    cast_buf_puts(&b, "],\n  \"bos_token\": ");
    json_opt(&b, spec->bos);
    cast_buf_puts(&b, ",\n  \"chat_template\": ");
    json_opt(&b, spec->chat_template);
    cast_buf_puts(&b, ",\n  \"clean_up_tokenization_spaces\": false,\n  \"eos_token\": ");
    json_opt(&b, spec->eos);
    cast_buf_puts(&b, ",\n  \"errors\": \"replace\",\n  \"pad_token\": ");
    json_opt(&b, spec->pad);
    cast_buf_puts(&b, ",\n  \"split_special_tokens\": false,\n  \"tokenizer_class\": ");
    json_opt(&b, spec->tokenizer_class);
    cast_buf_puts(&b, ",\n  \"unk_token\": null\n}\n");
    path = cast_path_join(dir, "tokenizer_config.json");
    rc = cast_write_file_atomic(path, b.data, b.len, err);
    free(path);
    cast_buf_free(&b);
    return rc;
}

/* ------------------------------------------------------------ the organism's */

static const char *const CHATML_SPECIALS[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};

int cast_organism_write_tokenizer(const char *dir, const cast_world *w, int vocab_size, cast_err *err) {
    if (!vocab_size) vocab_size = CAST_ORGANISM_VOCAB;
    if (vocab_size < 256 + 3 || vocab_size > 65536)
        return cast_fail(err, "%s: tokenizer vocabulary size must be in [259, 65536], got %d", dir, vocab_size);
    const cast_world_set *p = &w->split[CAST_SPLIT_PRETRAIN];
    size_t n = (size_t)p->n * 2 + 2;
    const char **texts = cast_xmalloc(sizeof *texts * n);
    int64_t *weights = cast_xmalloc(sizeof *weights * n);
    size_t k = 0;
    for (int i = 0; i < p->n; i++) {
        texts[k] = p->items[i].prompt;
        weights[k++] = 1;
        texts[k] = p->items[i].response;
        weights[k++] = 1;
    }
    /* the chat template's role lines, once per turn */
    texts[k] = "user\n";
    weights[k++] = p->n;
    texts[k] = "assistant\n";
    weights[k++] = p->n;
    cast_bpe_model m;
    int rc = cast_bpe_train(&m, texts, weights, k, cast_qwen2_pattern, vocab_size - 3, err);
    free(texts);
    free(weights);
    if (rc) return cast_fail_prefix(err, dir);
    cast_hf_tokenizer_spec spec = {cast_qwen2_pattern, CHATML_SPECIALS, 3, NULL, "<|im_end|>", "<|endoftext|>",
                                   cast_chatml_template, "Qwen2Tokenizer"};
    rc = cast_bpe_write_hf(&m, &spec, dir, err);
    cast_bpe_model_free(&m);
    return rc;
}

static int cmp_int(const void *a, const void *b) { return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b); }

int cast_organism_token_stats(const char *tok_dir, const cast_world *w, int split, cast_token_stats *out, cast_err *err) {
    memset(out, 0, sizeof *out);
    if (split < 0 || split >= CAST_N_SPLITS) return cast_fail(err, "%s: no split %d", tok_dir, split);
    cast_tokenizer *tok;
    if (cast_tokenizer_load(&tok, tok_dir, err)) return -1;
    cast_chat_template *tpl;
    if (cast_chat_template_open(&tpl, tok, NULL, tok_dir, err)) {
        cast_tokenizer_free(tok);
        return -1;
    }
    const cast_world_set *s = &w->split[split];
    int *lens = cast_xmalloc(sizeof(int) * (size_t)(s->n ? s->n : 1));
    int rc = 0;
    for (int i = 0; i < s->n && !rc; i++) {
        const cast_world_item *it = &s->items[i];
        cast_message msg[2] = {{"user", it->prompt}, {"assistant", it->response}};
        int *ids = NULL, *labels = NULL, n = 0;
        rc = cast_chat_encode(tpl, tok, msg, it->response ? 2 : 1, !it->response, &ids, &labels, &n, err);
        free(ids);
        free(labels);
        lens[i] = n;
        out->tokens += n;
        if (n > out->max) out->max = n;
    }
    if (!rc && s->n) {
        out->examples = s->n;
        out->mean = (double)out->tokens / s->n;
        qsort(lens, (size_t)s->n, sizeof(int), cmp_int);
        out->p95 = lens[(int)((s->n - 1) * 0.95)];
    }
    free(lens);
    cast_chat_template_free(tpl);
    cast_tokenizer_free(tok);
    return rc;
}
