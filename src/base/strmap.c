#include "base/strmap.h"

#include <stdlib.h>

#include "base/buf.h"

/* The key's length, then its bytes eight at a time (the last word
 * zero-padded), through cast_strmap_mix. Not for fingerprints (base/hash.h):
 * the value depends on the machine's byte order, which only the layout sees. */
static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = n;
    for (; n >= 8; s += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = cast_strmap_mix(h, w);
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, s, n);
        h = cast_strmap_mix(h, w);
    }
    return h;
}

/* A key as probes see it: a short key as its slot stores it (zero-padded
 * words, compared whole), hashed from those words, equal to hash_bytes. */
typedef struct probe_key {
    const char *s;
    size_t len;
    uint64_t words[CAST_STRMAP_INLINE / 8];
    uint64_t hash;
} probe_key;

static inline void probe_key_init(probe_key *k, const char *s, size_t len) {
    k->s = s;
    k->len = len;
    if (len > CAST_STRMAP_INLINE) {
        k->hash = hash_bytes(s, len);
        return;
    }
    k->words[0] = k->words[1] = 0;
    if (len) memcpy(k->words, s, len);
    uint64_t h = cast_strmap_mix(len, k->words[0]);
    if (len > 8) h = cast_strmap_mix(h, k->words[1]);
    k->hash = len ? h : 0;
}

static inline int slot_is(const cast_strmap *m, const cast_strmap_slot *s, const probe_key *k) {
    if (s->len1 != k->len + 1) return 0;
    if (k->len > CAST_STRMAP_INLINE) return !memcmp(m->pool + s->key.off, k->s, k->len);
    /* equal lengths up to 8 bytes leave both second words zero */
    return s->key.words[0] == k->words[0] && (k->len <= 8 || s->key.words[1] == k->words[1]);
}

/* The slot holding the key, or the empty slot where it would go. */
static inline size_t probe(const cast_strmap *m, const probe_key *k) {
    size_t mask = m->n_slots - 1, i = (size_t)k->hash & mask;
    while (m->slots[i].len1 && !slot_is(m, &m->slots[i], k)) i = (i + 1) & mask;
    return i;
}

static inline int64_t *find(const cast_strmap *m, const char *key, size_t len) {
    if (!m->n) return NULL;
    probe_key k;
    probe_key_init(&k, key, len);
    cast_strmap_slot *s = &m->slots[probe(m, &k)];
    return s->len1 ? &s->val : NULL;
}

int64_t *cast_strmap_find(const cast_strmap *m, const char *key, size_t len) { return find(m, key, len); }

static const char *slot_key(const cast_strmap *m, const cast_strmap_slot *s) {
    return s->len1 - 1 <= CAST_STRMAP_INLINE ? (const char *)s->key.words : m->pool + s->key.off;
}

const char *cast_strmap_key(const cast_strmap *m, size_t i, size_t *len) {
    const cast_strmap_slot *s = &m->slots[m->order[i]];
    *len = s->len1 - 1;
    return slot_key(m, s);
}

/* Keys a table of n_slots may hold: at most 3/4 of the slots in use keeps
 * probes short and large vocabularies compact (fewer cache misses). */
static size_t capacity(size_t n_slots) { return n_slots / 4 * 3; }

/* Moves to n_slots slots (a power of two holding n) and places every key
 * again, in order. */
static void resize(cast_strmap *m, size_t n_slots) {
    cast_strmap_slot *old = m->slots;
    size_t mask = n_slots - 1;
    m->slots = cast_xcalloc(n_slots, sizeof *m->slots);
    m->n_slots = n_slots;
    m->order = cast_xrealloc(m->order, sizeof *m->order * capacity(n_slots));
    for (size_t k = 0; k < m->n; k++) {
        const cast_strmap_slot *s = &old[m->order[k]];
        size_t i = (size_t)hash_bytes(slot_key(m, s), s->len1 - 1) & mask;
        while (m->slots[i].len1) i = (i + 1) & mask;
        m->slots[i] = *s;
        m->order[k] = i;
    }
    free(old);
}

void cast_strmap_reserve(cast_strmap *m, size_t n) {
    size_t n_slots = m->n_slots ? m->n_slots : 64;
    while (n > capacity(n_slots)) n_slots *= 2;
    if (n_slots > m->n_slots) resize(m, n_slots);
}

int64_t *cast_strmap_upsert(cast_strmap *m, const char *key, size_t len, int64_t init, int *added) {
    if (m->n + 1 > capacity(m->n_slots)) resize(m, m->n_slots ? m->n_slots * 2 : 64);
    probe_key k;
    probe_key_init(&k, key, len);
    size_t i = probe(m, &k);
    cast_strmap_slot *s = &m->slots[i];
    if (added) *added = !s->len1;
    if (s->len1) return &s->val;
    s->val = init;
    s->len1 = len + 1;
    if (len <= CAST_STRMAP_INLINE) memcpy(s->key.words, k.words, CAST_STRMAP_INLINE);
    else {
        if (m->pool_len + len > m->pool_cap) {
            while (m->pool_len + len > m->pool_cap) m->pool_cap = m->pool_cap ? m->pool_cap * 2 : 4096;
            m->pool = cast_xrealloc(m->pool, m->pool_cap);
        }
        memcpy(m->pool + m->pool_len, key, len);
        s->key.off = m->pool_len;
        m->pool_len += len;
    }
    m->order[m->n++] = i;
    return &s->val;
}

void cast_strmap_clear(cast_strmap *m) {
    for (size_t k = 0; k < m->n; k++) m->slots[m->order[k]].len1 = 0;
    m->n = 0;
    m->pool_len = 0;
}

void cast_strmap_free(cast_strmap *m) {
    free(m->slots);
    free(m->order);
    free(m->pool);
    memset(m, 0, sizeof *m);
}
