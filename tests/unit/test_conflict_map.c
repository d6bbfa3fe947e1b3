/* The conflict map's combination, ranks, concentration and file round trip,
 * on hand-made inputs whose answers are known. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cast/diagnose.h"
#include "base/file.h"
#include "check.h"

static void make(cast_conflict_map *m, int L, int H, const double *cos, const double *oc, const double *fs, cast_combine_kind c) {
    memset(m, 0, sizeof *m);
    m->layers = L;
    m->heads = H;
    m->combine = c;
    m->stat = calloc((size_t)(L * H), sizeof *m->stat);
    for (int i = 0; i < L * H; i++) {
        m->stat[i].layer = i / H;
        m->stat[i].head = i % H;
        m->stat[i].cos_defined = !isnan(cos[i]);
        m->stat[i].cos = isnan(cos[i]) ? 0 : cos[i];
        m->stat[i].oc = oc[i];
        m->stat[i].fs = fs[i];
    }
}

int main(void) {
    /* product: OC~ and FS~ min-max normalised, score 0 where cos >= 0 or undefined */
    {
        double cos[] = {-0.5, -0.1, 0.3, NAN}, oc[] = {0.5, 0.1, 0.0, 0.0}, fs[] = {2.0, 4.0, 1.0, 3.0};
        cast_conflict_map m;
        make(&m, 2, 2, cos, oc, fs, CAST_COMBINE_PRODUCT);
        cast_conflict_map_score(&m);
        /* OC~ = {1, .2, 0, 0}; FS~ = {1/3, 1, 0, 2/3} */
        CHECK_NEAR(m.stat[0].score, 1.0 / 3.0, 1e-12);
        CHECK_NEAR(m.stat[1].score, 0.2, 1e-12);
        CHECK_NEAR(m.stat[2].score, 0.0, 0);
        CHECK_NEAR(m.stat[3].score, 0.0, 0);
        CHECK(m.stat[0].rank == 0 && m.stat[1].rank == 1);
        CHECK(m.stat[2].rank == 2 && m.stat[3].rank == 3); /* ties keep layer-major order */
        /* n = 4: top 5 % is one head, holding (1/3) / (1/3 + 0.2) */
        CHECK_NEAR(m.concentration, (1.0 / 3.0) / (1.0 / 3.0 + 0.2), 1e-12);
        cast_conflict_map_free(&m);
    }
    /* sum and rank */
    {
        double cos[] = {-0.5, -0.1, -0.2, -0.9}, oc[] = {0.5, 0.1, 0.2, 0.9}, fs[] = {1.0, 1.0, 3.0, 0.0};
        cast_conflict_map m;
        make(&m, 1, 4, cos, oc, fs, CAST_COMBINE_SUM);
        cast_conflict_map_score(&m);
        /* OC~ = {.5, 0, .125, 1}; FS~ = {1/3, 1/3, 1, 0} */
        CHECK_NEAR(m.stat[0].score, (0.5 + 1.0 / 3.0) / 2, 1e-12);
        CHECK_NEAR(m.stat[2].score, (0.125 + 1.0) / 2, 1e-12);
        CHECK(m.stat[2].rank == 0);
        m.combine = CAST_COMBINE_RANK;
        cast_conflict_map_score(&m);
        /* OC ranks {2,0,1,3}/3; FS ranks (ties share 0.5*(1+2)=1.5) {1.5,1.5,3,0}/3 */
        CHECK_NEAR(m.stat[0].score, (2.0 / 3 + 1.5 / 3) / 2, 1e-12);
        CHECK_NEAR(m.stat[1].score, (0.0 + 1.5 / 3) / 2, 1e-12);
        CHECK_NEAR(m.stat[2].score, (1.0 / 3 + 1.0) / 2, 1e-12);
        CHECK_NEAR(m.stat[3].score, (1.0 + 0.0) / 2, 1e-12);
        CHECK(m.stat[2].rank == 0 && m.stat[0].rank == 1 && m.stat[3].rank == 2 && m.stat[1].rank == 3);
        cast_conflict_map_free(&m);
    }
    /* equal values normalise to 0: nothing stands out */
    {
        double cos[] = {-0.5, -0.5}, oc[] = {0.5, 0.5}, fs[] = {1.0, 1.0};
        cast_conflict_map m;
        make(&m, 1, 2, cos, oc, fs, CAST_COMBINE_PRODUCT);
        cast_conflict_map_score(&m);
        CHECK(m.stat[0].score == 0 && m.stat[1].score == 0 && m.concentration == 0);
        cast_conflict_map_free(&m);
    }
    /* budgets: k = round(ratio * n); the top 5 % of the concentration holds at least one head */
    CHECK(cast_top_count(0.05, 270) == 14);
    CHECK(cast_top_count(0.05, 30) == 2);
    CHECK(cast_top_count(0.05, 4) == 0);
    CHECK(cast_top5_count(4) == 1 && cast_top5_count(270) == 14);
    CHECK(cast_top_count(0.0, 100) == 0);
    CHECK(cast_top_count(0.2, 16) == 3);
    /* concentration over 40 heads: the top 2 */
    {
        double cos[40], oc[40], fs[40];
        for (int i = 0; i < 40; i++) cos[i] = -0.5, oc[i] = i == 7 ? 1.0 : i == 9 ? 0.5 : i == 0 ? 0.1 : 0.2, fs[i] = i == 0 ? 0.0 : 2.0;
        cast_conflict_map m;
        make(&m, 4, 10, cos, oc, fs, CAST_COMBINE_PRODUCT);
        cast_conflict_map_score(&m);
        double total = 0;
        for (int i = 0; i < 40; i++) total += m.stat[i].score;
        CHECK(m.stat[7].rank == 0 && m.stat[9].rank == 1);
        CHECK_NEAR(m.concentration, (m.stat[7].score + m.stat[9].score) / total, 1e-12);
        CHECK_NEAR(m.concentration, (1.0 + 4.0 / 9) / (1.0 + 4.0 / 9 + 37.0 / 9), 1e-12);
        /* JSON round trip keeps every head's numbers */
        m.model_path = strdup("model");
        cast_buf b = {0};
        cast_conflict_map_json(&m, &b);
        const char *tmp = getenv("CAST_TEST_TMP");
        char dir[512], path[600];
        snprintf(dir, sizeof dir, "%s", tmp ? tmp : "/tmp");
        cast_err err;
        cast_mkdirs(dir, &err);
        snprintf(path, sizeof path, "%s/map_roundtrip.json", dir);
        CHECK(cast_write_file_atomic(path, b.data, b.len, &err) == 0);
        cast_conflict_map back;
        CHECK_MSG(cast_conflict_map_load(&back, path, &err) == 0, "%s", err.msg);
        int same = back.layers == 4 && back.heads == 10;
        for (int i = 0; same && i < 40; i++)
            same = back.stat[i].score == m.stat[i].score && back.stat[i].rank == m.stat[i].rank && back.stat[i].fs == m.stat[i].fs;
        CHECK(same);
        cast_conflict_map_free(&back);
        /* a map whose heads are out of order is refused */
        char *bad = strstr(b.data, "{\"layer\": 0, \"head\": 1");
        CHECK(bad != NULL);
        if (bad) bad[21] = '5';
        CHECK(cast_write_file_atomic(path, b.data, b.len, &err) == 0);
        CHECK(cast_conflict_map_load(&back, path, &err) == -1 && strstr(err.msg, "layer-major") != NULL);
        cast_buf_free(&b);
        cast_conflict_map_free(&m);
    }
    {
        /* hostile maps (inputs found while fuzzing, tests/fuzz): one-line errors */
        static const struct { const char *json, *needle; } bad[] = {
            {"{\"model\": {\"layers\": 4294967296, \"heads\": 4294967296}, \"heads\": []}", "must be 1 to 2^20 each"},
            {"{\"model\": {\"layers\": 1, \"heads\": 1}, \"heads\": [{\"layer\": 0, \"head\": 0, \"score\": 1, \"rank\": 4294967296}]}",
             "\"rank\" 4294967296 is out of range (0 to 0)"},
            {"{\"model\": {\"layers\": 1, \"heads\": 1, \"kv_heads\": -1}, \"heads\": [{\"layer\": 0, \"head\": 0, \"score\": 1}]}",
             "\"kv_heads\" -1 is out of range"},
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            cast_conflict_map m;
            cast_err err = {0};
            CHECK_MSG(cast_conflict_map_parse(&m, bad[i].json, strlen(bad[i].json), "map.json", &err) == -1 &&
                          strstr(err.msg, "map.json: ") == err.msg && strstr(err.msg, bad[i].needle),
                      "%s: %s", bad[i].json, err.msg);
        }
        /* numbers beyond long long are written as JSON numbers, not through an undefined cast */
        cast_buf b = {0};
        cast_buf_json_number(&b, -5.5e125);
        cast_buf_putc(&b, ' ');
        cast_buf_json_number(&b, 1e19);
        cast_buf_putc(&b, ' ');
        cast_buf_json_number(&b, -42);
        CHECK_MSG(strcmp(b.data, "-5.5e+125 1e+19 -42") == 0, "%s", b.data);
        cast_buf_free(&b);
    }
    return check_report();
}
