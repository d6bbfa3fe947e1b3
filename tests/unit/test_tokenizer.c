/* Tokenizer tests: every line of every fixtures.jsonl (reference values from
 * Hugging Face `tokenizers` 0.22.2) and chat_template.jsonl, then the
 * components on small synthetic tokenizer.json files (values checked against
 * the same engine), error messages, and round trips. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "base/json.h"
#include "base/rng.h"
#include "check.h"
#include "text/tokenizer.h"

static const char *tokenizers[] = {"gpt2", "mistral-7b-v0.1", "llama3-8b-instruct", "qwen3", "phi-3-mini"};
#define N_TOK (int)(sizeof tokenizers / sizeof tokenizers[0])

static void print_ids(const char *label, const int *v, int n) {
    fprintf(stderr, "      %s [", label);
    for (int i = 0; i < n; i++) fprintf(stderr, "%s%d", i ? "," : "", v[i]);
    fprintf(stderr, "]\n");
}

static int ids_equal(const int *a, int na, const cast_json *arr) {
    if (cast_json_array_size(arr) != na) return 0;
    for (int i = 0; i < na; i++)
        if ((int)cast_json_number(cast_json_array_item(arr, i)) != a[i]) return 0;
    return 1;
}

static void print_expected(const char *label, const cast_json *arr) {
    fprintf(stderr, "      %s [", label);
    for (int i = 0; i < cast_json_array_size(arr); i++)
        fprintf(stderr, "%s%d", i ? "," : "", (int)cast_json_number(cast_json_array_item(arr, i)));
    fprintf(stderr, "]\n");
}

/* Calls fn on each parsed line of a JSONL file; returns the line count. */
typedef void (*line_fn)(const cast_tokenizer *t, const char *name, int line, const cast_json *j, int *exact);

