/* cast apply-delta BASE DELTA --out DIR: a tuned model from its base and the
 * sparse delta that `cast tune --delta` wrote. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "cli.h"
#include "model/delta.h"

int cmd_apply_delta(int argc, char **argv) {
    const char *out = NULL, *dtype_name = NULL;
    const cli_opt opts[] = {{"--out", CLI_STRING, &out, "DIR", "the model folder to write"},
                            {"--dtype", CLI_STRING, &dtype_name, "f32|bf16|f16", "dtype of the saved weights (default: the base's)"},
                            {0}};
    const cli_spec spec = {"apply-delta", "BASE DELTA --out DIR",
                           "Applies a sparse delta (DELTA: a delta.safetensors, or the tune folder holding one) to BASE.", opts, 2, 2};
    const char *pos[2];
    int np, rc = cli_parse(&spec, argc, argv, pos, &np);
    if (rc) return rc == 2 ? 0 : 1;
    if (!out) return cli_failf("apply-delta: --out DIR is required");
    if (dtype_name && strcmp(dtype_name, "f32") && strcmp(dtype_name, "bf16") && strcmp(dtype_name, "f16"))
        return cli_failf("apply-delta: --dtype must be f32, bf16 or f16");
    cast_err err = {{0}};
    cast_model m;
    if (cast_model_load(&m, pos[0], &err)) return cli_fail(&err);
    char *delta = cast_dir_exists(pos[1]) ? cast_path_join(pos[1], "delta.safetensors") : cast_xstrdup(pos[1]);
    cast_dtype dtype = !dtype_name ? m.storage : !strcmp(dtype_name, "bf16") ? CAST_BF16 : !strcmp(dtype_name, "f16") ? CAST_F16 : CAST_F32;
    rc = cast_delta_apply(&m, delta, &err) || cast_model_save(&m, out, dtype, &err) ? cli_fail(&err) : 0;
    if (!rc) printf("wrote %s\n", out);
    free(delta);
    cast_model_free(&m);
    return rc;
}
