/* cast chat MODEL: an interactive conversation through the model's chat template. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/timer.h"
#include "base/threads.h"
#include "cli.h"
#include "eval/generate.h"
#include "eval/metrics.h"

typedef struct turn {
    char *role, *content;
} turn;

int cmd_chat(int argc, char **argv) {
    const char *compute = "auto";
    const char *system = NULL, *template_name = NULL;
    int max_new = 256, threads = 0;
    double temperature = 0.7, top_p = 0.9;
    int64_t seed = 0;
    const cli_opt opts[] = {
        {"--system", CLI_STRING, &system, "TEXT", "a system message first (default: none)"},
        {"--template", CLI_STRING, &template_name, "NAME", "a built-in chat template (default: the model's)"},
        {"--max-new", CLI_INT, &max_new, "N", "tokens per reply at most; stops earlier at max_position_embeddings (default 256)"},
        {"--temperature", CLI_DOUBLE, &temperature, "T", "sampling temperature (default 0.7; 0 = greedy)"},
        {"--top-p", CLI_DOUBLE, &top_p, "P", "nucleus sampling mass (default 0.9)"},
        {"--seed", CLI_INT64, &seed, "S", "sampling seed (default 0)"},
        {"--threads", CLI_INT, &threads, "N", "threads (default 0 = all cores)"},
        CLI_COMPUTE_OPT(compute),
        {0}};
    const cli_spec spec = {"chat", "MODEL [options]",
                           "An interactive conversation: type a message, the reply streams back. /reset starts over, /quit "
                           "(or end of input) leaves.",
                           opts, 1, 1};
    const char *pos[1];
    int np, rc = cli_parse(&spec, argc, argv, pos, &np);
    if (rc) return rc == 2 ? 0 : 1;
    if (max_new <= 0 || temperature < 0 || top_p <= 0 || top_p > 1) return cli_failf("chat: need --max-new > 0, --temperature >= 0, 0 < --top-p <= 1");
    cast_set_threads(threads);
    cli_model cm;
    if (cli_model_open(&cm, pos[0], template_name, compute)) return 1;
    if (!cm.tok || !cm.tpl) {
        cli_model_close(&cm);
        return cli_failf("%s: chat needs a tokenizer and a chat template (--template NAME)", pos[0]);
    }
    int stops[16], n_stop = cast_eval_stop_ids(&cm.m, cm.tok, cm.tpl, stops, 16);
    int interactive = isatty(0);
    turn *conv = NULL;
    int n_conv = 0, cap = 0;
    if (system) {
        conv = cast_xrealloc(conv, sizeof *conv * (size_t)(cap = 8));
        conv[n_conv++] = (turn){cast_xstrdup("system"), cast_xstrdup(system)};
    }
    int first = system ? 1 : 0;
    char line[65536];
    cast_err err = {0};
    rc = 0;
    for (uint64_t round = 0;; round++) {
        if (interactive) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        if (!fgets(line, sizeof line, stdin)) break;
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        if (!strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            for (int i = first; i < n_conv; i++) free(conv[i].role), free(conv[i].content);
            n_conv = first;
            continue;
        }
        if (n_conv + 2 > cap) conv = cast_xrealloc(conv, sizeof *conv * (size_t)(cap = cap ? cap * 2 : 8));
        conv[n_conv++] = (turn){cast_xstrdup("user"), cast_xstrdup(line)};
        int *ids = NULL, *labels = NULL, n = 0;
        for (;;) {
            /* render the conversation; drop the oldest exchanges while it does not fit */
            cast_message *msgs = cast_xmalloc(sizeof *msgs * (size_t)n_conv);
            for (int i = 0; i < n_conv; i++) msgs[i] = (cast_message){conv[i].role, conv[i].content};
            int bad = cast_chat_encode(cm.tpl, cm.tok, msgs, n_conv, 1, &ids, &labels, &n, &err);
            free(msgs);
            if (bad) {
                cli_fail(&err);
                rc = 1;
                goto done;
            }
            free(labels);
            if (n + max_new <= cm.m.cfg.max_pos || n_conv - first <= 1) break;
            free(ids);
            free(conv[first].role), free(conv[first].content), free(conv[first + 1].role), free(conv[first + 1].content);
            memmove(conv + first, conv + first + 2, sizeof *conv * (size_t)(n_conv - first - 2));
            n_conv -= 2;
        }
        cli_stream st = {cm.tok, cast_xmalloc(sizeof(int) * (size_t)(max_new + 1)), 0, 0};
        int hit_max_pos = 0;
        cast_gen_opts g = {max_new, (float)temperature, (float)top_p, (uint64_t)seed + round, stops, n_stop, cli_stream_token, &st,
                           &hit_max_pos};
        cast_seqs prompt = {0}, out = {0};
        cast_seqs_push(&prompt, ids, NULL, n);
        free(ids);
        int bad = cast_generate(&cm.m, &prompt, &g, &out, &err);
        cast_seqs_free(&prompt);
        putchar('\n');
        if (!bad && hit_max_pos)
            cli_note("the reply stopped at the model's max_position_embeddings (%d tokens); /reset starts over", cm.m.cfg.max_pos);
        char *reply = NULL;
        if (!bad) bad = cast_tokenizer_decode(cm.tok, out.ids, cast_seqs_len(&out, 0), 1, &reply, &err);
        cast_seqs_free(&out);
        free(st.ids);
        if (bad) {
            cli_fail(&err);
            rc = 1;
            goto done;
        }
        conv[n_conv++] = (turn){cast_xstrdup("assistant"), reply};
    }
done:
    for (int i = 0; i < n_conv; i++) free(conv[i].role), free(conv[i].content);
    free(conv);
    cli_model_close(&cm);
    return rc;
}
