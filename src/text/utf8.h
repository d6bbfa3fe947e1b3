/* UTF-8 for the text layer: validation (Unicode's well-formed table, the
 * same as utf8proc's and Rust's), encoding, decoding of text known to be
 * valid (the tokenizer's hot paths), lenient decoding where a stray byte
 * stands for itself (templates), and Rust's lossy repair (decoders). */
#ifndef CAST_TEXT_UTF8_H
#define CAST_TEXT_UTF8_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

/* U+FFFD REPLACEMENT CHARACTER, as UTF-8. */
#define CAST_UTF8_REPLACEMENT "\xEF\xBF\xBD"

/* Length of the sequence a lead byte starts; s must be valid UTF-8. */
static inline int cast_utf8_seq_len(unsigned char lead) { return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4; }

/* Decodes one code point from valid UTF-8; *len gets its byte length. */
static inline int32_t cast_utf8_decode_valid(const char *s, int *len) {
    const unsigned char *p = (const unsigned char *)s;
    if (p[0] < 0x80) { *len = 1; return p[0]; }
    if (p[0] < 0xE0) { *len = 2; return ((p[0] & 0x1F) << 6) | (p[1] & 0x3F); }
    if (p[0] < 0xF0) { *len = 3; return ((p[0] & 0x0F) << 12) | ((p[1] & 0x3F) << 6) | (p[2] & 0x3F); }
    *len = 4;
    return ((p[0] & 0x07) << 18) | ((p[1] & 0x3F) << 12) | ((p[2] & 0x3F) << 6) | (p[3] & 0x3F);
}

/* Moves byte offset i back to the start of its code point, not below lo. */
static inline size_t cast_utf8_char_start(const char *s, size_t lo, size_t i) {
    while (i > lo && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    return i;
}

/* Length of the valid sequence at s[0], or minus the length of its maximal
 * invalid subpart (the unit that lossy decoding replaces by one U+FFFD). n >= 1. */
int cast_utf8_check(const char *s, size_t n);
/* Length of the longest valid prefix of s (== n when all of s is valid). */
size_t cast_utf8_valid_prefix(const char *s, size_t n);
/* The code point when s is exactly one valid character, else -1. */
int32_t cast_utf8_one_char(const char *s, size_t n);

/* Writes cp (0..0x10FFFF) into out; returns the length, 0 when out of range. */
int cast_utf8_encode(int32_t cp, char out[4]);
/* Appends cp's encoding (nothing when out of range). */
void cast_utf8_append(cast_buf *b, int32_t cp);

/* Decodes the code point at s[*i] and advances *i; a byte that starts no
 * valid sequence decodes as its own value, one byte long. */
int32_t cast_utf8_next(const char *s, size_t n, size_t *i);
/* Code points in s, counted as cast_utf8_next steps. */
size_t cast_utf8_count(const char *s, size_t n);

/* Appends s with each maximal invalid subpart replaced by U+FFFD, as Rust's
 * String::from_utf8_lossy does (decoders must reproduce its exact output). */
void cast_utf8_lossy(cast_buf *out, const char *s, size_t n);

#endif
