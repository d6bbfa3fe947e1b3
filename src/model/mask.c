#include "model/mask.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

static int64_t rows_of(const cast_tensor *t) { return t->shape[0]; }
static int64_t cols_of(const cast_tensor *t) { return t->ndim == 2 ? t->shape[1] : 1; }

void cast_mask_init(cast_mask *k, const cast_model *m) {
    k->n = m->n_tensors;
    k->trainable = cast_xcalloc((size_t)k->n, sizeof(int));
    k->frozen_rows = cast_xcalloc((size_t)k->n, sizeof(uint8_t *));
    k->frozen_cols = cast_xcalloc((size_t)k->n, sizeof(uint8_t *));
}

void cast_mask_free(cast_mask *k) {
    for (int i = 0; i < k->n; i++) {
        free(k->frozen_rows[i]);
        free(k->frozen_cols[i]);
    }
    free(k->trainable);
    free(k->frozen_rows);
    free(k->frozen_cols);
    memset(k, 0, sizeof *k);
}

void cast_mask_freeze_rows(cast_mask *k, const cast_model *m, int tensor, int64_t row0, int64_t count) {
    if (tensor < 0) return;
    if (!k->frozen_rows[tensor]) k->frozen_rows[tensor] = cast_xcalloc((size_t)rows_of(&m->tensors[tensor]), 1);
    memset(k->frozen_rows[tensor] + row0, 1, (size_t)count);
}

void cast_mask_freeze_cols(cast_mask *k, const cast_model *m, int tensor, int64_t col0, int64_t count) {
    if (tensor < 0) return;
    if (!k->frozen_cols[tensor]) k->frozen_cols[tensor] = cast_xcalloc((size_t)cols_of(&m->tensors[tensor]), 1);
    memset(k->frozen_cols[tensor] + col0, 1, (size_t)count);
}

int64_t cast_mask_count(const cast_mask *k, const cast_model *m) {
    int64_t n = 0;
    for (int i = 0; i < k->n; i++) {
        if (!k->trainable[i]) continue;
        const cast_tensor *t = &m->tensors[i];
        if (!k->frozen_rows[i] && !k->frozen_cols[i]) {
            n += t->numel;
            continue;
        }
        for (int64_t r = 0; r < rows_of(t); r++)
            for (int64_t c = 0; c < cols_of(t); c++) n += !cast_mask_frozen(k, i, r, c);
    }
    return n;
}

void cast_mask_apply(const cast_mask *k, const cast_model *m, cast_grads *g) {
    for (int i = 0; i < k->n; i++) {
        if (!g->g[i] || (!k->frozen_rows[i] && !k->frozen_cols[i])) continue;
        const cast_tensor *t = &m->tensors[i];
        int64_t C = cols_of(t);
        for (int64_t r = 0; r < rows_of(t); r++)
            for (int64_t c = 0; c < C; c++)
                if (cast_mask_frozen(k, i, r, c)) g->g[i][r * C + c] = 0.0f;
    }
}
