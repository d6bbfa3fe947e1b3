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
#include "report/svg.h"

static void on_progress(void *ctx, int64_t done, int64_t total, const char *stage) {
    cli_progress *bar = ctx;
    bar->total = total;
    cli_progress_update(bar, done, stage);
}

/* The three heatmaps of the map: score, cos and FS, top 5 % outlined. */
void cli_conflict_map_svg(const cast_conflict_map *map, cast_buf *out) {
    int n = map->layers * map->heads;
    double *score = cast_xmalloc(sizeof(double) * (size_t)n), *cos = cast_xmalloc(sizeof(double) * (size_t)n),
           *fs = cast_xmalloc(sizeof(double) * (size_t)n);
    int *top = cast_xcalloc((size_t)n, sizeof(int));
    int k = cast_top5_count(n);
    double fs_lo = INFINITY, fs_hi = -INFINITY, s_hi = 0, cos_hi = 0;
    for (int i = 0; i < n; i++) {
        score[i] = map->stat[i].score;
        cos[i] = map->stat[i].cos_defined ? map->stat[i].cos : NAN;
        fs[i] = map->stat[i].fs;
        top[i] = map->stat[i].rank < k && map->stat[i].score > 0;
        fs_lo = fmin(fs_lo, fs[i]);
        fs_hi = fmax(fs_hi, fs[i]);
        s_hi = fmax(s_hi, score[i]);
        if (map->stat[i].cos_defined) cos_hi = fmax(cos_hi, fabs(map->stat[i].cos));
    }
    char fs_title[64], caption[512];
    snprintf(fs_title, sizeof fs_title, "functional sensitivity (%s)", cast_fs_name(map->fs));
    snprintf(caption, sizeof caption,
             "%s: outlined = top 5%% (%d heads) by score; top 5%% hold %.0f%% of the total score. oc=%s, combine=%s, kv_in_score=%d.",
             map->model_path, k, 100 * map->concentration, cast_oc_name(map->oc), cast_combine_name(map->combine),
             map->kv_in_score);
    cast_heatmap maps[3] = {
        {"conflict score", score, map->layers, map->heads, 0, s_hi > 0 ? s_hi : 1, 0, top, "layer", "head", "score"},
        {"", cos, map->layers, map->heads, -cos_hi, cos_hi, 1, top, "layer", "head", ""},
        {fs_title, fs, map->layers, map->heads, fs_lo < 0 ? fs_lo : 0, fs_hi > fs_lo ? fs_hi : fs_lo + 1, 0, top, "layer", "head",
         "FS"},
    };
    /* red means conflict: flip the diverging scale so negative cos is red */
    for (int i = 0; i < n; i++) cos[i] = -cos[i];
    if (cos_hi == 0) maps[1].vmin = -1, maps[1].vmax = 1;
    maps[1].title = "gradient conflict: -cos(g_s, g_u)";
    maps[1].value_label = "-cos";
    cast_svg_heatmaps(out, maps, 3, caption);
    free(score);
    free(cos);
    free(fs);
    free(top);
}

/* All three files, or none: each goes to a temporary name, and the renames
 * come only after every write succeeded. */
static int write_outputs(const char *dir, const cast_conflict_map *map, cast_err *err) {
    if (cast_mkdirs(dir, err)) return -1;
    cast_buf text[3] = {{0}};
    cast_conflict_map_json(map, &text[0]);
    cast_conflict_map_csv(map, &text[1]);
    cli_conflict_map_svg(map, &text[2]);
    static const char *const names[3] = {"conflict_map.json", "conflict_map.csv", "conflict_map.svg"};
    cast_atomic files[3];
    int opened = 0, rc = 0;
    for (; opened < 3 && rc == 0; opened++) {
        char *path = cast_path_join(dir, names[opened]);
        rc = cast_atomic_open(&files[opened], path, err);
        free(path);
        if (rc) break;
        if (fwrite(text[opened].data, 1, text[opened].len, files[opened].fp) != text[opened].len)
            rc = cast_fail(err, "%s/%s: write failed", dir, names[opened]);
    }
    for (int i = 0; i < opened; i++) {
        if (rc) cast_atomic_abort(&files[i]);
        else if (cast_atomic_commit(&files[i], err)) rc = -1;
    }
    for (int i = 0; i < 3; i++) cast_buf_free(&text[i]);
    return rc;
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
    if (out && write_outputs(out, &map, &err)) {
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