static int each_line(const char *path, const cast_tokenizer *t, const char *name, line_fn fn, int *exact) {
    char *text;
    size_t len;
    cast_err err = {0};
    if (cast_read_file(path, &text, &len, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return 0;
    }
    int lines = 0;
    for (char *p = text; p < text + len;) {
        char *e = memchr(p, '\n', (size_t)(text + len - p));
        if (!e) e = text + len;
        if (e > p) {
            lines++;
            char what[512];
            snprintf(what, sizeof what, "%s:%d", path, lines);
            cast_json *j = cast_json_parse(p, (size_t)(e - p), what, &err);
            CHECK_MSG(j != NULL, "%s", err.msg);
            if (j) fn(t, name, lines, j, exact);
            cast_json_free(j);
        }
        p = e + 1;
    }
    free(text);
    return lines;
}

static void check_fixture(const cast_tokenizer *t, const char *name, int line, const cast_json *j, int *exact) {
    const char *text = cast_json_string(cast_json_get(j, "text"));
    const cast_json *want_ids = cast_json_get(j, "ids"), *want_sp = cast_json_get(j, "ids_with_special");
    const cast_json *want_tok = cast_json_get(j, "tokens");
    const char *want_dec = cast_json_string(cast_json_get(j, "decoded"));
    cast_err err = {0};
    int *ids = NULL, *sp = NULL, n = 0, nsp = 0;
    char **toks = NULL, *dec = NULL;
    int ok = text && want_dec;
    if (ok && cast_tokenizer_encode_tokens(t, text, strlen(text), 0, &ids, &toks, &n, &err)) {
        fprintf(stderr, "  %s line %d: encode failed: %s\n", name, line, err.msg);
        ok = 0;
    }
    if (ok && cast_tokenizer_encode(t, text, strlen(text), 1, &sp, &nsp, &err)) ok = 0;
    if (ok && cast_tokenizer_decode(t, ids, n, 0, &dec, &err)) ok = 0;
    if (ok) {
        int ids_ok = ids_equal(ids, n, want_ids), sp_ok = ids_equal(sp, nsp, want_sp);
        int tok_ok = cast_json_array_size(want_tok) == n;
        for (int i = 0; tok_ok && i < n; i++)
            tok_ok = !strcmp(toks[i], cast_json_string(cast_json_array_item(want_tok, i)));
        int dec_ok = !strcmp(dec, want_dec);
        if (ids_ok && sp_ok && tok_ok && dec_ok) (*exact)++;
        else {
            fprintf(stderr, "  %s line %d mismatch (%s%s%s%s) text=\"%s\"\n", name, line, ids_ok ? "" : "ids ",
                    sp_ok ? "" : "ids_with_special ", tok_ok ? "" : "tokens ", dec_ok ? "" : "decoded", text);
            if (!ids_ok) {
                print_ids("got ", ids, n);
                print_expected("want", want_ids);
            }
            if (!sp_ok) {
                print_ids("got ", sp, nsp);
                print_expected("want", want_sp);
            }
            if (!dec_ok) fprintf(stderr, "      got \"%s\"\n      want \"%s\"\n", dec, want_dec);
        }
    }
    free(ids);
    free(sp);
    free(toks);
    free(dec);
}

static void check_chat(const cast_tokenizer *t, const char *name, int line, const cast_json *j, int *exact) {
    const char *rendered = cast_json_string(cast_json_get(j, "rendered"));
    cast_err err = {0};
    int *ids = NULL, n = 0;
    if (rendered && !cast_tokenizer_encode(t, rendered, strlen(rendered), 0, &ids, &n, &err)) {
        if (ids_equal(ids, n, cast_json_get(j, "ids"))) (*exact)++;
        else {
            fprintf(stderr, "  %s chat_template line %d mismatch\n", name, line);
            print_ids("got ", ids, n);
            print_expected("want", cast_json_get(j, "ids"));
        }
    }
    free(ids);
}

static void test_fixtures(void) {
    const char *data = check_shared_data();
    int all_ok = 1;
    for (int k = 0; k < N_TOK; k++) {
        char dir[1024], path[1100];
        snprintf(dir, sizeof dir, "%s/tokenizers/%s", data, tokenizers[k]);
        cast_tokenizer *t = NULL;
        cast_err err = {0};
        if (cast_tokenizer_load(&t, dir, &err)) {
            CHECK_MSG(0, "load %s: %s", tokenizers[k], err.msg);
            all_ok = 0;
            continue;
        }
        int exact = 0;
        snprintf(path, sizeof path, "%s/fixtures.jsonl", dir);
        int lines = each_line(path, t, tokenizers[k], check_fixture, &exact);
        printf("%-20s fixtures: %d/%d lines exact", tokenizers[k], exact, lines);
        CHECK_MSG(lines == 50 && exact == lines, "%s: %d/%d fixture lines exact", tokenizers[k], exact, lines);
        all_ok &= lines > 0 && exact == lines;
        snprintf(path, sizeof path, "%s/chat_template.jsonl", dir);
        if (cast_file_exists(path)) {
            int cexact = 0;
            int clines = each_line(path, t, tokenizers[k], check_chat, &cexact);
            printf(", chat_template: %d/%d", cexact, clines);
            CHECK_MSG(clines > 0 && cexact == clines, "%s: %d/%d chat_template lines exact", tokenizers[k], cexact, clines);
        }
        printf("\n");
        cast_tokenizer_free(t);
    }
    CHECK(all_ok);
}

/* ---- properties of the real tokenizers ---- */

static cast_tokenizer *load_named(const char *name) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tokenizers/%s", check_shared_data(), name);
    cast_tokenizer *t = NULL;
    cast_err err = {0};
    if (cast_tokenizer_load(&t, dir, &err)) CHECK_MSG(0, "%s", err.msg);
    return t;
}

