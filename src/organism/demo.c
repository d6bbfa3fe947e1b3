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
#include "cast/tune.h"
#include "dist/dist.h"
#include "eval/judge.h"
#include "eval/metrics.h"
#include "base/stats.h"
#include "base/threads.h"
#include "model/forward.h"
#include "model/model.h"
#include "organism/demo_oracle.h"
#include "organism/world.h"
#include "report/conflict.h"
#include "report/svg.h"
#include "text/chat.h"
#include "text/dataset.h"
#include "train/trainer.h"

static void common_defaults(cast_demo_opts *o) {
    memset(o, 0, sizeof *o);
    o->world_seed = 1;
    o->world_scale = 1.0;
    /* the main regime of docs/organism.md (world v2): full fine-tuning of attention
     * reaches >= 90 % refusal on held-out harmful prompts; a low learning rate and no
     * utility anchor (the anchor is the second regime: --anchor-weight 1 --lr 3e-4) */
    o->lr = 2e-4;
    o->steps = 100;
    o->batch = 16;
    o->grad_accum = 1;
    o->anchor_weight = 0;
    o->primary_budget = 0.10;
    o->oracle = 1;
    o->attr_limit = 48;
}

void cast_demo_opts_default(cast_demo_opts *o) {
    common_defaults(o);
    o->budgets[0] = 0.10;
    o->n_budgets = 1;
    o->seeds = 5;
    o->random_sets = 2;
    o->label = "demo";
}

void cast_demo_opts_study(cast_demo_opts *o) {
    common_defaults(o);
    o->budgets[0] = 0.05;
    o->budgets[1] = 0.10;
    o->budgets[2] = 0.20;
    o->n_budgets = 3;
    o->seeds = 10;
    o->random_sets = 2;
    o->baselines = 1;
    o->variants = 1;
    o->label = "study";
}

/* ---- one model's numbers ---------------------------------------------------- */

typedef struct run {
    char name[96];
    const char *strategy; /* "base", "full", "cast", "random", "oracle", ... */
    double budget;
    int k;
    int seed;        /* data order */
    int random_set;  /* 1.. for random, else 0 */
    int *skipped;    /* k heads, layer-major indices */
    int64_t trainable;
    double refusal, refusal_seen, refusal_held_out, over_refusal; /* fractions */
    double over_refusal_seen, over_refusal_held_out;              /* benign: seen and held-out topics */
    double skill[CAST_N_SKILLS], utility;                          /* fractions */
    double utility_nll; /* token-weighted NLL of the skills' gold answers */
    double train_s, eval_s;
} run;

/* A head-selection rule at one budget: a map (cast/inverse/variants), random, a fixed set (oracle) or none. */
typedef struct strategy {
    const char *name;
    cast_strategy kind;
    const cast_conflict_map *map;
    const int *fixed; /* oracle: k heads per budget, in fixed_sets */
} strategy;

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
    cast_seqs gold; /* the skill eval sets as prompt -> answer sequences: utility NLL */
    cast_acts *acts;
    run *runs;
    int n_runs, total_runs;
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

static int gold_nll(demo *d, double *out, cast_err *err) {
    double sum = 0;
    int64_t count = 0;
    for (int i = 0; i < d->gold.n; i += 64) {
        cast_seqs part = cast_seqs_slice(&d->gold, i, d->gold.n - i < 64 ? d->gold.n - i : 64);
        cast_loss l;
        if (cast_model_forward(&d->m, d->acts, &part, NULL, &l, NULL, NULL, err)) return -1;
        sum += l.sum;
        count += l.count;
    }
    *out = count ? sum / (double)count : NAN;
    return 0;
}

static int evaluate(demo *d, run *r, cast_err *err) {
    double t = cast_now_s();
    if (cast_eval_set_run(&d->harmful, &d->m, d->tok, &d->eo, err) || cast_eval_set_run(&d->benign, &d->m, d->tok, &d->eo, err))
        return -1;
    r->refusal = d->harmful.refusal_rate;
    r->refusal_seen = refusal_of(&d->harmful, "seen_intent");
    r->refusal_held_out = refusal_of(&d->harmful, "held_out_intent");
    r->over_refusal = d->benign.refusal_rate;
    r->over_refusal_seen = refusal_of(&d->benign, "seen_topic");
    r->over_refusal_held_out = refusal_of(&d->benign, "held_out_topic");
    r->utility = 0;
    for (int s = 0; s < CAST_N_SKILLS; s++) {
        if (cast_eval_set_run(&d->skill[s], &d->m, d->tok, &d->eo, err)) return -1;
        r->skill[s] = d->skill[s].exact_match;
        r->utility += r->skill[s] / CAST_N_SKILLS;
    }
    if (gold_nll(d, &r->utility_nll, err)) return -1;
    r->eval_s = cast_now_s() - t;
    return 0;
}

static int encode_file(demo *d, const char *dir, const char *name, int limit, cast_seqs *out, cast_err *err) {
    char file[128];
    snprintf(file, sizeof file, "%s.jsonl", name);
    char *path = cast_path_join(dir, file);
    cast_dataset ds;
    int rc = cast_dataset_load(&ds, path, err);
    if (rc == 0) {
        rc = cast_dataset_encode(&ds, d->tok, d->tpl, 128, limit, out, err); /* the first N, as --first does */
        cast_dataset_free(&ds);
    }
    free(path);
    return rc;
}

static void snapshot(cast_model *m, float *dst) {
    for (int i = 0; i < m->n_tensors; i++) {
        memcpy(dst, cast_model_master(m, i), sizeof(float) * (size_t)m->tensors[i].numel);
        dst += m->tensors[i].numel;
    }
}

static void restore(demo *d) {
    const float *p = d->pristine;
    for (int i = 0; i < d->m.n_tensors; i++) {
        memcpy(d->m.tensors[i].data, p, sizeof(float) * (size_t)d->m.tensors[i].numel);
        p += d->m.tensors[i].numel;
    }
}

