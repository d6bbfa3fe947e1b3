#include "model/delta.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "model/safetensors.h"

int cast_delta_write(const char *path, const cast_model *m, const float *const *before, const cast_mask *k, cast_err *err) {
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
        e[n] = (cast_st_entry){t->name, t->ndim, {by_cols ? R : keep, by_cols ? keep : C}, vals};
        if (t->ndim == 1) e[n].shape[1] = 0;
        n++;
        names[n_names] = cast_xmalloc(strlen(t->name) + 8);
        sprintf(names[n_names], "%s.%s", by_cols ? "cols" : "rows", t->name);
        e[n++] = (cast_st_entry){names[n_names++], 1, {keep, 0}, where};
    }
    int rc = cast_st_write(path, e, n, CAST_F32, err);
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

int cast_delta_apply(cast_model *m, const char *path, cast_err *err) {
    cast_st_file f;
    if (cast_st_open(&f, path, err)) return -1;
    int rc = -1;
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
            if (pass == 1) {
                if (!ix) memcpy(t->data, vals, sizeof(float) * (size_t)t->numel);
                else if (rows)
                    for (int64_t j = 0; j < keep; j++) memcpy(t->data + idx[j] * C, vals + j * C, sizeof(float) * (size_t)C);
                else
                    for (int64_t r = 0; r < R; r++)
                        for (int64_t j = 0; j < keep; j++) t->data[r * C + idx[j]] = vals[r * keep + j];
            }
            free(idx);
        }
    }
    rc = 0;
done:
    cast_st_close(&f);
    return rc;
}
