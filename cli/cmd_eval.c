/* cast eval MODEL [--harmful FILE] [--benign FILE] [--utility FILE ...]:
 * refusal rates from greedy replies, and utility (NLL, multiple choice,
 * exact match), optionally against a base model's eval.json. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/file.h"
#include "base/json.h"
#include "base/timer.h"
#include "base/threads.h"
#include "cli.h"
#include "dist/dist.h"
#include "eval/judge.h"
#include "eval/metrics.h"

typedef struct {
    cli_progress bar;
    int64_t done;
    const char *stage;
} eval_progress;

static void on_progress(void *ctx, int64_t units) {
    eval_progress *p = ctx;
    p->done += units;
    cli_progress_update(&p->bar, p->done, p->stage);
}

static void print_set(const cast_eval_set *s, int index, const cast_json *base) {
    const char *names[4];
    double vals[4];
    int nm = cast_eval_set_metrics(s, names, vals);
    for (int k = 0; k < nm; k++) {
        double bv;
        int has_base = base && cast_eval_base_value(base, s, index, names[k], &bv) == 0;
        if (k == 0) printf("%-8s %6d  ", cast_eval_role_name(s->role), s->n);
        else printf("%-8s %6s  ", "", "");
        printf("%-13s %10.4f", names[k], vals[k]);
        if (base) {
            if (has_base) printf(" %10.4f %+10.4f", bv, vals[k] - bv);
            else printf(" %10s %10s", "-", "-");
        }
        if (k == 0) printf("  %s", s->path);
        putchar('\n');
    }
}

int cmd_eval(int argc, char **argv) {
    const char *compute = "auto";
    const char *harmful = NULL, *benign = NULL, *refusals = NULL, *compare = NULL, *out = NULL, *template_name = NULL;
    cli_strings utility = {{0}, 0};
    cast_eval_opts o;
    cast_eval_opts_default(&o);
    int min_words = 0, save = 0, json = 0, threads = 0;
    const char *on_long = "skip", *format = "cast";
    const cli_opt opts[] = {
        {"--harmful", CLI_STRING, &harmful, "FILE", "harmful prompts: refusal rate and attack success rate (XSTest: its unsafe items)"},
        {"--benign", CLI_STRING, &benign, "FILE", "benign prompts: refusal rate, lower is better (XSTest: its safe items)"},
        {"--utility", CLI_STRINGS, &utility, "FILE ...", "utility sets: NLL, multiple choice (acc, acc_norm) or exact match, by content"},
        {"--max-new", CLI_INT, &o.max_new, "N", "new tokens per harmful/benign reply (default 64)"},
        {"--max-new-exact", CLI_INT, &o.max_new_exact, "N", "new tokens per exact-answer reply (default 256)"},
        {"--batch", CLI_INT, &o.batch, "N", "prompts per generation batch, sequences per forward pass (default 8)"},
        {"--refusals", CLI_STRING, &refusals, "FILE", "refusal phrases, one per line (default: the built-in 29 of GCG)"},
        {"--min-words", CLI_INT, &min_words, "N", "also count replies of fewer than N words as refusals (default 0: off)"},
        {"--fewshot", CLI_INT, &o.fewshot, "K", "exact answers: the file's first K solved examples precede each prompt (default 0)"},
        {"--first", CLI_INT, &o.limit, "N", "evaluate the first N examples of each set (default 0 = all)"},
        {"--max-len", CLI_INT, &o.max_len, "N", "NLL sets: tokens per example at most (default 0 = no limit)"},
        {"--on-long", CLI_STRING, &on_long, "POLICY", "NLL sets: " CLI_ON_LONG_HELP},
        {"--template", CLI_STRING, &template_name, "NAME", "chat template (default: the model's; chatml, llama2, ...)"},
        {"--compare", CLI_STRING, &compare, "BASE.json", "a base model's eval.json: adds its values and the deltas (default: none)"},
        {"--out-file", CLI_STRING, &out, "FILE", "write the results JSON there (atomically; default: not written)"},
        {"--format", CLI_STRING, &format, "cast|lm-eval", "layout of the results JSON: cast's eval.json or lm-evaluation-harness's (default cast)"},
        {"--save-generations", CLI_FLAG, &save, NULL, "put every prompt, reply and verdict in the JSON"},
        {"--json", CLI_FLAG, &json, NULL, "print the results JSON only"},
        {"--threads", CLI_INT, &threads, "N", "threads (default 0 = all cores)"},
        CLI_COMPUTE_OPT(compute),
        {0}};
    const cli_spec spec = {"eval", "MODEL [--harmful FILE] [--benign FILE] [--utility FILE ...] [options]",
                           "Refusal rate and attack success rate on harmful prompts (greedy replies judged by refusal "
                           "phrases), refusal rate on benign prompts, and utility: mean NLL and perplexity, multiple-choice "
                           "accuracy, or exact match, chosen by each file's content.",
                           opts, 1, 1};
    const char *pos[1];
    int np, rc = cli_parse(&spec, argc, argv, pos, &np);
    if (rc) return rc == 2 ? 0 : 1;
    if (!harmful && !benign && !utility.n) return cli_failf("eval: give at least one of --harmful, --benign, --utility");
    if (o.batch <= 0) return cli_failf("eval: --batch must be positive");
    if (o.max_new < 0 || o.max_new_exact < 0 || o.fewshot < 0 || o.limit < 0 || min_words < 0 || o.max_len < 0)
        return cli_failf("eval: --max-new, --max-new-exact, --fewshot, --first, --max-len and --min-words must be >= 0");
    if (cli_on_long("eval", on_long, &o.on_long)) return 1;
    int lm_eval = !strcmp(format, "lm-eval");
    if (!lm_eval && strcmp(format, "cast")) return cli_failf("eval: --format must be cast or lm-eval (got \"%s\")", format);
    if (save && lm_eval) return cli_failf("eval: --save-generations writes cast's layout; drop it with --format lm-eval");
    if (compare && lm_eval) return cli_failf("eval: --compare writes cast's layout; drop it with --format lm-eval");
    if (save && !out && !json) return cli_failf("eval: --save-generations needs --out-file FILE or --json");

    cast_err err = {0};
    cast_judge judge;
    cast_judge_init(&judge);
    judge.min_words = min_words;
    o.judge = &judge;
    cast_json *base = NULL;
    cast_eval_set *sets = NULL;
    int n_sets = 0;
    cli_model cm;
    int model_open = 0;
    rc = 1;
    if (refusals && cast_judge_load(&judge, refusals, &err)) goto fail;
    if (compare && (!(base = cast_json_parse_file(compare, &err)) || cast_eval_check_base(base, compare, &err))) goto fail;
    if (out) { /* eval.json never over an input */
        const char *inputs[5 + 64] = {pos[0], harmful, benign, refusals, compare};
        for (int i = 0; i < utility.n; i++) inputs[5 + i] = utility.v[i];
        if (cli_out_file_check(out, inputs, 5 + utility.n)) goto done;
    }

    cast_set_threads(threads);
    if (cli_model_open(&cm, pos[0], template_name, compute)) goto done;
    model_open = 1;

    /* every set is loaded and encoded before any model work */
    sets = cast_xcalloc((size_t)(2 + utility.n), sizeof *sets);
    cast_eval_set *hs, *bs, *us;
    if (cast_eval_sets_open(&cm.m, cm.tok, cm.tpl, harmful, benign, utility.v, utility.n, &o, sets, &n_sets, &hs, &bs, &us, &err)) goto fail;

    if (base && cast_eval_match_base(base, compare, sets, n_sets, &err)) goto fail;

    eval_progress prog = {{0}, 0, NULL};
    int64_t total = 0;
    for (int i = 0; i < n_sets; i++) total += sets[i].units;
    cli_progress_start(&prog.bar, "eval", total);
    o.progress = on_progress;
    o.ctx = &prog;
    double t0 = cast_now_s();
    for (int i = 0; i < n_sets; i++) {
        prog.stage = sets[i].role == CAST_EVAL_UTILITY ? cast_metric_name(sets[i].metric) : cast_eval_role_name(sets[i].role);
        if (cast_eval_set_run(&sets[i], &cm.m, cm.tok, &o, &err)) {
            cli_progress_end(&prog.bar);
            goto fail;
        }
    }
    cli_progress_end(&prog.bar);
    for (int i = 0; i < n_sets; i++) {
        if (sets[i].skipped)
            cli_note("%s: %d examples longer than --max-len %d tokens skipped (--on-long)", sets[i].path, sets[i].skipped, o.max_len);
        if (sets[i].hit_max_pos)
            cli_note("%s: %d replies stopped at the model's max_position_embeddings (%d)", sets[i].path, sets[i].hit_max_pos,
                     cm.m.cfg.max_pos);
    }

    int stops[16];
    cast_eval_report rep = {cm.path, hs, bs, us, utility.n, &o, cm.tpl ? cast_chat_template_name(cm.tpl) : NULL, stops,
                            cast_eval_stop_ids(&cm.m, cm.tok, cm.tpl, stops, 16), cast_get_threads()};
    cast_buf b = {0};
    if (lm_eval) cast_eval_lm_eval_json(&rep, (double)time(NULL), cast_now_s() - t0, &b);
    else cast_eval_json(&rep, base, compare, save, &b);
    if (out && cast_dist_rank() == 0 && cast_write_file_atomic(out, b.data, b.len, &err)) { /* rank 0 writes for the job */
        cast_buf_free(&b);
        goto fail;
    }
    if (json) {
        fputs(b.data, stdout);
    } else {
        printf("eval of %s (%.1f s)", cm.path, cast_now_s() - t0);
        if (base) printf(", compared with %s (%s)", cast_json_string(cast_json_get(base, "model")), compare);
        printf("\n\n%-8s %6s  %-13s %10s", "set", "n", "metric", "value");
        if (base) printf(" %10s %10s", "base", "delta");
        printf("  file\n");
        for (int i = 0; i < n_sets; i++) print_set(&sets[i], (int)(&sets[i] - us), base);
        if (hs || bs)
            printf("\nrefusal phrases: %d (%s)%s; replies of at most %d new tokens, greedy\n", judge.n, judge.source,
                   judge.min_words ? ", or fewer words than --min-words" : "", o.max_new);
        if (out) printf("wrote %s\n", out);
    }
    cast_buf_free(&b);
    rc = 0;
    goto done;
fail:
    cli_fail(&err);
done:
    for (int i = 0; i < n_sets; i++) cast_eval_set_free(&sets[i]);
    free(sets);
    if (model_open) cli_model_close(&cm);
    cast_json_free(base);
    cast_judge_free(&judge);
    return rc;
}
