#include "organism/strmap.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

void cast_strmap_free(cast_strmap *m) {
    for (size_t i = 0; i < m->n; i++) free(m->keys[i]);
    free(m->keys);
    free(m->lens);
    free(m->vals);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* The slot holding key, or the empty slot where it would go. */
static size_t slot_of(const cast_strmap *m, const char *key, size_t len) {
    size_t mask = m->n_slots - 1, i = (size_t)hash_bytes(key, len) & mask;
    for (;;) {
        int64_t s = m->slots[i];
        if (!s) return i;
        size_t k = (size_t)(s - 1);
        if (m->lens[k] == len && !memcmp(m->keys[k], key, len)) return i;
        i = (i + 1) & mask;
    }
}

int64_t *cast_strmap_find(const cast_strmap *m, const char *key, size_t len) {
    if (!m->n_slots) return NULL;
    int64_t s = m->slots[slot_of(m, key, len)];
    return s ? &m->vals[s - 1] : NULL;
}

static void grow(cast_strmap *m) {
    size_t n_slots = m->n_slots ? m->n_slots * 2 : 64;
    free(m->slots);
    m->slots = cast_xcalloc(n_slots, sizeof *m->slots);
    m->n_slots = n_slots;
    for (size_t k = 0; k < m->n; k++) m->slots[slot_of(m, m->keys[k], m->lens[k])] = (int64_t)k + 1;
}

int64_t *cast_strmap_upsert(cast_strmap *m, const char *key, size_t len, int64_t init, int *added) {
    if ((m->n + 1) * 2 > m->n_slots) grow(m);
    size_t i = slot_of(m, key, len);
    if (added) *added = !m->slots[i];
    if (m->slots[i]) return &m->vals[m->slots[i] - 1];
    if (m->n == m->cap_items) {
        m->cap_items = m->cap_items ? m->cap_items * 2 : 64;
        m->keys = cast_xrealloc(m->keys, sizeof *m->keys * m->cap_items);
        m->lens = cast_xrealloc(m->lens, sizeof *m->lens * m->cap_items);
        m->vals = cast_xrealloc(m->vals, sizeof *m->vals * m->cap_items);
    }
    m->keys[m->n] = cast_xmalloc(len + 1); /* keys may hold NUL bytes */
    memcpy(m->keys[m->n], key, len);
    m->keys[m->n][len] = 0;
    m->lens[m->n] = len;
    m->vals[m->n] = init;
    m->slots[i] = (int64_t)++m->n;
    return &m->vals[m->n - 1];
}
