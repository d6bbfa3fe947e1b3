/* `cast demo`: the whole CAST story on the organism — world, diagnosis,
 * alignment with every strategy on the same data-order seeds (a paired
 * design), evaluation, the abstract's claims with 95 % intervals, report.
 * An application of the library, as a user's program would be. */
#ifndef CAST_ORGANISM_DEMO_H
#define CAST_ORGANISM_DEMO_H

#include <stdint.h>

#include "base/error.h"
#include "model/model.h"

typedef struct cast_demo_opts {
    const char *base;   /* base model folder (the shipped organism) */
    const char *out;    /* report folder (written in place: the caller stages it) */
    uint64_t world_seed;
    double world_scale;
    /* the alignment recipe, the same for every strategy */
    double lr;
    int64_t steps;
    int batch;            /* sequences per forward/backward */
    int grad_accum;       /* micro-batches per optimizer step */
    double anchor_weight; /* 0: safety data only */
    /* the design */
    double budgets[8];    /* shares of heads skipped */
    int n_budgets;
    int seeds;            /* data-order seeds 1..seeds, every strategy on each */
    int random_sets;      /* random skip sets per seed and budget, drawn afresh per seed */
    int baselines;        /* also pcgrad (per seed) and inverse (per budget) */
    int oracle;           /* `cast attribute` on the first seed's full run; its best set per budget as a strategy */
    int variants;         /* map variants as strategies: --fs gate-abs, --oc trajectory, --unit group */
    double primary_budget; /* the budget of the primary comparison (one of budgets) */
    int eval_limit;       /* examples per evaluation set (0 = all) */
    int attr_limit;       /* examples per set for the oracle's attribution (0 = all) */
    const char *label;    /* "demo" or "study": names the run in the report */
    cast_compute compute; /* how the products run (model/model.h) */
    /* progress: stage name and runs done / total */
    void (*progress)(void *ctx, const char *stage, int done, int total);
    void *ctx;
} cast_demo_opts;

/* The demo's defaults (5 seeds, 10 % budget, 2 random sets per seed, oracle). */
void cast_demo_opts_default(cast_demo_opts *o);
/* The study's: 10 seeds, 5/10/20 %, 2 random sets per seed and budget (20 per
 * budget), pcgrad, inverse, map variants, oracle. */
void cast_demo_opts_study(cast_demo_opts *o);
/* Runs everything; writes OUT/report.md, OUT/results.json, OUT/conflict_map.*,
 * OUT/tradeoff.svg, OUT/claims.svg, OUT/attribution.* (with the oracle), OUT/data/. */
int cast_demo_run(const cast_demo_opts *o, cast_err *err);

#endif
