/* Measurements of the process: wall-clock time, peak memory. */
#ifndef CAST_BASE_TIMER_H
#define CAST_BASE_TIMER_H

double cast_now_s(void);          /* monotonic seconds */
double cast_peak_rss_mb(void);    /* the process's peak resident memory so far, MiB */

#endif