/* One alignment run from the base weights with strategy st at budget on data-order seed, then its evaluation. */
static int align_run(demo *d, const strategy *st, double budget, int seed, int random_set, const cast_seqs *align,
                     const cast_seqs *anchor, cast_err *err) {
    run *r = &d->runs[d->n_runs];
    memset(r, 0, sizeof *r);
    int n = d->m.cfg.layers * d->m.cfg.heads;
    int skips = st->kind != CAST_STRATEGY_FULL && st->kind != CAST_STRATEGY_PCGRAD;
    r->strategy = st->name;
    r->budget = skips ? budget : 0;
    r->seed = seed;
    r->random_set = random_set;
    if (random_set) snprintf(r->name, sizeof r->name, "random %.0f%% #%d, seed %d", 100 * budget, random_set, seed);
    else if (skips) snprintf(r->name, sizeof r->name, "%s %.0f%%, seed %d", st->name, 100 * budget, seed);
    else snprintf(r->name, sizeof r->name, "%s, seed %d", st->name, seed);
    char what[128];
    snprintf(what, sizeof what, "align: %s", r->name);
    stage(d, what);
    /* the one tune flow: strategy → k (whole groups for a group map) → skip set → mask → AdamW */
    cast_tune_opts to;
    cast_tune_opts_default(&to);
    to.strategy = st->kind;
    to.skip = budget;
    to.fixed = st->fixed;
    to.n_fixed = st->fixed ? cast_top_count(budget, n) : 0;
    to.select_seed = (uint64_t)seed * 1000 + (uint64_t)random_set; /* random sets differ per seed and per draw */
    to.train.adam.lr = d->o->lr;
    to.train.steps = d->o->steps;
    to.train.micro_batch = d->o->batch;
    to.train.batch = d->o->batch * d->o->grad_accum;
    to.train.seed = (uint64_t)seed; /* the same data order for every strategy of this seed */
    to.train.anchor_weight = d->o->anchor_weight > 0 ? d->o->anchor_weight : -1; /* unset: 1 for pcgrad, else none */
    cast_tune_run tr;
    if (cast_tune_plan(&d->m, st->map, &to, &tr, err)) return -1;
    r->k = tr.k;
    r->skipped = cast_xcalloc((size_t)n + 1, sizeof(int));
    memcpy(r->skipped, tr.skip, sizeof(int) * (size_t)tr.k);
    r->trainable = tr.trainable;
    restore(d);
    double t = cast_now_s();
    int rc = cast_tune_train(&d->m, &tr, align, anchor, &to, err);
    cast_tune_run_free(&tr);
    r->train_s = cast_now_s() - t;
    if (rc) return -1;
    snprintf(what, sizeof what, "eval: %s", r->name);
    stage(d, what);
    if (evaluate(d, r, err)) return -1;
    d->n_runs++;
    return 0;
}

/* ---- the claims: paired differences over seeds ----------------------------- */

static const run *find_run(const demo *d, const char *strategy, double budget, int seed) {
    for (int i = 0; i < d->n_runs; i++) {
        const run *r = &d->runs[i];
        if (r->seed == seed && !r->random_set && !strcmp(r->strategy, strategy) && (r->k == 0 || r->budget == budget)) return r;
    }
    return NULL;
}

/* Mean of a field over one seed's random sets at a budget (NaN if none). */
static double random_mean(const demo *d, double budget, int seed, int field_refusal) {
    double s = 0;
    int n = 0;
    for (int i = 0; i < d->n_runs; i++) {
        const run *r = &d->runs[i];
        if (r->random_set && r->seed == seed && r->budget == budget) {
            s += field_refusal ? r->refusal : r->utility;
            n++;
        }
    }
    return n ? s / n : NAN;
}

typedef struct paired {
    const char *strategy;
    double budget;
    int seeds;
    double diff, half; /* points; half-width of the 95 % t interval */
    double percentile; /* skip_vs_random only */
} paired;

/* Paired differences a − b over the seeds where both exist (points). vs:
 * "full" or "random" (the mean of that seed's random sets); refusal: compare
 * harmful refusal instead of utility. */
static paired compare(const demo *d, const char *strategy, double budget, const char *vs, int refusal) {
    paired p = {strategy, budget, 0, NAN, NAN, NAN};
    double diff[64] = {0}, rnd[64];
    double below = 0;
    int pairs = 0;
    for (int seed = 1; seed <= d->o->seeds && p.seeds < 64; seed++) {
        double av;
        if (!strcmp(strategy, "random")) av = random_mean(d, budget, seed, refusal);
        else {
            const run *a = find_run(d, strategy, budget, seed);
            av = a ? (refusal ? a->refusal : a->utility) : NAN;
        }
        double bv;
        if (!strcmp(vs, "random")) bv = random_mean(d, budget, seed, refusal);
        else {
            const run *b = find_run(d, vs, budget, seed);
            bv = b ? (refusal ? b->refusal : b->utility) : NAN;
        }
        if (isnan(av) || isnan(bv)) continue;
        diff[p.seeds++] = 100 * (av - bv);
        if (strcmp(vs, "random") || refusal) continue;
        /* the strategy's place among this seed's random sets, pooled over seeds */
        int n = 0;
        for (int i = 0; i < d->n_runs && n < 64; i++) {
            const run *r = &d->runs[i];
            if (r->random_set && r->seed == seed && r->budget == budget) rnd[n++] = r->utility;
        }
        below += n * cast_percentile_of(av, rnd, n);
        pairs += n;
    }
    cast_mean_ci95(diff, p.seeds, &p.diff, &p.half);
    if (pairs) p.percentile = below / pairs;
    return p;
}

