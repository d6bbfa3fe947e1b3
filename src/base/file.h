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
/* Hands the whole pages inside [p, p + bytes) of such a mapping back to the
 * kernel: they reload from the page cache or the file when next read. Only
 * for values never written (a written page would revert to the file's). */
void cast_mmap_drop(const void *p, size_t bytes);

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
/* A set of files that belong together (a map's JSON, CSV and SVG): the folder
 * is created, every file written under a temporary name, and only when all
 * were written are they renamed in place; on a failure none is. */
typedef struct cast_named_text {
    const char *name;
    const char *data;
    size_t len;
} cast_named_text;
int cast_write_files_atomic(const char *dir, const cast_named_text *files, int n, cast_err *err);

int cast_file_exists(const char *path);
int cast_dir_exists(const char *path);
/* mkdir -p */
int cast_mkdirs(const char *path, cast_err *err);
/* Joins a folder and a name; free with free(). */
char *cast_path_join(const char *dir, const char *name);
/* Copies src to dst atomically. */
int cast_copy_file(const char *src, const char *dst, cast_err *err);

/* ---- output folders: never write into, over or around an input ------------- */

/* How path a relates to path b, compared by real path: symlinks resolved, and
 * for a path that does not exist yet, the real path of its deepest existing
 * ancestor with the rest appended ("." and ".." resolved by name). Two
 * existing paths with the same device and inode are the same (hard links). */
typedef enum {
    CAST_PATH_UNRELATED = 0,
    CAST_PATH_SAME,     /* a and b are the same file or folder */
    CAST_PATH_INSIDE,   /* a is inside folder b */
    CAST_PATH_CONTAINS, /* folder a contains b */
} cast_path_rel;
cast_path_rel cast_path_relation(const char *a, const char *b);

/* The absolute real path as above (malloc'd), or NULL when no ancestor resolves. */
char *cast_path_real(const char *path);

/* 1: an empty folder, 0: a folder with entries, -1: no folder there. */
int cast_dir_is_empty(const char *path);

/* rm -r: removes a file or a folder tree (symlinks removed, never followed). */
int cast_remove_tree(const char *path, cast_err *err);

/* Whole-folder replacement: cast_stage_dir creates an empty staging folder
 * beside final ("FINAL.tmp.<pid>", same parent so rename works; malloc'd in
 * *stage). cast_stage_commit swaps it in: final is renamed to FINAL.old.<pid>,
 * stage to final, then the old tree is removed; if the second rename fails the
 * old folder is put back. Until the commit, final is untouched. */
int cast_stage_dir(const char *final, char **stage, cast_err *err);
int cast_stage_commit(const char *final, const char *stage, cast_err *err);

#endif