static void test_metadata(void) {
    static const struct {
        const char *name;
        int vocab;
        const char *bos, *eos;
        int bos_id, eos_id, has_template;
    } want[] = {
        {"gpt2", 50257, NULL, NULL, -1, -1, 0},
        {"mistral-7b-v0.1", 32000, "<s>", "</s>", 1, 2, 0},
        {"llama3-8b-instruct", 128256, "<|begin_of_text|>", "<|end_of_text|>", 128000, 128001, 1},
        {"qwen3", 151669, NULL, "<|im_end|>", -1, 151645, 1},
        {"phi-3-mini", 32011, "<s>", "<|endoftext|>", 1, 32000, 1},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        cast_tokenizer *t = load_named(want[i].name);
        if (!t) continue;
        CHECK_MSG(cast_tokenizer_vocab_size(t) == want[i].vocab, "%s vocab %d", want[i].name, cast_tokenizer_vocab_size(t));
        const char *b = cast_tokenizer_bos(t), *e = cast_tokenizer_eos(t);
        CHECK_MSG(want[i].bos ? b && !strcmp(b, want[i].bos) : !b, "%s bos", want[i].name);
        CHECK_MSG(want[i].eos ? e && !strcmp(e, want[i].eos) : !e, "%s eos", want[i].name);
        CHECK_MSG(cast_tokenizer_bos_id(t) == want[i].bos_id, "%s bos id %d", want[i].name, cast_tokenizer_bos_id(t));
        CHECK_MSG(cast_tokenizer_eos_id(t) == want[i].eos_id, "%s eos id %d", want[i].name, cast_tokenizer_eos_id(t));
        CHECK_MSG(!!cast_tokenizer_chat_template(t) == want[i].has_template, "%s chat template", want[i].name);
        cast_tokenizer_free(t);
    }
    cast_tokenizer *t = load_named("gpt2");
    if (t) {
        CHECK(cast_tokenizer_token_id(t, "<|endoftext|>") == 50256);
        CHECK(cast_tokenizer_is_special(t, 50256));
        CHECK(!cast_tokenizer_is_special(t, 15496));
        CHECK(!strcmp(cast_tokenizer_piece(t, 15496), "Hello"));
        CHECK(cast_tokenizer_piece(t, 50257) == NULL);
        CHECK(cast_tokenizer_piece(t, -1) == NULL);
        /* skip_special drops <|endoftext|>; unknown ids are dropped */
        int ids[] = {15496, 50256, 6894, 999999};
        char *s = NULL;
        cast_err err = {0};
        CHECK(!cast_tokenizer_decode(t, ids, 4, 1, &s, &err) && !strcmp(s, "Helloworld"));
        free(s);
        /* a lone byte of a multi-byte character decodes to U+FFFD */
        int lone = cast_tokenizer_token_id(t, "\xC3\xA2"); /* 'â' stands for byte 0xE2 */
        CHECK(lone >= 0);
        CHECK(!cast_tokenizer_decode(t, &lone, 1, 0, &s, &err) && !strcmp(s, "\xEF\xBF\xBD"));
        free(s);
        /* U+180E is no space to the files' regex engine (PCRE2 thinks it is) */
        {
            int *v, n;
            static const int want[] = {87, 220, 28053, 254, 236};
            CHECK(!cast_tokenizer_encode(t, "x  \xE1\xA0\x8E", 6, 0, &v, &n, &err) && n == 5 && !memcmp(v, want, sizeof want));
            free(v);
        }
        /* invalid UTF-8 input is an error */
        int *v, n;
        CHECK(cast_tokenizer_encode(t, "a\xFF", 2, 0, &v, &n, &err) == -1 && strstr(err.msg, "UTF-8"));
        /* the empty text */
        CHECK(!cast_tokenizer_encode(t, "", 0, 1, &v, &n, &err) && n == 0);
        free(v);
        cast_tokenizer_free(t);
    }
    t = load_named("mistral-7b-v0.1");
    if (t) {
        cast_err err = {0};
        char *s = NULL;
        int euro[] = {cast_tokenizer_token_id(t, "<0xE2>"), cast_tokenizer_token_id(t, "<0x82>"),
                      cast_tokenizer_token_id(t, "<0xAC>")};
        CHECK(!cast_tokenizer_decode(t, euro, 3, 0, &s, &err) && !strcmp(s, "\xE2\x82\xAC"));
        free(s);
        /* an incomplete byte sequence: one U+FFFD per byte */
        CHECK(!cast_tokenizer_decode(t, euro, 2, 0, &s, &err) && !strcmp(s, "\xEF\xBF\xBD\xEF\xBF\xBD"));
        free(s);
        int sp[] = {1, 22557, 2};
        CHECK(!cast_tokenizer_decode(t, sp, 3, 1, &s, &err) && !strcmp(s, "Hello"));
        free(s);
        cast_tokenizer_free(t);
    }
}

