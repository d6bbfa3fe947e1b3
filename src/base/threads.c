#include "base/threads.h"

#include <omp.h>

void openblas_set_num_threads(int);

void cast_set_threads(int n) {
    if (n <= 0) return;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int cast_get_threads(void) { return omp_get_max_threads(); }
