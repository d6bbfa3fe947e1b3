/* The thread pool: OpenMP and OpenBLAS share one count. */
#ifndef CAST_BASE_THREADS_H
#define CAST_BASE_THREADS_H

void cast_set_threads(int n); /* n <= 0: leave as is (all cores, or OMP_NUM_THREADS) */
int cast_get_threads(void);

#endif
