/* The UTF-8 module against utf8proc (validity, decoding, encoding) over every
 * lead byte with each continuation byte, and Rust's lossy repair on the
 * examples of its documentation's rule (one U+FFFD per maximal subpart). */
#include <string.h>
#include <utf8proc.h>

#include "check.h"
#include "text/utf8.h"

/* Every 1..4-byte string whose first two bytes range over all values and
 * whose later bytes are continuation bytes or not: check() agrees with
 * utf8proc_iterate on validity and length, next() on the value. */
static void test_against_utf8proc(void) {
    const unsigned char tails[] = {0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0x41, 0xC0};
    int disagree = 0;
    for (int a = 0; a < 256; a++)
        for (int b = 0; b < 256; b++)
            for (size_t t = 0; t < sizeof tails; t++)
                for (size_t n = 1; n <= 4; n++) {
                    unsigned char s[4] = {(unsigned char)a, (unsigned char)b, tails[t], tails[(t + 3) % sizeof tails]};
                    utf8proc_int32_t cp;
                    utf8proc_ssize_t k = utf8proc_iterate(s, (utf8proc_ssize_t)n, &cp);
                    int mine = cast_utf8_check((const char *)s, n);
                    size_t i = 0;
                    int32_t next = cast_utf8_next((const char *)s, n, &i);
                    if ((k > 0) != (mine > 0) || (k > 0 && k != mine) || (k > 0 ? next != cp || (int)i != k : next != a || i != 1))
                        disagree++;
                }
    CHECK_MSG(disagree == 0, "%d strings where cast_utf8 and utf8proc disagree", disagree);
}

static void test_encode(void) {
    int bad = 0;
    for (int32_t cp = 0; cp <= 0x10FFFF; cp++) {
        char mine[4];
        utf8proc_uint8_t ref[4];
        int n = cast_utf8_encode(cp, mine);
        utf8proc_ssize_t k = utf8proc_encode_char(cp, ref);
        if (n != k || memcmp(mine, ref, (size_t)n)) bad++;
        int len;
        if (cast_utf8_decode_valid(mine, &len) != cp || len != n) bad++;
    }
    CHECK_MSG(bad == 0, "%d code points encode or decode differently", bad);
    char out[4];
    CHECK(cast_utf8_encode(-1, out) == 0);
    CHECK(cast_utf8_encode(0x110000, out) == 0);
    cast_buf b = {0};
    cast_utf8_append(&b, 0x20AC);
    cast_utf8_append(&b, 0x110000);
    CHECK(b.len == 3 && !memcmp(b.data, "\xE2\x82\xAC", 3));
    cast_buf_free(&b);
}

static void test_strings(void) {
    CHECK(cast_utf8_valid_prefix("a\xC3\xA9z", 4) == 4);
    CHECK(cast_utf8_valid_prefix("ab\xE2\x82", 4) == 2);
    CHECK(cast_utf8_valid_prefix("\xED\xA0\x80", 3) == 0); /* a surrogate */
    CHECK(cast_utf8_one_char("\xE2\x96\x81", 3) == 0x2581);
    CHECK(cast_utf8_one_char("ab", 2) == -1);
    CHECK(cast_utf8_one_char("\xE2\x96", 2) == -1);
    CHECK(cast_utf8_one_char("", 0) == -1);
    CHECK(cast_utf8_count("a\xC3\xA9\xFFz", 5) == 4); /* the stray byte counts as one */
    CHECK(cast_utf8_char_start("a\xE2\x82\xAC", 0, 3) == 1);
    CHECK(cast_utf8_char_start("\x82\xAC", 0, 1) == 0);
    CHECK(cast_utf8_char_start("a\xE2\x82\xAC", 2, 3) == 2);
    CHECK(cast_utf8_seq_len(0xF0) == 4 && cast_utf8_seq_len('a') == 1);
}

static void lossy_is(const char *in, size_t n, const char *want) {
    cast_buf b = {0};
    cast_utf8_lossy(&b, in, n);
    CHECK_MSG(b.len == strlen(want) && !memcmp(b.data ? b.data : "", want, b.len), "lossy of %zu bytes", n);
    cast_buf_free(&b);
}

static void test_lossy(void) {
    const char *R = CAST_UTF8_REPLACEMENT;
    char want[64];
    lossy_is("plain", 5, "plain");
    /* a truncated 3-byte sequence is one maximal subpart; F5 and C0 are each their own */
    snprintf(want, sizeof want, "a%sb", R);
    lossy_is("a\xE2\x82" "b", 4, want);
    snprintf(want, sizeof want, "%s%s", R, R);
    lossy_is("\xF5\xC0", 2, want);
    /* E0 80: 80 is not allowed after E0, so E0 and 80 are replaced separately */
    lossy_is("\xE0\x80", 2, want);
    snprintf(want, sizeof want, "x%s", R);
    lossy_is("x\xF0\x9F\x98", 4, want);
}

int main(void) {
    test_against_utf8proc();
    test_encode();
    test_strings();
    test_lossy();
    return check_report();
}
