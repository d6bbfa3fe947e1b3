/* cast data refusals --harmful FILE --out-file F.jsonl: a refusal training
 * set (src/text/refusals.h) from harmful prompts. */
#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "cli.h"
#include "text/refusals.h"

static int data_refusals(int argc, char **argv) {
    const char *harmful = NULL, *out = NULL;
    int64_t seed = 0;
    int first = 0, json = 0;
    const cli_opt opts[] = {
        {"--harmful", CLI_STRING, &harmful, "FILE", "harmful prompts: AdvBench CSV, HarmBench CSV, do-not-answer, JSONL prompt, ..."},
        {"--out-file", CLI_STRING, &out, "F.jsonl", "the training set to write (atomically): JSONL {\"messages\": [user, assistant]}"},
        {"--seed", CLI_INT64, &seed, "S", "which refusal wording each prompt gets (default 0)"},
        {"--first", CLI_INT, &first, "N", "the first N prompts of the file (default 0 = all)"},
        {"--json", CLI_FLAG, &json, NULL, "print {\"out\", \"written\", \"dropped_safe\", \"wordings\", \"format\"} only"},
        {0}};
    const cli_spec spec = {"data refusals", "--harmful FILE --out-file F.jsonl [options]",
                           "A refusal training set: each harmful prompt paired with a refusal drawn (seeded) from varied "
                           "wordings, as conversations, so the model's chat template applies at train time "
                           "(cast tune M --safety F.jsonl).",
                           opts, 0, 0};
    const char *pos[1];
    int np, rc = cli_parse(&spec, argc, argv, pos, &np);
    if (rc) return rc == 2 ? 0 : 1;
    if (!harmful || !out) return cli_failf("data refusals: --harmful FILE and --out-file F.jsonl are required");
    if (first < 0) return cli_failf("data refusals: --first must be >= 0");
    if (cast_dir_exists(out)) return cli_failf("%s: is a folder; --out-file names the JSONL file to write", out);
    const char *inputs[] = {harmful};
    if (cli_out_file_check(out, inputs, 1)) return 1; /* never over its input */
    cast_err err = {0};
    cast_dataset d;
    if (cast_dataset_load(&d, harmful, &err)) return cli_fail(&err);
    cast_buf b = {0};
    cast_refusal_stats st;
    rc = cast_refusals_build(&d, (uint64_t)seed, first, &b, &st, &err) || cast_write_file_atomic(out, b.data, b.len, &err);
    cast_buf_free(&b);
    if (rc) {
        cast_dataset_free(&d);
        return cli_fail(&err);
    }
    if (json) {
        cast_buf j = {0};
        cast_buf_puts(&j, "{\"out\": ");
        cast_buf_json_string(&j, out, strlen(out));
        cast_buf_printf(&j, ", \"written\": %d, \"dropped_safe\": %d, \"wordings\": %d, \"format\": ", st.written, st.dropped_safe,
                        cast_refusal_count());
        cast_buf_json_string(&j, d.format, strlen(d.format));
        cast_buf_puts(&j, "}\n");
        fputs(j.data, stdout);
        cast_buf_free(&j);
    } else {
        printf("%s: %d prompts (%s) with refusals in %d wordings", out, st.written, d.format, cast_refusal_count());
        if (st.dropped_safe) printf("; %d items labelled safe left out", st.dropped_safe);
        printf("\n");
    }
    cast_dataset_free(&d);
    return 0;
}

int cmd_data(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        FILE *fp = argc < 2 ? stderr : stdout;
        fprintf(fp, "usage: cast data refusals --harmful FILE --out-file F.jsonl [options]\n\n"
                    "  refusals   a refusal training set from harmful prompts (AdvBench, HarmBench, any prompt list)\n");
        return argc < 2;
    }
    if (!strcmp(argv[1], "refusals")) return data_refusals(argc - 1, argv + 1);
    return cli_failf("data: unknown subcommand \"%s\" (see cast data --help)", argv[1]);
}
