#include "dist/dist.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

#ifdef CAST_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1, g_mpi = 0; /* g_mpi: MPI_Init was called here */
static int64_t g_bytes = 0;

int cast_dist_built(void) {
#ifdef CAST_MPI
    return 1;
#else
    return 0;
#endif
}

int cast_dist_rank(void) { return g_rank; }
int cast_dist_size(void) { return g_size; }
int64_t cast_dist_bytes(void) { return g_bytes; }

void cast_dist_range(int64_t n, int r, int size, int64_t *lo, int64_t *hi) {
    int64_t base = n / size, extra = n % size;
    *lo = r * base + (r < extra ? r : extra);
    *hi = *lo + base + (r < extra ? 1 : 0);
}

#ifdef CAST_MPI

static int launched_by_mpi(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

int cast_dist_init(int *argc, char ***argv) {
    if (!launched_by_mpi()) return 0;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) return -1;
    g_mpi = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    return 0;
}

void cast_dist_finalize(void) {
    if (g_mpi) MPI_Finalize();
    g_mpi = 0;
}

/* chunks below 2^31 elements: MPI counts are int */
enum { CHUNK = 1 << 30 };

static void sum(void *x, int64_t n, MPI_Datatype t, size_t elem) {
    if (g_size == 1) return;
    for (int64_t off = 0; off < n; off += CHUNK) {
        int count = (int)(n - off < CHUNK ? n - off : CHUNK);
        MPI_Allreduce(MPI_IN_PLACE, (char *)x + (size_t)off * elem, count, t, MPI_SUM, MPI_COMM_WORLD);
    }
    g_bytes += n * (int64_t)elem;
}

void cast_dist_sum_f32(float *x, int64_t n) { sum(x, n, MPI_FLOAT, sizeof *x); }
void cast_dist_sum_f64(double *x, int64_t n) { sum(x, n, MPI_DOUBLE, sizeof *x); }
void cast_dist_sum_i64(int64_t *x, int64_t n) { sum(x, n, MPI_INT64_T, sizeof *x); }
void cast_dist_sum_int(int *x, int64_t n) { sum(x, n, MPI_INT, sizeof *x); }

int cast_dist_max_int(int x) {
    if (g_size == 1) return x;
    MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    g_bytes += sizeof x;
    return x;
}

double cast_dist_max_f64(double x) {
    if (g_size == 1) return x;
    MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    g_bytes += sizeof x;
    return x;
}

void cast_dist_gather_f32(float *x, const int64_t *counts, const int64_t *displs) {
    if (g_size == 1) return;
    int *c = cast_xmalloc(sizeof(int) * (size_t)g_size * 2), *d = c + g_size;
    for (int r = 0; r < g_size; r++) {
        c[r] = (int)counts[r];
        d[r] = (int)displs[r];
    }
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, c, d, MPI_FLOAT, MPI_COMM_WORLD);
    g_bytes += counts[g_rank] * (int64_t)sizeof(float);
    free(c);
}

void cast_dist_bcast(void *x, size_t bytes, int root) {
    if (g_size == 1) return;
    for (size_t off = 0; off < bytes; off += CHUNK) {
        int count = (int)(bytes - off < CHUNK ? bytes - off : CHUNK);
        MPI_Bcast((char *)x + off, count, MPI_BYTE, root, MPI_COMM_WORLD);
    }
    if (g_rank == root) g_bytes += (int64_t)bytes;
}

void cast_dist_barrier(void) {
    if (g_size > 1) MPI_Barrier(MPI_COMM_WORLD);
}

void cast_dist_abort(int code) {
    if (g_mpi && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

#else /* a single process */

int cast_dist_init(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return 0;
}
void cast_dist_finalize(void) { (void)g_mpi; }
void cast_dist_sum_f32(float *x, int64_t n) { (void)x, (void)n; }
void cast_dist_sum_f64(double *x, int64_t n) { (void)x, (void)n; }
void cast_dist_sum_i64(int64_t *x, int64_t n) { (void)x, (void)n; }
void cast_dist_sum_int(int *x, int64_t n) { (void)x, (void)n; }
int cast_dist_max_int(int x) { return x; }
double cast_dist_max_f64(double x) { return x; }
void cast_dist_gather_f32(float *x, const int64_t *counts, const int64_t *displs) { (void)x, (void)counts, (void)displs; }
void cast_dist_bcast(void *x, size_t bytes, int root) { (void)x, (void)bytes, (void)root; }
void cast_dist_barrier(void) {}
void cast_dist_abort(int code) { exit(code); }

#endif
