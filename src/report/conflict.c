#include "report/conflict.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/file.h"
#include "report/svg.h"

/* The three heatmaps of the map: score, cos and FS, top 5 % outlined. */
void cast_conflict_map_svg(const cast_conflict_map *map, cast_buf *out) {
    int n = map->layers * map->heads;
    double *score = cast_xmalloc(sizeof(double) * (size_t)n), *cos = cast_xmalloc(sizeof(double) * (size_t)n),
           *fs = cast_xmalloc(sizeof(double) * (size_t)n);
    int *top = cast_xcalloc((size_t)n, sizeof(int));
    /* the top 5 % of units: with k/v-group units, whole groups of per_unit heads */
    int per_unit = cast_map_unit_heads(map), k = cast_top5_count(n / per_unit) * per_unit;
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
    char fs_title[64], caption[640], null_text[128] = "";
    snprintf(fs_title, sizeof fs_title, "functional sensitivity (%s)", cast_fs_name(map->fs));
    if (map->null_permutations > 0)
        snprintf(null_text, sizeof null_text, " (FS-permutation null: mean %.0f%%, p = %.3g)", 100 * map->concentration_null_mean,
                 map->concentration_null_p);
    snprintf(caption, sizeof caption,
             "%s: outlined = top 5%% (%d heads) by score; top 5%% hold %.0f%% of the total score%s. oc=%s, combine=%s, "
             "kv_in_score=%d, unit=%s.",
             map->model_path, k, 100 * map->concentration, null_text, cast_oc_name(map->oc), cast_combine_name(map->combine),
             map->kv_in_score, cast_unit_name(map->unit));
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
int cast_conflict_map_write(const cast_conflict_map *map, const char *dir, cast_err *err) {
    cast_buf text[3] = {{0}};
    cast_conflict_map_json(map, &text[0]);
    cast_conflict_map_csv(map, &text[1]);
    cast_conflict_map_svg(map, &text[2]);
    const cast_named_text files[3] = {{"conflict_map.json", text[0].data, text[0].len},
                                      {"conflict_map.csv", text[1].data, text[1].len},
                                      {"conflict_map.svg", text[2].data, text[2].len}};
    int rc = cast_write_files_atomic(dir, files, 3, err);
    for (int i = 0; i < 3; i++) cast_buf_free(&text[i]);
    return rc;
}

