/* The one hash map: byte string → int64, open addressing with linear
 * probing. Slots hold (hash tag, entry index), so a probe rarely touches an
 * entry that is not the one sought; entries keep insertion order, which
 * makes iteration deterministic whatever the hash. Keys are copied: up to
 * 16 bytes inside the entry (vocabulary pieces, pairs of ids), longer ones
 * into a pool. Pairs of 32-bit ints (BPE merges) are keys of 8 bytes.
 * Users: the tokenizer's vocabulary and merges, the BPE trainer, the
 * organism's world builder. */
#ifndef CAST_BASE_STRMAP_H
#define CAST_BASE_STRMAP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CAST_STRMAP_INLINE 16 /* keys up to this many bytes live in their entry */

typedef struct cast_strmap_entry {
    int64_t val;
    size_t len;
    union {
        uint64_t words[CAST_STRMAP_INLINE / 8]; /* short key, zero-padded */
        size_t off;                             /* long key: its offset in pool */
    } key;
} cast_strmap_entry;

typedef struct cast_strmap {
    cast_strmap_entry *entries; /* insertion order */
    size_t n, cap;
    char *pool; /* keys longer than CAST_STRMAP_INLINE, back to back */
    size_t pool_len, pool_cap;
    uint64_t *slots; /* 0 empty, else hash tag << 32 | (entry index + 1) */
    size_t n_slots;  /* a power of two, at least twice n */
} cast_strmap;

void cast_strmap_free(cast_strmap *m);
/* Removes every key, keeping the memory for reuse. */
void cast_strmap_clear(cast_strmap *m);
/* The value's address, or NULL when the key is absent. Addresses stay valid
 * until the next insertion. */
int64_t *cast_strmap_find(const cast_strmap *m, const char *key, size_t len);
/* The value's address, inserting the key with value `init` when absent;
 * *added (optional) tells which. */
int64_t *cast_strmap_upsert(cast_strmap *m, const char *key, size_t len, int64_t init, int *added);

/* Entry i (0 <= i < m->n) in insertion order: its key (not NUL-terminated;
 * valid until the next insertion) and value. */
const char *cast_strmap_key(const cast_strmap *m, size_t i, size_t *len);
static inline int64_t cast_strmap_value(const cast_strmap *m, size_t i) { return m->entries[i].val; }

/* ---- pairs of ints as keys ---- */

static inline void cast_strmap_pair_key(char key[8], int32_t a, int32_t b) {
    memcpy(key, &a, 4);
    memcpy(key + 4, &b, 4);
}
int64_t *cast_strmap_find_pair(const cast_strmap *m, int32_t a, int32_t b);
static inline int64_t *cast_strmap_upsert_pair(cast_strmap *m, int32_t a, int32_t b, int64_t init, int *added) {
    char key[8];
    cast_strmap_pair_key(key, a, b);
    return cast_strmap_upsert(m, key, 8, init, added);
}
/* The pair that entry i's key holds. */
static inline void cast_strmap_pair_at(const cast_strmap *m, size_t i, int32_t *a, int32_t *b) {
    size_t len;
    const char *key = cast_strmap_key(m, i, &len);
    memcpy(a, key, 4);
    memcpy(b, key + 4, 4);
}

#endif