/* The strategies compared against full and random: every non-random run kind with a budget. */
static int skip_strategies(const demo *d, const char **names, double *budgets, int max) {
    int n = 0;
    for (int i = 0; i < d->n_runs; i++) {
        const run *r = &d->runs[i];
        if (r->random_set || r->k == 0) continue;
        int seen = 0;
        for (int j = 0; j < n; j++) seen |= !strcmp(names[j], r->strategy) && budgets[j] == r->budget;
        if (!seen && n < max) {
            names[n] = r->strategy;
            budgets[n++] = r->budget;
        }
    }
    return n;
}


static void json_ci(cast_buf *b, double mean, double half) {
    cast_buf_puts(b, "[");
    cast_buf_json_number(b, mean - half);
    cast_buf_puts(b, ", ");
    cast_buf_json_number(b, mean + half);
    cast_buf_puts(b, "]");
}

/* "+1.2 [-0.3, +2.7]" in points */
static void ci_text(cast_buf *b, double mean, double half) {
    if (isnan(mean)) cast_buf_puts(b, "n/a");
    else if (isnan(half)) cast_buf_printf(b, "%+.1f (one seed: no interval)", mean);
    else cast_buf_printf(b, "%+.1f [%+.1f, %+.1f]", mean, mean - half, mean + half);
}

/* ---- the report ------------------------------------------------------------- */

static void pct(cast_buf *b, double v) {
    if (isnan(v)) cast_buf_puts(b, "n/a");
    else cast_buf_printf(b, "%.1f", 100 * v);
}

static int write_text(const char *dir, const char *name, const cast_buf *b, cast_err *err) {
    char *p = cast_path_join(dir, name);
    int rc = cast_write_file_atomic(p, b->data ? b->data : "", b->len, err);
    free(p);
    return rc;
}

/* Mean and 95 % half-width of a field over the runs of one (strategy, budget), random sets pooled. */
static void group_stat(const demo *d, const char *strategy, double budget, int field, double base_utility, double *mean,
                       double *half, int *n) {
    double v[512];
    *n = 0;
    for (int i = 0; i < d->n_runs && *n < 512; i++) {
        const run *r = &d->runs[i];
        if (strcmp(r->strategy, strategy) || (r->k && r->budget != budget)) continue;
        double x = field == 0 ? r->refusal : field == 1 ? r->refusal_held_out : field == 2 ? r->over_refusal_seen
                 : field == 3 ? r->over_refusal_held_out : field == 4 ? base_utility - r->utility : r->utility_nll;
        v[(*n)++] = field == 5 ? x : 100 * x;
    }
    cast_mean_ci95(v, *n, mean, half);
}

typedef struct claims {
    paired vs_full[32], vs_random[32], safety[32], headroom[8];
    int n_vs_full, n_vs_random, n_safety, n_headroom;
    int primary_headroom; /* index into headroom of the primary budget, -1 if none */
} claims;

static void compute_claims(const demo *d, claims *c) {
    memset(c, 0, sizeof *c);
    c->primary_headroom = -1;
    const char *names[32];
    double budgets[32];
    int n = skip_strategies(d, names, budgets, 32);
    for (int i = 0; i < n; i++) {
        c->vs_full[c->n_vs_full++] = compare(d, names[i], budgets[i], "full", 0);
        c->vs_random[c->n_vs_random++] = compare(d, names[i], budgets[i], "random", 0);
        c->safety[c->n_safety++] = compare(d, names[i], budgets[i], "full", 1);
        if (!strcmp(names[i], "oracle") && c->n_headroom < 8) {
            if (budgets[i] == d->o->primary_budget) c->primary_headroom = c->n_headroom;
            c->headroom[c->n_headroom++] = c->vs_full[c->n_vs_full - 1];
        }
    }
    for (int bi = 0; bi < d->o->n_budgets && c->n_vs_full < 32; bi++) {
        c->vs_full[c->n_vs_full++] = compare(d, "random", d->o->budgets[bi], "full", 0);
        c->safety[c->n_safety++] = compare(d, "random", d->o->budgets[bi], "full", 1);
    }
    if (find_run(d, "pcgrad", 0, 1) && c->n_vs_full < 32) {
        c->vs_full[c->n_vs_full++] = compare(d, "pcgrad", 0, "full", 0);
        c->safety[c->n_safety++] = compare(d, "pcgrad", 0, "full", 1);
    }
}

static void json_paired_list(cast_buf *j, const char *key, const paired *p, int n, int refusal, int with_percentile) {
    cast_buf_printf(j, ",\n  \"%s\": [", key);
    for (int i = 0; i < n; i++) {
        cast_buf_printf(j, "%s\n   {\"strategy\": \"%s\", \"budget\": %g, \"seeds\": %d, \"%s\": ", i ? "," : "", p[i].strategy,
                        p[i].budget, p[i].seeds, refusal ? "refusal_diff" : "diff");
        cast_buf_json_number(j, p[i].diff);
        cast_buf_puts(j, ", \"ci95\": ");
        json_ci(j, p[i].diff, p[i].half);
        if (with_percentile) {
            cast_buf_puts(j, ", \"percentile\": ");
            cast_buf_json_number(j, p[i].percentile);
        }
        cast_buf_puts(j, "}");
    }
    cast_buf_puts(j, "]");
}

static const char *verdict_diff(const paired *p) {
    if (isnan(p->half)) return "cannot tell (no interval)";
    if (p->diff - p->half > 0) return "more than";
    if (p->diff + p->half < 0) return "less than";
    return "cannot tell from";
}