/* Random valid UTF-8: ASCII-heavy with spaces, newlines, accents, CJK, emoji. */
static size_t random_text(cast_rng *r, char *out, size_t cap) {
    static const int32_t pool[] = {' ', ' ', '\n', '\t', 'a', 'e', 'T', 'z', '0', '7', '\'', '.', ',', '!', '-',
                                   0xE9, 0x301, 0xA0, 0x200B, 0x4E2D, 0x65E5, 0xD55C, 0x43F, 0x1F600, 0x1F44D, 0x2581};
    size_t n = 0, want = (size_t)cast_rng_below(r, 60);
    for (size_t i = 0; i < want && n + 4 < cap; i++) {
        int32_t cp = cast_rng_below(r, 3) == 0 ? pool[cast_rng_below(r, sizeof pool / sizeof pool[0])]
                                               : (int32_t)('a' + cast_rng_below(r, 26));
        unsigned char *o = (unsigned char *)out + n;
        if (cp < 0x80) o[0] = (unsigned char)cp, n += 1;
        else if (cp < 0x800) o[0] = (unsigned char)(0xC0 | cp >> 6), o[1] = (unsigned char)(0x80 | (cp & 63)), n += 2;
        else if (cp < 0x10000)
            o[0] = (unsigned char)(0xE0 | cp >> 12), o[1] = (unsigned char)(0x80 | ((cp >> 6) & 63)),
            o[2] = (unsigned char)(0x80 | (cp & 63)), n += 3;
        else
            o[0] = (unsigned char)(0xF0 | cp >> 18), o[1] = (unsigned char)(0x80 | ((cp >> 12) & 63)),
            o[2] = (unsigned char)(0x80 | ((cp >> 6) & 63)), o[3] = (unsigned char)(0x80 | (cp & 63)), n += 4;
    }
    out[n] = 0;
    return n;
}

/* Byte-level tokenizers without a normalizer give back the text exactly. */
static void test_round_trip(void) {
    const char *names[] = {"gpt2", "llama3-8b-instruct"};
    for (int k = 0; k < 2; k++) {
        cast_tokenizer *t = load_named(names[k]);
        if (!t) continue;
        cast_rng r;
        cast_rng_seed(&r, 42);
        int bad = 0;
        for (int it = 0; it < 300; it++) {
            char text[512];
            size_t n = random_text(&r, text, sizeof text);
            int *ids, nid;
            char *back = NULL;
            cast_err err = {0};
            if (cast_tokenizer_encode(t, text, n, 0, &ids, &nid, &err) ||
                cast_tokenizer_decode(t, ids, nid, 0, &back, &err) || strcmp(back, text))
                bad++;
            free(ids);
            free(back);
        }
        CHECK_MSG(bad == 0, "%s: %d round trips differ", names[k], bad);
        cast_tokenizer_free(t);
    }
    /* one long word: a whole paragraph is a single BPE word for Mistral */
    cast_tokenizer *t = load_named("mistral-7b-v0.1");
    if (t) {
        cast_buf b = {0};
        for (int i = 0; i < 4000; i++) cast_buf_puts(&b, "the quick brown fox jumps over the lazy dog ");
        int *ids, n;
        char *back = NULL;
        cast_err err = {0};
        CHECK(!cast_tokenizer_encode(t, b.data, b.len, 0, &ids, &n, &err));
        /* 11 tokens a sentence (" fox" is "▁f" "ox", " jumps" "▁j" "umps"), a final "▁";
         * `tokenizers` 0.22.2 gives the same 44001 */
        CHECK_MSG(n == 4000 * 11 + 1, "long text: %d tokens", n);
        CHECK(!cast_tokenizer_decode(t, ids, n, 0, &back, &err) && !strcmp(back, b.data));
        free(ids);
        free(back);
        cast_buf_free(&b);
        cast_tokenizer_free(t);
    }
}

/* ---- synthetic tokenizers ---- */

static char tmp_dir[512];

/* Writes a tokenizer.json whose vocabulary is `pieces` (ids in order) with
 * ignore_merges, so each pre-token in the vocabulary comes out whole. */
static cast_tokenizer *synth(const char *normalizer, const char *pre, const char *decoder, const char *post,
                             const char *added, const char *const *pieces, cast_err *err) {
    cast_buf b = {0};
    cast_buf_printf(&b, "{\"version\":\"1.0\",\"added_tokens\":%s,\"normalizer\":%s,\"pre_tokenizer\":%s,"
                        "\"post_processor\":%s,\"decoder\":%s,\"model\":{\"type\":\"BPE\",\"unk_token\":\"?\","
                        "\"ignore_merges\":true,\"vocab\":{\"?\":0",
                    added ? added : "[]", normalizer ? normalizer : "null", pre ? pre : "null", post ? post : "null",
                    decoder ? decoder : "null");
    int id = 1;
    for (const char *const *p = pieces; *p; p++) {
        cast_buf_putc(&b, ',');
        cast_buf_json_string(&b, *p, strlen(*p));
        cast_buf_printf(&b, ":%d", id++);
    }
    cast_buf_puts(&b, "},\"merges\":[]}}");
    char path[1100];
    snprintf(path, sizeof path, "%s/tokenizer.json", tmp_dir);
    cast_tokenizer *t = NULL;
    if (cast_write_file_atomic(path, b.data, b.len, err) == 0) cast_tokenizer_load(&t, tmp_dir, err);
    cast_buf_free(&b);
    return t;
}

