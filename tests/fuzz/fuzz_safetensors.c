/* libFuzzer target: the safetensors header parser on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>

#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cast_st_tensor *t;
    int n;
    size_t start;
    cast_err err;
    if (cast_st_parse(data, size, "fuzz", &t, &n, &start, &err) == 0) cast_st_tensors_free(t, n);
    return 0;
}