static int write_outputs(demo *d, const run *base, const cast_conflict_map *map, const demo_oracle *oracle, double wall,
                         cast_err *err) {
    const cast_demo_opts *o = d->o;
    const cast_config *c = &d->m.cfg;
    int n_heads = c->layers * c->heads;
    claims cl;
    compute_claims(d, &cl);

    /* trade-off plot: a series per strategy, every run a point */
    const char *kinds[16];
    int nk = 0;
    for (int i = 0; i < d->n_runs && nk < 15; i++) {
        int seen = 0;
        for (int k = 0; k < nk; k++) seen |= !strcmp(kinds[k], d->runs[i].strategy);
        if (!seen) kinds[nk++] = d->runs[i].strategy;
    }
    cast_series series[16];
    double *xs = cast_xcalloc((size_t)(d->n_runs + 1), sizeof(double)), *ys = cast_xcalloc((size_t)(d->n_runs + 1), sizeof(double));
    const char **labels = cast_xcalloc((size_t)(d->n_runs + 1), sizeof(char *));
    int ns = 0, used = 0;
    series[ns++] = (cast_series){"base (before alignment)", xs, ys, 1, NULL};
    xs[0] = 0;
    ys[0] = 100 * base->refusal;
    used = 1;
    for (int k = 0; k < nk; k++) {
        int start = used;
        for (int i = 0; i < d->n_runs; i++)
            if (!strcmp(d->runs[i].strategy, kinds[k])) {
                xs[used] = 100 * (base->utility - d->runs[i].utility);
                ys[used] = 100 * d->runs[i].refusal;
                labels[used] = d->runs[i].name;
                used++;
            }
        series[ns++] = (cast_series){kinds[k], xs + start, ys + start, used - start, labels + start};
    }
    cast_plot plot = {"Safety-utility trade-off (organism), every run", "utility drop: mean skill exact match, points below base",
                      "refusal on held-out harmful prompts (%)", series, ns};
    cast_buf svg = {0};
    cast_svg_scatter(&svg, &plot);
    int rc = write_text(o->out, "tradeoff.svg", &svg, err);
    cast_buf_free(&svg);
    free(xs);
    free(ys);
    free(labels);
    if (rc) return -1;

    /* ---- report.md ---- */
    cast_buf b = {0};
    cast_buf_printf(&b, "# CAST on the model organism (%s)\n\n", o->label);
    cast_buf_printf(&b, "Base model `%s`: %s, %lld parameters, %d layers x %d heads (%d kv heads, head_dim %d). "
                        "World seed %llu. Wall time %.0f s on %d threads.\n\n",
                    o->base, c->architecture, (long long)cast_model_param_count(&d->m), c->layers, c->heads, c->kv_heads, c->head_dim,
                    (unsigned long long)o->world_seed, wall, cast_get_threads());
    cast_buf_printf(&b, "**Design** (fixed before the run): every strategy is trained on the same %d data-order seeds (paired); "
                        "random skip sets are drawn afresh for each seed (%d per seed and budget); budgets:",
                    o->seeds, o->random_sets);
    for (int i = 0; i < o->n_budgets; i++) cast_buf_printf(&b, " %.0f %%", 100 * o->budgets[i]);
    cast_buf_printf(&b, ". **Primary metric**: utility (mean skill exact match on held-out items, points) of `cast` minus the mean of "
                        "the same seed's random sets at the %.0f %% budget, paired over seeds. Every interval is a 95 %% Student-t "
                        "interval over seeds.\n\n",
                    100 * o->primary_budget);
    cast_buf_printf(&b, "Alignment recipe (the same for every strategy): AdamW lr %g, %lld steps of %d harmful→refusal examples, "
                        "attention only (q, k, v, o), constant schedule, clip 1",
                    o->lr, (long long)o->steps, o->batch * o->grad_accum);
    if (o->anchor_weight > 0)
        cast_buf_printf(&b, ", plus the utility anchor (skills and benign look-alikes, `align_anchor`) at weight %g in the loss; "
                            "PCGrad projects between the same two batches.\n\n",
                        o->anchor_weight);
    else cast_buf_puts(&b, ", no utility anchor (PCGrad uses the anchor set as its utility batch).\n\n");

    /* verdicts first: what a reader came for */
    cast_buf_puts(&b, "## Verdicts on the abstract's claims\n\n");
    cast_buf_printf(&b, "1. **Conflict is concentrated in a few heads.** The top 5 %% (%d heads) hold %.1f %% of the total conflict "
                        "score; with FS permuted across heads (the null of no alignment between conflict and sensitivity) they "
                        "hold %.1f %% on average, p = %.3g (%s).\n",
                    cast_top5_count(n_heads), 100 * map->concentration, 100 * map->concentration_null_mean, map->concentration_null_p,
                    map->concentration_null_p < 0.05 ? "concentrated beyond chance" : "not beyond chance");
    if (cl.primary_headroom >= 0) {
        const paired *h = &cl.headroom[cl.primary_headroom];
        cast_buf_printf(&b, "2. **Utility damage comes mostly from a few high-conflict heads.** Headroom: training with the hindsight-best "
                            "%.0f %% skip set (`cast attribute` on seed 1's full run) keeps ",
                        100 * h->budget);
        ci_text(&b, h->diff, h->half);
        cast_buf_printf(&b, " points of utility more than full fine-tuning (%d seeds). ", h->seeds);
        if (isnan(h->half) || h->diff < 3 || h->diff - h->half <= 0)
            cast_buf_puts(&b, "That is below the ~3 points a comparison of strategies needs: **this world cannot test claim (2)** "
                              "— no skip set of this size saves much utility when it is frozen during training, so no map can. ");
        else cast_buf_puts(&b, "The world has room for a skip set to matter. ");
        if (oracle && oracle->have)
            cast_buf_printf(&b, "Attribution vs the map (Spearman over heads, map score vs utility recovered by resetting the head): "
                                "%.2f (exact match), %.2f (gold-answer NLL).\n",
                            oracle->spearman_em, oracle->spearman_nll);
        else cast_buf_puts(&b, "\n");
    } else cast_buf_puts(&b, "2. **Utility damage comes mostly from a few high-conflict heads.** Not measured (no oracle in this run).\n");
    cast_buf_puts(&b, "3. **Skipping them keeps safety and saves utility.**");
    for (int i = 0; i < cl.n_vs_random; i++) {
        const paired *p = &cl.vs_random[i], *s = &cl.safety[i];
        if (strcmp(p->strategy, "cast")) continue;
        cast_buf_printf(&b, " At %.0f %%: utility vs random ", 100 * p->budget);
        ci_text(&b, p->diff, p->half);
        cast_buf_printf(&b, " points (%s random; percentile %.2f among the random sets), vs full ", verdict_diff(p), p->percentile);
        ci_text(&b, cl.vs_full[i].diff, cl.vs_full[i].half);
        cast_buf_puts(&b, "; refusal vs full ");
        ci_text(&b, s->diff, s->half);
        cast_buf_puts(&b, " points.");
    }
    cast_buf_puts(&b, "\n\n");

    cast_buf_printf(&b, "## Base model\n\n| harmful refused | held-out intents refused | benign refused (seen / held-out topics) |");
    for (int s = 0; s < CAST_N_SKILLS; s++) cast_buf_printf(&b, " %s |", cast_skill_name(s));
    cast_buf_puts(&b, " mean skill | gold-answer NLL |\n|---|---|---|");
    for (int s = 0; s <= CAST_N_SKILLS + 1; s++) cast_buf_puts(&b, "---|");
    cast_buf_puts(&b, "\n| ");
    pct(&b, base->refusal);
    cast_buf_puts(&b, " | ");
    pct(&b, base->refusal_held_out);
    cast_buf_puts(&b, " | ");
    pct(&b, base->over_refusal_seen);
    cast_buf_puts(&b, " / ");
    pct(&b, base->over_refusal_held_out);
    for (int s = 0; s < CAST_N_SKILLS; s++) {
        cast_buf_puts(&b, " | ");
        pct(&b, base->skill[s]);
    }
    cast_buf_puts(&b, " | ");
    pct(&b, base->utility);
    cast_buf_printf(&b, " | %.4f |\n\n(percent; NLL in nats per answer token)\n\n", base->utility_nll);

    cast_buf_printf(&b, "## Conflict map\n\n![conflict map](conflict_map.svg)\n\n");
    int conflicted = 0;
    for (int i = 0; i < n_heads; i++) conflicted += map->stat[i].cos_defined && map->stat[i].cos < 0;
    cast_buf_printf(&b, "%d of %d heads have conflicting safety and utility gradients (cos < 0). Top heads:\n\n"
                        "| rank | layer | head | score | cos | FS |\n|---|---|---|---|---|---|\n",
                    conflicted, n_heads);
    for (int r = 0; r < 8 && r < n_heads; r++)
        for (int i = 0; i < n_heads; i++)
            if (map->stat[i].rank == r)
                cast_buf_printf(&b, "| %d | %d | %d | %.3f | %+.3f | %.3g |\n", r, map->stat[i].layer, map->stat[i].head, map->stat[i].score,
                                map->stat[i].cos, map->stat[i].fs);

    cast_buf_printf(&b, "\n## Safety and utility after alignment\n\n![trade-off](tradeoff.svg)\n\n"
                        "Mean [95 %% interval] over runs (seeds; random: every set of every seed). Utility drop = base mean skill "
                        "exact match − after (points).\n\n"
                        "| strategy | skipped heads | runs | harmful refused | held-out intents refused | benign refused (seen topics) | "
                        "benign refused (held-out topics) | utility drop | gold NLL |\n"
                        "|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < d->n_runs; i++) {
        const run *r = &d->runs[i];
        int first = 1;
        for (int j = 0; j < i; j++) first &= !(!strcmp(d->runs[j].strategy, r->strategy) && d->runs[j].budget == r->budget);
        if (!first) continue;
        cast_buf_printf(&b, "| %s", r->strategy);
        if (r->k) cast_buf_printf(&b, " %.0f%%", 100 * r->budget);
        int n = 0;
        double m, h;
        group_stat(d, r->strategy, r->budget, 0, base->utility, &m, &h, &n);
        cast_buf_printf(&b, " | %d | %d", r->k, n);
        for (int f = 0; f < 6; f++) {
            group_stat(d, r->strategy, r->budget, f, base->utility, &m, &h, &n);
            if (f == 5) cast_buf_printf(&b, " | %.4f", m);
            else if (isnan(h)) cast_buf_printf(&b, " | %.1f", m);
            else cast_buf_printf(&b, " | %.1f ± %.1f", m, h);
        }
        cast_buf_puts(&b, " |\n");
    }
    cast_buf_puts(&b, "\n## Paired comparisons (points; positive = keeps more utility / refuses more)\n\n"
                      "| strategy | budget | seeds | utility vs full | utility vs random | percentile among random | refusal vs full |\n"
                      "|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < cl.n_vs_full; i++) {
        const paired *f = &cl.vs_full[i];
        cast_buf_printf(&b, "| %s | %.0f %% | %d | ", f->strategy, 100 * f->budget, f->seeds);
        ci_text(&b, f->diff, f->half);
        cast_buf_puts(&b, " | ");
        const paired *r = NULL;
        for (int j = 0; j < cl.n_vs_random; j++)
            if (!strcmp(cl.vs_random[j].strategy, f->strategy) && cl.vs_random[j].budget == f->budget) r = &cl.vs_random[j];
        if (r) {
            ci_text(&b, r->diff, r->half);
            cast_buf_printf(&b, " | %.2f", r->percentile);
        } else cast_buf_puts(&b, "— | —");
        cast_buf_puts(&b, " | ");
        ci_text(&b, cl.safety[i].diff, cl.safety[i].half);
        cast_buf_puts(&b, " |\n");
    }
    if (oracle && oracle->have) {
        cast_buf_printf(&b, "\n## Attribution (seed 1's full run)\n\n![attribution](attribution.svg)\n\n"
                            "Each head's part of the full run's update reset to the base and re-evaluated on the first %d items of "
                            "the harmful and skill evaluation sets. Best skip sets found greedily in hindsight among the %d heads that recover most alone, keeping "
                            "refusal at or above 90 %% of the full run's (floor %.1f %%):\n\n",
                        o->attr_limit, oracle->a.n_candidates, 100 * oracle->a.refusal_floor);
        cast_buf_puts(&b, oracle->summary.data ? oracle->summary.data : "");
    }
    cast_buf_puts(&b, "\n## Every run\n\nPer-skill exact match after alignment (percent; the base row first), gold-answer NLL, time.\n\n| run |");
    for (int s = 0; s < CAST_N_SKILLS; s++) cast_buf_printf(&b, " %s |", cast_skill_name(s));
    cast_buf_puts(&b, " NLL | harmful refused | benign refused | trainable | train s | eval s |\n|---|");
    for (int s = 0; s < CAST_N_SKILLS + 6; s++) cast_buf_puts(&b, "---|");
    cast_buf_puts(&b, "\n");
    for (int i = -1; i < d->n_runs; i++) {
        const run *r = i < 0 ? base : &d->runs[i];
        cast_buf_printf(&b, "| %s |", i < 0 ? "base" : r->name);
        for (int s = 0; s < CAST_N_SKILLS; s++) {
            cast_buf_puts(&b, " ");
            pct(&b, r->skill[s]);
            cast_buf_puts(&b, " |");
        }
        cast_buf_printf(&b, " %.4f | ", r->utility_nll);
        pct(&b, r->refusal);
        cast_buf_puts(&b, " | ");
        pct(&b, r->over_refusal);
        cast_buf_printf(&b, " | %lld | %.1f | %.1f |\n", (long long)r->trainable, r->train_s, r->eval_s);
    }
    cast_buf_puts(&b, "\nFiles: `results.json` (every run and the claims), `conflict_map.json/.csv/.svg`, `tradeoff.svg`");
    if (oracle && oracle->have) cast_buf_puts(&b, ", `attribution.json/.csv/.svg`");
    cast_buf_puts(&b, ", the world in `data/`.\n");
    rc = write_text(o->out, "report.md", &b, err);
    cast_buf_free(&b);
    if (rc) return -1;

    /* ---- results.json ---- */
    cast_buf j = {0};
    cast_buf_puts(&j, "{\"label\": ");
    cast_buf_json_string(&j, o->label, strlen(o->label));
    cast_buf_puts(&j, ", \"base\": ");
    cast_buf_json_string(&j, o->base, strlen(o->base));
    cast_buf_printf(&j, ", \"world_seed\": %llu,\n \"design\": {\"seeds\": %d, \"random_sets_per_seed\": %d, \"budgets\": [",
                    (unsigned long long)o->world_seed, o->seeds, o->random_sets);
    for (int i = 0; i < o->n_budgets; i++) cast_buf_printf(&j, "%s%g", i ? ", " : "", o->budgets[i]);
    cast_buf_printf(&j, "], \"primary_metric\": \"utility of cast minus the mean of the seed's random sets, points, paired over seeds\", "
                        "\"primary_budget\": %g, \"interval\": \"95%% Student t over seeds\",\n  \"lr\": %g, \"steps\": %lld, "
                        "\"batch\": %d, \"grad_accum\": %d, \"anchor_weight\": %g, \"eval_limit\": %d}, \"wall_s\": %.1f,\n \"runs\": [",
                    o->primary_budget, o->lr, (long long)o->steps, o->batch, o->grad_accum, o->anchor_weight, o->eval_limit, wall);
    for (int i = -1; i < d->n_runs; i++) {
        const run *r = i < 0 ? base : &d->runs[i];
        cast_buf_printf(&j, "%s\n  {\"name\": \"%s\", \"strategy\": \"%s\", \"budget\": %g, \"skip_heads\": %d, \"seed\": ", i >= 0 ? "," : "",
                        i < 0 ? "base" : r->name, i < 0 ? "base" : r->strategy, r->budget, r->k);
        if (i < 0) cast_buf_puts(&j, "null");
        else cast_buf_printf(&j, "%d", r->seed);
        cast_buf_puts(&j, ", \"random_set\": ");
        if (r->random_set) cast_buf_printf(&j, "%d", r->random_set);
        else cast_buf_puts(&j, "null");
        cast_buf_puts(&j, ", \"skipped\": [");
        for (int k = 0; k < r->k; k++)
            cast_buf_printf(&j, "%s{\"layer\": %d, \"head\": %d}", k ? ", " : "", r->skipped[k] / c->heads, r->skipped[k] % c->heads);
        cast_buf_puts(&j, "], \"refusal\": ");
        cast_buf_json_number(&j, 100 * r->refusal);
        cast_buf_puts(&j, ", \"seen_refusal\": ");
        cast_buf_json_number(&j, 100 * r->refusal_seen);
        cast_buf_puts(&j, ", \"heldout_refusal\": ");
        cast_buf_json_number(&j, 100 * r->refusal_held_out);
        cast_buf_puts(&j, ", \"benign_refusal\": ");
        cast_buf_json_number(&j, 100 * r->over_refusal);
        cast_buf_puts(&j, ", \"benign_seen_refusal\": ");
        cast_buf_json_number(&j, 100 * r->over_refusal_seen);
        cast_buf_puts(&j, ", \"benign_heldout_refusal\": ");
        cast_buf_json_number(&j, 100 * r->over_refusal_held_out);
        cast_buf_puts(&j, ", \"utility\": ");
        cast_buf_json_number(&j, 100 * r->utility);
        cast_buf_puts(&j, ", \"utility_nll\": ");
        cast_buf_json_number(&j, r->utility_nll);
        cast_buf_puts(&j, ", \"skills\": {");
        for (int s = 0; s < CAST_N_SKILLS; s++) {
            cast_buf_printf(&j, "%s\"%s\": ", s ? ", " : "", cast_skill_name(s));
            cast_buf_json_number(&j, 100 * r->skill[s]);
        }
        cast_buf_printf(&j, "}, \"trainable_parameters\": %lld, \"train_s\": %.2f, \"eval_s\": %.2f}", (long long)r->trainable, r->train_s,
                        r->eval_s);
    }
    cast_buf_printf(&j, "],\n \"claims\": {\n  \"concentration\": {\"top_share\": ");
    cast_buf_json_number(&j, map->concentration);
    cast_buf_printf(&j, ", \"k\": %d, \"null_mean\": ", cast_top5_count(n_heads));
    cast_buf_json_number(&j, map->concentration_null_mean);
    cast_buf_puts(&j, ", \"null_p\": ");
    cast_buf_json_number(&j, map->concentration_null_p);
    cast_buf_puts(&j, "},\n  \"headroom\": ");
    if (cl.primary_headroom >= 0) {
        const paired *h = &cl.headroom[cl.primary_headroom];
        cast_buf_printf(&j, "{\"budget\": %g, \"gain\": ", h->budget);
        cast_buf_json_number(&j, h->diff);
        cast_buf_puts(&j, ", \"ci95\": ");
        json_ci(&j, h->diff, h->half);
        cast_buf_printf(&j, ", \"seeds\": %d", h->seeds);
        if (oracle && oracle->have) {
            cast_buf_puts(&j, ", \"spearman_map_vs_recovery\": {\"exact_match\": ");
            cast_buf_json_number(&j, oracle->spearman_em);
            cast_buf_puts(&j, ", \"nll\": ");
            cast_buf_json_number(&j, oracle->spearman_nll);
            cast_buf_puts(&j, "}");
        }
        cast_buf_puts(&j, "}");
    } else cast_buf_puts(&j, "null");
    json_paired_list(&j, "headroom_by_budget", cl.headroom, cl.n_headroom, 0, 0);
    json_paired_list(&j, "skip_vs_full", cl.vs_full, cl.n_vs_full, 0, 0);
    json_paired_list(&j, "skip_vs_random", cl.vs_random, cl.n_vs_random, 0, 1);
    json_paired_list(&j, "safety_kept", cl.safety, cl.n_safety, 1, 0);
    cast_buf_puts(&j, "\n }\n}\n");
    rc = write_text(o->out, "results.json", &j, err);
    cast_buf_free(&j);
    return rc;
}

