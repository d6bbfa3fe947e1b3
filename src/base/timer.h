/* Wall-clock time and thread count. */
#ifndef CAST_BASE_TIMER_H
#define CAST_BASE_TIMER_H

double cast_now_s(void);          /* monotonic seconds */
double cast_peak_rss_mb(void);    /* the process's peak resident memory so far, MiB */
void cast_set_threads(int n);      /* OpenMP and OpenBLAS share one pool */
int cast_get_threads(void);

#endif
