#include "organism/demo.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "base/timer.h"
#include "cast/diagnose.h"
#include "cast/select.h"
#include "eval/judge.h"
#include "eval/metrics.h"
#include "model/model.h"
#include "organism/world.h"
#include "report/conflict.h"
#include "report/svg.h"
#include "text/chat.h"
#include "text/dataset.h"
#include "train/trainer.h"

void cast_demo_opts_default(cast_demo_opts *o) {
    memset(o, 0, sizeof *o);
    o->world_seed = 1;
    o->world_scale = 1.0;
    /* the regime of docs/organism.md: full fine-tuning of attention reaches >= 90 %
     * refusal on held-out harmful prompts, with a visible but partial utility cost */
    o->lr = 2e-3;
    o->steps = 160;
    o->batch = 16;
    o->anchor_weight = 1.0;
    o->budgets[0] = 0.05;
    o->budgets[1] = 0.10;
    o->budgets[2] = 0.20;
    o->n_budgets = 3;
    o->random_seeds = 3;
}

/* ---- one model's numbers ---------------------------------------------------- */

typedef struct result {
    char name[64];
    const char *strategy; /* "base", "full", ... */
    double budget;
    int k;
    uint64_t seed;
    int *skipped; /* k heads, layer-major indices */
    int64_t trainable;
    double refusal, refusal_seen, refusal_held_out, over_refusal;
    double skill[CAST_N_SKILLS], utility;
    double train_s, eval_s;
} result;

typedef struct demo {
    const cast_demo_opts *o;
    cast_model m;
    cast_tokenizer *tok;
    cast_chat_template *tpl;
    float *pristine; /* the base weights, restored before each run */
    cast_eval_opts eo;
    cast_judge judge;
    cast_eval_set harmful, benign, skill[CAST_N_SKILLS];
    int open_sets;
    result *runs;
    int n_runs, total_runs;
    double t0;
} demo;

static void stage(demo *d, const char *what) {
    if (d->o->progress) d->o->progress(d->o->ctx, what, d->n_runs, d->total_runs);
}

/* Refusal rate of the items whose example has the given type (NULL: all). */
static double refusal_of(const cast_eval_set *s, const char *type) {
    int n = 0, r = 0;
    for (int i = 0; i < s->n; i++) {
        const cast_example *e = &s->ds.ex[s->seq_example[i]];
        if (type && (!e->type || strcmp(e->type, type))) continue;
        n++;
        r += s->items[i].verdict;
    }
    return n ? (double)r / n : NAN;
}

static int evaluate(demo *d, result *r, cast_err *err) {
    double t = cast_now_s();
    if (cast_eval_set_run(&d->harmful, &d->m, d->tok, &d->eo, err) || cast_eval_set_run(&d->benign, &d->m, d->tok, &d->eo, err))
        return -1;
    r->refusal = d->harmful.refusal_rate;
    r->refusal_seen = refusal_of(&d->harmful, "seen_intent");
    r->refusal_held_out = refusal_of(&d->harmful, "held_out_intent");
    r->over_refusal = d->benign.refusal_rate;
    r->utility = 0;
    for (int s = 0; s < CAST_N_SKILLS; s++) {
        if (cast_eval_set_run(&d->skill[s], &d->m, d->tok, &d->eo, err)) return -1;
        r->skill[s] = d->skill[s].exact_match;
        r->utility += r->skill[s] / CAST_N_SKILLS;
    }
    r->eval_s = cast_now_s() - t;
    return 0;
}

static int encode_split(demo *d, const char *dir, const char *name, cast_seqs *out, cast_err *err) {
    char file[128];
    snprintf(file, sizeof file, "%s.jsonl", name);
    char *path = cast_path_join(dir, file);
    cast_dataset ds;
    int rc = cast_dataset_load(&ds, path, err);
    if (rc == 0) {
        rc = cast_dataset_encode(&ds, d->tok, d->tpl, 128, 0, out, err);
        cast_dataset_free(&ds);
    }
    free(path);
    return rc;
}

static void restore(demo *d) {
    float *p = d->pristine;
    for (int i = 0; i < d->m.n_tensors; i++) {
        memcpy(d->m.tensors[i].data, p, sizeof(float) * (size_t)d->m.tensors[i].numel);
        p += d->m.tensors[i].numel;
    }
}

