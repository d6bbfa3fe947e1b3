/* cast demo: the model organism, end to end (docs/organism.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/timer.h"
#include "cli.h"
#include "organism/demo.h"

static void on_stage(void *ctx, const char *stage, int done, int total) {
    cli_progress *bar = ctx;
    bar->total = total;
    cli_progress_update(bar, done, stage);
    if (!bar->enabled) fprintf(stderr, "[%d/%d, %.0f s] %s\n", done, total, cast_now_s() - bar->start, stage);
}

int cmd_demo(int argc, char **argv) {
    cast_demo_opts o;
    cast_demo_opts_default(&o);
    const char *out = "out/demo", *base = NULL;
    int threads = 0, seeds = o.random_seeds, limit = 0;
    int64_t steps = o.steps, world_seed = (int64_t)o.world_seed;
    const cli_opt opts[] = {
        {"--out", CLI_STRING, &out, "DIR", "report folder (default out/demo)"},
        {"--base", CLI_STRING, &base, "DIR", "base model (default: the shipped organism, organism/base)"},
        {"--lr", CLI_DOUBLE, &o.lr, "LR", "alignment learning rate (default 2e-3)"},
        {"--steps", CLI_INT64, &steps, "N", "alignment steps (default 160)"},
        {"--batch", CLI_INT, &o.batch, "N", "alignment batch (default 16)"},
        {"--anchor-weight", CLI_DOUBLE, &o.anchor_weight, "W", "weight of the utility anchor set in the loss (default 1; 0 = safety data only)"},
        {"--seeds", CLI_INT, &seeds, "N", "random-strategy seeds per budget (default 3)"},
        {"--limit", CLI_INT, &limit, "N", "examples per evaluation set (default all)"},
        {"--world-seed", CLI_INT64, &world_seed, "S", "the world the base model was trained on (default 1)"},
        {"--threads", CLI_INT, &threads, "N", "threads (default: all cores)"},
        {0}};
    const cli_spec spec = {"demo", "[--out DIR] [options]",
                           "The model organism end to end: world, conflict map, alignment with full, cast, random, inverse and "
                           "pcgrad at 5/10/20 % budgets, evaluation, report (DIR/report.md).",
                           opts, 0, 0};
    const char *pos[1];
    int np, rc = cli_parse(&spec, argc, argv, pos, &np);
    if (rc) return rc == 2 ? 0 : 1;
    if (seeds < 1 || seeds > 8) return cli_failf("demo: --seeds must be between 1 and 8 (got %d)", seeds);
    if (!(o.lr > 0) || steps <= 0 || o.batch <= 0 || limit < 0 || o.anchor_weight < 0 || world_seed < 0)
        return cli_failf("demo: invalid settings (--lr, --steps, --batch > 0; --limit, --anchor-weight, --world-seed >= 0)");
    char *shipped = cast_path_join(CAST_SOURCE_DIR, "organism/base");
    o.base = base ? base : getenv("CAST_ORGANISM") ? getenv("CAST_ORGANISM") : shipped;
    {
        /* a missing base is the likeliest mistake: say so before any work */
        char *cfg = cast_path_join(o.base, "config.json");
        int ok = cast_file_exists(cfg);
        free(cfg);
        if (!ok) {
            free(shipped);
            return cli_failf("%s: no organism base model here (config.json missing); `cast organism train` makes one", o.base);
        }
    }
    o.out = out;
    o.steps = steps;
    o.random_seeds = seeds;
    o.eval_limit = limit;
    o.world_seed = (uint64_t)world_seed;
    cast_set_threads(threads);
    cli_progress bar;
    cli_progress_start(&bar, "demo", 1);
    o.progress = on_stage;
    o.ctx = &bar;
    cast_err err = {{0}};
    double t0 = cast_now_s();
    rc = cast_demo_run(&o, &err);
    cli_progress_end(&bar);
    if (rc) rc = cli_fail(&err);
    else printf("demo finished in %.0f s: %s/report.md\n", cast_now_s() - t0, out);
    free(shipped);
    return rc;
}
