#include "model/delta.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/hash.h"
#include "model/safetensors.h"

static const cast_model *sort_model; /* qsort has no context argument */
static int by_name(const void *a, const void *b) {
    return strcmp(sort_model->tensors[*(const int *)a].name, sort_model->tensors[*(const int *)b].name);
}

/* CRC of the tensor's f32 values, widened a chunk at a time when held
 * 16-bit: the same fingerprint whichever form holds the weights. */
static uint32_t tensor_crc(const cast_tensor *t) {
    if (t->data) return cast_crc32(t->data, sizeof(float) * (size_t)t->numel);
    float wide[4096];
    uint32_t c = 0;
    for (int64_t k = 0; k < t->numel; k += 4096) {
        int64_t n = t->numel - k < 4096 ? t->numel - k : 4096;
        cast_half_to_f32(wide, t->half + k, t->half_type, n);
        c = cast_crc32_update(c, wide, sizeof(float) * (size_t)n);
    }
    return c;
}

void cast_model_fingerprint(const cast_model *m, char out[CAST_FINGERPRINT_LEN]) {
    int *order = cast_xmalloc(sizeof(int) * (size_t)(m->n_tensors + 1));
    for (int i = 0; i < m->n_tensors; i++) order[i] = i;
    sort_model = m;
    qsort(order, (size_t)m->n_tensors, sizeof(int), by_name);
    uint64_t h = CAST_FNV1A64_INIT;
    for (int j = 0; j < m->n_tensors; j++) {
        const cast_tensor *t = &m->tensors[order[j]];
        h = cast_fnv1a64(h, t->name, strlen(t->name) + 1);
        h = cast_fnv1a64_u64(h, (uint64_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) h = cast_fnv1a64_u64(h, (uint64_t)t->shape[d]);
        uint32_t c = tensor_crc(t);
        cast_model_release(m, order[j]); /* streaming: one tensor resident at a time */
        unsigned char b[4] = {(unsigned char)c, (unsigned char)(c >> 8), (unsigned char)(c >> 16), (unsigned char)(c >> 24)};
        h = cast_fnv1a64(h, b, 4);
    }
    free(order);
    snprintf(out, CAST_FINGERPRINT_LEN, "%016llx", (unsigned long long)h);
}

int cast_delta_write(const char *path, const cast_model *m, const float *const *before, const cast_mask *k,
                     cast_delta_format fmt, const char *base_fingerprint, cast_err *err) {
    int cap = 3 * m->n_tensors, n = 0;
    cast_st_entry *e = cast_xcalloc((size_t)cap, sizeof *e);
    float **owned = cast_xcalloc((size_t)cap, sizeof(float *));
    char **names = cast_xcalloc((size_t)cap, sizeof(char *));
    int n_owned = 0, n_names = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        if (!before || !before[i]) continue;
        const cast_tensor *t = &m->tensors[i];
        int64_t R = t->shape[0], C = t->ndim == 2 ? t->shape[1] : 1;
        const float *now = t->data, *was = before[i];
        if (fmt == CAST_DELTA_DIFF) { /* the task vector: tuned − base, whole */
            float *d = cast_xmalloc(sizeof(float) * (size_t)t->numel);
            for (int64_t j = 0; j < t->numel; j++) d[j] = now[j] - was[j];
            owned[n_owned++] = d;
            e[n++] = (cast_st_entry){t->name, t->ndim, {t->shape[0], t->ndim == 2 ? t->shape[1] : 0}, d, NULL, CAST_HALF_NONE, 0};
            continue;
        }
        int by_cols = k && k->frozen_cols[i] != NULL;
        int64_t keep = 0;
        int64_t *idx = cast_xmalloc(sizeof(int64_t) * (size_t)(by_cols ? C : R));
        if (by_cols) {
            for (int64_t c = 0; c < C; c++)
                if (!k->frozen_cols[i][c]) idx[keep++] = c;
        } else {
            for (int64_t r = 0; r < R; r++)
                if (memcmp(now + r * C, was + r * C, sizeof(float) * (size_t)C)) idx[keep++] = r;
        }
        if (keep == 0) {
            free(idx);
            continue;
        }
        float *vals = cast_xmalloc(sizeof(float) * (size_t)(by_cols ? R * keep : keep * C));
        float *where = cast_xmalloc(sizeof(float) * (size_t)keep);
        for (int64_t j = 0; j < keep; j++) where[j] = (float)idx[j];
        if (by_cols)
            for (int64_t r = 0; r < R; r++)
                for (int64_t j = 0; j < keep; j++) vals[r * keep + j] = now[r * C + idx[j]];
        else
            for (int64_t j = 0; j < keep; j++) memcpy(vals + j * C, now + idx[j] * C, sizeof(float) * (size_t)C);
        free(idx);
        owned[n_owned++] = vals;
        owned[n_owned++] = where;
        e[n] = (cast_st_entry){t->name, t->ndim, {by_cols ? R : keep, by_cols ? keep : C}, vals, NULL, CAST_HALF_NONE, 0};
        if (t->ndim == 1) e[n].shape[1] = 0;
        n++;
        names[n_names] = cast_xmalloc(strlen(t->name) + 8);
        sprintf(names[n_names], "%s.%s", by_cols ? "cols" : "rows", t->name);
        e[n++] = (cast_st_entry){names[n_names++], 1, {keep, 0}, where, NULL, CAST_HALF_NONE, 0};
    }
    const char *meta[] = {"cast_delta", fmt == CAST_DELTA_DIFF ? "diff" : "sparse", base_fingerprint ? "cast_base_fingerprint" : NULL,
                          base_fingerprint, NULL};
    int rc = cast_st_write_meta(path, e, n, CAST_F32, meta, err);
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    for (int i = 0; i < n_names; i++) free(names[i]);
    free(owned);
    free(names);
    free(e);
    return rc;
}

