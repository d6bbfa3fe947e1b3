/* Small statistics for paired experiments over seeds: means with Student-t
 * 95 % intervals, percentiles, rank correlation. Pure functions of their
 * inputs. */
#ifndef CAST_BASE_STATS_H
#define CAST_BASE_STATS_H

/* Two-sided 95 % quantile of Student's t with df degrees of freedom
 * (t_{0.975, df}); exact table for df <= 30, Cornish-Fisher beyond. */
double cast_t975(int df);

/* Mean of x[0..n) and the half-width of its 95 % t interval (mean ± half).
 * n == 1: half = NaN (no interval from one value); n == 0: mean = NaN. */
void cast_mean_ci95(const double *x, int n, double *mean, double *half);

/* Sample standard deviation (n - 1 in the denominator; 0 for n < 2). */
double cast_sd(const double *x, int n);

/* Fraction of y[0..n) strictly below x, ties counted half (0..1). */
double cast_percentile_of(double x, const double *y, int n);

/* Spearman rank correlation (ties share their mean rank) over the pairs where
 * both values are finite; NaN with fewer than 3 such pairs or no variance.
 * *n_used (may be NULL) receives how many pairs were used. */
double cast_spearman(const double *x, const double *y, int n, int *n_used);

#endif
