/* cast demo: the model organism, end to end (docs/organism.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/file.h"
#include "base/timer.h"
#include "base/threads.h"
#include "cli.h"
#include "dist/dist.h"
#include "organism/demo.h"

static void on_stage(void *ctx, const char *stage, int done, int total) {
    cli_progress *bar = ctx;
    bar->total = total;
    cli_progress_update(bar, done, stage);
    if (!bar->enabled && cast_dist_rank() == 0) fprintf(stderr, "[%d/%d, %.0f s] %s\n", done, total, cast_now_s() - bar->start, stage);
}

/* "0.05,0.1,0.2" -> budgets */
static int parse_budgets(const char *s, cast_demo_opts *o) {
    o->n_budgets = 0;
    for (const char *p = s; *p;) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !(v > 0 && v < 1) || o->n_budgets == 8) return -1;
        o->budgets[o->n_budgets++] = v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return o->n_budgets ? 0 : -1;
}

/* The shipped base model: installed beside the binary (PREFIX/bin/cast ->
 * PREFIX/share/cast/organism/base), else in the source tree it was built
 * from. malloc'd; the source tree's path when neither has one. */
static char *shipped_base(void) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            char *p = cast_path_join(exe, "../share/cast/organism/base"), *cfg = cast_path_join(p, "config.json");
            char *real = cast_file_exists(cfg) ? realpath(p, NULL) : NULL;
            free(cfg);
            free(p);
            if (real) return real;
        }
    }
    return cast_path_join(CAST_SOURCE_DIR, "organism/base");
}

int cmd_demo(int argc, char **argv) {
    const char *compute = "auto";
    int study = 0;
    for (int i = 1; i < argc; i++) study |= !strcmp(argv[i], "--study");
    cast_demo_opts o;
    if (study) cast_demo_opts_study(&o);
    else cast_demo_opts_default(&o);
    const char *out = study ? "out/study" : "out/demo", *base = NULL, *budgets = NULL;
    int threads = 0, force = 0, no_oracle = 0, baselines = o.baselines, variants = o.variants;
    int64_t steps = o.steps, world_seed = (int64_t)o.world_seed;
    const cli_opt opts[] = {
        {"--out", CLI_STRING, &out, "DIR", "report folder (default out/demo, with --study out/study)"},
        {"--force", CLI_FLAG, &force, NULL, "replace a non-empty DIR whole"},
        {"--study", CLI_FLAG, &study, NULL, "the full study: 10 seeds, 5/10/20 % budgets, 20 random sets per budget, pcgrad, inverse, "
                                            "map variants, oracle (about 60 minutes on 2 cores)"},
        {"--base", CLI_STRING, &base, "DIR", "base model (default: the shipped organism, organism/base, or $CAST_ORGANISM)"},
        {"--seeds", CLI_INT, &o.seeds, "N", "data-order seeds, every strategy on each (default 5; study 10)"},
        {"--random-sets", CLI_INT, &o.random_sets, "N", "random skip sets per seed and budget (default 2)"},
        {"--budgets", CLI_STRING, &budgets, "R,R,...", "shares of heads skipped (default 0.1; study 0.05,0.1,0.2)"},
        {"--primary-budget", CLI_DOUBLE, &o.primary_budget, "R", "the budget of the primary comparison (default 0.1)"},
        {"--baselines", CLI_FLAG, &baselines, NULL, "also pcgrad and inverse (default: study only)"},
        {"--variants", CLI_FLAG, &variants, NULL, "also the map variants fs gate-abs, oc trajectory, unit group (default: study only)"},
        {"--no-oracle", CLI_FLAG, &no_oracle, NULL, "skip `cast attribute` and the oracle strategy"},
        {"--lr", CLI_DOUBLE, &o.lr, "LR", "alignment learning rate (default 2e-4)"},
        {"--steps", CLI_INT64, &steps, "N", "alignment steps (default 100)"},
        {"--batch", CLI_INT, &o.batch, "N", "sequences per forward/backward (default 16)"},
        {"--grad-accum", CLI_INT, &o.grad_accum, "N", "micro-batches per optimizer step (default 1)"},
        {"--anchor-weight", CLI_DOUBLE, &o.anchor_weight, "W", "weight of the utility anchor set in the loss (default 0 = safety data only)"},
        {"--first", CLI_INT, &o.eval_limit, "N", "the first N examples of each evaluation set (default all)"},
        {"--attr-first", CLI_INT, &o.attr_limit, "N", "the first N examples of each set for the oracle's attribution (default 48)"},
        {"--world-seed", CLI_INT64, &world_seed, "S", "the world the base model was trained on (default 1)"},
        {"--threads", CLI_INT, &threads, "N", "threads (default: all cores)"},
        CLI_COMPUTE_OPT(compute),
        {0}};
    const cli_spec spec = {"demo", "[--out DIR] [--study] [options]",
                           "The model organism end to end: world, conflict map, alignment with every strategy on the same "
                           "data-order seeds (paired), `cast attribute`'s oracle, evaluation, the abstract's claims with 95 % "
                           "intervals (DIR/report.md, DIR/results.json).",
                           opts, 0, 0};
    const char *pos[1];
    int np, rc = cli_parse(&spec, argc, argv, pos, &np);
    if (rc) return rc == 2 ? 0 : 1;
    if (cast_compute_parse(compute, &o.compute)) return cli_failf("demo: --compute must be auto, f32 or bf16 (got \"%s\")", compute);
    if (budgets && parse_budgets(budgets, &o)) return cli_failf("demo: --budgets must be up to 8 shares in (0, 1), comma-separated");
    if (o.seeds < 1 || o.seeds > 64) return cli_failf("demo: --seeds must be between 1 and 64 (got %d)", o.seeds);
    if (o.random_sets < 0 || o.random_sets > 16) return cli_failf("demo: --random-sets must be between 0 and 16");
    if (!(o.lr > 0) || steps <= 0 || o.batch <= 0 || o.grad_accum <= 0 || o.eval_limit < 0 || o.attr_limit < 0 ||
        o.anchor_weight < 0 || world_seed < 0)
        return cli_failf("demo: invalid settings (--lr, --steps, --batch, --grad-accum > 0; --first, --anchor-weight, --world-seed >= 0)");
    int primary_ok = 0;
    for (int i = 0; i < o.n_budgets; i++) primary_ok |= o.budgets[i] == o.primary_budget;
    if (!primary_ok) return cli_failf("demo: --primary-budget %g is not one of --budgets", o.primary_budget);
    char *shipped = shipped_base();
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
    cli_out dir;
    const char *inputs[] = {o.base};
    if (cli_out_begin(&dir, out, inputs, 1, force, 0)) {
        free(shipped);
        return 1;
    }
    o.out = dir.dir;
    o.steps = steps;
    o.oracle = !no_oracle;
    o.baselines = baselines;
    o.variants = variants;
    o.world_seed = (uint64_t)world_seed;
    cast_set_threads(threads);
    cli_progress bar;
    cli_progress_start(&bar, o.label, 1);
    o.progress = on_stage;
    o.ctx = &bar;
    cast_err err = {0};
    double t0 = cast_now_s();
    rc = cast_demo_run(&o, &err);
    cli_progress_end(&bar);
    if (rc) {
        cli_out_abort(&dir);
        rc = cli_fail(&err);
    } else if (cli_out_commit(&dir)) rc = 1;
    else printf("%s finished in %.0f s: %s/report.md\n", o.label, cast_now_s() - t0, out);
    free(shipped);
    return rc;
}
