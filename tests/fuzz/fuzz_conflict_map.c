/* libFuzzer target: conflict_map.json as `cast tune --map` and `cast
 * attribute` read it. A map that loads is written back (JSON and CSV) and
 * used to select heads, as tune does. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/buf.h"
#include "cast/diagnose.h"
#include "cast/select.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cast_conflict_map map;
    cast_err err;
    if (cast_conflict_map_parse(&map, (const char *)data, size, "fuzz", &err)) return 0;
    cast_buf b = {0};
    cast_conflict_map_json(&map, &b);
    cast_conflict_map_csv(&map, &b);
    cast_buf_free(&b);
    int n = map.layers * map.heads;
    int *skip = malloc(sizeof(int) * (size_t)n);
    for (cast_strategy s = CAST_STRATEGY_CAST; s <= CAST_STRATEGY_FS; s++) {
        int k = cast_select_count(&map, s, n / 4 + 1);
        cast_select_heads(&map, map.layers, map.heads, s, k, 1, skip, &err);
    }
    free(skip);
    cast_conflict_map_free(&map);
    return 0;
}