/* Reads the index list of a slice; checks each index. */
static int read_index(const cast_st_file *f, const cast_st_tensor *x, int64_t limit, int64_t **out, cast_err *err) {
    const float *v = (const float *)(f->data + x->begin);
    int64_t *idx = cast_xmalloc(sizeof(int64_t) * (size_t)(x->numel + 1));
    for (int64_t j = 0; j < x->numel; j++) {
        float fv;
        memcpy(&fv, v + j, 4);
        if (!(fv >= 0) || fv >= (float)limit || fv != (float)(int64_t)fv) {
            free(idx);
            return cast_fail(err, "%s: %s holds an invalid index", f->path, x->name);
        }
        idx[j] = (int64_t)fv;
    }
    *out = idx;
    return 0;
}

/* A diff: every tensor named as in the model, its full shape, F32. */
static int apply_diff(cast_model *m, const cast_st_file *f, double scale, cast_err *err) {
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < f->n; k++) {
            const cast_st_tensor *x = &f->tensors[k];
            int i = cast_model_find(m, x->name);
            if (i < 0) return cast_fail(err, "%s: tensor \"%s\" is not in the model", f->path, x->name);
            cast_tensor *t = &m->tensors[i];
            if (x->dtype != CAST_F32) return cast_fail(err, "%s: tensor \"%s\" must be F32", f->path, x->name);
            if (x->ndim != t->ndim || x->shape[0] != t->shape[0] || (t->ndim == 2 && x->shape[1] != t->shape[1]))
                return cast_fail(err, "%s: tensor \"%s\" does not fit the model's shape", f->path, x->name);
            if (pass == 0) continue;
            cast_model_master(m, i);
            const float *d = (const float *)(f->data + x->begin);
            for (int64_t q = 0; q < t->numel; q++) {
                float v;
                memcpy(&v, d + q, 4);
                t->data[q] = (float)((double)t->data[q] + scale * (double)v);
            }
        }
    return 0;
}

/* fmt from the metadata: absent = sparse (files older than the key) */
static int delta_format(const cast_st_file *f, cast_delta_format *fmt, cast_err *err) {
    char *v = cast_st_metadata(f, "cast_delta");
    int rc = 0;
    *fmt = CAST_DELTA_SPARSE;
    if (v && !strcmp(v, "diff")) *fmt = CAST_DELTA_DIFF;
    else if (v && strcmp(v, "sparse")) rc = cast_fail(err, "%s: unknown delta format \"%s\" (cast knows sparse and diff)", f->path, v);
    free(v);
    return rc;
}

