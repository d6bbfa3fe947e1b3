/* cast attribute BASE TUNED [--harmful F] [--benign F] [--utility F ...] --out DIR:
 * the headroom of an alignment — what resetting each head, k/v group and
 * layer of TUNED to BASE recovers, and the best skip sets of k heads. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "base/timer.h"
#include "base/threads.h"
#include "eval/attribute.h"
#include "report/attribution.h"
#include "cli.h"
#include "eval/judge.h"
#include "eval/metrics.h"

static void on_progress(void *ctx, int64_t done, int64_t total, const char *stage) {
    cli_progress *bar = ctx;
    bar->total = total;
    cli_progress_update(bar, done, stage);
}

/* "12.5" or "-" for an absent number. */
static const char *num(char *buf, size_t n, double v, const char *fmt) {
    if (isfinite(v)) snprintf(buf, n, fmt, v);
    else snprintf(buf, n, "-");
    return buf;
}

static void print_numbers(const char *name, const cast_attr_numbers *x) {
    char a[32], b[32], c[32], d[32];
    printf("%-6s refusal %6s  benign refusal %6s  utility %6s  gold NLL %s\n", name, num(a, sizeof a, 100 * x->refusal, "%.1f"),
           num(b, sizeof b, 100 * x->benign, "%.1f"), num(c, sizeof c, 100 * x->utility, "%.1f"), num(d, sizeof d, x->nll, "%.4f"));
}

static void print_unit(const cast_attribution *a, const cast_attr_unit *u) {
    char where[32], e1[32], e2[32], e3[32], e4[32];
    if (u->kind == CAST_ATTR_LAYER) snprintf(where, sizeof where, "layer %d", u->layer);
    else snprintf(where, sizeof where, "%s %d.%d", cast_attr_kind_name(u->kind), u->layer, u->index);
    printf("  %-12s %9s %10s %9s %9s%s\n", where, num(e1, sizeof e1, u->effect.utility_recovered, "%+.1f"),
           num(e2, sizeof e2, u->effect.utility_nll_recovered, "%+.4f"), num(e3, sizeof e3, u->effect.refusal_lost, "%+.1f"),
           num(e4, sizeof e4, u->effect.benign_refusal_change, "%+.1f"), u->unchanged ? "  (unchanged by tuning)" : "");
    (void)a;
}

static void print_table(const cast_attribution *a, int top) {
    printf("attribution of %s against %s: %d evaluations, units %.1f s, search %.1f s\n\n", a->tuned_path, a->base_path,
           a->evaluations, a->units_s, a->search_s);
    print_numbers("tuned", &a->tuned);
    print_numbers("base", &a->base);
    if (a->n_changed_outside) printf("note: tuning also changed %d tensors outside the layers (first: %s); no unit resets them\n",
                                     a->n_changed_outside, a->changed_outside[0]);
    int n_heads = a->layers * a->heads;
    int *order = cast_xmalloc(sizeof(int) * (size_t)n_heads);
    /* heads by recovery (layer-major without a utility set) */
    for (int i = 0; i < n_heads; i++) order[i] = a->ranking ? a->ranking[i] : i;
    printf("\n  %-12s %9s %10s %9s %9s\n", "unit", "utility+", "NLL+", "refusal-", "benign+");
    printf("  (points of exact match recovered, nats of gold NLL recovered, refusal points lost, benign refusal change)\n");
    int shown = top < n_heads ? top : n_heads;
    for (int i = 0; i < shown; i++) print_unit(a, &a->units[order[i]]);
    if (shown < n_heads) printf("  ... %d more heads in attribution.json\n", n_heads - shown);
    for (int u = n_heads; u < a->n_units; u++)
        if (a->units[u].kind == CAST_ATTR_LAYER) print_unit(a, &a->units[u]);
    free(order);
    if (a->n_best) {
        printf("\nbest skip sets (greedy over the top %d heads by single-head recovery; %s):\n", a->n_candidates,
               a->floor_applies ? "refusal kept >= the floor" : "no harmful set, so no refusal floor");
        for (int i = 0; i < a->n_best; i++) {
            const cast_attr_set *s = &a->best[i];
            char e1[32], e2[32], r[32], b[32];
            if (!s->found) {
                printf("  k=%-2d none keeps refusal >= %.0f%%\n", s->k, 100 * a->refusal_floor);
                continue;
            }
            printf("  k=%-2d utility %s points, NLL %s, refusal %s, benign refusal %s:", s->k,
                   num(e1, sizeof e1, s->effect.utility_recovered, "%+.1f"), num(e2, sizeof e2, s->effect.utility_nll_recovered, "%+.4f"),
                   num(r, sizeof r, 100 * s->reset.refusal, "%.1f"), num(b, sizeof b, 100 * s->reset.benign, "%.1f"));
            for (int j = 0; j < s->k; j++) printf(" %d.%d", s->heads[j] / a->heads, s->heads[j] % a->heads);
            putchar('\n');
        }
    }
    if (a->map_path) {
        printf("\nSpearman correlation of %s with per-head recovery (%d heads):\n", a->map_path, a->map_heads);
        for (int k = 0; k < 4; k++) {
            char x[32], y[32];
            printf("  %-6s exact match %6s  NLL %6s\n", cast_attr_map_columns[k], num(x, sizeof x, a->map_rho_exact[k], "%+.3f"),
                   num(y, sizeof y, a->map_rho_nll[k], "%+.3f"));
        }
    }
}

