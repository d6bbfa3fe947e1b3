/* The study's statistics: t quantiles against published values, the coverage
 * of the 95 % interval by simulation, percentiles, Spearman with ties and NaN pairs. */
#include <math.h>

#include "base/rng.h"
#include "check.h"
#include "base/stats.h"

static void test_t_quantiles(void) {
    /* published two-sided 95 % values, beyond the table (Cornish-Fisher) and in it */
    CHECK_NEAR(cast_t975(1), 12.7062, 1e-4);
    CHECK_NEAR(cast_t975(4), 2.7764, 1e-4);
    CHECK_NEAR(cast_t975(9), 2.2622, 1e-4);
    CHECK_NEAR(cast_t975(40), 2.0211, 2e-4);
    CHECK_NEAR(cast_t975(60), 2.0003, 2e-4);
    CHECK_NEAR(cast_t975(120), 1.9799, 2e-4);
    CHECK_NEAR(cast_t975(100000), 1.95998, 1e-4);
    CHECK(isnan(cast_t975(0)));
    for (int df = 1; df < 200; df++) CHECK_MSG(cast_t975(df + 1) < cast_t975(df), "t975 not decreasing at df %d", df);
}

/* The interval covers the true mean of normal samples 95 % of the time, for
 * small n where a normal quantile would under-cover. */
static void test_coverage(void) {
    cast_rng r;
    cast_rng_seed(&r, 11);
    const int reps = 20000;
    for (int n = 3; n <= 10; n += 7) {
        int covered = 0;
        for (int k = 0; k < reps; k++) {
            double x[10], m, h;
            for (int i = 0; i < n; i++) x[i] = 5 + 2 * cast_rng_normal(&r);
            cast_mean_ci95(x, n, &m, &h);
            covered += fabs(m - 5) <= h;
        }
        double c = (double)covered / reps;
        CHECK_MSG(fabs(c - 0.95) < 0.006, "coverage %.4f at n %d", c, n);
    }
    double one = 3, m, h;
    cast_mean_ci95(&one, 1, &m, &h);
    CHECK(m == 3 && isnan(h));
    cast_mean_ci95(&one, 0, &m, &h);
    CHECK(isnan(m));
}

static void test_percentile(void) {
    double y[] = {1, 2, 3, 4};
    CHECK_NEAR(cast_percentile_of(2.5, y, 4), 0.5, 0);
    CHECK_NEAR(cast_percentile_of(3, y, 4), 0.625, 0);
    CHECK_NEAR(cast_percentile_of(0, y, 4), 0, 0);
    CHECK_NEAR(cast_percentile_of(9, y, 4), 1, 0);
    CHECK(isnan(cast_percentile_of(1, y, 0)));
    double sd_in[] = {2, 4, 4, 4, 5, 5, 7, 9};
    CHECK_NEAR(cast_sd(sd_in, 8), sqrt(32.0 / 7), 1e-12);
}

static void test_spearman(void) {
    double x[] = {1, 2, 3, 4, 5}, y[] = {10, 20, 30, 40, 50}, yr[] = {5, 4, 3, 2, 1};
    int n;
    CHECK_NEAR(cast_spearman(x, y, 5, &n), 1, 1e-12);
    CHECK(n == 5);
    CHECK_NEAR(cast_spearman(x, yr, 5, NULL), -1, 1e-12);
    /* ties share the mean rank: ranks (0.5, 0.5, 2, 3) vs (0, 1, 2, 3) */
    double tx[] = {7, 7, 8, 9}, ty[] = {1, 2, 3, 4};
    double rx[] = {0.5, 0.5, 2, 3}, ry[] = {0, 1, 2, 3}, mx = 1.5, my = 1.5, sxy = 0, sxx = 0, syy = 0;
    for (int i = 0; i < 4; i++) sxy += (rx[i] - mx) * (ry[i] - my), sxx += (rx[i] - mx) * (rx[i] - mx), syy += (ry[i] - my) * (ry[i] - my);
    CHECK_NEAR(cast_spearman(tx, ty, 4, NULL), sxy / sqrt(sxx * syy), 1e-12);
    /* NaN pairs are left out; fewer than 3 pairs or a constant column: NaN */
    double nx[] = {1, NAN, 3, 4}, ny[] = {4, 0, 2, 1};
    CHECK_NEAR(cast_spearman(nx, ny, 4, &n), -1, 1e-12);
    CHECK(n == 3);
    CHECK(isnan(cast_spearman(x, y, 2, NULL)));
    double c[] = {2, 2, 2, 2, 2};
    CHECK(isnan(cast_spearman(x, c, 5, NULL)));
}

int main(void) {
    test_t_quantiles();
    test_coverage();
    test_percentile();
    test_spearman();
    return check_report();
}