/* Encodes and joins the token strings with '|'. */
static void pieces_of(const cast_tokenizer *t, const char *text, int special, char *out, size_t cap) {
    int *ids, n;
    char **toks;
    cast_err err = {0};
    out[0] = 0;
    if (cast_tokenizer_encode_tokens(t, text, strlen(text), special, &ids, &toks, &n, &err)) {
        snprintf(out, cap, "ERROR %.200s", err.msg);
        return;
    }
    cast_buf b = {0};
    for (int i = 0; i < n; i++) cast_buf_printf(&b, "%s%s", i ? "|" : "", toks[i]);
    snprintf(out, cap, "%s", b.data ? b.data : "");
    cast_buf_free(&b);
    free(ids);
    free(toks);
}

#define EXPECT_PIECES(t, text, special, want)                                                  \
    do {                                                                                       \
        char got_[1024];                                                                       \
        pieces_of(t, text, special, got_, sizeof got_);                                        \
        CHECK_MSG(!strcmp(got_, want), "\"%s\": got \"%s\", want \"%s\"", text, got_, want); \
    } while (0)

static void test_split_behaviours(void) {
    static const char *const v[] = {"a", "b", "c", ",", ",,", "a,", "b,", ",b", ",c", NULL};
    static const struct {
        const char *behavior;
        int invert;
        const char *want;
    } cases[] = {
        /* "a,b,,c" as `tokenizers` 0.22.2 splits it on "," */
        {"Removed", 0, "a|b|c"},
        {"Removed", 1, ",|,|,"},
        {"Isolated", 0, "a|,|b|,|,|c"},
        {"MergedWithPrevious", 0, "a,|b,|,|c"},
        {"MergedWithPrevious", 1, "a|,b|,|,c"},
        {"MergedWithNext", 0, "a|,b|,|,c"},
        {"MergedWithNext", 1, "a,|b,|,|c"},
        {"Contiguous", 0, "a|,|b|,,|c"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char pre[256];
        snprintf(pre, sizeof pre, "{\"type\":\"Split\",\"pattern\":{\"String\":\",\"},\"behavior\":\"%s\",\"invert\":%s}",
                 cases[i].behavior, cases[i].invert ? "true" : "false");
        cast_err err = {0};
        cast_tokenizer *t = synth(NULL, pre, NULL, NULL, NULL, v, &err);
        CHECK_MSG(t != NULL, "%s", err.msg);
        if (!t) continue;
        char got[256];
        pieces_of(t, "a,b,,c", 0, got, sizeof got);
        CHECK_MSG(!strcmp(got, cases[i].want), "Split %s invert=%d: got \"%s\", want \"%s\"", cases[i].behavior,
                  cases[i].invert, got, cases[i].want);
        cast_tokenizer_free(t);
    }
    /* a regex pattern, with the GPT-2-style letters/digits split */
    cast_err err = {0};
    static const char *const v2[] = {"ab", "12", " ", "cd", NULL};
    cast_tokenizer *t = synth(NULL, "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\p{N}+\"},\"behavior\":\"Isolated\"}",
                              NULL, NULL, NULL, v2, &err);
    CHECK_MSG(t != NULL, "%s", err.msg);
    if (t) {
        EXPECT_PIECES(t, "ab12cd", 0, "ab|12|cd");
        cast_tokenizer_free(t);
    }
}

static void test_metaspace(void) {
    static const char *const v[] = {"\xE2\x96\x81", "\xE2\x96\x81" "a", "\xE2\x96\x81" "b", "\xE2\x96\x81" "c", "a", "b",
                                    "c", ",", "\xE2\x96\x81" "a\xE2\x96\x81" "b", "a\xE2\x96\x81" "b", NULL};
    static const struct {
        const char *scheme;
        int split;
        const char *text, *want;
    } cases[] = {
        {"first", 1, "a b", "\xE2\x96\x81" "a|\xE2\x96\x81" "b"},
        {"first", 0, "a b", "\xE2\x96\x81" "a\xE2\x96\x81" "b"},
        {"never", 1, "a b", "a|\xE2\x96\x81" "b"},
        {"never", 0, "a b", "a\xE2\x96\x81" "b"},
        {"always", 1, " a", "\xE2\x96\x81" "a"},
        {"first", 1, "a  b", "\xE2\x96\x81" "a|\xE2\x96\x81|\xE2\x96\x81" "b"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char pre[256];
        snprintf(pre, sizeof pre, "{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"prepend_scheme\":\"%s\",\"split\":%s}",
                 cases[i].scheme, cases[i].split ? "true" : "false");
        cast_err err = {0};
        cast_tokenizer *t = synth(NULL, pre, NULL, NULL, NULL, v, &err);
        CHECK_MSG(t != NULL, "%s", err.msg);
        if (!t) continue;
        EXPECT_PIECES(t, cases[i].text, 0, cases[i].want);
        cast_tokenizer_free(t);
    }
    /* "first" prepends only at the start of the text: not after a split
     * piece nor after an added token */
    cast_err err = {0};
    cast_tokenizer *t = synth(NULL,
                              "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"String\":\",\"},"
                              "\"behavior\":\"Isolated\"},{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\","
                              "\"prepend_scheme\":\"first\",\"split\":true}]}",
                              "{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"prepend_scheme\":\"first\"}", NULL,
                              "[{\"id\":99,\"content\":\"<x>\",\"special\":true,\"normalized\":false}]", v, &err);
    CHECK_MSG(t != NULL, "%s", err.msg);
    if (t) {
        EXPECT_PIECES(t, "a,b c", 0, "\xE2\x96\x81" "a|,|b|\xE2\x96\x81" "c");
        EXPECT_PIECES(t, "<x>a", 0, "<x>|a");
        /* the Metaspace decoder drops every replacement character of the first token */
        int ids[] = {9, 4};
        char *s = NULL;
        CHECK(!cast_tokenizer_decode(t, ids, 2, 0, &s, &err) && !strcmp(s, "ab c"));
        free(s);
        cast_tokenizer_free(t);
    }
}

static void test_added_tokens(void) {
    static const char *const v[] = {"a", "b", " ", "A", NULL};
    const char *added = "[{\"id\":10,\"content\":\"<l>\",\"special\":true,\"normalized\":false,\"lstrip\":true},"
                        "{\"id\":11,\"content\":\"<r>\",\"special\":false,\"normalized\":false,\"rstrip\":true},"
                        "{\"id\":12,\"content\":\"<rr>\",\"special\":true,\"normalized\":false},"
                        "{\"id\":13,\"content\":\"w\",\"single_word\":true,\"normalized\":false},"
                        "{\"id\":14,\"content\":\"b\",\"normalized\":true}]";
    cast_err err = {0};
    /* the normalizer maps "c" to "b", so the normalized added token "b"
     * also matches text "c" */
    cast_tokenizer *t = synth("{\"type\":\"Replace\",\"pattern\":{\"String\":\"c\"},\"content\":\"b\"}", NULL, NULL,
                              "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<rr>\",\"type_id\":0}},"
                              "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"special_tokens\":{\"<rr>\":{\"id\":\"<rr>\","
                              "\"ids\":[7],\"tokens\":[\"<rr>\"]}}}",
                              added, v, &err);
    CHECK_MSG(t != NULL, "%s", err.msg);
    if (!t) return;
    EXPECT_PIECES(t, "a  <l>a", 0, "a|  <l>|a");
    EXPECT_PIECES(t, "a<r>  a", 0, "a|<r>  |a");
    EXPECT_PIECES(t, "<rr>", 0, "<rr>"); /* longest match first */
    EXPECT_PIECES(t, "a w a", 0, "a| |w| |a");
    EXPECT_PIECES(t, "awa", 0, "a|?|a"); /* single_word: "w" inside a word is not the token */
    EXPECT_PIECES(t, "acb", 0, "a|b|b");
    EXPECT_PIECES(t, "a", 1, "<rr>|a");
    int *ids, n;
    /* the files' ids are not used, as in `tokenizers`: "b" keeps its vocabulary
     * id 2, new tokens follow the 5 vocabulary entries (<l> 5, <r> 6, ...) */
    CHECK(!cast_tokenizer_encode(t, "acb", 3, 0, &ids, &n, &err) && n == 3 && ids[1] == 2 && ids[2] == 2);
    free(ids);
    CHECK(cast_tokenizer_token_id(t, "<l>") == 5 && cast_tokenizer_token_id(t, "w") == 8);
    CHECK(cast_tokenizer_vocab_size(t) == 9);
    /* no decoder: tokens joined with spaces; skip_special drops <l> but not <r> */
    int d[] = {1, 5, 6, 2};
    char *s = NULL;
    CHECK(!cast_tokenizer_decode(t, d, 4, 1, &s, &err) && !strcmp(s, "a <r> b"));
    free(s);
    cast_tokenizer_free(t);
}

static void test_errors(void) {
    static const char *const v[] = {"a", NULL};
    cast_err err = {0};
    cast_tokenizer *t = synth("{\"type\":\"Foo\"}", NULL, NULL, NULL, NULL, v, &err);
    CHECK(t == NULL && strstr(err.msg, "tokenizer.json: unsupported normalizer \"Foo\""));
    t = synth(NULL, "{\"type\":\"Whitespace\"}", NULL, NULL, NULL, v, &err);
    CHECK(t == NULL && strstr(err.msg, "unsupported pre_tokenizer \"Whitespace\""));
    t = synth(NULL, NULL, "{\"type\":\"WordPiece\"}", NULL, NULL, v, &err);
    CHECK(t == NULL && strstr(err.msg, "unsupported decoder \"WordPiece\""));
    t = synth(NULL, NULL, NULL, "{\"type\":\"Bogus\"}", NULL, v, &err);
    CHECK(t == NULL && strstr(err.msg, "unsupported post_processor \"Bogus\""));
    t = synth(NULL, "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"}", NULL, NULL, NULL, v, &err);
    CHECK(t == NULL && strstr(err.msg, "regex"));
    /* Roberta's cls A sep */
    t = synth(NULL, NULL, NULL, "{\"type\":\"RobertaProcessing\",\"sep\":[\"</s>\",2],\"cls\":[\"<s>\",0]}", NULL, v, &err);
    CHECK_MSG(t != NULL, "%s", err.msg);
    if (t) {
        EXPECT_PIECES(t, "a", 1, "<s>|a|</s>");
        cast_tokenizer_free(t);
    }
    /* malformed JSON: one line naming the file */
    char path[1100];
    snprintf(path, sizeof path, "%s/tokenizer.json", tmp_dir);
    CHECK(!cast_write_file_atomic(path, "{\"model\": [1, 2", 15, &err));
    CHECK(cast_tokenizer_load(&t, tmp_dir, &err) == -1 && strstr(err.msg, path) && !strchr(err.msg, '\n'));
    /* unsupported model type */
    const char *wp = "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}";
    CHECK(!cast_write_file_atomic(path, wp, strlen(wp), &err));
    CHECK(cast_tokenizer_load(&t, tmp_dir, &err) == -1 && strstr(err.msg, "unsupported model \"WordPiece\""));
    /* merges naming unknown tokens */
    const char *bad = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b\"]}}";
    CHECK(!cast_write_file_atomic(path, bad, strlen(bad), &err));
    CHECK(cast_tokenizer_load(&t, tmp_dir, &err) == -1 && strstr(err.msg, "merge 1") && strstr(err.msg, "\"b\""));
    /* a folder with no tokenizer */
    char empty[1100];
    snprintf(empty, sizeof empty, "%s/empty", tmp_dir);
    CHECK(!cast_mkdirs(empty, &err));
    CHECK(cast_tokenizer_load(&t, empty, &err) == -1 && strstr(err.msg, "no tokenizer.json"));
    CHECK(cast_tokenizer_load(&t, "/nonexistent/cast", &err) == -1 && strstr(err.msg, "/nonexistent/cast"));
}

static void test_merges_and_fallback(void) {
    /* pair-form merges, continuing_subword_prefix, byte_fallback and fused unk */
    const char *json =
        "{\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"byte_fallback\":true,"
        "\"continuing_subword_prefix\":\"##\",\"vocab\":{\"<unk>\":0,\"a\":1,\"##b\":2,\"ab\":3,\"##c\":4,\"abc\":5,"
        "\"<0xC3>\":6,\"<0xA9>\":7,\"x\":8},\"merges\":[[\"a\",\"##b\"],[\"ab\",\"##c\"]]},"
        "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"}]}}";
    char path[1100];
    cast_err err = {0};
    snprintf(path, sizeof path, "%s/tokenizer.json", tmp_dir);
    CHECK(!cast_write_file_atomic(path, json, strlen(json), &err));
    cast_tokenizer *t = NULL;
    CHECK_MSG(!cast_tokenizer_load(&t, tmp_dir, &err), "%s", err.msg);
    if (!t) return;
    EXPECT_PIECES(t, "abc", 0, "abc");
    EXPECT_PIECES(t, "ab", 0, "ab");
    /* a first character missing from the vocabulary falls back to its bytes */
    EXPECT_PIECES(t, "\xC3\xA9", 0, "<0xC3>|<0xA9>");
    /* unknown characters fuse into one <unk> */
    EXPECT_PIECES(t, "xyz", 0, "x|<unk>");
    cast_tokenizer_free(t);
}

