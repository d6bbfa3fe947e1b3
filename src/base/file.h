/* Files: whole-file reads (gzip detected by magic), read-only mappings,
 * atomic writes (temporary name in the same folder, renamed when complete). */
#ifndef CAST_BASE_FILE_H
#define CAST_BASE_FILE_H

#include <stddef.h>
#include <stdio.h>

#include "base/error.h"

/* Reads the whole file; gzip content is inflated transparently. *out is
 * NUL-terminated (not counted in *len). Free with free(). */
int cast_read_file(const char *path, char **out, size_t *len, cast_err *err);

/* A private, writable (copy-on-write) mapping of a whole file. */
typedef struct cast_mmap {
    void *data;
    size_t size;
} cast_mmap;

int cast_mmap_open(cast_mmap *m, const char *path, cast_err *err);
void cast_mmap_close(cast_mmap *m);

/* Atomic output: write through ->fp, then commit (fsync + rename) or abort. */
typedef struct cast_atomic {
    FILE *fp;
    char *path;
    char *tmp_path;
} cast_atomic;

int cast_atomic_open(cast_atomic *a, const char *path, cast_err *err);
int cast_atomic_commit(cast_atomic *a, cast_err *err);
void cast_atomic_abort(cast_atomic *a);
/* Whole buffer to path, atomically. */
int cast_write_file_atomic(const char *path, const void *data, size_t len, cast_err *err);

int cast_file_exists(const char *path);
int cast_dir_exists(const char *path);
/* mkdir -p */
int cast_mkdirs(const char *path, cast_err *err);
/* Joins a folder and a name; free with free(). */
char *cast_path_join(const char *dir, const char *name);
/* Copies src to dst atomically. */
int cast_copy_file(const char *src, const char *dst, cast_err *err);

#endif
