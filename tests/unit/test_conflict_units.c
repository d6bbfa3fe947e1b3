/* The conflict map's variants on hand-made inputs: the concentration null
 * (a map whose OC and FS sit on the same heads gets a small p, one where they
 * sit apart a large one; deterministic in the seed), k/v-group units (ranks,
 * whole-group selection and its rounding) and the map reader's refusals. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "cast/diagnose.h"
#include "cast/select.h"
#include "check.h"

static void make(cast_conflict_map *m, int L, int H, int K, const double *cos, const double *oc, const double *fs) {
    memset(m, 0, sizeof *m);
    m->model_path = strdup("hand-made");
    m->layers = L;
    m->heads = H;
    m->kv_heads = K;
    m->stat = calloc((size_t)(L * H), sizeof *m->stat);
    for (int i = 0; i < L * H; i++) {
        m->stat[i].layer = i / H;
        m->stat[i].head = i % H;
        m->stat[i].cos_defined = 1;
        m->stat[i].cos = cos[i];
        m->stat[i].oc = oc[i];
        m->stat[i].fs = fs[i];
    }
}

/* 40 conflicting heads, OC rising with the index; FS 1 on two heads, 0.05 to
 * 0.15 elsewhere: on the two highest-OC heads (aligned) or the two lowest (apart). */
static void null_map(cast_conflict_map *m, int aligned) {
    double cos[40], oc[40], fs[40];
    for (int i = 0; i < 40; i++) {
        cos[i] = -(0.1 + 0.9 * i / 39.0);
        oc[i] = -cos[i];
        fs[i] = 0.05 + 0.1 * ((i * 7) % 40) / 39.0;
    }
    fs[aligned ? 38 : 0] = fs[aligned ? 39 : 1] = 1.0;
    make(m, 4, 10, 10, cos, oc, fs);
    cast_conflict_map_score(m);
}

static const char *write_text(const char *name, const char *text) {
    static char path[600];
    const char *tmp = getenv("CAST_TEST_TMP");
    cast_err err;
    cast_mkdirs(tmp ? tmp : "/tmp", &err);
    snprintf(path, sizeof path, "%s/%s", tmp ? tmp : "/tmp", name);
    CHECK(cast_write_file_atomic(path, text, strlen(text), &err) == 0);
    return path;
}

