/* cast generate MODEL --prompt TEXT | --ids 1,2,3: generation with the KV cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/timer.h"
#include "base/threads.h"
#include "cli.h"
#include "eval/generate.h"
#include "eval/metrics.h"
#include "text/chat.h"
#include "model/model.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

/* Prints the text the new token completes; holds back an incomplete UTF-8 tail. */
int cli_stream_token(void *ctx, int prompt, int token) {
    cli_stream *st = ctx;
    st->ids[st->n++] = token;
    char *text = NULL;
    cast_err err;
    if (!st->tok || cast_tokenizer_decode(st->tok, st->ids, st->n, 1, &text, &err)) return 0;
    size_t len = strlen(text);
    int incomplete = len >= 3 && !memcmp(text + len - 3, CAST_UTF8_REPLACEMENT, 3);
    if (!incomplete && len > st->printed) {
        fwrite(text + st->printed, 1, len - st->printed, stdout);
        fflush(stdout);
        st->printed = len;
    }
    free(text);
    return 0;
}

int cmd_generate(int argc, char **argv) {
    const char *compute = "auto";
    const char *prompt = NULL, *ids_arg = NULL, *template_name = NULL;
    int max_new = 64, json = 0, threads = 0, chat = 0;
    double temperature = 0, top_p = 1;
    int64_t seed = 0;
    const cli_opt opts[] = {
        {"--prompt", CLI_STRING, &prompt, "TEXT", "prompt text (needs the model's tokenizer)"},
        {"--ids", CLI_STRING, &ids_arg, "1,2,3", "prompt as token ids"},
        {"--chat", CLI_FLAG, &chat, NULL, "send the prompt as a user turn through the chat template"},
        {"--template", CLI_STRING, &template_name, "NAME", "with --chat: a built-in template (default: the model's)"},
        {"--max-new", CLI_INT, &max_new, "N", "tokens to generate at most; stops earlier at max_position_embeddings (default 64)"},
        {"--temperature", CLI_DOUBLE, &temperature, "T", "sampling temperature (default 0 = greedy)"},
        {"--top-p", CLI_DOUBLE, &top_p, "P", "nucleus sampling mass (default 1 = off)"},
        {"--seed", CLI_INT64, &seed, "S", "sampling seed (default 0)"},
        {"--threads", CLI_INT, &threads, "N", "threads (default 0 = all cores)"},
        CLI_COMPUTE_OPT(compute),
        {"--json", CLI_FLAG, &json, NULL, "print {\"stopped\": stop_token|max_new|max_position_embeddings, \"ids\": [...], \"text\": ...} only"},
        {0}};
    const cli_spec spec = {"generate", "MODEL (--prompt TEXT | --ids 1,2,3) [options]",
                           "Generates a continuation, streaming tokens as they come; stops at end of sequence, after --max-new tokens, or "
                           "where prompt and reply fill max_position_embeddings (with a note).", opts, 1, 1};
    const char *pos[1];
    int np, rc = cli_parse(&spec, argc, argv, pos, &np);
    if (rc) return rc == 2 ? 0 : 1;
    if (!prompt == !ids_arg) return cli_failf("generate: give exactly one of --prompt or --ids");
    if (max_new < 0) return cli_failf("generate: --max-new must be >= 0");
    if (temperature < 0 || top_p <= 0 || top_p > 1) return cli_failf("generate: need --temperature >= 0 and 0 < --top-p <= 1");
    cast_set_threads(threads);
    if (chat && !prompt) return cli_failf("generate: --chat needs --prompt TEXT");
    cast_err err = {0};
    cast_model m;
    if (cli_model_load(&m, pos[0], compute)) return 1;
    cast_tokenizer *tok = NULL;
    cast_chat_template *tpl = NULL;
    if (cast_tokenizer_load(&tok, pos[0], &err)) {
        if (prompt) {
            cast_model_free(&m);
            return cli_fail(&err);
        }
        tok = NULL; /* ids in, ids out: the tokenizer is optional */
    }
    int *ids = NULL, n = 0;
    if (ids_arg) {
        if (cli_parse_ids(ids_arg, &ids, &n)) goto fail_quiet;
    } else if (chat) {
        cast_message turn = {"user", prompt};
        int *labels = NULL;
        if (cast_chat_template_open(&tpl, tok, template_name, pos[0], &err) ||
            cast_chat_encode(tpl, tok, &turn, 1, 1, &ids, &labels, &n, &err))
            goto fail;
        free(labels);
    } else if (cast_tokenizer_encode(tok, prompt, strlen(prompt), 1, &ids, &n, &err)) {
        goto fail;
    }
    if (n == 0) {
        cli_failf("generate: the prompt is empty");
        goto fail_quiet;
    }
    if (n >= m.cfg.max_pos) {
        cli_failf("%s: the prompt is %d tokens, and max_position_embeddings is %d: no room to generate", pos[0], n, m.cfg.max_pos);
        goto fail_quiet;
    }
    int stops[16];
    int n_stop = cast_eval_stop_ids(&m, tok, tpl, stops, 16);
    cli_stream st = {tok, cast_xmalloc(sizeof(int) * (size_t)(max_new + 1)), 0, 0};
    int hit_max_pos = 0;
    cast_gen_opts g = {max_new, (float)temperature, (float)top_p, (uint64_t)seed, stops, n_stop, json ? NULL : cli_stream_token, &st,
                       &hit_max_pos};
    cast_seqs prompts = {0}, out = {0};
    cast_seqs_push(&prompts, ids, NULL, n);
    rc = cast_generate(&m, &prompts, &g, &out, &err);
    cast_seqs_free(&prompts);
    free(st.ids);
    if (rc) goto fail;
    /* why generation ended */
    int n_out = cast_seqs_len(&out, 0), last = n_out ? out.ids[n_out - 1] : -1, at_stop = 0;
    for (int k = 0; k < n_stop; k++) at_stop |= n_out && last == stops[k];
    const char *stopped = hit_max_pos ? "max_position_embeddings" : at_stop ? "stop_token" : "max_new";
    if (json) {
        cast_buf b = {0};
        cast_buf_printf(&b, "{\"stopped\":\"%s\",\"ids\":[", stopped);
        for (int i = 0; i < cast_seqs_len(&out, 0); i++) cast_buf_printf(&b, "%s%d", i ? "," : "", out.ids[i]);
        cast_buf_puts(&b, "],\"text\":");
        char *text = NULL;
        if (tok && cast_tokenizer_decode(tok, out.ids, cast_seqs_len(&out, 0), 1, &text, &err) == 0)
            cast_buf_json_string(&b, text, strlen(text));
        else cast_buf_puts(&b, "\"\"");
        free(text);
        cast_buf_puts(&b, "}\n");
        fputs(b.data, stdout);
        cast_buf_free(&b);
    } else {
        if (!tok) {
            for (int i = 0; i < cast_seqs_len(&out, 0); i++) printf("%s%d", i ? "," : "", out.ids[i]);
        }
        putchar('\n');
    }
    if (hit_max_pos)
        cli_note("stopped after %d new tokens: the prompt (%d) and the reply fill max_position_embeddings (%d)", n_out, n,
                 m.cfg.max_pos);
    cast_seqs_free(&out);
    free(ids);
    cast_chat_template_free(tpl);
    cast_tokenizer_free(tok);
    cast_model_free(&m);
    return 0;
fail:
    cli_fail(&err);
fail_quiet:
    free(ids);
    cast_chat_template_free(tpl);
    cast_tokenizer_free(tok);
    cast_model_free(&m);
    return 1;
}
