#include "model/seqs.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

void cast_seqs_free(cast_seqs *s) {
    free(s->off);
    free(s->ids);
    free(s->labels);
    memset(s, 0, sizeof *s);
}

void cast_seqs_push(cast_seqs *s, const int *ids, const int *labels, int len) {
    if (!s->off) {
        s->off = cast_xcalloc(1, sizeof(int64_t));
        s->n = 0;
    }
    int64_t used = s->off[s->n];
    if (used + len > s->cap) {
        int64_t cap = s->cap ? s->cap : 256;
        while (cap < used + len) cap *= 2;
        s->ids = cast_xrealloc(s->ids, sizeof(int) * (size_t)cap);
        s->labels = cast_xrealloc(s->labels, sizeof(int) * (size_t)cap);
        s->cap = cap;
    }
    if (len > 0) {
        memcpy(s->ids + used, ids, sizeof(int) * (size_t)len);
        memcpy(s->labels + used, labels ? labels : ids, sizeof(int) * (size_t)len);
    }
    s->off = cast_xrealloc(s->off, sizeof(int64_t) * (size_t)(s->n + 2));
    s->off[s->n + 1] = used + len;
    s->n++;
}

int64_t cast_seqs_scored(const cast_seqs *s) {
    int64_t count = 0;
    for (int i = 0; i < s->n; i++)
        for (int64_t t = s->off[i] + 1; t < s->off[i + 1]; t++) count += s->labels[t] != CAST_IGNORE_LABEL;
    return count;
}

cast_seqs cast_seqs_slice(const cast_seqs *s, int first, int count) {
    cast_seqs v = {0};
    v.n = count;
    v.off = s->off + first;
    v.ids = s->ids;
    v.labels = s->labels;
    return v;
}

int cast_seqs_longest(const cast_seqs *s) {
    int mx = 0;
    for (int b = 0; s && b < s->n; b++) mx = cast_seqs_len(s, b) > mx ? cast_seqs_len(s, b) : mx;
    return mx;
}
