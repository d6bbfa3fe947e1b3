#include "text/utf8.h"

int cast_utf8_check(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    unsigned char b = u[0];
    if (b < 0x80) return 1;
    int need;
    unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        if (b == 0xE0) lo = 0xA0; /* no overlong forms */
        if (b == 0xED) hi = 0x9F; /* no surrogates */
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
    } else return -1;
    for (int i = 1; i <= need; i++) {
        if ((size_t)i >= n) return -i;
        unsigned char c = u[i];
        unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (c < l || c > h) return -i;
    }
    return need + 1;
}

size_t cast_utf8_valid_prefix(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        int k = cast_utf8_check(s + i, n - i);
        if (k < 0) return i;
        i += (size_t)k;
    }
    return i;
}

int32_t cast_utf8_one_char(const char *s, size_t n) {
    if (!n) return -1;
    int k = cast_utf8_check(s, n);
    if (k < 0 || (size_t)k != n) return -1;
    int len;
    return cast_utf8_decode_valid(s, &len);
}

int cast_utf8_encode(int32_t cp, char out[4]) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0) return 0;
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
    if (cp > 0x10FFFF) return 0;
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

void cast_utf8_append(cast_buf *b, int32_t cp) {
    char tmp[4];
    cast_buf_append(b, tmp, (size_t)cast_utf8_encode(cp, tmp));
}

int32_t cast_utf8_next(const char *s, size_t n, size_t *i) {
    unsigned char c = (unsigned char)s[*i];
    int k = c < 0x80 ? 1 : cast_utf8_check(s + *i, n - *i);
    if (k <= 0) {
        (*i)++;
        return c;
    }
    int len;
    int32_t cp = cast_utf8_decode_valid(s + *i, &len);
    *i += (size_t)k;
    return cp;
}

size_t cast_utf8_count(const char *s, size_t n) {
    size_t count = 0;
    for (size_t i = 0; i < n; count++) cast_utf8_next(s, n, &i);
    return count;
}

void cast_utf8_lossy(cast_buf *out, const char *s, size_t n) {
    size_t i = 0, run = 0; /* run: start of the pending valid stretch */
    while (i < n) {
        int k = cast_utf8_check(s + i, n - i);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        cast_buf_append(out, s + run, i - run);
        cast_buf_append(out, CAST_UTF8_REPLACEMENT, 3);
        i += (size_t)(-k);
        run = i;
    }
    cast_buf_append(out, s + run, n - run);
}
