/* cast tokenize MODEL TEXT: token ids and pieces; --decode turns ids back
 * into text; --bench times encoding of a file's lines (bench/bench_tokenizer.sh). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "base/timer.h"
#include "cli.h"
#include "text/chat.h"
#include "text/tokenizer.h"

static void print_json_ids(cast_buf *b, const int *ids, int n) {
    cast_buf_putc(b, '[');
    for (int i = 0; i < n; i++) cast_buf_printf(b, "%s%d", i ? "," : "", ids[i]);
    cast_buf_putc(b, ']');
}

static int do_encode(const cast_tokenizer *t, const char *text, int special, int json) {
    cast_err err = {0};
    int *ids, n;
    char **toks;
    if (cast_tokenizer_encode_tokens(t, text, strlen(text), special, &ids, &toks, &n, &err)) return cli_fail(&err);
    cast_buf b = {0};
    if (json) {
        cast_buf_puts(&b, "{\"ids\":");
        print_json_ids(&b, ids, n);
        cast_buf_puts(&b, ",\"tokens\":[");
        for (int i = 0; i < n; i++) {
            if (i) cast_buf_putc(&b, ',');
            cast_buf_json_string(&b, toks[i], strlen(toks[i]));
        }
        cast_buf_puts(&b, "]}\n");
    } else {
        /* one token a line: id, then the piece quoted so spaces and
         * control characters stay visible */
        for (int i = 0; i < n; i++) {
            cast_buf_printf(&b, "%8d  ", ids[i]);
            cast_buf_json_string(&b, toks[i], strlen(toks[i]));
            cast_buf_printf(&b, "%s\n", cast_tokenizer_is_special(t, ids[i]) ? "  (special)" : "");
        }
        cast_buf_printf(&b, "%d token%s\n", n, n == 1 ? "" : "s");
    }
    if (b.len) fwrite(b.data, 1, b.len, stdout);
    cast_buf_free(&b);
    free(ids);
    free(toks);
    return 0;
}

static int do_decode(const cast_tokenizer *t, const char *list, int skip_special, int json) {
    int *ids, n;
    if (cli_parse_ids(list, &ids, &n)) return 1;
    cast_err err = {0};
    char *text;
    int rc = cast_tokenizer_decode(t, ids, n, skip_special, &text, &err);
    free(ids);
    if (rc) return cli_fail(&err);
    if (json) {
        cast_buf b = {0};
        cast_buf_puts(&b, "{\"text\":");
        cast_buf_json_string(&b, text, strlen(text));
        cast_buf_puts(&b, "}\n");
        fputs(b.data, stdout);
        cast_buf_free(&b);
    } else printf("%s\n", text);
    free(text);
    return 0;
}

/* FNV-1a over the ids as 4 little-endian bytes each: bench_tokenizer.js
 * computes the same, so the benchmark also shows that both sides agree. */
static uint32_t ids_hash(uint32_t h, const int *ids, int n) {
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 4; k++) h = (h ^ (((uint32_t)ids[i] >> (8 * k)) & 0xFF)) * 16777619u;
    return h;
}

/* Encodes every non-empty line of FILE, `rounds` times over, on this one
 * thread, and reports tokens per second over all rounds. */
static int do_bench(const cast_tokenizer *t, const char *path, int rounds, double load_s, int json) {
    cast_err err = {0};
    char *text;
    size_t len;
    if (cast_read_file(path, &text, &len, &err)) return cli_fail(&err);
    if (rounds < 1) rounds = 1;
    long long tokens = 0, lines = 0, bytes = 0;
    uint32_t hash = 2166136261u;
    double t0 = cast_now_s();
    for (int r = 0; r < rounds; r++) {
        long long line_no = 0;
        for (char *p = text; p < text + len;) {
            char *e = memchr(p, '\n', (size_t)(text + len - p));
            if (!e) e = text + len;
            line_no++;
            if (e > p) {
                int *ids, n;
                if (cast_tokenizer_encode(t, p, (size_t)(e - p), 0, &ids, &n, &err)) {
                    free(text);
                    return cli_failf("%s:%lld: %s", path, line_no, err.msg);
                }
                if (r == 0) {
                    lines++;
                    bytes += e - p;
                    hash = ids_hash(hash, ids, n);
                }
                free(ids);
                tokens += n;
            }
            p = e + 1;
        }
    }
    double secs = cast_now_s() - t0;
    free(text);
    double tps = secs > 0 ? (double)tokens / secs : 0;
    if (json) {
        cast_buf b = {0};
        cast_buf_printf(&b, "{\"file\":");
        cast_buf_json_string(&b, path, strlen(path));
        cast_buf_printf(&b, ",\"lines\":%lld,\"bytes\":%lld,\"rounds\":%d,\"tokens\":%lld,\"ids_hash\":\"%08x\",\"seconds\":",
                        lines, bytes, rounds, tokens, (unsigned)hash);
        cast_buf_json_number(&b, secs);
        cast_buf_puts(&b, ",\"tokens_per_s\":");
        cast_buf_json_number(&b, tps);
        cast_buf_puts(&b, ",\"load_seconds\":");
        cast_buf_json_number(&b, load_s);
        cast_buf_puts(&b, "}\n");
        fputs(b.data, stdout);
        cast_buf_free(&b);
    } else
        printf("%lld lines, %lld bytes, %d rounds: %lld tokens in %.3f s = %.0f tokens/s (load %.3f s)\n", lines, bytes,
               rounds, tokens, secs, tps, load_s);
    return 0;
}

