/* libFuzzer target: config.json parsing on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>

#include "model/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cast_config c;
    cast_err err;
    cast_config_parse(&c, (const char *)data, size, "fuzz", &err);
    return 0;
}
