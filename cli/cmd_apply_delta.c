/* cast apply-delta BASE DELTA --out DIR [--scale A]: a tuned model from its
 * base and the delta that `cast tune --delta` wrote (sparse slices or a diff
 * task vector), checked against the base's fingerprint. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "cli.h"
#include "model/delta.h"

/* 0 when the delta was made from this base (or --force), else 1 after printing. */
static int check_fingerprint(const cast_model *m, const char *base, const char *delta, int force) {
    cast_err err = {0};
    cast_delta_format fmt;
    char want[CAST_FINGERPRINT_LEN], have[CAST_FINGERPRINT_LEN];
    if (cast_delta_info(delta, &fmt, want, &err)) return cli_fail(&err);
    if (!want[0]) {
        cli_note("%s records no base fingerprint (made by an older cast): applied without checking the base", delta);
        return 0;
    }
    cast_model_fingerprint(m, have);
    if (!strcmp(want, have)) return 0;
    if (!force)
        return cli_failf("%s: delta was made from a different base model (fingerprint %s, this base %s is %s); --force to apply anyway",
                         delta, want, base, have);
    cli_note("%s: delta was made from a different base model (fingerprint %s, this base %s); applied anyway (--force)", delta, want, have);
    return 0;
}

int cmd_apply_delta(int argc, char **argv) {
    const char *out = NULL, *dtype_name = NULL;
    double scale = 1.0;
    int force = 0;
    const cli_opt opts[] = {
        {"--out", CLI_STRING, &out, "DIR", "the model folder to write (required)"},
        {"--scale", CLI_DOUBLE, &scale, "A",
         "base + A x the delta's change: a diff's tuned - base, a sparse delta's new - base on its slices (default 1; 0 = the base)"},
        {"--dtype", CLI_STRING, &dtype_name, "f32|bf16|f16", "dtype of the saved weights (default: the base's)"},
        {"--force", CLI_FLAG, &force, NULL, "apply to a base whose fingerprint differs, and replace a non-empty --out whole (default: refuse)"},
        {0}};
    const cli_spec spec = {"apply-delta", "BASE DELTA --out DIR [--scale A] [--force]",
                           "Applies a delta (DELTA: a delta.safetensors, or the tune folder holding one; sparse or diff) to BASE. "
                           "Refuses a base other than the one the delta was made from.",
                           opts, 2, 2};
    const char *pos[2];
    int np, rc = cli_parse(&spec, argc, argv, pos, &np);
    if (rc) return rc == 2 ? 0 : 1;
    if (!out) return cli_failf("apply-delta: --out DIR is required");
    if (dtype_name && strcmp(dtype_name, "f32") && strcmp(dtype_name, "bf16") && strcmp(dtype_name, "f16"))
        return cli_failf("apply-delta: --dtype must be f32, bf16 or f16");
    if (!isfinite(scale)) return cli_failf("apply-delta: --scale must be a finite number");
    char *delta = cast_dir_exists(pos[1]) ? cast_path_join(pos[1], "delta.safetensors") : cast_xstrdup(pos[1]);
    const char *inputs[] = {pos[0], delta};
    cli_out co;
    if (cli_out_begin(&co, out, inputs, 2, force, 0)) {
        free(delta);
        return 1;
    }
    cast_err err = {0};
    cast_model m;
    rc = 1;
    if (cast_model_load(&m, pos[0], &err)) {
        cli_fail(&err);
        cli_out_abort(&co);
        free(delta);
        return 1;
    }
    cast_dtype dtype = !dtype_name ? m.storage : !strcmp(dtype_name, "bf16") ? CAST_BF16 : !strcmp(dtype_name, "f16") ? CAST_F16 : CAST_F32;
    if (!check_fingerprint(&m, pos[0], delta, force)) {
        if (cast_delta_apply(&m, delta, scale, &err) || cast_model_save(&m, co.dir, dtype, &err)) cli_fail(&err);
        else rc = cli_out_commit(&co);
    }
    if (rc) cli_out_abort(&co);
    else printf("wrote %s\n", out);
    free(delta);
    cast_model_free(&m);
    return rc;
}