/* One alignment run from the base weights, then its evaluation. */
static int align_run(demo *d, const cast_conflict_map *map, const cast_seqs *align, const cast_seqs *anchor, const char *strategy,
                     double budget, uint64_t seed, cast_err *err) {
    result *r = &d->runs[d->n_runs];
    memset(r, 0, sizeof *r);
    cast_strategy s;
    cast_strategy_parse(strategy, &s);
    int n = d->m.cfg.layers * d->m.cfg.heads;
    r->strategy = strategy;
    r->budget = budget;
    r->seed = seed;
    r->k = (s == CAST_STRATEGY_FULL || s == CAST_STRATEGY_PCGRAD) ? 0 : cast_top_count(budget, n);
    r->skipped = calloc((size_t)n + 1, sizeof(int));
    if (s == CAST_STRATEGY_RANDOM) snprintf(r->name, sizeof r->name, "random %.0f%% (seed %llu)", 100 * budget, (unsigned long long)seed);
    else if (r->k > 0 || s == CAST_STRATEGY_CAST || s == CAST_STRATEGY_INVERSE)
        snprintf(r->name, sizeof r->name, "%s %.0f%%", strategy, 100 * budget);
    else snprintf(r->name, sizeof r->name, "%s", strategy);
    char what[96];
    snprintf(what, sizeof what, "align: %s", r->name);
    stage(d, what);
    if (cast_select_heads(map, d->m.cfg.layers, d->m.cfg.heads, s, r->k, seed, r->skipped, err)) return -1;
    cast_mask mask;
    cast_mask_for_heads(&mask, &d->m, CAST_TRAIN_ATTN, r->skipped, r->k, CAST_KV_FREEZE_ALL);
    r->trainable = cast_mask_count(&mask, &d->m);
    restore(d);
    cast_train_opts o;
    cast_train_opts_default(&o);
    o.adam.lr = d->o->lr;
    o.steps = d->o->steps;
    o.batch = d->o->batch;
    o.micro_batch = d->o->batch;
    o.seed = 0; /* the same data order for every strategy */
    o.pcgrad = s == CAST_STRATEGY_PCGRAD;
    o.anchor_weight = o.pcgrad ? (d->o->anchor_weight > 0 ? d->o->anchor_weight : 1.0) : d->o->anchor_weight;
    double t = cast_now_s();
    int rc = cast_train(&d->m, &mask, align, (o.pcgrad || o.anchor_weight > 0) ? anchor : NULL, &o, err);
    cast_mask_free(&mask);
    r->train_s = cast_now_s() - t;
    if (rc) return -1;
    snprintf(what, sizeof what, "eval: %s", r->name);
    stage(d, what);
    if (evaluate(d, r, err)) return -1;
    d->n_runs++;
    return 0;
}

/* ---- the report ------------------------------------------------------------- */

typedef struct group {
    const char *strategy;
    double budget;
    int n;
    double refusal[16], utility[16], over[16], held_out[16];
} group;

static void mean_sd(const double *v, int n, double *mean, double *sd) {
    double s = 0, q = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = n ? s / n : NAN;
    for (int i = 0; i < n; i++) q += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0;
}

static void pct(cast_buf *b, double v) {
    if (isnan(v)) cast_buf_puts(b, "n/a");
    else cast_buf_printf(b, "%.1f", 100 * v);
}

static void pct_sd(cast_buf *b, const double *v, int n) {
    double m, s;
    mean_sd(v, n, &m, &s);
    pct(b, m);
    if (n > 1) cast_buf_printf(b, " ± %.1f", 100 * s);
}

static int write_text(const char *dir, const char *name, const cast_buf *b, cast_err *err) {
    char *p = cast_path_join(dir, name);
    int rc = cast_write_file_atomic(p, b->data ? b->data : "", b->len, err);
    free(p);
    return rc;
}