int main(void) {
    /* the null: aligned OC and FS -> small p, apart -> large p */
    {
        cast_conflict_map a, b;
        null_map(&a, 1);
        null_map(&b, 0);
        cast_conflict_map_null(&a, 1000, 7);
        cast_conflict_map_null(&b, 1000, 7);
        printf("aligned: observed %.3f, null mean %.3f, p %.4f; apart: observed %.3f, null mean %.3f, p %.4f\n", a.concentration,
               a.concentration_null_mean, a.concentration_null_p, b.concentration, b.concentration_null_mean,
               b.concentration_null_p);
        CHECK_MSG(a.concentration_null_p <= 0.02, "aligned p %g (observed %g, null mean %g)", a.concentration_null_p,
                  a.concentration, a.concentration_null_mean);
        CHECK(a.concentration > a.concentration_null_mean);
        CHECK_MSG(b.concentration_null_p >= 0.5, "apart p %g (observed %g, null mean %g)", b.concentration_null_p,
                  b.concentration, b.concentration_null_mean);
        /* the null does not depend on how FS was arranged: same FS values, same OC */
        CHECK_NEAR(a.concentration_null_mean, b.concentration_null_mean, 0.02);
        /* p = (1 + #{null >= observed}) / (1 + R): a multiple of 1/1001 in [1/1001, 1] */
        double count = a.concentration_null_p * 1001 - 1;
        CHECK(fabs(count - round(count)) < 1e-9 && count >= 0 && count <= 1000);
        /* deterministic in the seed, and the seed matters */
        double p = a.concentration_null_p, mean = a.concentration_null_mean;
        cast_conflict_map_null(&a, 1000, 7);
        CHECK(a.concentration_null_p == p && a.concentration_null_mean == mean);
        cast_conflict_map_null(&a, 1000, 8);
        CHECK(a.concentration_null_mean != mean);
        /* R = 0: no null */
        cast_conflict_map_null(&a, 0, 7);
        CHECK(isnan(a.concentration_null_p) && isnan(a.concentration_null_mean) && a.null_permutations == 0);
        /* every score 0 (no conflict): observed 0, every null 0 >= 0 -> p = 1 */
        for (int i = 0; i < 40; i++) b.stat[i].cos = 0.2;
        cast_conflict_map_score(&b);
        cast_conflict_map_null(&b, 50, 1);
        CHECK(b.concentration == 0 && b.concentration_null_p == 1.0);
        cast_conflict_map_free(&a);
        cast_conflict_map_free(&b);
    }
    /* group units: 2 layers x 6 heads, 2 k/v groups of 3; every head carries its group's numbers */
    {
        /* OC~ = {0.25, 1, 1, 0}, FS~ = {0.5, 1, 1, 0}: group scores {0.125, 1, 1, 0}; (0,1) before (1,0)
         * (tie, layer-major) */
        double gcos[] = {-0.3, -0.9, -0.9, -0.1}, goc[] = {0.3, 0.9, 0.9, 0.1}, gfs[] = {2, 3, 3, 1};
        double cos[12], oc[12], fs[12];
        for (int i = 0; i < 12; i++) cos[i] = gcos[i / 3], oc[i] = goc[i / 3], fs[i] = gfs[i / 3];
        cast_conflict_map m;
        make(&m, 2, 6, 2, cos, oc, fs);
        m.unit = CAST_UNIT_GROUP;
        CHECK(cast_map_unit_heads(&m) == 3);
        cast_conflict_map_score(&m);
        int want_rank[12] = {6, 7, 8, 0, 1, 2, 3, 4, 5, 9, 10, 11};
        int ranks_ok = 1;
        for (int i = 0; i < 12; i++) ranks_ok &= m.stat[i].rank == want_rank[i];
        CHECK(ranks_ok);
        /* the top 5 % of 4 groups is one group: 1 / (0.125 + 1 + 1) */
        CHECK_NEAR(m.concentration, 1.0 / 2.125, 1e-12);
        /* budgets round to whole groups: nearest, halves up, at least one */
        CHECK(cast_select_count(&m, CAST_STRATEGY_CAST, 1) == 3);
        CHECK(cast_select_count(&m, CAST_STRATEGY_CAST, 4) == 3);
        CHECK(cast_select_count(&m, CAST_STRATEGY_CAST, 5) == 6);
        CHECK(cast_select_count(&m, CAST_STRATEGY_OC, 12) == 12);
        CHECK(cast_select_count(&m, CAST_STRATEGY_CAST, 0) == 0);
        CHECK(cast_select_count(&m, CAST_STRATEGY_RANDOM, 4) == 4); /* random does not read the map */
        int skip[12];
        cast_err err;
        CHECK(cast_select_heads(&m, 2, 6, CAST_STRATEGY_CAST, 6, 0, skip, &err) == 0);
        CHECK(skip[0] == 3 && skip[1] == 4 && skip[2] == 5 && skip[3] == 6 && skip[4] == 7 && skip[5] == 8);
        CHECK(cast_select_heads(&m, 2, 6, CAST_STRATEGY_CAST, 4, 0, skip, &err) == -1 && strstr(err.msg, "whole groups"));
        /* inverse: conflicting groups first, lowest score first -> group (1,1) */
        CHECK(cast_select_heads(&m, 2, 6, CAST_STRATEGY_INVERSE, 3, 0, skip, &err) == 0);
        CHECK(skip[0] == 9 && skip[1] == 10 && skip[2] == 11);

        /* the file round trip keeps the unit and the null; the reader refuses what it cannot use */
        cast_conflict_map_null(&m, 100, 3);
        cast_buf b = {0};
        cast_conflict_map_json(&m, &b);
        const char *path = write_text("map_group.json", b.data);
        cast_conflict_map back;
        CHECK_MSG(cast_conflict_map_load(&back, path, &err) == 0, "%s", err.msg);
        CHECK(back.unit == CAST_UNIT_GROUP && back.null_permutations == 100 && back.seed == 3);
        CHECK(back.concentration_null_p == m.concentration_null_p && back.concentration_null_mean == m.concentration_null_mean);
        CHECK(cast_select_count(&back, CAST_STRATEGY_CAST, 2) == 3);
        cast_conflict_map_free(&back);
        char *text = strdup(b.data), *u = strstr(text, "\"unit\": \"group\"");
        CHECK(u != NULL);
        if (u) memcpy(u, "\"unit\": \"grope\"", 15);
        path = write_text("map_bad_unit.json", text);
        CHECK(cast_conflict_map_load(&back, path, &err) == -1 && strstr(err.msg, "settings.unit \"grope\""));
        strcpy(text, b.data);
        char *o = strstr(text, "\"oc\": \"neg\"");
        CHECK(o != NULL);
        if (o) memcpy(o, "\"oc\": \"nex\"", 11);
        path = write_text("map_bad_oc.json", text);
        CHECK(cast_conflict_map_load(&back, path, &err) == -1 && strstr(err.msg, "settings.oc \"nex\""));
        /* a group map whose heads disagree within a group cannot be selected by whole groups */
        strcpy(text, b.data);
        char *h = strstr(text, "{\"layer\": 0, \"head\": 1,");
        char *sc = h ? strstr(h, "\"score\": ") : NULL;
        CHECK(sc != NULL);
        if (sc) sc[9] = sc[9] == '0' ? '1' : '0';
        path = write_text("map_bad_group.json", text);
        CHECK(cast_conflict_map_load(&back, path, &err) == -1 && strstr(err.msg, "k/v group"));
        free(text);
        cast_buf_free(&b);
        cast_conflict_map_free(&m);
    }
    /* trajectory maps: conflict means a positive rise (OC > 0), whatever cos says; rise round-trips */
    {
        double cos[] = {0.5, -0.5, 0.2, 0.1}, oc[] = {0.3, 0.0, 0.1, 0.0}, fs[] = {4, 3, 2, 1};
        cast_conflict_map m;
        make(&m, 1, 4, 4, cos, oc, fs);
        m.oc = CAST_OC_TRAJECTORY;
        m.stat[0].rise = 0.3, m.stat[1].rise = -0.2, m.stat[2].rise = 0.1, m.stat[3].rise = 0.0;
        cast_conflict_map_score(&m);
        CHECK(m.stat[0].score > 0 && m.stat[1].score == 0 && m.stat[3].score == 0);
        CHECK(cast_head_conflicts(&m, &m.stat[0]) && !cast_head_conflicts(&m, &m.stat[1]));
        cast_buf b = {0};
        cast_conflict_map_json(&m, &b);
        CHECK(strstr(b.data, "\"rise\": -0.2") != NULL);
        cast_conflict_map back;
        cast_err err;
        CHECK_MSG(cast_conflict_map_load(&back, write_text("map_traj.json", b.data), &err) == 0, "%s", err.msg);
        CHECK(back.oc == CAST_OC_TRAJECTORY && back.stat[1].rise == -0.2);
        cast_conflict_map_free(&back);
        cast_buf_free(&b);
        cast_conflict_map_free(&m);
    }
    return check_report();
}
