/* Tokenizer helpers: UTF-8 (with Rust's lossy decoding, which decoders must
 * reproduce), the two hash maps behind vocabulary and merges, and the GPT-2
 * byte-level alphabet. */
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

/* ---- UTF-8 ---- */

int tok_u8enc(int32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid sequence at s[0], or minus the length of its maximal
 * invalid subpart (the unit Rust replaces by one U+FFFD). n >= 1. */
static int u8_step(const unsigned char *s, size_t n) {
    unsigned char b = s[0];
    if (b < 0x80) return 1;
    int need;
    unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
    } else return -1;
    for (int i = 1; i <= need; i++) {
        if ((size_t)i >= n) return -i;
        unsigned char c = s[i];
        unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (c < l || c > h) return -i;
    }
    return need + 1;
}

size_t tok_u8valid(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        int k = u8_step((const unsigned char *)s + i, n - i);
        if (k < 0) return i;
        i += (size_t)k;
    }
    return i;
}

void tok_u8lossy(cast_buf *out, const char *s, size_t n) {
    size_t i = 0, run = 0; /* run: start of the pending valid stretch */
    while (i < n) {
        int k = u8_step((const unsigned char *)s + i, n - i);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        cast_buf_append(out, s + run, i - run);
        cast_buf_append(out, "\xEF\xBF\xBD", 3);
        i += (size_t)(-k);
        run = i;
    }
    cast_buf_append(out, s + run, n - run);
}

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

void tok_bytemap_init(tok_bytemap *bm) {
    /* Printable bytes stand for themselves; the others (controls, space,
     * DEL, NBSP, soft hyphen...) get code points 256, 257, ... in byte order. */
    int next = 256;
    for (int i = 0; i < 324; i++) bm->cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        int cp = printable ? b : next++;
        bm->len[b] = (unsigned char)tok_u8enc(cp, bm->utf8[b]);
        bm->cp_to_byte[cp] = (short)b;
    }
}