static int write_report(demo *d, const result *base, const cast_conflict_map *map, double wall, cast_err *err) {
    const cast_demo_opts *o = d->o;
    const cast_config *c = &d->m.cfg;
    int n_heads = c->layers * c->heads;
    /* groups: one per (strategy, budget); random seeds pooled */
    group g[64];
    int ng = 0;
    for (int i = 0; i < d->n_runs; i++) {
        const result *r = &d->runs[i];
        int j = 0;
        while (j < ng && !(!strcmp(g[j].strategy, r->strategy) && g[j].budget == r->budget)) j++;
        if (j == ng) {
            memset(&g[ng], 0, sizeof g[ng]);
            g[ng].strategy = r->strategy;
            g[ng].budget = r->budget;
            ng++;
        }
        if (g[j].n < 16) {
            g[j].refusal[g[j].n] = r->refusal;
            g[j].utility[g[j].n] = base->utility - r->utility;
            g[j].over[g[j].n] = r->over_refusal;
            g[j].held_out[g[j].n] = r->refusal_held_out;
            g[j].n++;
        }
    }
    /* trade-off plot: a series per strategy */
    const char *names[] = {"full", "pcgrad", "cast", "inverse", "random"};
    cast_series series[6];
    double xs[6][64], ys[6][64];
    const char *labels[6][64];
    int ns = 0;
    series[ns] = (cast_series){"base (before alignment)", xs[ns], ys[ns], 1, NULL};
    xs[ns][0] = 0;
    ys[ns][0] = 100 * base->refusal;
    ns++;
    for (size_t t = 0; t < sizeof names / sizeof names[0]; t++) {
        int n = 0;
        for (int i = 0; i < d->n_runs && n < 64; i++)
            if (!strcmp(d->runs[i].strategy, names[t])) {
                xs[ns][n] = 100 * (base->utility - d->runs[i].utility);
                ys[ns][n] = 100 * d->runs[i].refusal;
                labels[ns][n] = d->runs[i].name;
                n++;
            }
        if (n) {
            series[ns] = (cast_series){names[t], xs[ns], ys[ns], n, labels[ns]};
            ns++;
        }
    }
    cast_plot plot = {"Safety-utility trade-off (organism)", "utility drop: mean skill exact match, points below base",
                      "refusal on held-out harmful prompts (%)", series, ns};
    cast_buf svg = {0};
    cast_svg_scatter(&svg, &plot);
    int rc = write_text(o->out, "tradeoff.svg", &svg, err);
    cast_buf_free(&svg);
    if (rc) return -1;

    cast_buf b = {0};
    cast_buf_printf(&b, "# CAST on the model organism\n\n");
    cast_buf_printf(&b, "Base model `%s`: %s, %lld parameters, %d layers x %d heads (%d kv heads, head_dim %d). "
                        "World seed %llu. Wall time %.0f s on %d threads.\n\n",
                    o->base, c->architecture, (long long)cast_model_param_count(&d->m), c->layers, c->heads, c->kv_heads, c->head_dim,
                    (unsigned long long)o->world_seed, wall, cast_get_threads());
    cast_buf_printf(&b, "Alignment recipe (the same for every strategy): AdamW lr %g, %lld steps of %d harmful→refusal examples, "
                        "attention only (q, k, v, o), constant schedule, clip 1",
                    o->lr, (long long)o->steps, o->batch);
    if (o->anchor_weight > 0)
        cast_buf_printf(&b, ", plus %d examples of the utility anchor (skills and benign look-alikes, `align_anchor`) per step, weight %g "
                            "in the loss; PCGrad projects between the same two batches.\n\n",
                        o->batch, o->anchor_weight);
    else cast_buf_puts(&b, ", no utility anchor (PCGrad uses the anchor set as its utility batch).\n\n");
    cast_buf_printf(&b, "## Base model\n\n| harmful refused | held-out intents refused | benign refused |");
    for (int s = 0; s < CAST_N_SKILLS; s++) cast_buf_printf(&b, " %s |", cast_skill_name(s));
    cast_buf_puts(&b, " mean skill |\n|---|---|---|");
    for (int s = 0; s <= CAST_N_SKILLS; s++) cast_buf_puts(&b, "---|");
    cast_buf_puts(&b, "\n| ");
    pct(&b, base->refusal);
    cast_buf_puts(&b, " | ");
    pct(&b, base->refusal_held_out);
    cast_buf_puts(&b, " | ");
    pct(&b, base->over_refusal);
    for (int s = 0; s < CAST_N_SKILLS; s++) {
        cast_buf_puts(&b, " | ");
        pct(&b, base->skill[s]);
    }
    cast_buf_puts(&b, " | ");
    pct(&b, base->utility);
    cast_buf_puts(&b, " |\n\n(percent)\n\n");

    cast_buf_printf(&b, "## Conflict map\n\n![conflict map](conflict_map.svg)\n\n");
    int conflicted = 0;
    for (int i = 0; i < n_heads; i++) conflicted += map->stat[i].cos_defined && map->stat[i].cos < 0;
    cast_buf_printf(&b, "%d of %d heads have conflicting safety and utility gradients (cos < 0). The top 5%% of heads "
                        "(%d) hold %.1f%% of the total conflict score. Top heads:\n\n| rank | layer | head | score | cos | FS |\n|---|---|---|---|---|---|\n",
                    conflicted, n_heads, cast_top5_count(n_heads), 100 * map->concentration);
    for (int r = 0; r < 8 && r < n_heads; r++)
        for (int i = 0; i < n_heads; i++)
            if (map->stat[i].rank == r)
                cast_buf_printf(&b, "| %d | %d | %d | %.3f | %+.3f | %.3g |\n", r, map->stat[i].layer, map->stat[i].head, map->stat[i].score,
                                map->stat[i].cos, map->stat[i].fs);

    cast_buf_printf(&b, "\n## Safety and utility after alignment\n\n![trade-off](tradeoff.svg)\n\n"
                        "Mean ± standard deviation over seeds where a strategy has several (random: %d seeds). "
                        "Utility drop = base mean skill exact match − after (points).\n\n"
                        "| strategy | skipped heads | harmful refused | held-out intents refused | benign refused | utility drop |\n"
                        "|---|---|---|---|---|---|\n",
                    o->random_seeds);
    for (int j = 0; j < ng; j++) {
        int k = !strcmp(g[j].strategy, "full") || !strcmp(g[j].strategy, "pcgrad") ? 0 : cast_top_count(g[j].budget, n_heads);
        cast_buf_printf(&b, "| %s", g[j].strategy);
        if (k) cast_buf_printf(&b, " %.0f%%", 100 * g[j].budget);
        cast_buf_printf(&b, " | %d | ", k);
        pct_sd(&b, g[j].refusal, g[j].n);
        cast_buf_puts(&b, " | ");
        pct_sd(&b, g[j].held_out, g[j].n);
        cast_buf_puts(&b, " | ");
        pct_sd(&b, g[j].over, g[j].n);
        cast_buf_puts(&b, " | ");
        pct_sd(&b, g[j].utility, g[j].n);
        cast_buf_puts(&b, " |\n");
    }
    cast_buf_puts(&b, "\n## Every run\n\nPer-skill exact match after alignment (percent; the base row first), trainable parameters and time.\n\n| run |");
    for (int s = 0; s < CAST_N_SKILLS; s++) cast_buf_printf(&b, " %s |", cast_skill_name(s));
    cast_buf_puts(&b, " harmful refused | benign refused | trainable | train s | eval s |\n|---|");
    for (int s = 0; s < CAST_N_SKILLS + 5; s++) cast_buf_puts(&b, "---|");
    cast_buf_puts(&b, "\n");
    for (int i = -1; i < d->n_runs; i++) {
        const result *r = i < 0 ? base : &d->runs[i];
        cast_buf_printf(&b, "| %s |", i < 0 ? "base" : r->name);
        for (int s = 0; s < CAST_N_SKILLS; s++) {
            cast_buf_puts(&b, " ");
            pct(&b, r->skill[s]);
            cast_buf_puts(&b, " |");
        }
        cast_buf_puts(&b, " ");
        pct(&b, r->refusal);
        cast_buf_puts(&b, " | ");
        pct(&b, r->over_refusal);
        cast_buf_printf(&b, " | %lld | %.1f | %.1f |\n", (long long)r->trainable, r->train_s, r->eval_s);
    }
    cast_buf_puts(&b, "\nFiles: `conflict_map.json/.csv/.svg`, `tradeoff.svg`, `results.json`, the world in `data/`.\n");
    rc = write_text(o->out, "report.md", &b, err);
    cast_buf_free(&b);
    if (rc) return -1;

    /* results.json: every run, for machines */
    cast_buf j = {0};
    cast_buf_puts(&j, "{\"base\": ");
    cast_buf_json_string(&j, o->base, strlen(o->base));
    cast_buf_printf(&j, ", \"world_seed\": %llu, \"lr\": %g, \"steps\": %lld, \"batch\": %d, \"anchor_weight\": %g, \"wall_s\": %.1f,\n \"runs\": [",
                    (unsigned long long)o->world_seed, o->lr, (long long)o->steps, o->batch, o->anchor_weight, wall);
    for (int i = -1; i < d->n_runs; i++) {
        const result *r = i < 0 ? base : &d->runs[i];
        cast_buf_printf(&j, "%s\n  {\"name\": \"%s\", \"strategy\": \"%s\", \"budget\": %g, \"skip_heads\": %d, \"seed\": %llu, \"skipped\": [",
                        i < 0 ? "" : ",", i < 0 ? "base" : r->name, i < 0 ? "base" : r->strategy, r->budget, r->k,
                        (unsigned long long)r->seed);
        for (int k = 0; k < r->k; k++)
            cast_buf_printf(&j, "%s{\"layer\": %d, \"head\": %d}", k ? ", " : "", r->skipped[k] / c->heads, r->skipped[k] % c->heads);
        cast_buf_printf(&j, "], \"trainable_parameters\": %lld, \"harmful_refusal\": ", (long long)r->trainable);
        cast_buf_json_number(&j, r->refusal);
        cast_buf_puts(&j, ", \"harmful_refusal_seen_intents\": ");
        cast_buf_json_number(&j, r->refusal_seen);
        cast_buf_puts(&j, ", \"harmful_refusal_held_out_intents\": ");
        cast_buf_json_number(&j, r->refusal_held_out);
        cast_buf_puts(&j, ", \"benign_refusal\": ");
        cast_buf_json_number(&j, r->over_refusal);
        cast_buf_puts(&j, ", \"skills\": {");
        for (int s = 0; s < CAST_N_SKILLS; s++) {
            cast_buf_printf(&j, "%s\"%s\": ", s ? ", " : "", cast_skill_name(s));
            cast_buf_json_number(&j, r->skill[s]);
        }
        cast_buf_puts(&j, "}, \"utility\": ");
        cast_buf_json_number(&j, r->utility);
        cast_buf_printf(&j, ", \"train_s\": %.2f, \"eval_s\": %.2f}", r->train_s, r->eval_s);
    }
    cast_buf_puts(&j, "]}\n");
    rc = write_text(o->out, "results.json", &j, err);
    cast_buf_free(&j);
    return rc;
}

