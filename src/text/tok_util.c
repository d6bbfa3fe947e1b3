/* Tokenizer helpers: Rust's notion of whitespace, the GPT-2 byte-level
 * alphabet, and the output token list. */
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

/* ---- output token list ---- */

void tok_out_push(tok_out *o, int id, const char *piece, size_t len) {
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 64;
        o->ids = cast_xrealloc(o->ids, sizeof *o->ids * (size_t)o->cap);
        if (o->want_pieces) o->piece_off = cast_xrealloc(o->piece_off, sizeof *o->piece_off * (size_t)o->cap);
    }
    o->ids[o->n] = id;
    if (o->want_pieces) {
        o->piece_off[o->n] = o->pieces.len;
        cast_buf_append(&o->pieces, piece, len);
        cast_buf_putc(&o->pieces, 0);
    }
    o->n++;
}

void tok_out_free(tok_out *o) {
    free(o->ids);
    free(o->piece_off);
    cast_buf_free(&o->pieces);
    memset(o, 0, sizeof *o);
}
