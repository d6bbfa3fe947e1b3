/* The one hash map: keys of every length class (empty, inside the slot,
 * exactly the inline size, in the pool, holding NUL bytes), growth through
 * many resizes, insertion order, clear and reuse, reserve, pairs of ints. */
#include <stdio.h>
#include <string.h>

#include "base/strmap.h"
#include "check.h"

/* Key i: a length cycling through the classes, bytes that depend on i
 * (NUL bytes included), so that no two keys are equal. */
static size_t make_key(char *buf, int i) {
    static const size_t lens[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 40};
    size_t len = lens[i % 10];
    snprintf(buf, 64, "%d", i);
    size_t digits = strlen(buf);
    for (size_t k = digits; k < len; k++) buf[k] = (char)((i * 7 + (int)k) % 5); /* bytes 0..4 */
    if (len < digits) len = digits;
    buf[len] = 'x'; /* the key's length is len, not up to a terminator */
    return len;
}

static void test_keys(void) {
    cast_strmap m = {0};
    const int n = 20000;
    char key[64];
    int added;
    CHECK(cast_strmap_find(&m, "a", 1) == NULL);
    int not_new = 0;
    for (int i = 0; i < n; i++) {
        size_t len = make_key(key, i);
        int64_t *v = cast_strmap_upsert(&m, key, len, -1, &added);
        if (!added || *v != -1) not_new++;
        *v = i;
    }
    CHECK(not_new == 0 && m.n == (size_t)n);
    int wrong = 0;
    for (int i = 0; i < n; i++) {
        size_t len = make_key(key, i);
        int64_t *v = cast_strmap_find(&m, key, len);
        if (!v || *v != i) wrong++;
        if (cast_strmap_find(&m, key, len + 1)) wrong++; /* a longer key is another key */
        v = cast_strmap_upsert(&m, key, len, 0, &added);
        if (added || *v != i) wrong++;
        size_t klen;
        const char *k = cast_strmap_key(&m, (size_t)i, &klen); /* insertion order */
        if (klen != len || memcmp(k, key, len) || cast_strmap_value(&m, (size_t)i) != i) wrong++;
    }
    CHECK_MSG(wrong == 0, "%d wrong lookups", wrong);

    /* the empty key and keys that differ only after the inline part */
    CHECK(cast_strmap_find(&m, "", 0) == NULL);
    *cast_strmap_upsert(&m, "", 0, 0, NULL) = 42;
    CHECK(*cast_strmap_find(&m, "", 0) == 42);
    const char *a = "0123456789abcdefA", *b = "0123456789abcdefB";
    *cast_strmap_upsert(&m, a, 17, 0, NULL) = 1;
    *cast_strmap_upsert(&m, b, 17, 0, NULL) = 2;
    CHECK(*cast_strmap_find(&m, a, 17) == 1 && *cast_strmap_find(&m, b, 17) == 2);
    CHECK(cast_strmap_find(&m, a, 16) == NULL);

    cast_strmap_clear(&m);
    CHECK(m.n == 0 && cast_strmap_find(&m, a, 17) == NULL && cast_strmap_find(&m, "", 0) == NULL);
    *cast_strmap_upsert(&m, b, 17, 0, &added) = 7;
    CHECK(added && *cast_strmap_find(&m, b, 17) == 7 && m.n == 1);
    cast_strmap_free(&m);
    CHECK(m.n == 0 && cast_strmap_find(&m, b, 17) == NULL);
}

static void test_pairs(void) {
    cast_strmap m = {0};
    int wrong = 0;
    for (int a = -3; a < 300; a++)
        for (int b = 0; b < 40; b += 3) *cast_strmap_upsert_pair(&m, a, b, 0, NULL) += (int64_t)a * 1000 + b;
    for (int a = -3; a < 300; a++)
        for (int b = 0; b < 40; b++) {
            int64_t *v = cast_strmap_find_pair(&m, a, b);
            if (b % 3 ? v != NULL : !v || *v != (int64_t)a * 1000 + b) wrong++;
        }
    for (size_t i = 0; i < m.n; i++) {
        int32_t a, b;
        cast_strmap_pair_at(&m, i, &a, &b);
        if (cast_strmap_value(&m, i) != (int64_t)a * 1000 + b) wrong++;
    }
    int32_t a0, b0;
    cast_strmap_pair_at(&m, 0, &a0, &b0);
    CHECK(a0 == -3 && b0 == 0);
    CHECK_MSG(wrong == 0, "%d wrong pair lookups", wrong);
    cast_strmap_free(&m);
}

/* Reserving makes room up front: inserting that many keys moves nothing. */
static void test_reserve(void) {
    cast_strmap m = {0};
    char key[64];
    cast_strmap_reserve(&m, 1000);
    size_t n_slots = m.n_slots;
    for (int i = 0; i < 1000; i++) {
        size_t len = make_key(key, i);
        *cast_strmap_upsert(&m, key, len, 0, NULL) = i;
    }
    CHECK(m.n_slots == n_slots && m.n == 1000);
    int wrong = 0;
    for (int i = 0; i < 1000; i++) {
        size_t len = make_key(key, i);
        int64_t *v = cast_strmap_find(&m, key, len);
        if (!v || *v != i) wrong++;
    }
    CHECK(wrong == 0);
    cast_strmap_reserve(&m, 10); /* never shrinks */
    CHECK(m.n_slots == n_slots);
    cast_strmap_free(&m);
}

int main(void) {
    test_keys();
    test_reserve();
    test_pairs();
    return check_report();
}
