#include "base/strmap.h"

#include <stdio.h>
#include <stdlib.h>

#include "base/buf.h"

/* Eight bytes at a time, a multiply each, its high half folded into the
 * low one: slot positions come from the low bits, tags from the high ones.
 * One multiply per word keeps merge lookups as cheap as a dedicated map's.
 * Not for fingerprints (base/hash.h): the value depends on the machine's
 * byte order, which only the layout sees. */
static inline uint64_t mix_word(uint64_t h, uint64_t w) {
    h = (h ^ w) * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 32);
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = n;
    for (; n >= 8; s += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = mix_word(h, w);
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, s, n);
        h = mix_word(h, w);
    }
    return h;
}

/* A key as probes see it: a short key as its entry stores it (zero-padded
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
    uint64_t h = mix_word(len, k->words[0]);
    if (len > 8) h = mix_word(h, k->words[1]);
    k->hash = len ? h : 0;
}

static inline int entry_is(const cast_strmap *m, const cast_strmap_entry *e, const probe_key *k) {
    if (e->len != k->len) return 0;
    if (k->len <= CAST_STRMAP_INLINE) return e->key.words[0] == k->words[0] && e->key.words[1] == k->words[1];
    return !memcmp(m->pool + e->key.off, k->s, k->len);
}

/* The slot holding the key, or the empty slot where it would go. */
static inline size_t probe(const cast_strmap *m, const probe_key *k) {
    size_t mask = m->n_slots - 1, i = (size_t)k->hash & mask;
    uint32_t tag = (uint32_t)(k->hash >> 32);
    for (;;) {
        uint64_t s = m->slots[i];
        if (!s || ((uint32_t)(s >> 32) == tag && entry_is(m, &m->entries[(uint32_t)s - 1], k))) return i;
        i = (i + 1) & mask;
    }
}

static inline int64_t *find(const cast_strmap *m, const char *key, size_t len) {
    if (!m->n) return NULL;
    probe_key k;
    probe_key_init(&k, key, len);
    uint64_t s = m->slots[probe(m, &k)];
    return s ? &m->entries[(uint32_t)s - 1].val : NULL;
}

int64_t *cast_strmap_find(const cast_strmap *m, const char *key, size_t len) { return find(m, key, len); }

/* The same, with the length known here: BPE merge lookups are the hot path. */
int64_t *cast_strmap_find_pair(const cast_strmap *m, int32_t a, int32_t b) {
    char key[8];
    cast_strmap_pair_key(key, a, b);
    return find(m, key, 8);
}

const char *cast_strmap_key(const cast_strmap *m, size_t i, size_t *len) {
    const cast_strmap_entry *e = &m->entries[i];
    *len = e->len;
    return e->len <= CAST_STRMAP_INLINE ? (const char *)e->key.words : m->pool + e->key.off;
}

static void place(cast_strmap *m, size_t index, uint64_t h) {
    size_t mask = m->n_slots - 1, i = (size_t)h & mask;
    while (m->slots[i]) i = (i + 1) & mask;
    m->slots[i] = (h >> 32) << 32 | (uint64_t)(index + 1);
}

static void grow_slots(cast_strmap *m) {
    size_t n_slots = m->n_slots ? m->n_slots * 2 : 64;
    free(m->slots);
    m->slots = cast_xcalloc(n_slots, sizeof *m->slots);
    m->n_slots = n_slots;
    for (size_t k = 0; k < m->n; k++) {
        size_t len;
        const char *key = cast_strmap_key(m, k, &len);
        place(m, k, hash_bytes(key, len));
    }
}

int64_t *cast_strmap_upsert(cast_strmap *m, const char *key, size_t len, int64_t init, int *added) {
    if ((m->n + 1) * 2 > m->n_slots) grow_slots(m);
    probe_key k;
    probe_key_init(&k, key, len);
    size_t i = probe(m, &k);
    if (added) *added = !m->slots[i];
    if (m->slots[i]) return &m->entries[(uint32_t)m->slots[i] - 1].val;
    if (m->n >= UINT32_MAX - 1) { /* slots hold 32-bit indices */
        fputs("cast_strmap: more than 2^32 - 2 keys\n", stderr);
        abort();
    }
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        m->entries = cast_xrealloc(m->entries, sizeof *m->entries * m->cap);
    }
    cast_strmap_entry *e = &m->entries[m->n];
    e->val = init;
    e->len = len;
    if (len <= CAST_STRMAP_INLINE) memcpy(e->key.words, k.words, CAST_STRMAP_INLINE);
    else {
        if (m->pool_len + len > m->pool_cap) {
            while (m->pool_len + len > m->pool_cap) m->pool_cap = m->pool_cap ? m->pool_cap * 2 : 4096;
            m->pool = cast_xrealloc(m->pool, m->pool_cap);
        }
        memcpy(m->pool + m->pool_len, key, len);
        e->key.off = m->pool_len;
        m->pool_len += len;
    }
    m->slots[i] = (k.hash >> 32) << 32 | (uint64_t)(m->n + 1);
    return &m->entries[m->n++].val;
}

void cast_strmap_clear(cast_strmap *m) {
    m->n = 0;
    m->pool_len = 0;
    if (m->slots) memset(m->slots, 0, m->n_slots * sizeof *m->slots);
}

void cast_strmap_free(cast_strmap *m) {
    free(m->entries);
    free(m->pool);
    free(m->slots);
    memset(m, 0, sizeof *m);
}
