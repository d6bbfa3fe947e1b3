/* The safetensors format: an 8-byte little-endian header length, a JSON
 * header {name: {dtype, shape, data_offsets}}, then the raw data. */
#ifndef CAST_MODEL_SAFETENSORS_H
#define CAST_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/file.h"
#include "tensor/half.h" /* the 16-bit conversions */

typedef enum { CAST_F32, CAST_F16, CAST_BF16, CAST_F64, CAST_I64, CAST_I32, CAST_I16, CAST_I8, CAST_U8, CAST_BOOL } cast_dtype;

#define CAST_MAX_DIMS 8

typedef struct cast_st_tensor {
    char *name;
    cast_dtype dtype;
    int ndim;
    int64_t shape[CAST_MAX_DIMS];
    int64_t numel;
    size_t begin, end; /* byte offsets into the data section */
} cast_st_tensor;

typedef struct cast_st_file {
    char *path;
    cast_mmap map;
    const uint8_t *data; /* start of the data section */
    size_t data_size;
    cast_st_tensor *tensors;
    int n;
} cast_st_file;

size_t cast_dtype_size(cast_dtype t);
const char *cast_dtype_name(cast_dtype t);
int cast_dtype_parse(const char *name, cast_dtype *out);

/* Parses and validates a header held in buf (the whole file or at least its
 * header): bounds, overlaps, sizes. On success *tensors (malloc'd, n entries)
 * and *data_start (offset of the data section in buf). */
int cast_st_parse(const uint8_t *buf, size_t size, const char *path, cast_st_tensor **tensors, int *n,
                  size_t *data_start, cast_err *err);
void cast_st_tensors_free(cast_st_tensor *t, int n);

int cast_st_open(cast_st_file *f, const char *path, cast_err *err);
/* The header only (names, dtypes, shapes, offsets checked against the file's
 * size); no data is read or mapped: f->data is NULL. Closed by cast_st_close. */
int cast_st_open_header(cast_st_file *f, const char *path, cast_err *err);
void cast_st_close(cast_st_file *f);
const cast_st_tensor *cast_st_find(const cast_st_file *f, const char *name);

/* Converts n stored values to f32. */
void cast_convert_to_f32(float *dst, const void *src, cast_dtype dtype, size_t n);

/* Writes a safetensors file atomically from f32 arrays (or 16-bit ones:
 * data NULL, half of half_type), storing each as dtype (F32, F16 or BF16). */
typedef struct cast_st_entry {
    const char *name;
    int ndim;
    int64_t shape[CAST_MAX_DIMS];
    const float *data;
    const uint16_t *half;
    cast_half half_type;
    int drop_after; /* half is a read-only file mapping: its pages go back to the kernel once written (cast_mmap_drop) */
} cast_st_entry;
int cast_st_write(const char *path, const cast_st_entry *entries, int n, cast_dtype dtype, cast_err *err);
/* The same with string metadata in "__metadata__": meta holds key, value,
 * key, value, ..., NULL (NULL meta: {"format": "pt"} only). */
int cast_st_write_meta(const char *path, const cast_st_entry *entries, int n, cast_dtype dtype, const char *const *meta,
                       cast_err *err);
/* The string value of key in the file's "__metadata__" (malloc'd), or NULL. */
char *cast_st_metadata(const cast_st_file *f, const char *key);

#endif
