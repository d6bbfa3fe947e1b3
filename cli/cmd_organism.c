/* cast organism SUBCOMMAND: the model organism (DESIGN.md §5, docs/organism.md).
 *   data   the synthetic world's splits, world.json and the tokenizer
 * More subcommands (e.g. train) are rows of SUBCOMMANDS below: a function
 * taking (argc, argv) with argv[0] the subcommand's name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "base/timer.h"
#include "cli.h"
#include "organism/tokenizer_gen.h"
#include "organism/world.h"

static int organism_data(int argc, char **argv) {
    const char *out = NULL;
    int64_t seed = 1;
    double scale = 1.0;
    int vocab = CAST_ORGANISM_VOCAB, json = 0;
    const cli_opt opts[] = {
        {"--out", CLI_STRING, &out, "DIR", "folder to write (created): <split>.jsonl, world.json, tokenizer/"},
        {"--seed", CLI_INT64, &seed, "S", "world seed (default 1)"},
        {"--scale", CLI_DOUBLE, &scale, "K", "multiply every split's size by K (default 1: 40k pretraining examples)"},
        {"--vocab", CLI_INT, &vocab, "N", "tokenizer vocabulary, special tokens included (default 1024)"},
        {"--json", CLI_FLAG, &json, NULL, "print a JSON summary only"},
        {0}};
    const cli_spec spec = {"organism data", "--out DIR [--seed S] [--scale K] [options]",
                           "Writes the model organism's synthetic world: every split as JSONL (prompt/response for training and "
                           "diagnosis, prompt/response/answer for the skills' evaluation, prompts for harmful/benign evaluation), "
                           "world.json, and a byte-level BPE tokenizer with ChatML specials in DIR/tokenizer.",
                           opts, 0, 0};
    const char *pos[1];
    int np, rc = cli_parse(&spec, argc, argv, pos, &np);
    if (rc) return rc == 2 ? 0 : 1;
    if (!out) return cli_failf("organism data: --out DIR is required");
    if (seed < 0) return cli_failf("organism data: --seed must be >= 0, got %lld", (long long)seed);
    if (!(scale > 0 && scale <= 20)) return cli_failf("organism data: --scale must be in (0, 20], got %g", scale);
    if (vocab < 259 || vocab > 65536) return cli_failf("organism data: --vocab must be in [259, 65536], got %d", vocab);
    if (cast_file_exists(out) && !cast_dir_exists(out)) return cli_failf("%s: exists and is not a folder", out);

    cast_err err = {{0}};
    double t0 = cast_now_s();
    cast_world w;
    if (cast_world_build(&w, (uint64_t)seed, scale, &err)) return cli_fail(&err);
    char *tok_dir = cast_path_join(out, "tokenizer");
    cast_token_stats st;
    rc = 1;
    if (cast_world_write(&w, out, &err) || cast_organism_write_tokenizer(tok_dir, &w, vocab, &err) ||
        cast_organism_token_stats(tok_dir, &w, CAST_SPLIT_PRETRAIN, &st, &err)) {
        cli_fail(&err);
        goto done;
    }
    double secs = cast_now_s() - t0;
    cast_buf b = {0};
    if (json) {
        cast_buf_puts(&b, "{\"out\":");
        cast_buf_json_string(&b, out, strlen(out));
        cast_buf_printf(&b, ",\"seed\":%lld,\"scale\":", (long long)seed);
        cast_buf_json_number(&b, scale);
        cast_buf_puts(&b, ",\"splits\":{");
        for (int s = 0; s < CAST_N_SPLITS; s++) cast_buf_printf(&b, "%s\"%s\":%d", s ? "," : "", cast_split_name(s), w.split[s].n);
        cast_buf_puts(&b, "},\"tokenizer\":{\"path\":");
        cast_buf_json_string(&b, tok_dir, strlen(tok_dir));
        cast_buf_printf(&b, ",\"vocab_size\":%d},\"pretrain_tokens\":{\"mean\":", vocab);
        cast_buf_json_number(&b, st.mean);
        cast_buf_printf(&b, ",\"p95\":%d,\"max\":%d,\"total\":%lld},\"seconds\":", st.p95, st.max, (long long)st.tokens);
        cast_buf_json_number(&b, secs);
        cast_buf_puts(&b, "}\n");
    } else {
        cast_buf_printf(&b, "world      seed %lld, scale %g -> %s/world.json\n\n", (long long)seed, scale, out);
        cast_buf_printf(&b, "  %-14s %8s\n", "split", "examples");
        for (int s = 0; s < CAST_N_SPLITS; s++) cast_buf_printf(&b, "  %-14s %8d\n", cast_split_name(s), w.split[s].n);
        cast_buf_printf(&b, "\ntokenizer  %s: %d tokens (byte-level BPE, ChatML specials)\n", tok_dir, vocab);
        cast_buf_printf(&b, "tokens     pretrain: %.1f per example (p95 %d, max %d) with the chat template\n", st.mean, st.p95,
                        st.max);
        cast_buf_printf(&b, "time       %.2f s\n", secs);
    }
    fputs(b.data, stdout);
    cast_buf_free(&b);
    rc = 0;
done:
    free(tok_dir);
    cast_world_free(&w);
    return rc;
}

typedef struct {
    const char *name;
    int (*run)(int, char **);
    const char *summary;
} subcommand;

static const subcommand SUBCOMMANDS[] = {
    {"data", organism_data, "write the synthetic world (splits, world.json) and its tokenizer"},
};
#define N_SUB (int)(sizeof SUBCOMMANDS / sizeof SUBCOMMANDS[0])

static void usage(FILE *fp) {
    fprintf(fp, "usage: cast organism SUBCOMMAND [options]\n\nThe model organism: a small chat model trained by cast on a "
                "synthetic world of its own.\n\nsubcommands:\n");
    for (int i = 0; i < N_SUB; i++) fprintf(fp, "  %-8s %s\n", SUBCOMMANDS[i].name, SUBCOMMANDS[i].summary);
    fprintf(fp, "\n'cast organism SUBCOMMAND --help' describes each.\n");
}

int cmd_organism(int argc, char **argv) {
    if (argc < 2) {
        cast_buf names = {0};
        for (int i = 0; i < N_SUB; i++) cast_buf_printf(&names, "%s%s", i ? ", " : "", SUBCOMMANDS[i].name);
        int rc = cli_failf("organism: missing subcommand (%s; see cast organism --help)", names.data);
        cast_buf_free(&names);
        return rc;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (int i = 0; i < N_SUB; i++)
        if (!strcmp(argv[1], SUBCOMMANDS[i].name)) return SUBCOMMANDS[i].run(argc - 1, argv + 1);
    return cli_failf("organism: unknown subcommand \"%s\" (see cast organism --help)", argv[1]);
}
