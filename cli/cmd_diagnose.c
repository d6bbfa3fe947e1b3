/* cast diagnose MODEL --safety FILE --utility FILE --out DIR: the conflict map. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "base/timer.h"
#include "cast/diagnose.h"
#include "cli.h"
#include "report/conflict.h"

static void on_progress(void *ctx, int64_t done, int64_t total, const char *stage) {
    cli_progress *bar = ctx;
    bar->total = total;
    cli_progress_update(bar, done, stage);
}

int cmd_diagnose(int argc, char **argv) {
    const char *safety = NULL, *utility = NULL, *out = NULL, *oc = "neg", *fs = "gate", *combine = "product", *template_name = NULL;
    int max_examples = 128, max_len = 256, batch = 4, threads = 0, kv_in_score = 1, json = 0, top = 10;
    int64_t seed = 0;
    const cli_opt opts[] = {
        {"--safety", CLI_STRING, &safety, "FILE", "safety set: harmful prompts with refusals (prompt/response or messages)"},
        {"--utility", CLI_STRING, &utility, "FILE", "utility set: prompts with good responses"},
        {"--out", CLI_STRING, &out, "DIR", "writes conflict_map.json, .csv and .svg there"},
        {"--oc", CLI_STRING, &oc, "neg|half|negdot", "optimization conflict (default neg = max(0, -cos))"},
        {"--fs", CLI_STRING, &fs, "gate|ablation|snip", "functional sensitivity (default gate = |dL_u/dxi|)"},
        {"--combine", CLI_STRING, &combine, "product|rank|sum", "how OC and FS combine (default product)"},
        {"--kv-in-score", CLI_INT, &kv_in_score, "0|1", "include the group's k/v rows in a head's vector (default 1)"},
        {"--max-examples", CLI_INT, &max_examples, "N", "examples per set (default 128; 0 = all)"},
        {"--max-len", CLI_INT, &max_len, "N", "truncate sequences to N tokens (default 256)"},
        {"--batch", CLI_INT, &batch, "N", "sequences per forward/backward (default 4)"},
        {"--seed", CLI_INT64, &seed, "S", "which examples are drawn when a set is larger (default 0)"},
        {"--template", CLI_STRING, &template_name, "NAME", "chat template instead of the model's"},
        {"--top", CLI_INT, &top, "N", "heads in the printed table (default 10)"},
        {"--threads", CLI_INT, &threads, "N", "threads (default: all cores)"},
        {"--json", CLI_FLAG, &json, NULL, "print conflict_map.json on stdout instead of the table"},
        {0}};
    const cli_spec spec = {"diagnose", "MODEL --safety FILE --utility FILE [--out DIR] [options]",
                           "CAST stage A: per attention head, the conflict between the safety and utility gradients and the "
                           "head's functional sensitivity, combined into a conflict map.",
                           opts, 1, 1};
    const char *pos[1];
    int np, rc = cli_parse(&spec, argc, argv, pos, &np);
    if (rc) return rc == 2 ? 0 : 1;
    cast_diag_opts o;
    cast_diag_opts_default(&o);
    if (!safety || !utility) return cli_failf("diagnose: --safety FILE and --utility FILE are required");
    if (!out && !json) return cli_failf("diagnose: give --out DIR (or --json)");
    if (cast_oc_parse(oc, &o.oc)) return cli_failf("diagnose: --oc must be neg, half or negdot (got \"%s\")", oc);
    if (cast_fs_parse(fs, &o.fs)) return cli_failf("diagnose: --fs must be gate, ablation or snip (got \"%s\")", fs);
    if (cast_combine_parse(combine, &o.combine))
        return cli_failf("diagnose: --combine must be product, rank or sum (got \"%s\")", combine);
    if (kv_in_score != 0 && kv_in_score != 1) return cli_failf("diagnose: --kv-in-score must be 0 or 1");
    if (max_examples < 0 || max_len < 0 || batch <= 0) return cli_failf("diagnose: invalid --max-examples, --max-len or --batch");
    o.kv_in_score = kv_in_score;
    o.micro_batch = batch;
    cast_set_threads(threads);
    cli_model cm;
    if (cli_model_open(&cm, pos[0], template_name)) return 1;
    cast_seqs s_set = {0}, u_set = {0};
    rc = 1;
    if (cli_encode_file(&cm, safety, max_examples, max_len, seed, &s_set, NULL) ||
        cli_encode_file(&cm, utility, max_examples, max_len, seed, &u_set, NULL))
        goto done;
    cli_progress bar;
    cli_progress_start(&bar, "diagnose", s_set.n + u_set.n);
    o.progress = on_progress;
    o.ctx = &bar;
    cast_err err = {{0}};
    cast_conflict_map map;
    double t0 = cast_now_s();
    if (cast_diagnose(&cm.m, &s_set, &u_set, safety, utility, &o, &map, &err)) {
        cli_progress_end(&bar);
        cli_fail(&err);
        goto done;
    }
    cli_progress_end(&bar);
    if (out && cast_conflict_map_write(&map, out, &err)) {
        cli_fail(&err);
        cast_conflict_map_free(&map);
        goto done;
    }
    if (json) {
        cast_buf b = {0};
        cast_conflict_map_json(&map, &b);
        fputs(b.data, stdout);
        cast_buf_free(&b);
    } else {
        int n = map.layers * map.heads;
        printf("conflict map of %s: %d layers x %d heads, %.1f s\n", cm.path, map.layers, map.heads, cast_now_s() - t0);
        printf("safety  %s: %d examples, %lld tokens, loss %.4f\n", safety, map.safety.examples, (long long)map.safety.tokens,
               map.safety.loss);
        printf("utility %s: %d examples, %lld tokens, loss %.4f\n\n", utility, map.utility.examples, (long long)map.utility.tokens,
               map.utility.loss);
        int positive = 0;
        for (int i = 0; i < n; i++) positive += map.stat[i].score > 0;
        if (positive) printf("rank  layer  head    score      cos       oc       fs   |g_s|    |g_u|\n");
        else printf("no head has a positive conflict score.\n");
        for (int r = 0; r < top && r < positive; r++)
            for (int i = 0; i < n; i++) {
                const cast_head_stat *s = &map.stat[i];
                if (s->rank != r) continue;
                char cosbuf[16];
                if (s->cos_defined) snprintf(cosbuf, sizeof cosbuf, "%+.4f", s->cos);
                else snprintf(cosbuf, sizeof cosbuf, "   n/a");
                printf("%4d  %5d  %4d  %7.4f  %7s  %7.4f  %7.3g  %7.3g  %7.3g\n", r, s->layer, s->head, s->score, cosbuf, s->oc,
                       s->fs, s->norm_safety, s->norm_utility);
            }
        int conflicted = 0;
        for (int i = 0; i < n; i++) conflicted += map.stat[i].cos_defined && map.stat[i].cos < 0;
        printf("\n%d of %d heads have conflicting gradients (cos < 0); the top 5%% (%d heads) hold %.1f%% of the total score.\n",
               conflicted, n, cast_top5_count(n), 100 * map.concentration);
        if (out) printf("wrote %s/conflict_map.json, .csv, .svg\n", out);
    }
    cast_conflict_map_free(&map);
    rc = 0;
done:
    cast_seqs_free(&s_set);
    cast_seqs_free(&u_set);
    cli_model_close(&cm);
    return rc;
}
