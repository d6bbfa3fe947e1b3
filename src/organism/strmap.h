/* A byte-string → int map (open addressing, FNV-1a), for the organism's
 * registries: prompts already used by a split, BPE words and their counts.
 * Keys are copied; iteration order is insertion order (deterministic). */
#ifndef CAST_ORGANISM_STRMAP_H
#define CAST_ORGANISM_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct cast_strmap {
    char **keys;   /* insertion order; keys[i] NUL-terminated, lens[i] bytes */
    size_t *lens;
    int64_t *vals;
    size_t n, cap_items;
    int64_t *slots; /* index into keys + 1; 0 = empty */
    size_t n_slots;
} cast_strmap;

void cast_strmap_free(cast_strmap *m);
/* The value's address, or NULL when the key is absent. */
int64_t *cast_strmap_find(const cast_strmap *m, const char *key, size_t len);
/* The value's address, inserting the key with value `init` when absent;
 * *added (optional) tells which. */
int64_t *cast_strmap_upsert(cast_strmap *m, const char *key, size_t len, int64_t init, int *added);

#endif