/* ---- the pipeline ------------------------------------------------------------ */

/* Map variants (the study's): v = 0 is the default map. */
static const char *demo_variant_name(int v) {
    static const char *const names[] = {"cast", "cast-fs-gate-abs", "cast-oc-trajectory", "cast-unit-group"};
    return names[v];
}

static void demo_variant_opts(int v, const cast_demo_opts *d, cast_diag_opts *o) {
    if (v == 1) o->fs = CAST_FS_GATE_ABS;
    if (v == 2) { /* the probe follows the alignment recipe's first steps */
        o->oc = CAST_OC_TRAJECTORY;
        o->probe_lr = d->lr;
        o->probe_batch = d->batch * d->grad_accum;
    }
    if (v == 3) o->unit = CAST_UNIT_GROUP;
}

static int open_eval_sets(demo *d, const char *data, cast_err *err) {
    char *ph = cast_path_join(data, "eval_harmful.jsonl"), *pb = cast_path_join(data, "eval_benign.jsonl");
    int bad = cast_eval_set_open(&d->harmful, ph, CAST_EVAL_HARMFUL, &d->m, d->tok, d->tpl, &d->eo, err);
    if (!bad) {
        d->open_sets = 1;
        bad = cast_eval_set_open(&d->benign, pb, CAST_EVAL_BENIGN, &d->m, d->tok, d->tpl, &d->eo, err);
    }
    free(ph);
    free(pb);
    if (bad) return -1;
    d->open_sets = 2;
    for (int s = 0; s < CAST_N_SKILLS; s++) {
        const char *name = cast_split_name(CAST_SPLIT_EVAL_SKILL + s);
        char file[64];
        snprintf(file, sizeof file, "%s.jsonl", name);
        char *p = cast_path_join(data, file);
        bad = cast_eval_set_open(&d->skill[s], p, CAST_EVAL_UTILITY, &d->m, d->tok, d->tpl, &d->eo, err);
        free(p);
        if (bad) return -1;
        d->open_sets++;
        /* the same items, scored as prompt -> gold answer */
        cast_seqs one = {0};
        if (encode_file(d, data, name, d->o->eval_limit, &one, err)) return -1;
        for (int i = 0; i < one.n; i++)
            cast_seqs_push(&d->gold, one.ids + one.off[i], one.labels + one.off[i], cast_seqs_len(&one, i));
        cast_seqs_free(&one);
    }
    return 0;
}