/* "1,2,4" -> increasing set sizes. */
static int parse_ks(const char *s, int **ks, int *n) {
    *ks = cast_xmalloc(sizeof(int) * (strlen(s) / 2 + 1)); /* at most one size per two bytes */
    *n = 0;
    int bad = 0;
    for (const char *p = s; !bad;) {
        char *end;
        long k = strtol(p, &end, 10);
        bad = end == p || k < 1 || k > 100000 || (*n > 0 && k <= (*ks)[*n - 1]) || (*end && *end != ',');
        if (bad) break;
        (*ks)[(*n)++] = (int)k;
        if (!*end) break;
        p = end + 1;
    }
    if (!bad) return 0;
    free(*ks);
    *ks = NULL;
    return cli_failf("attribute: --k wants increasing set sizes >= 1, such as 1,2,4 (got \"%s\")", s);
}

int cmd_attribute(int argc, char **argv) {
    const char *compute = "auto";
    const char *harmful = NULL, *benign = NULL, *out = NULL, *ks_text = NULL, *compare_map = NULL, *on_long = "skip",
               *template_name = NULL, *refusals = NULL;
    cli_strings utility = {{0}, 0};
    cast_eval_opts eo;
    cast_eval_opts_default(&eo);
    cast_attr_opts ao;
    cast_attr_opts_default(&ao);
    int json = 0, threads = 0, force = 0, min_words = 0, top = 10;
    const cli_opt opts[] = {
        {"--harmful", CLI_STRING, &harmful, "FILE", "harmful prompts: refusal rate (refusal_lost)"},
        {"--benign", CLI_STRING, &benign, "FILE", "benign prompts: over-refusal (benign_refusal_change)"},
        {"--utility", CLI_STRINGS, &utility, "FILE ...",
         "utility sets: gold-answer NLL over all of them (any format cast score reads), and exact match where a set has exact answers"},
        {"--out", CLI_STRING, &out, "DIR", "writes attribution.json, .csv and .svg there"},
        {"--force", CLI_FLAG, &force, NULL, "replace a non-empty --out folder whole (default: refuse)"},
        {"--refusal-floor", CLI_DOUBLE, &ao.refusal_floor, "X", "best sets keep the harmful refusal rate >= X, a fraction (default 0.9)"},
        {"--k", CLI_STRING, &ks_text, "LIST", "set sizes of the best skip sets, e.g. 1,2,4 (default: 1..--max-k)"},
        {"--max-k", CLI_INT, &ao.max_k, "N", "best skip sets of 1..N heads (default 4; 0 = no search)"},
        {"--candidates", CLI_INT, &ao.candidates, "M", "the search considers the top M heads by single-head recovery (default min(16, all))"},
        {"--heads-only", CLI_FLAG, &ao.heads_only, NULL, "only head units (no k/v group or layer units): cheaper, enough for the search"},
        {"--compare-map", CLI_STRING, &compare_map, "FILE", "a conflict_map.json: Spearman correlations of its columns with recovery"},
        {"--first", CLI_INT, &eo.limit, "N", "evaluate the first N examples of each set (default 0 = all)"},
        {"--max-len", CLI_INT, &ao.max_len, "N", "gold-answer sequences: tokens at most (default 0 = no limit)"},
        {"--on-long", CLI_STRING, &on_long, "POLICY", CLI_ON_LONG_HELP},
        {"--batch", CLI_INT, &eo.batch, "N", "prompts per generation batch, sequences per forward pass (default 8)"},
        {"--max-new", CLI_INT, &eo.max_new, "N", "new tokens per harmful/benign reply (default 64)"},
        {"--max-new-exact", CLI_INT, &eo.max_new_exact, "N", "new tokens per exact-answer reply (default 256)"},
        {"--refusals", CLI_STRING, &refusals, "FILE", "refusal phrases, one per line, instead of the built-in 29 (GCG)"},
        {"--min-words", CLI_INT, &min_words, "N", "also count replies of fewer than N words as refusals (default 0: off)"},
        {"--template", CLI_STRING, &template_name, "NAME", "chat template instead of TUNED's"},
        {"--top", CLI_INT, &top, "N", "heads in the printed table (default 10)"},
        {"--threads", CLI_INT, &threads, "N", "threads (default: all cores)"},
        CLI_COMPUTE_OPT(compute),
        {"--json", CLI_FLAG, &json, NULL, "print attribution.json on stdout instead of the table"},
        {0}};
    const cli_spec spec = {"attribute", "BASE TUNED [--harmful F] [--benign F] [--utility F ...] --out DIR [options]",
                           "Headroom of an alignment: reset each head (q rows, o columns), each k/v group and each layer of "
                           "TUNED to BASE, evaluate, restore; report utility recovered, refusal lost and the change in "
                           "over-refusal per unit, then the best skip sets of k heads that keep refusal >= a floor.",
                           opts, 2, 2};
    const char *pos[2];
    int np, rc = cli_parse(&spec, argc, argv, pos, &np);
    if (rc) return rc == 2 ? 0 : 1;
    if (!harmful && !benign && !utility.n) return cli_failf("attribute: give at least one of --harmful, --benign, --utility");
    if (!out && !json) return cli_failf("attribute: give --out DIR (or --json)");
    if (eo.batch <= 0) return cli_failf("attribute: --batch must be positive");
    if (eo.max_new < 0 || eo.max_new_exact < 0 || eo.limit < 0 || ao.max_len < 0 || min_words < 0)
        return cli_failf("attribute: --max-new, --max-new-exact, --first, --max-len and --min-words must be >= 0");
    if (!(ao.refusal_floor >= 0 && ao.refusal_floor <= 1))
        return cli_failf("attribute: --refusal-floor is a fraction in [0, 1] (got %g)", ao.refusal_floor);
    if (ao.candidates < 0 || ao.max_k < 0) return cli_failf("attribute: --candidates and --max-k must be >= 0");
    if (cli_on_long("attribute", on_long, &ao.on_long)) return 1;
    int *ks = NULL, n_k = 0;
    if (ks_text && parse_ks(ks_text, &ks, &n_k)) return 1;
    ao.ks = ks;
    ao.n_k = n_k;

    cast_err err = {0};
    cast_judge judge;
    cast_judge_init(&judge);
    judge.min_words = min_words;
    eo.judge = &judge;
    cast_eval_set *sets = cast_xcalloc((size_t)(2 + utility.n), sizeof *sets);
    int n_sets = 0, tuned_open = 0, base_open = 0, have_attr = 0;
    cli_model cm;
    cast_model base;
    cast_attribution a;
    cast_conflict_map map;
    int have_map = 0;
    cli_out co = {0};
    rc = 1;
    if (refusals && cast_judge_load(&judge, refusals, &err)) goto fail;
    if (compare_map) {
        if (cast_conflict_map_load(&map, compare_map, &err)) goto fail;
        have_map = 1;
    }
    if (out) {
        const char *inputs[6 + 64] = {pos[0], pos[1], harmful, benign, refusals, compare_map};
        for (int i = 0; i < utility.n; i++) inputs[6 + i] = utility.v[i];
        if (cli_out_begin(&co, out, inputs, 6 + utility.n, force, 0)) goto done;
    }
    cast_set_threads(threads);
    if (cli_model_load(&base, pos[0], compute)) goto done;
    base_open = 1;
    if (cli_model_open(&cm, pos[1], template_name, compute)) goto done;
    tuned_open = 1;
    if (cast_attr_check_pair(&cm.m, &base, &err)) goto fail;

    /* every set is loaded and encoded before any model work */
    cast_eval_set *hs, *bs, *us;
    if (cast_eval_sets_open(&cm.m, cm.tok, cm.tpl, harmful, benign, utility.v, utility.n, &eo, sets, &n_sets, &hs, &bs, &us, &err)) goto fail;

    cli_progress bar;
    cli_progress_start(&bar, "attribute", 1);
    ao.progress = on_progress;
    ao.ctx = &bar;
    int failed = cast_attribute(&cm.m, &base, cm.tok, cm.tpl, hs, bs, us, utility.n, &eo, &ao, &a, &err);
    cli_progress_end(&bar);
    if (failed) goto fail;
    have_attr = 1;
    if (have_map && cast_attribution_compare_map(&a, &map, compare_map, &err)) goto fail;
    if (out) {
        if (co.writer && cast_attribution_write(&a, co.dir, &err)) goto fail;
        if (cli_out_commit(&co)) goto done;
    }
    if (json) {
        cast_buf b = {0};
        cast_attribution_json(&a, &b);
        fputs(b.data, stdout);
        cast_buf_free(&b);
    } else {
        print_table(&a, top);
        if (out) printf("\nwrote %s/attribution.json, .csv, .svg\n", out);
    }
    rc = 0;
    goto done;
fail:
    cli_fail(&err);
done:
    cli_out_abort(&co); /* nothing when committed */
    if (have_attr) cast_attribution_free(&a);
    if (have_map) cast_conflict_map_free(&map);
    for (int i = 0; i < n_sets; i++) cast_eval_set_free(&sets[i]);
    free(sets);
    if (tuned_open) cli_model_close(&cm);
    if (base_open) cast_model_free(&base);
    cast_judge_free(&judge);
    free(ks);
    return rc;
}