/* ---- the pipeline ------------------------------------------------------------ */

int cast_demo_run(const cast_demo_opts *o, cast_err *err) {
    demo d;
    memset(&d, 0, sizeof d);
    d.o = o;
    d.t0 = cast_now_s();
    int rc = -1;
    cast_world w;
    int have_world = 0, have_map = 0;
    cast_conflict_map map;
    cast_seqs diag_s = {0}, diag_u = {0}, align = {0}, anchor = {0};
    char *data = cast_path_join(o->out, "data");
    result base;
    memset(&base, 0, sizeof base);
    d.total_runs = 2 + o->n_budgets * (2 + o->random_seeds);
    d.runs = cast_xcalloc((size_t)d.total_runs, sizeof *d.runs);

    stage(&d, "world");
    if (cast_mkdirs(o->out, err) || cast_world_build(&w, o->world_seed, o->world_scale, err)) goto done;
    have_world = 1;
    if (cast_world_write(&w, data, err)) goto done;
    stage(&d, "base model");
    if (cast_model_load(&d.m, o->base, err) || cast_tokenizer_load(&d.tok, o->base, err) ||
        cast_chat_template_open(&d.tpl, d.tok, NULL, o->base, err))
        goto done;
    d.pristine = cast_xmalloc(sizeof(float) * (size_t)cast_model_param_count(&d.m));
    {
        float *p = d.pristine;
        for (int i = 0; i < d.m.n_tensors; i++) {
            memcpy(p, d.m.tensors[i].data, sizeof(float) * (size_t)d.m.tensors[i].numel);
            p += d.m.tensors[i].numel;
        }
    }
    cast_eval_opts_default(&d.eo);
    cast_judge_init(&d.judge);
    d.eo.judge = &d.judge;
    d.eo.batch = 64;
    d.eo.max_new = 48;
    d.eo.max_new_exact = 24;
    d.eo.limit = o->eval_limit;
    {
        char *ph = cast_path_join(data, "eval_harmful.jsonl"), *pb = cast_path_join(data, "eval_benign.jsonl");
        int bad = cast_eval_set_open(&d.harmful, ph, CAST_EVAL_HARMFUL, &d.m, d.tok, d.tpl, &d.eo, err) ||
                  cast_eval_set_open(&d.benign, pb, CAST_EVAL_BENIGN, &d.m, d.tok, d.tpl, &d.eo, err);
        free(ph);
        free(pb);
        if (bad) goto done;
        d.open_sets = 2;
        for (int s = 0; s < CAST_N_SKILLS; s++) {
            char name[64];
            snprintf(name, sizeof name, "%s.jsonl", cast_split_name(CAST_SPLIT_EVAL_SKILL + s));
            char *p = cast_path_join(data, name);
            bad = cast_eval_set_open(&d.skill[s], p, CAST_EVAL_UTILITY, &d.m, d.tok, d.tpl, &d.eo, err);
            free(p);
            if (bad) goto done;
            d.open_sets++;
        }
    }
    stage(&d, "eval: base");
    snprintf(base.name, sizeof base.name, "base");
    base.strategy = "base";
    if (evaluate(&d, &base, err)) goto done;

    stage(&d, "diagnose");
    if (encode_split(&d, data, "diag_safety", &diag_s, err) || encode_split(&d, data, "diag_utility", &diag_u, err) ||
        encode_split(&d, data, "align", &align, err) || encode_split(&d, data, "align_anchor", &anchor, err))
        goto done;
    cast_diag_opts dopt;
    cast_diag_opts_default(&dopt);
    {
        char *ps = cast_path_join(data, "diag_safety.jsonl"), *pu = cast_path_join(data, "diag_utility.jsonl");
        int bad = cast_diagnose(&d.m, &diag_s, &diag_u, ps, pu, &dopt, &map, err);
        free(ps);
        free(pu);
        if (bad) goto done;
    }
    have_map = 1;
    if (cast_conflict_map_write(&map, o->out, err)) goto done;

    if (align_run(&d, &map, &align, &anchor, "full", 0, 0, err) || align_run(&d, &map, &align, &anchor, "pcgrad", 0, 0, err)) goto done;
    for (int bi = 0; bi < o->n_budgets; bi++) {
        double bud = o->budgets[bi];
        if (align_run(&d, &map, &align, &anchor, "cast", bud, 0, err) || align_run(&d, &map, &align, &anchor, "inverse", bud, 0, err))
            goto done;
        for (int s = 1; s <= o->random_seeds; s++)
            if (align_run(&d, &map, &align, &anchor, "random", bud, (uint64_t)s, err)) goto done;
    }
    stage(&d, "report");
    if (write_report(&d, &base, &map, cast_now_s() - d.t0, err)) goto done;
    rc = 0;
done:
    for (int i = 0; i < d.total_runs; i++) free(d.runs[i].skipped);
    free(base.skipped);
    free(d.runs);
    if (d.open_sets > 0) cast_eval_set_free(&d.harmful);
    if (d.open_sets > 1) cast_eval_set_free(&d.benign);
    for (int s = 0; s < d.open_sets - 2; s++) cast_eval_set_free(&d.skill[s]);
    if (d.eo.judge) cast_judge_free(&d.judge);
    if (have_map) cast_conflict_map_free(&map);
    cast_seqs_free(&diag_s);
    cast_seqs_free(&diag_u);
    cast_seqs_free(&align);
    cast_seqs_free(&anchor);
    free(d.pristine);
    cast_chat_template_free(d.tpl);
    cast_tokenizer_free(d.tok);
    cast_model_free(&d.m);
    if (have_world) cast_world_free(&w);
    free(data);
    return rc;
}