int cast_delta_info(const char *path, cast_delta_format *fmt, char fingerprint[CAST_FINGERPRINT_LEN], cast_err *err) {
    cast_st_file f;
    if (cast_st_open(&f, path, err)) return -1;
    int rc = delta_format(&f, fmt, err);
    char *fp = cast_st_metadata(&f, "cast_base_fingerprint");
    snprintf(fingerprint, CAST_FINGERPRINT_LEN, "%s", fp ? fp : "");
    free(fp);
    cast_st_close(&f);
    return rc;
}

/* w = base + s·(new − base), in double, rounded once */
static float interp(float base, float now, double s) {
    return s == 1.0 ? now : (float)((double)base + s * ((double)now - (double)base));
}

int cast_delta_apply(cast_model *m, const char *path, double scale, cast_err *err) {
    cast_st_file f;
    if (cast_st_open(&f, path, err)) return -1;
    int rc = -1;
    cast_delta_format fmt;
    if (delta_format(&f, &fmt, err)) goto done;
    if (fmt == CAST_DELTA_DIFF) {
        rc = apply_diff(m, &f, scale, err);
        goto done;
    }
    /* two passes: check everything, then write, so a bad delta changes nothing */
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < f.n; k++) {
            const cast_st_tensor *x = &f.tensors[k];
            if (!strncmp(x->name, "rows.", 5) || !strncmp(x->name, "cols.", 5)) continue;
            int i = cast_model_find(m, x->name);
            if (i < 0) {
                cast_fail(err, "%s: tensor \"%s\" is not in the model", path, x->name);
                goto done;
            }
            if (x->dtype != CAST_F32) {
                cast_fail(err, "%s: tensor \"%s\" must be F32", path, x->name);
                goto done;
            }
            cast_tensor *t = &m->tensors[i];
            int64_t R = t->shape[0], C = t->ndim == 2 ? t->shape[1] : 1;
            char key[128];
            snprintf(key, sizeof key, "rows.%s", x->name);
            const cast_st_tensor *rows = cast_st_find(&f, key);
            snprintf(key, sizeof key, "cols.%s", x->name);
            const cast_st_tensor *cols = cast_st_find(&f, key);
            const cast_st_tensor *ix = rows ? rows : cols;
            int64_t keep = ix ? ix->numel : 0, xr = x->shape[0], xc = x->ndim == 2 ? x->shape[1] : 1;
            int ok = (rows && !cols && xr == keep && xc == C) || (cols && !rows && xr == R && xc == keep) ||
                     (!ix && x->numel == t->numel);
            if (!ok || x->ndim != t->ndim || (ix && ix->dtype != CAST_F32)) {
                cast_fail(err, "%s: tensor \"%s\" does not fit the model's shape", path, x->name);
                goto done;
            }
            int64_t *idx = NULL;
            if (ix && read_index(&f, ix, rows ? R : C, &idx, err)) goto done;
            const float *vals = (const float *)(f.data + x->begin);
            if (pass == 1) { /* vals may be unaligned in the file: read through memcpy */
                cast_model_master(m, i);
                float v;
                if (!ix)
                    for (int64_t q = 0; q < t->numel; q++) memcpy(&v, vals + q, 4), t->data[q] = interp(t->data[q], v, scale);
                else if (rows)
                    for (int64_t j = 0; j < keep; j++)
                        for (int64_t c = 0; c < C; c++)
                            memcpy(&v, vals + j * C + c, 4), t->data[idx[j] * C + c] = interp(t->data[idx[j] * C + c], v, scale);
                else
                    for (int64_t r = 0; r < R; r++)
                        for (int64_t j = 0; j < keep; j++)
                            memcpy(&v, vals + r * keep + j, 4), t->data[r * C + idx[j]] = interp(t->data[r * C + idx[j]], v, scale);
            }
            free(idx);
        }
    }
    rc = 0;
done:
    cast_st_close(&f);
    return rc;
}