/* Files from elsewhere: tokenizer.json from memory, and what a hostile file
 * must not get past loading (inputs found while fuzzing, tests/fuzz). */
static void test_untrusted(void) {
    cast_err err = {0};
    cast_tokenizer *t = NULL;
    /* from memory, as from the folder */
    char *dir = cast_path_join(check_shared_data(), "tokenizers/mistral-7b-v0.1");
    char *path = cast_path_join(dir, "tokenizer.json"), *text;
    size_t n;
    if (cast_read_file(path, &text, &n, &err) == 0) {
        cast_tokenizer *f = NULL;
        CHECK_MSG(cast_tokenizer_load_json(&t, text, n, path, &err) == 0, "%s", err.msg);
        CHECK_MSG(cast_tokenizer_load(&f, dir, &err) == 0, "%s", err.msg);
        if (t && f) {
            static const char s[] = "Hello world, caf\xC3\xA9 </s>";
            int *a = NULL, *b = NULL, na = 0, nb = 0;
            CHECK(!cast_tokenizer_encode(t, s, sizeof s - 1, 1, &a, &na, &err) && !cast_tokenizer_encode(f, s, sizeof s - 1, 1, &b, &nb, &err));
            CHECK(na == nb && na > 0 && !memcmp(a, b, sizeof(int) * (size_t)na));
            free(a);
            free(b);
            /* no tokenizer_config.json in memory: no eos there */
            CHECK(cast_tokenizer_eos(t) == NULL && cast_tokenizer_eos(f) != NULL);
        }
        cast_tokenizer_free(t);
        cast_tokenizer_free(f);
        free(text);
    } else CHECK_MSG(0, "%s", err.msg);
    free(path);
    free(dir);
    /* strings that are not UTF-8 would reach the decoders and PCRE2 (which
     * is told the text is valid): the whole file must be UTF-8 */
    static const char bad_vocab[] = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"\xF0\": 0, \"a\": 1}, \"merges\": []}, \"decoder\": {\"type\": \"ByteLevel\"}}";
    CHECK(cast_tokenizer_load_json(&t, bad_vocab, sizeof bad_vocab - 1, "bad.json", &err) == -1 && t == NULL &&
          strstr(err.msg, "bad.json: not valid UTF-8 (byte 37)"));
    static const char bad_added[] = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": [{\"id\": 5, \"content\": \"\xC3\"}]}";
    CHECK(cast_tokenizer_load_json(&t, bad_added, sizeof bad_added - 1, NULL, &err) == -1 &&
          strstr(err.msg, "tokenizer.json: not valid UTF-8"));
    /* post-processor ids index the embedding table later: they are bounded like vocabulary ids */
    static const char neg[] = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"post_processor\": {\"type\": "
                              "\"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"X\"}}, {\"Sequence\": {\"id\": \"A\"}}], "
                              "\"special_tokens\": {\"X\": {\"id\": \"X\", \"ids\": [-7], \"tokens\": [\"X\"]}}}}";
    CHECK(cast_tokenizer_load_json(&t, neg, sizeof neg - 1, "neg.json", &err) == -1 && strstr(err.msg, "has id -7, not in 0..16777215"));
    /* not NUL-terminated: only n bytes are read */
    static const char ok[] = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}garbage";
    CHECK_MSG(cast_tokenizer_load_json(&t, ok, sizeof ok - 1 - 7, "ok.json", &err) == 0, "%s", err.msg);
    cast_tokenizer_free(t);
}

int main(void) {
    const char *tmp = getenv("CAST_TEST_TMP");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/test_tokenizer", tmp ? tmp : "/tmp/cast_test");
    cast_err err = {0};
    if (cast_mkdirs(tmp_dir, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    test_fixtures();
    test_metadata();
    test_round_trip();
    test_split_behaviours();
    test_metaspace();
    test_added_tokens();
    test_merges_and_fallback();
    test_untrusted();
    test_errors();
    return check_report();
}
