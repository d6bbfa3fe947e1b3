/* Tokenizer helpers: Rust's notion of whitespace and the GPT-2 byte-level
 * alphabet. */
#include "text/tok_internal.h"

/* ---- code point classes ---- */

int tok_is_space(int32_t cp) {
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0x85) return 0;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
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
