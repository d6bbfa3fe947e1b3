#include "model/safetensors.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/buf.h"
#include "base/json.h"

static const struct {
    const char *name;
    cast_dtype t;
    size_t size;
} dtypes[] = {
    {"F32", CAST_F32, 4}, {"F16", CAST_F16, 2}, {"BF16", CAST_BF16, 2}, {"F64", CAST_F64, 8}, {"I64", CAST_I64, 8},
    {"I32", CAST_I32, 4}, {"I16", CAST_I16, 2}, {"I8", CAST_I8, 1},     {"U8", CAST_U8, 1},   {"BOOL", CAST_BOOL, 1},
};

size_t cast_dtype_size(cast_dtype t) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (dtypes[i].t == t) return dtypes[i].size;
    return 0;
}

const char *cast_dtype_name(cast_dtype t) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (dtypes[i].t == t) return dtypes[i].name;
    return "?";
}

int cast_dtype_parse(const char *name, cast_dtype *out) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (!strcmp(dtypes[i].name, name)) {
            *out = dtypes[i].t;
            return 0;
        }
    return -1;
}

void cast_st_tensors_free(cast_st_tensor *t, int n) {
    for (int i = 0; i < n; i++) free(t[i].name);
    free(t);
}

static int by_begin(const void *a, const void *b) {
    const cast_st_tensor *x = *(const cast_st_tensor *const *)a, *y = *(const cast_st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* Largest header we accept (the format's own limit is 100 MB). */
#define MAX_HEADER (100u << 20)

int cast_st_parse(const uint8_t *buf, size_t size, const char *path, cast_st_tensor **tensors, int *n,
                  size_t *data_start, cast_err *err) {
    *tensors = NULL;
    *n = 0;
    if (size < 8) return cast_fail(err, "%s: file too short for a safetensors header", path);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > size - 8) return cast_fail(err, "%s: header length %llu runs past the end of the file (%zu bytes)", path,
                                          (unsigned long long)hlen, size);
    if (hlen > MAX_HEADER) return cast_fail(err, "%s: header length %llu is too large", path, (unsigned long long)hlen);
    cast_json *j = cast_json_parse((const char *)buf + 8, (size_t)hlen, path, err);
    if (!j) return -1;
    size_t data_size = size - 8 - (size_t)hlen;
    int count = 0;
    for (cast_json *m = cast_json_first(j); m; m = cast_json_next(m)) count++;
    cast_st_tensor *t = cast_xcalloc((size_t)count + 1, sizeof *t);
    cast_st_tensor **order = cast_xcalloc((size_t)count + 1, sizeof *order);
    int k = 0, rc = -1;
    if (!cast_json_is_object(j)) {
        cast_fail(err, "%s: header is not a JSON object", path);
        goto done;
    }
    for (cast_json *m = cast_json_first(j); m; m = cast_json_next(m)) {
        const char *name = cast_json_key(m);
        if (!strcmp(name, "__metadata__")) continue;
        for (int i = 0; i < k; i++)
            if (!strcmp(t[i].name, name)) {
                cast_fail(err, "%s: duplicate tensor \"%s\"", path, name);
                goto done;
            }
        cast_st_tensor *x = &t[k];
        x->name = cast_xstrdup(name);
        k++;
        const char *dt = cast_json_string(cast_json_get(m, "dtype"));
        if (!dt || cast_dtype_parse(dt, &x->dtype)) {
            cast_fail(err, "%s: tensor \"%s\" has an unknown dtype \"%s\"", path, name, dt ? dt : "(none)");
            goto done;
        }
        cast_json *shape = cast_json_get(m, "shape");
        if (!cast_json_is_array(shape) || cast_json_array_size(shape) > CAST_MAX_DIMS) {
            cast_fail(err, "%s: tensor \"%s\" has an invalid shape", path, name);
            goto done;
        }
        x->ndim = cast_json_array_size(shape);
        uint64_t numel = 1;
        for (int i = 0; i < x->ndim; i++) {
            cast_json *d = cast_json_array_item(shape, i);
            double v = cast_json_number(d);
            if (!cast_json_is_number(d) || !(v >= 0 && v <= (double)(1ULL << 40)) || v != floor(v)) {
                cast_fail(err, "%s: tensor \"%s\" has an invalid shape", path, name);
                goto done;
            }
            x->shape[i] = (int64_t)v;
            numel *= (uint64_t)v;
            if (numel > (1ULL << 40)) {
                cast_fail(err, "%s: tensor \"%s\" is too large", path, name);
                goto done;
            }
        }
        x->numel = (int64_t)numel;
        cast_json *off = cast_json_get(m, "data_offsets");
        if (cast_json_array_size(off) != 2 || !cast_json_is_number(cast_json_array_item(off, 0)) ||
            !cast_json_is_number(cast_json_array_item(off, 1))) {
            cast_fail(err, "%s: tensor \"%s\" has invalid data_offsets", path, name);
            goto done;
        }
        double b = cast_json_number(cast_json_array_item(off, 0)), e = cast_json_number(cast_json_array_item(off, 1));
        if (!(b >= 0 && e >= b && e <= (double)data_size) || b != floor(b) || e != floor(e)) {
            cast_fail(err, "%s: tensor \"%s\" data_offsets [%.0f, %.0f] lie outside the data (%zu bytes)", path, name, b, e,
                      data_size);
            goto done;
        }
        x->begin = (size_t)b;
        x->end = (size_t)e;
        if ((uint64_t)(x->end - x->begin) != numel * cast_dtype_size(x->dtype)) {
            cast_fail(err, "%s: tensor \"%s\" has %zu bytes of data but its shape and dtype need %llu", path, name,
                      x->end - x->begin, (unsigned long long)(numel * cast_dtype_size(x->dtype)));
            goto done;
        }
    }
    for (int i = 0; i < k; i++) order[i] = &t[i];
    qsort(order, (size_t)k, sizeof *order, by_begin);
    for (int i = 1; i < k; i++)
        if (order[i]->begin < order[i - 1]->end) {
            cast_fail(err, "%s: tensors \"%s\" and \"%s\" overlap", path, order[i - 1]->name, order[i]->name);
            goto done;
        }
    rc = 0;
done:
    free(order);
    cast_json_free(j);
    if (rc) {
        cast_st_tensors_free(t, k);
        return -1;
    }
    *tensors = t;
    *n = k;
    *data_start = 8 + (size_t)hlen;
    return 0;
}

int cast_st_open(cast_st_file *f, const char *path, cast_err *err) {
    memset(f, 0, sizeof *f);
    if (cast_mmap_open(&f->map, path, err)) return -1;
    size_t start;
    if (cast_st_parse(f->map.data, f->map.size, path, &f->tensors, &f->n, &start, err)) {
        cast_mmap_close(&f->map);
        return -1;
    }
    f->path = cast_xstrdup(path);
    f->data = (const uint8_t *)f->map.data + start;
    f->data_size = f->map.size - start;
    return 0;
}

int cast_st_open_header(cast_st_file *f, const char *path, cast_err *err) {
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp) return cast_fail_as(err, CAST_E_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    uint8_t len8[8];
    uint64_t hlen = 0;
    int rc = -1;
    uint8_t *buf = NULL;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        cast_fail(err, "%s: not a regular file", path);
        goto done;
    }
    if (fread(len8, 1, 8, fp) != 8) {
        cast_fail(err, "%s: file too short for a safetensors header", path);
        goto done;
    }
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | len8[i];
    if (hlen > (uint64_t)st.st_size - 8) {
        cast_fail(err, "%s: header length %llu runs past the end of the file (%lld bytes)", path, (unsigned long long)hlen,
                  (long long)st.st_size);
        goto done;
    }
    if (hlen > MAX_HEADER) {
        cast_fail(err, "%s: header length %llu is too large", path, (unsigned long long)hlen);
        goto done;
    }
    /* the parser reads the header only; the size tells it where the data ends */
    buf = cast_xmalloc((size_t)hlen + 8);
    memcpy(buf, len8, 8);
    size_t start;
    if (fread(buf + 8, 1, (size_t)hlen, fp) != (size_t)hlen) cast_fail(err, "%s: read error", path);
    else if (cast_st_parse(buf, (size_t)st.st_size, path, &f->tensors, &f->n, &start, err) == 0) {
        f->path = cast_xstrdup(path);
        f->data_size = (size_t)st.st_size - start;
        rc = 0;
    }
done:
    free(buf);
    fclose(fp);
    return rc;
}

char *cast_st_metadata(const cast_st_file *f, const char *key) {
    const uint8_t *b = f->map.data;
    if (!b || f->map.size < 8) return NULL;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | b[i];
    if (hlen > f->map.size - 8) return NULL;
    cast_json *j = cast_json_parse((const char *)b + 8, (size_t)hlen, f->path, NULL);
    const char *v = cast_json_string(cast_json_get(cast_json_get(j, "__metadata__"), key));
    char *out = v ? cast_xstrdup(v) : NULL;
    cast_json_free(j);
    return out;
}

void cast_st_close(cast_st_file *f) {
    cast_st_tensors_free(f->tensors, f->n);
    cast_mmap_close(&f->map);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const cast_st_tensor *cast_st_find(const cast_st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

void cast_convert_to_f32(float *dst, const void *src, cast_dtype dtype, size_t n) {
    const uint8_t *p = src;
    switch (dtype) {
    case CAST_F32: memcpy(dst, src, n * 4); break;
    case CAST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = cast_bf16_to_f32(h);
        }
        break;
    case CAST_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = cast_f16_to_f32(h);
        }
        break;
    default: memset(dst, 0, n * 4); break;
    }
}

int cast_st_write(const char *path, const cast_st_entry *entries, int n, cast_dtype dtype, cast_err *err) {
    return cast_st_write_meta(path, entries, n, dtype, NULL, err);
}

int cast_st_write_meta(const char *path, const cast_st_entry *entries, int n, cast_dtype dtype, const char *const *meta,
                       cast_err *err) {
    size_t es = cast_dtype_size(dtype);
    if (dtype != CAST_F32 && dtype != CAST_F16 && dtype != CAST_BF16)
        return cast_fail(err, "%s: cannot write dtype %s", path, cast_dtype_name(dtype));
    cast_buf h = {0};
    cast_buf_puts(&h, "{\"__metadata__\":{\"format\":\"pt\"");
    for (int i = 0; meta && meta[i] && meta[i + 1]; i += 2) {
        cast_buf_putc(&h, ',');
        cast_buf_json_string(&h, meta[i], strlen(meta[i]));
        cast_buf_putc(&h, ':');
        cast_buf_json_string(&h, meta[i + 1], strlen(meta[i + 1]));
    }
    cast_buf_putc(&h, '}');
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        int64_t numel = 1;
        for (int d = 0; d < entries[i].ndim; d++) numel *= entries[i].shape[d];
        cast_buf_putc(&h, ',');
        cast_buf_json_string(&h, entries[i].name, strlen(entries[i].name));
        cast_buf_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", cast_dtype_name(dtype));
        for (int d = 0; d < entries[i].ndim; d++) cast_buf_printf(&h, "%s%lld", d ? "," : "", (long long)entries[i].shape[d]);
        cast_buf_printf(&h, "],\"data_offsets\":[%zu,%zu]}", off, off + (size_t)numel * es);
        off += (size_t)numel * es;
    }
    cast_buf_putc(&h, '}');
    while ((h.len + 8) % 8) cast_buf_putc(&h, ' ');
    cast_atomic a;
    if (cast_atomic_open(&a, path, err)) {
        cast_buf_free(&h);
        return -1;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    int ok = fwrite(len8, 1, 8, a.fp) == 8 && fwrite(h.data, 1, h.len, a.fp) == h.len;
    cast_buf_free(&h);
    uint16_t chunk[4096];
    float wide[4096];
    for (int i = 0; ok && i < n; i++) {
        const cast_st_entry *e = &entries[i];
        int64_t numel = 1;
        for (int d = 0; d < e->ndim; d++) numel *= e->shape[d];
        if (e->data && dtype == CAST_F32) {
            ok = fwrite(e->data, 4, (size_t)numel, a.fp) == (size_t)numel;
            continue;
        }
        if (!e->data && ((dtype == CAST_BF16 && e->half_type == CAST_HALF_BF16) || (dtype == CAST_F16 && e->half_type == CAST_HALF_F16))) {
            ok = fwrite(e->half, 2, (size_t)numel, a.fp) == (size_t)numel; /* stored as it is held */
            if (e->drop_after) cast_mmap_drop(e->half, 2 * (size_t)numel);
            continue;
        }
        for (int64_t s = 0; ok && s < numel; s += 4096) {
            int64_t m = numel - s < 4096 ? numel - s : 4096;
            const float *v = e->data ? e->data + s : wide;
            if (!e->data) cast_half_to_f32(wide, e->half + s, e->half_type, m);
            if (dtype == CAST_F32) {
                ok = fwrite(v, 4, (size_t)m, a.fp) == (size_t)m;
                continue;
            }
            for (int64_t k = 0; k < m; k++) chunk[k] = dtype == CAST_BF16 ? cast_f32_to_bf16(v[k]) : cast_f32_to_f16(v[k]);
            ok = fwrite(chunk, 2, (size_t)m, a.fp) == (size_t)m;
        }
    }
    if (!ok) {
        cast_atomic_abort(&a);
        return cast_fail(err, "%s: write failed", path);
    }
    return cast_atomic_commit(&a, err);
}