/* The conversation rendered with the chat template, and its ids (as
 * apply_chat_template(tokenize=True)). Rendering is not training: a
 * conversation without an assistant turn (a prompt) renders too. */
static int do_messages(const cast_tokenizer *t, const char *dir, const char *path, const char *template_name, int gen_prompt, int json) {
    cli_messages msgs;
    if (cli_read_messages(path, &msgs)) return 1;
    cast_err err = {0};
    cast_chat_template *tpl = NULL;
    char *text = NULL;
    int *ids = NULL, n = 0, rc = 1;
    if (cast_chat_template_open(&tpl, t, template_name, dir, &err) || cast_chat_render(tpl, msgs.m, msgs.n, gen_prompt, &text, &err) ||
        cast_tokenizer_encode(t, text, strlen(text), 0, &ids, &n, &err)) {
        cast_fail_prefix(&err, path);
        cli_fail(&err);
        goto done;
    }
    cast_buf b = {0};
    if (json) {
        cast_buf_puts(&b, "{\"text\":");
        cast_buf_json_string(&b, text, strlen(text));
        cast_buf_puts(&b, ",\"ids\":");
        print_json_ids(&b, ids, n);
        cast_buf_puts(&b, "}\n");
    } else {
        cast_buf_printf(&b, "%s\n(%d tokens, template %s)\n", text, n, cast_chat_template_name(tpl));
    }
    fputs(b.data, stdout);
    cast_buf_free(&b);
    rc = 0;
done:
    free(ids);
    free(text);
    cast_chat_template_free(tpl);
    cli_messages_free(&msgs);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    int special = 0, json = 0, skip_special = 0, rounds = 5, gen_prompt = 0;
    const char *decode = NULL, *bench = NULL, *messages = NULL, *template_name = NULL;
    const cli_opt opts[] = {
        {"--messages", CLI_STRING, &messages, "CONV.json", "render a conversation ([{role, content}]; a prompt without an assistant turn too) with the chat template"},
        {"--generation-prompt", CLI_FLAG, &gen_prompt, NULL, "with --messages: end with the assistant's generation prompt"},
        {"--template", CLI_STRING, &template_name, "NAME", "with --messages: a built-in template (default: the model's)"},
        {"--special", CLI_FLAG, &special, NULL, "apply the post-processor (BOS etc.), as add_special_tokens=True"},
        {"--json", CLI_FLAG, &json, NULL, "one JSON object on stdout"},
        {"--decode", CLI_STRING, &decode, "IDS", "decode comma-separated ids (1,2,3) instead of encoding; an id without a piece (a padded vocab_size) gives nothing, as in tokenizers"},
        {"--skip-special", CLI_FLAG, &skip_special, NULL, "with --decode: drop special tokens"},
        {"--bench", CLI_STRING, &bench, "FILE", "time encoding of each line of FILE (one thread)"},
        {"--rounds", CLI_INT, &rounds, "N", "with --bench: passes over the file (default 5)"},
        {0},
    };
    const cli_spec spec = {"tokenize", "MODEL (TEXT | --decode IDS | --messages CONV.json | --bench FILE) [options]",
                           "Token ids and pieces of a text (MODEL: a folder with tokenizer.json, or vocab.json + "
                           "merges.txt), or the text of ids.",
                           opts, 1, 2};
    const char *pos[2];
    int np, rc = cli_parse(&spec, argc, argv, pos, &np);
    if (rc) return rc == 2 ? 0 : 1;
    int modes = (np == 2) + (decode != NULL) + (bench != NULL) + (messages != NULL);
    if (modes != 1) return cli_failf("tokenize: give exactly one of TEXT, --decode IDS, --messages CONV.json, --bench FILE");
    cast_err err = {0};
    cast_tokenizer *t;
    double t0 = cast_now_s();
    if (cast_tokenizer_load(&t, pos[0], &err)) return cli_fail(&err);
    double load_s = cast_now_s() - t0;
    if (decode) rc = do_decode(t, decode, skip_special, json);
    else if (bench) rc = do_bench(t, bench, rounds, load_s, json);
    else if (messages) rc = do_messages(t, pos[0], messages, template_name, gen_prompt, json);
    else rc = do_encode(t, pos[1], special, json);
    cast_tokenizer_free(t);
    return rc;
}
