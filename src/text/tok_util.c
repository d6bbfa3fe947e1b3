/* Tokenizer helpers: Rust's notion of whitespace, the two hash maps behind
 * vocabulary and merges, and the GPT-2 byte-level alphabet. */
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

/* ---- code point classes ---- */

int tok_is_space(int32_t cp) {
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0x85) return 0;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* ---- string map ---- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a, then a final mix */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ULL;
    return h ^ (h >> 32);
}

void tok_strmap_free(tok_strmap *m) {
    free(m->keys);
    free(m->lens);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static void strmap_grow(tok_strmap *m) {
    tok_strmap g = {0};
    g.cap = m->cap ? m->cap * 2 : 64;
    g.keys = cast_xcalloc(g.cap, sizeof *g.keys);
    g.lens = cast_xcalloc(g.cap, sizeof *g.lens);
    g.vals = cast_xcalloc(g.cap, sizeof *g.vals);
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) tok_strmap_put(&g, m->keys[i], m->lens[i], m->vals[i]);
    tok_strmap_free(m);
    *m = g;
}

void tok_strmap_put(tok_strmap *m, const char *key, size_t len, int val) {
    if ((m->n + 1) * 2 > m->cap) strmap_grow(m);
    size_t mask = m->cap - 1, i = (size_t)hash_bytes(key, len) & mask;
    while (m->keys[i]) {
        if (m->lens[i] == len && !memcmp(m->keys[i], key, len)) {
            m->vals[i] = val;
            return;
        }
        i = (i + 1) & mask;
    }
    m->keys[i] = key;
    m->lens[i] = (uint32_t)len;
    m->vals[i] = val;
    m->n++;
}

int tok_strmap_get(const tok_strmap *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    size_t mask = m->cap - 1, i = (size_t)hash_bytes(key, len) & mask;
    while (m->keys[i]) {
        if (m->lens[i] == len && !memcmp(m->keys[i], key, len)) return m->vals[i];
        i = (i + 1) & mask;
    }
    return -1;
}

/* ---- pair map ---- */

static size_t hash_pair(uint64_t k) {
    k *= 0x9E3779B97F4A7C15ULL;
    return (size_t)(k ^ (k >> 31));
}

void tok_pairmap_free(tok_pairmap *m) {
    free(m->keys);
    free(m->rank);
    free(m->merged);
    memset(m, 0, sizeof *m);
}

static void pairmap_grow(tok_pairmap *m) {
    tok_pairmap g = {0};
    g.cap = m->cap ? m->cap * 2 : 64;
    g.keys = cast_xmalloc(g.cap * sizeof *g.keys);
    memset(g.keys, 0xFF, g.cap * sizeof *g.keys);
    g.rank = cast_xmalloc(g.cap * sizeof *g.rank);
    g.merged = cast_xmalloc(g.cap * sizeof *g.merged);
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i] != UINT64_MAX)
            tok_pairmap_put(&g, (int)(m->keys[i] >> 32), (int)(uint32_t)m->keys[i], m->rank[i], m->merged[i]);
    tok_pairmap_free(m);
    *m = g;
}

void tok_pairmap_put(tok_pairmap *m, int a, int b, int rank, int merged) {
    if ((m->n + 1) * 2 > m->cap) pairmap_grow(m);
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t mask = m->cap - 1, i = hash_pair(k) & mask;
    while (m->keys[i] != UINT64_MAX && m->keys[i] != k) i = (i + 1) & mask;
    if (m->keys[i] == UINT64_MAX) m->n++;
    m->keys[i] = k;
    m->rank[i] = rank;
    m->merged[i] = merged;
}

int tok_pairmap_get(const tok_pairmap *m, int a, int b, int *merged) {
    if (!m->cap) return -1;
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t mask = m->cap - 1, i = hash_pair(k) & mask;
    for (;;) {
        uint64_t ki = m->keys[i];
        if (ki == k) {
            *merged = m->merged[i];
            return m->rank[i];
        }
        if (ki == UINT64_MAX) return -1;
        i = (i + 1) & mask;
    }
}

/* ---- byte-level alphabet ---- */

void cast_bytelevel_init(cast_bytelevel *bm) {
    /* Printable bytes stand for themselves; the others (controls, space,
     * DEL, NBSP, soft hyphen...) get code points 256, 257, ... in byte order. */
    int next = 256;
    for (int i = 0; i < CAST_BYTELEVEL_CPS; i++) bm->cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        int cp = printable ? b : next++;
        bm->len[b] = (unsigned char)cast_utf8_encode(cp, bm->utf8[b]);
        bm->cp_to_byte[cp] = (short)b;
    }
}