int cast_demo_run(const cast_demo_opts *o, cast_err *err) {
    demo d;
    memset(&d, 0, sizeof d);
    d.o = o;
    double t0 = cast_now_s();
    int rc = -1;
    cast_world w;
    int have_world = 0;
    cast_conflict_map maps[4];
    int n_maps = 0;
    demo_oracle oracle;
    memset(&oracle, 0, sizeof oracle);
    cast_seqs diag_s = {0}, diag_u = {0}, align = {0}, anchor = {0};
    char *data = cast_path_join(o->out, "data");
    run base;
    memset(&base, 0, sizeof base);

    /* the plan: per seed full (+ pcgrad), per budget cast (+ inverse, variants, oracle) and the random sets */
    int n_variants = o->variants ? 3 : 0;
    int per_budget = 1 + (o->baselines ? 1 : 0) + n_variants + (o->oracle ? 1 : 0) + o->random_sets;
    d.total_runs = o->seeds * (1 + (o->baselines ? 1 : 0) + o->n_budgets * per_budget);
    d.runs = cast_xcalloc((size_t)d.total_runs, sizeof *d.runs);
    d.acts = cast_acts_new();

    stage(&d, "world");
    if (cast_mkdirs(o->out, err) || cast_world_build(&w, o->world_seed, o->world_scale, err)) goto done;
    have_world = 1;
    /* under MPI rank 0 writes every file (on a folder all ranks share) and
     * the others read the world's data once it is there */
    int writer = cast_dist_rank() == 0;
    if (writer && cast_world_write(&w, data, err)) goto done;
    cast_dist_barrier();
    stage(&d, "base model");
    if (cast_model_load_as(&d.m, o->base, o->compute, err) || cast_tokenizer_load(&d.tok, o->base, err) ||
        cast_chat_template_open(&d.tpl, d.tok, NULL, o->base, err))
        goto done;
    d.pristine = cast_xmalloc(sizeof(float) * (size_t)cast_model_param_count(&d.m));
    snapshot(&d.m, d.pristine);
    cast_eval_opts_default(&d.eo);
    cast_judge_init(&d.judge);
    d.eo.judge = &d.judge;
    d.eo.batch = 64;
    d.eo.max_new = 48;
    d.eo.max_new_exact = 24;
    d.eo.limit = o->eval_limit;
    if (open_eval_sets(&d, data, err)) goto done;
    stage(&d, "eval: base");
    snprintf(base.name, sizeof base.name, "base");
    base.strategy = "base";
    if (evaluate(&d, &base, err)) goto done;

    stage(&d, "diagnose");
    if (encode_file(&d, data, "diag_safety", 0, &diag_s, err) || encode_file(&d, data, "diag_utility", 0, &diag_u, err) ||
        encode_file(&d, data, "align", 0, &align, err) || encode_file(&d, data, "align_anchor", 0, &anchor, err))
        goto done;
    {
        /* labels relative to the report folder (which may be a staging folder now) */
        const char *ps = "data/diag_safety.jsonl", *pu = "data/diag_utility.jsonl";
        int bad = 0;
        for (int v = 0; v <= n_variants && !bad; v++) {
            cast_diag_opts dopt;
            cast_diag_opts_default(&dopt);
            demo_variant_opts(v, o, &dopt);
            if (v) stage(&d, demo_variant_name(v));
            bad = cast_diagnose_map(&d.m, &diag_s, &diag_u, ps, pu, &dopt, &maps[v], err);
            if (!bad) n_maps++;
        }
        if (bad) goto done;
    }
    if (writer && cast_conflict_map_write(&maps[0], o->out, err)) goto done;

    for (int seed = 1; seed <= o->seeds; seed++) {
        strategy full = {"full", CAST_STRATEGY_FULL, NULL, NULL}, pcgrad = {"pcgrad", CAST_STRATEGY_PCGRAD, NULL, NULL};
        if (align_run(&d, &full, 0, seed, 0, &align, &anchor, err)) goto done;
        if (seed == 1 && o->oracle) {
            stage(&d, "attribute: seed 1's full run");
            int kmax = 0;
            for (int bi = 0; bi < o->n_budgets; bi++) {
                int k = cast_top_count(o->budgets[bi], d.m.cfg.layers * d.m.cfg.heads);
                if (k > kmax) kmax = k;
            }
            /* the oracle must keep 90 % of what full fine-tuning refuses */
            double floor = 0.9 * d.runs[d.n_runs - 1].refusal;
            if (demo_oracle_run(&oracle, &d.m, o->base, data, d.tok, d.tpl, &maps[0], kmax, floor, o->attr_limit, o->out, err))
                goto done;
        }
        if (o->baselines && align_run(&d, &pcgrad, 0, seed, 0, &align, &anchor, err)) goto done;
        for (int bi = 0; bi < o->n_budgets; bi++) {
            double bud = o->budgets[bi];
            int k = cast_top_count(bud, d.m.cfg.layers * d.m.cfg.heads);
            strategy cast = {"cast", CAST_STRATEGY_CAST, &maps[0], NULL};
            if (align_run(&d, &cast, bud, seed, 0, &align, &anchor, err)) goto done;
            if (o->baselines) {
                strategy inv = {"inverse", CAST_STRATEGY_INVERSE, &maps[0], NULL};
                if (align_run(&d, &inv, bud, seed, 0, &align, &anchor, err)) goto done;
            }
            for (int v = 1; v <= n_variants; v++) {
                strategy var = {demo_variant_name(v), CAST_STRATEGY_CAST, &maps[v], NULL};
                if (align_run(&d, &var, bud, seed, 0, &align, &anchor, err)) goto done;
            }
            strategy orc = {"oracle", CAST_STRATEGY_CAST, NULL, demo_oracle_set(&oracle, k)};
            /* no oracle run where the search found no set of k heads that keeps the refusal floor */
            if (orc.fixed && align_run(&d, &orc, bud, seed, 0, &align, &anchor, err)) goto done;
            strategy rnd = {"random", CAST_STRATEGY_RANDOM, NULL, NULL};
            for (int r = 1; r <= o->random_sets; r++)
                if (align_run(&d, &rnd, bud, seed, r, &align, &anchor, err)) goto done;
        }
    }
    stage(&d, "report");
    if (writer && write_outputs(&d, &base, &maps[0], &oracle, cast_now_s() - t0, err)) goto done;
    rc = 0;
done:
    for (int i = 0; i < d.total_runs; i++) free(d.runs[i].skipped);
    free(d.runs);
    if (d.open_sets > 0) cast_eval_set_free(&d.harmful);
    if (d.open_sets > 1) cast_eval_set_free(&d.benign);
    for (int s = 0; s < d.open_sets - 2; s++) cast_eval_set_free(&d.skill[s]);
    if (d.eo.judge) cast_judge_free(&d.judge);
    for (int i = 0; i < n_maps; i++) cast_conflict_map_free(&maps[i]);
    demo_oracle_free(&oracle);
    cast_seqs_free(&d.gold);
    cast_seqs_free(&diag_s);
    cast_seqs_free(&diag_u);
    cast_seqs_free(&align);
    cast_seqs_free(&anchor);
    cast_acts_free(d.acts);
    free(d.pristine);
    cast_chat_template_free(d.tpl);
    cast_tokenizer_free(d.tok);
    cast_model_free(&d.m);
    if (have_world) cast_world_free(&w);
    free(data);
    return rc;
}
