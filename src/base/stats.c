#include "base/stats.h"

#include <math.h>
#include <stdlib.h>

#include "base/buf.h"

/* t_{0.975, df} for df = 1..30 (standard tables). */
static const double t975_table[30] = {12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
                                      2.2010,  2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
                                      2.0796,  2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423};

double cast_t975(int df) {
    if (df < 1) return NAN;
    if (df <= 30) return t975_table[df - 1];
    /* Cornish-Fisher expansion of t around the normal quantile: error < 1e-4 for df > 30 */
    const double z = 1.959963984540054, z3 = z * z * z, z5 = z3 * z * z, n = df;
    return z + (z3 + z) / (4 * n) + (5 * z5 + 16 * z3 + 3 * z) / (96 * n * n);
}

double cast_sd(const double *x, int n) {
    if (n < 2) return 0;
    double m = 0, q = 0;
    for (int i = 0; i < n; i++) m += x[i];
    m /= n;
    for (int i = 0; i < n; i++) q += (x[i] - m) * (x[i] - m);
    return sqrt(q / (n - 1));
}

void cast_mean_ci95(const double *x, int n, double *mean, double *half) {
    double m = 0;
    for (int i = 0; i < n; i++) m += x[i];
    *mean = n ? m / n : NAN;
    *half = n > 1 ? cast_t975(n - 1) * cast_sd(x, n) / sqrt((double)n) : NAN;
}

double cast_percentile_of(double x, const double *y, int n) {
    if (n <= 0) return NAN;
    double below = 0;
    for (int i = 0; i < n; i++) below += y[i] < x ? 1.0 : y[i] == x ? 0.5 : 0.0;
    return below / n;
}

typedef struct ranked {
    double v;
    int i;
} ranked;

static int by_value(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return x->i - y->i;
}

/* Ascending ranks from 0, ties sharing their mean rank. */
static void ranks(const double *v, int n, double *out) {
    ranked *s = cast_xmalloc(sizeof *s * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) s[i] = (ranked){v[i], i};
    qsort(s, (size_t)n, sizeof *s, by_value);
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && s[j + 1].v == s[i].v) j++;
        for (int k = i; k <= j; k++) out[s[k].i] = 0.5 * (i + j);
        i = j + 1;
    }
    free(s);
}

double cast_spearman(const double *x, const double *y, int n, int *n_used) {
    double *xs = cast_xmalloc(sizeof(double) * (size_t)(n ? n : 1)), *ys = cast_xmalloc(sizeof(double) * (size_t)(n ? n : 1));
    int m = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(x[i]) && isfinite(y[i])) xs[m] = x[i], ys[m] = y[i], m++;
    if (n_used) *n_used = m;
    double rho = NAN;
    if (m >= 3) {
        double *rx = cast_xmalloc(sizeof(double) * (size_t)m), *ry = cast_xmalloc(sizeof(double) * (size_t)m);
        ranks(xs, m, rx);
        ranks(ys, m, ry);
        double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < m; i++) mx += rx[i] / m, my += ry[i] / m;
        for (int i = 0; i < m; i++) {
            sxy += (rx[i] - mx) * (ry[i] - my);
            sxx += (rx[i] - mx) * (rx[i] - mx);
            syy += (ry[i] - my) * (ry[i] - my);
        }
        if (sxx > 0 && syy > 0) rho = sxy / sqrt(sxx * syy);
        free(rx);
        free(ry);
    }
    free(xs);
    free(ys);
    return rho;
}
