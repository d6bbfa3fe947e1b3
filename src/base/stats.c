#include "base/stats.h"

#include <math.h>

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
