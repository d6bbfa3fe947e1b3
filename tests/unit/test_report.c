/* The pictures: conflict-map heatmaps at 4 x 16 and 32 x 32 heads, and the
 * trade-off scatter plot, are complete, well-formed SVG with one cell per
 * head and the top heads outlined. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/rng.h"
#include "check.h"
#include "report/conflict.h"
#include "report/svg.h"

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static void random_map(cast_conflict_map *m, int L, int H, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->model_path = strdup("model");
    m->layers = L;
    m->heads = H;
    m->stat = calloc((size_t)(L * H), sizeof *m->stat);
    cast_rng r;
    cast_rng_seed(&r, seed);
    for (int i = 0; i < L * H; i++) {
        cast_head_stat *s = &m->stat[i];
        s->layer = i / H;
        s->head = i % H;
        s->cos_defined = i != 3; /* one undefined cos: drawn hatched */
        s->cos = 2 * cast_rng_uniform(&r) - 1;
        s->oc = s->cos < 0 ? -s->cos : 0;
        s->fs = cast_rng_uniform(&r);
    }
    cast_conflict_map_score(m);
}

int main(void) {
    const char *tmp = getenv("CAST_TEST_TMP");
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tmp ? tmp : "/tmp/cast-test-report");
    cast_err err;
    CHECK(cast_mkdirs(dir, &err) == 0);
    int shapes[2][2] = {{4, 16}, {32, 32}};
    for (int s = 0; s < 2; s++) {
        int L = shapes[s][0], H = shapes[s][1], n = L * H;
        cast_conflict_map m;
        random_map(&m, L, H, (uint64_t)s + 1);
        cast_buf b = {0};
        cast_conflict_map_svg(&m, &b);
        CHECK(b.len > 0 && !strncmp(b.data, "<svg", 4) && strstr(b.data, "</svg>\n") == b.data + b.len - 7);
        /* three panels of n cells, each cell with a tooltip */
        CHECK_MSG(count(b.data, "<title>layer ") == 3 * n, "%d tooltips for %d heads", count(b.data, "<title>layer "), n);
        CHECK(count(b.data, "undefined</title>") == 1);
        /* the top 5 % outlined in each panel */
        int top = 0;
        for (int i = 0; i < n; i++) top += m.stat[i].rank < cast_top5_count(n) && m.stat[i].score > 0;
        CHECK(count(b.data, "stroke=\"black\" stroke-width=\"2\"") == 3 * top);
        CHECK(count(b.data, "<svg") == 1 && count(b.data, "<g ") == count(b.data, "</g>"));
        /* files: all three written, nothing else left behind */
        char sub[600];
        snprintf(sub, sizeof sub, "%s/map%d", dir, s);
        CHECK(cast_conflict_map_write(&m, sub, &err) == 0);
        char *p = cast_path_join(sub, "conflict_map.svg");
        CHECK(cast_file_exists(p));
        free(p);
        cast_buf_free(&b);
        cast_conflict_map_free(&m);
    }
    /* the scatter plot: a point per run with its tooltip, a legend entry per series */
    double x1[] = {0.0}, y1[] = {0.0}, x2[] = {7.3, 7.4, NAN}, y2[] = {91.9, 94.4, 50};
    const char *labels[] = {"a", "b", "c"};
    cast_series series[] = {{"base", x1, y1, 1, NULL}, {"cast", x2, y2, 3, labels}};
    cast_plot plot = {"trade-off", "x", "y", series, 2};
    cast_buf b = {0};
    cast_svg_scatter(&b, &plot);
    CHECK(count(b.data, "<circle") == 1 + 2 + 2); /* non-finite points are left out; one legend dot per series */
    CHECK(strstr(b.data, "<title>cast b: x 7.4, y 94.4</title>") != NULL);
    cast_buf_free(&b);
    return check_report();
}
