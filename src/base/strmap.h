/* The one hash map: byte string → int64, open addressing with linear
 * probing over slots that hold key and value themselves, so that finding a
 * short key touches one place in memory (BPE merge lookups are the
 * tokenizer's hot path). Keys are copied: up to 16 bytes inside the slot
 * (vocabulary pieces, pairs of ids), longer ones into a pool. A list of
 * slots in insertion order makes iteration deterministic whatever the hash.
 * Pairs of 32-bit ints (BPE merges) are keys of 8 bytes. Users: the
 * tokenizer's vocabulary and merges, the BPE trainer's counts, the
 * organism's world builder. */
#ifndef CAST_BASE_STRMAP_H
#define CAST_BASE_STRMAP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CAST_STRMAP_INLINE 16 /* keys up to this many bytes live in their slot */

typedef struct cast_strmap_slot {
    int64_t val;
    size_t len1; /* key length + 1; 0: an empty slot */
    union {
        uint64_t words[CAST_STRMAP_INLINE / 8]; /* short key, zero-padded */
        size_t off;                             /* long key: its offset in pool */
    } key;
} cast_strmap_slot;

typedef struct cast_strmap {
    cast_strmap_slot *slots;
    size_t n_slots; /* a power of two; at most 3/4 of the slots hold keys */
    size_t *order;  /* the slot of each key, in insertion order */
    size_t n;
    char *pool; /* keys longer than CAST_STRMAP_INLINE, back to back */
    size_t pool_len, pool_cap;
} cast_strmap;

void cast_strmap_free(cast_strmap *m);
/* Removes every key, keeping the memory for reuse. */
void cast_strmap_clear(cast_strmap *m);
/* Makes room for n keys in all, so that inserting them allocates no more
 * slots (loaders that know their sizes spare the rehashing). */
void cast_strmap_reserve(cast_strmap *m, size_t n);
/* The value's address, or NULL when the key is absent. Addresses stay valid
 * until the next insertion. */
int64_t *cast_strmap_find(const cast_strmap *m, const char *key, size_t len);
/* The value's address, inserting the key with value `init` when absent;
 * *added (optional) tells which. */
int64_t *cast_strmap_upsert(cast_strmap *m, const char *key, size_t len, int64_t init, int *added);

/* Key i (0 <= i < m->n) in insertion order (not NUL-terminated; valid
 * until the next insertion), and its value. */
const char *cast_strmap_key(const cast_strmap *m, size_t i, size_t *len);
static inline int64_t cast_strmap_value(const cast_strmap *m, size_t i) { return m->slots[m->order[i]].val; }

/* One step of the map's hash, eight bytes of key into h: a multiply, its
 * high half folded into the low one, whose bits pick the slot. One multiply
 * per word keeps merge lookups as cheap as a dedicated map's. */
static inline uint64_t cast_strmap_mix(uint64_t h, uint64_t word) {
    h = (h ^ word) * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 32);
}

/* ---- pairs of ints as keys ---- */

static inline void cast_strmap_pair_key(char key[8], int32_t a, int32_t b) {
    memcpy(key, &a, 4);
    memcpy(key + 4, &b, 4);
}
/* cast_strmap_find for the key of (a, b), inline: the BPE merge loop looks
 * up every adjacent pair, and a call costs as much as the probe. */
static inline int64_t *cast_strmap_find_pair(const cast_strmap *m, int32_t a, int32_t b) {
    if (!m->n) return NULL;
    char key[8];
    uint64_t word;
    cast_strmap_pair_key(key, a, b);
    memcpy(&word, key, 8);
    size_t mask = m->n_slots - 1, i = (size_t)cast_strmap_mix(8, word) & mask;
    for (;; i = (i + 1) & mask) {
        cast_strmap_slot *s = &m->slots[i];
        if (s->len1 == 9 && s->key.words[0] == word) return &s->val; /* 8 bytes: the second word is 0 */
        if (!s->len1) return NULL;
    }
}
static inline int64_t *cast_strmap_upsert_pair(cast_strmap *m, int32_t a, int32_t b, int64_t init, int *added) {
    char key[8];
    cast_strmap_pair_key(key, a, b);
    return cast_strmap_upsert(m, key, 8, init, added);
}
/* The pair that key i holds. */
static inline void cast_strmap_pair_at(const cast_strmap *m, size_t i, int32_t *a, int32_t *b) {
    size_t len;
    const char *key = cast_strmap_key(m, i, &len);
    memcpy(a, key, 4);
    memcpy(b, key + 4, 4);
}

#endif
