/* cast diagnose MODEL --safety FILE --utility FILE --out DIR: the conflict map. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "base/timer.h"
#include "base/threads.h"
#include "cast/diagnose.h"
#include "cli.h"
#include "report/conflict.h"

static void on_progress(void *ctx, int64_t done, int64_t total, const char *stage) {
    cli_progress *bar = ctx;
    bar->total = total;
    cli_progress_update(bar, done, stage);
}

int cmd_diagnose(int argc, char **argv) {
    const char *compute = "auto";
    const char *safety = NULL, *utility = NULL, *out = NULL, *oc = "neg", *fs = "gate", *combine = "product", *template_name = NULL;
    int batch = 4, threads = 0, kv_in_score = 1, json = 0, top = 10, force = 0;
    const char *on_long = "skip";
    cli_data_opts d = {128, 256, CAST_ON_LONG_SKIP, -1};
    const char *unit = "head";
    /* unset until given: a probe flag without --oc trajectory is refused */
    int probe_steps = INT_MIN, probe_batch = INT_MIN, null_perms = 1000;
    double probe_lr = NAN, memory_gb = 0;
    int grad_passes = 0, stream = -1;
    const char *stream_arg = "auto";
    const cli_opt opts[] = {
        {"--safety", CLI_STRING, &safety, "FILE", "safety set: harmful prompts with refusals (prompt/response or messages)"},
        {"--utility", CLI_STRING, &utility, "FILE", "utility set: prompts with good responses"},
        {"--out", CLI_STRING, &out, "DIR", "writes conflict_map.json, .csv and .svg there"},
        {"--force", CLI_FLAG, &force, NULL, "replace a non-empty --out folder whole (default: refuse)"},
        {"--oc", CLI_STRING, &oc, "neg|half|negdot|trajectory",
         "optimization conflict (default neg = max(0, -cos); trajectory = rise of L_u under the probe's update)"},
        {"--fs", CLI_STRING, &fs, "gate|ablation|snip|gate-abs",
         "functional sensitivity (default gate = |dL_u/dxi|; gate-abs = mean over examples of |dL_u(x)/dxi|)"},
        {"--unit", CLI_STRING, &unit, "head|group", "score each head, or each k/v group as one unit (default head)"},
        {"--probe-steps", CLI_INT, &probe_steps, "N", "--oc trajectory: AdamW safety steps of the probe (default 8)"},
        {"--probe-lr", CLI_DOUBLE, &probe_lr, "LR", "--oc trajectory: the probe's learning rate (default 2e-5, tune's)"},
        {"--probe-batch", CLI_INT, &probe_batch, "N", "--oc trajectory: sequences per probe step (default 16, tune's)"},
        {"--null-permutations", CLI_INT, &null_perms, "R",
         "permutations of the concentration null, seeded by --seed (default 1000; 0 = none)"},
        {"--combine", CLI_STRING, &combine, "product|rank|sum", "how OC and FS combine (default product)"},
        {"--kv-in-score", CLI_INT, &kv_in_score, "0|1", "include the group's k/v rows in a head's vector (default 1)"},
        {"--first", CLI_INT, &d.first, "N", "the first N examples of each set (default 128; 0 = all)"},
        {"--max-len", CLI_INT, &d.max_len, "N", "tokens per example at most (default 256; 0 = no limit)"},
        {"--on-long", CLI_STRING, &on_long, "POLICY", CLI_ON_LONG_HELP},
        {"--batch", CLI_INT, &batch, "N", "sequences per forward/backward (default 4)"},
        {"--seed", CLI_INT64, &d.seed, "S", "shuffle each set with seed S before taking the first N (default -1 = file order)"},
        {"--template", CLI_STRING, &template_name, "NAME", "chat template (default: the model's)"},
        {"--top", CLI_INT, &top, "N", "heads in the printed table (default 10)"},
        {"--threads", CLI_INT, &threads, "N", "threads (default 0 = all cores)"},
        CLI_COMPUTE_OPT(compute),
        {"--grad-passes", CLI_INT, &grad_passes, "N",
         "take the gradients for N groups of layers in turn (less memory, more time; the same map); default 0 = the fewest "
         "that fit --memory"},
        {"--memory", CLI_DOUBLE, &memory_gb, "GB", "memory the run may take, GiB (default: physical memory less 1 GiB)"},
        CLI_STREAM_OPT(stream_arg),
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
    if (cast_oc_parse(oc, &o.oc)) return cli_failf("diagnose: --oc must be neg, half, negdot or trajectory (got \"%s\")", oc);
    if (cast_fs_parse(fs, &o.fs)) return cli_failf("diagnose: --fs must be gate, ablation, snip or gate-abs (got \"%s\")", fs);
    if (cast_unit_parse(unit, &o.unit)) return cli_failf("diagnose: --unit must be head or group (got \"%s\")", unit);
    int probe_given = probe_steps != INT_MIN || probe_batch != INT_MIN || !isnan(probe_lr);
    if (o.oc != CAST_OC_TRAJECTORY && probe_given)
        return cli_failf("diagnose: --probe-steps, --probe-lr and --probe-batch need --oc trajectory");
    if (probe_steps != INT_MIN) o.probe_steps = probe_steps;
    if (probe_batch != INT_MIN) o.probe_batch = probe_batch;
    if (!isnan(probe_lr)) o.probe_lr = probe_lr;
    if (o.oc == CAST_OC_TRAJECTORY && (o.probe_steps <= 0 || o.probe_batch <= 0 || !(o.probe_lr > 0) || !isfinite(o.probe_lr)))
        return cli_failf("diagnose: --oc trajectory needs --probe-steps, --probe-batch and --probe-lr > 0");
    if (null_perms < 0) return cli_failf("diagnose: --null-permutations must be >= 0");
    o.null_permutations = null_perms;
    o.seed = d.seed >= 0 ? (uint64_t)d.seed : 0;
    if (cast_combine_parse(combine, &o.combine))
        return cli_failf("diagnose: --combine must be product, rank or sum (got \"%s\")", combine);
    if (kv_in_score != 0 && kv_in_score != 1) return cli_failf("diagnose: --kv-in-score must be 0 or 1");
    if (d.first < 0 || d.max_len < 0 || batch <= 0) return cli_failf("diagnose: invalid --first, --max-len or --batch");
    if (cli_on_long("diagnose", on_long, &d.on_long)) return 1;
    if (grad_passes < 0 || !(memory_gb >= 0)) return cli_failf("diagnose: --grad-passes and --memory must be >= 0");
    if (cli_stream_mode("diagnose", stream_arg, &stream)) return 1;
    o.kv_in_score = kv_in_score;
    o.micro_batch = batch;
    o.grad_passes = grad_passes;
    o.memory_budget = (int64_t)(memory_gb * 1073741824.0);
    cast_set_threads(threads);
    const char *inputs[] = {pos[0], safety, utility};
    cli_out co = {0};
    if (out && cli_out_begin(&co, out, inputs, 3, force, 0)) return 1;
    cli_model cm;
    if (cli_model_open(&cm, pos[0], template_name, compute)) {
        cli_out_abort(&co);
        return 1;
    }
    cast_seqs s_set = {0}, u_set = {0};
    rc = 1;
    int s_skipped = 0, u_skipped = 0;
    if (cli_encode_file(&cm, safety, &d, &s_set, NULL, &s_skipped) || cli_encode_file(&cm, utility, &d, &u_set, NULL, &u_skipped))
        goto done;
    if (cli_memory_check_diagnose(&cm.m, &s_set, &u_set, &o, stream)) goto done;
    cli_progress bar;
    cli_progress_start(&bar, "diagnose", s_set.n + u_set.n);
    o.progress = on_progress;
    o.ctx = &bar;
    cast_err err = {0};
    cast_conflict_map map;
    double t0 = cast_now_s();
    if (cast_diagnose_map(&cm.m, &s_set, &u_set, safety, utility, &o, &map, &err)) {
        cli_progress_end(&bar);
        cli_fail(&err);
        goto done;
    }
    cli_progress_end(&bar);
    map.safety.skipped = s_skipped;
    map.utility.skipped = u_skipped;
    if (out && (co.writer && cast_conflict_map_write(&map, co.dir, &err) ? cli_fail(&err) : cli_out_commit(&co))) {
        cast_conflict_map_free(&map);
        goto done;
    }
    if (json) {
        cast_buf b = {0};
        cast_conflict_map_json(&map, &b);
        /* the run's figures beside the map (stdout only: the written map holds results, not timings) */
        char *end = strrchr(b.data, '}');
        if (end) {
            b.len = (size_t)(end - b.data);
            cast_buf_printf(&b, ",\n  \"run\": {\"seconds\": %.3f, \"peak_rss_mb\": %.0f, \"grad_passes\": %d, \"stream\": %s, \"compute\": \"%s\"}\n}\n",
                            cast_now_s() - t0, cast_peak_rss_mb(), cast_diag_grad_passes(&cm.m, &s_set, &u_set, &o),
                            cm.m.stream ? "true" : "false", cm.m.bf16 ? "bf16" : "f32");
        }
        fputs(b.data, stdout);
        cast_buf_free(&b);
    } else {
        int n = map.layers * map.heads;
        printf("conflict map of %s: %d layers x %d heads, %.1f s, peak memory %.0f MiB, %s compute\n", cm.path, map.layers,
               map.heads, cast_now_s() - t0, cast_peak_rss_mb(), cm.m.bf16 ? "bf16" : "f32");
        printf("safety  %s: %d examples (%d longer than --max-len skipped), %lld tokens, loss %.4f\n", safety,
               map.safety.examples, s_skipped, (long long)map.safety.tokens, map.safety.loss);
        printf("utility %s: %d examples (%d longer than --max-len skipped), %lld tokens, loss %.4f\n\n", utility,
               map.utility.examples, u_skipped, (long long)map.utility.tokens, map.utility.loss);
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
        int conflicted = 0, per_unit = cast_map_unit_heads(&map), units = n / per_unit;
        for (int i = 0; i < n; i++) conflicted += cast_head_conflicts(&map, &map.stat[i]);
        printf("\n%d of %d heads %s; the top 5%% (%d %s) hold %.1f%% of the total score", conflicted, n,
               map.oc == CAST_OC_TRAJECTORY ? "raise L_u under the probe's update" : "have conflicting gradients (cos < 0)",
               cast_top5_count(units), per_unit > 1 ? "groups" : "heads", 100 * map.concentration);
        if (map.null_permutations > 0)
            printf(" (FS-permutation null: mean %.1f%%, p = %.3g over %d permutations)", 100 * map.concentration_null_mean,
                   map.concentration_null_p, map.null_permutations);
        printf(".\n");
        if (out) printf("wrote %s/conflict_map.json, .csv, .svg\n", out);
    }
    cast_conflict_map_free(&map);
    rc = 0;
done:
    cli_out_abort(&co); /* nothing when committed */
    cast_seqs_free(&s_set);
    cast_seqs_free(&u_set);
    cli_model_close(&cm);
    return rc;
}
