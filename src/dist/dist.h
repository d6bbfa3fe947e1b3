/* Data parallelism over MPI (Open MPI in practice), or a single process.
 *
 * Every call site is the same with and without MPI: a build without it
 * (-DCAST_MPI=OFF) and a process not started by mpirun see rank 0 of 1, and
 * every collective is then a no-op. The library shards work with
 * cast_dist_mine() and sums partial results with cast_dist_sum_*; it never
 * aborts: a failing rank returns its error up, and the program (the CLI)
 * ends the job with cast_dist_abort(). */
#ifndef CAST_DIST_DIST_H
#define CAST_DIST_DIST_H

#include <stddef.h>
#include <stdint.h>

/* MPI_Init when the process was started by an MPI launcher (mpirun sets
 * OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK), nothing otherwise: a plain
 * `cast ...` never touches MPI. Returns 0, or -1 when MPI fails to start. */
int cast_dist_init(int *argc, char ***argv);
void cast_dist_finalize(void);
int cast_dist_rank(void);
int cast_dist_size(void);
/* 1 when built with MPI (whether or not this process runs under it) */
int cast_dist_built(void);

/* The deterministic shard of a loop: item i (a micro-batch, a generation
 * batch) belongs to rank i mod size. */
static inline int cast_dist_mine(int64_t i) { return (int)(i % cast_dist_size()) == cast_dist_rank(); }

/* In-place sums over all ranks (MPI_Allreduce, split into chunks below 2^31
 * elements). Every rank passes the same n. */
void cast_dist_sum_f32(float *x, int64_t n);
void cast_dist_sum_f64(double *x, int64_t n);
void cast_dist_sum_i64(int64_t *x, int64_t n);
void cast_dist_sum_int(int *x, int64_t n);
/* The largest value over all ranks (error flags, maxima). */
int cast_dist_max_int(int x);
double cast_dist_max_f64(double x);

/* x[0, n) is split into one contiguous range per rank (counts[r] elements at
 * displs[r]); each rank fills its own range, and afterwards every rank holds
 * every range (MPI_Allgatherv in place). */
void cast_dist_gather_f32(float *x, const int64_t *counts, const int64_t *displs);
void cast_dist_bcast(void *x, size_t bytes, int root);
void cast_dist_barrier(void);

/* The range [*lo, *hi) of n items that rank r owns when n is split into
 * size contiguous ranges as even as can be. */
void cast_dist_range(int64_t n, int r, int size, int64_t *lo, int64_t *hi);

/* Ends every rank of the job with status code, at once (MPI_Abort), or
 * exits this process when it runs alone. For the program, never the library. */
void cast_dist_abort(int code) __attribute__((noreturn));

/* Bytes this process has sent through collectives since start (for the
 * benchmark's communication volume): Σ of each call's payload. */
int64_t cast_dist_bytes(void);

#endif
