/* `cast demo`: the whole CAST story on the organism — world, diagnosis,
 * alignment with every strategy at equal budgets, evaluation, report. An
 * application of the library, as a user's program would be. */
#ifndef CAST_ORGANISM_DEMO_H
#define CAST_ORGANISM_DEMO_H

#include <stdint.h>

#include "base/error.h"

typedef struct cast_demo_opts {
    const char *base;   /* base model folder (the shipped organism) */
    const char *out;    /* report folder */
    uint64_t world_seed;
    double world_scale;
    /* the alignment recipe, the same for every strategy */
    double lr;
    int64_t steps;
    int batch;
    double anchor_weight; /* 0: safety data only */
    /* budgets (share of heads skipped) and random seeds */
    double budgets[8];
    int n_budgets;
    int random_seeds;
    int eval_limit; /* examples per evaluation set (0 = all) */
    /* progress: stage name and runs done / total */
    void (*progress)(void *ctx, const char *stage, int done, int total);
    void *ctx;
} cast_demo_opts;

void cast_demo_opts_default(cast_demo_opts *o);
/* Runs everything; writes OUT/report.md, OUT/results.json, OUT/conflict_map.svg, OUT/tradeoff.svg, OUT/data/. */
int cast_demo_run(const cast_demo_opts *o, cast_err *err);

#endif
