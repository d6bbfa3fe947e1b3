#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cast.h"
#include "cli.h"
#include "dist/dist.h"

typedef struct {
    const char *name;
    int (*run)(int, char **);
    const char *summary;
} command;

static const command commands[] = {
    {"info", cmd_info, "architecture, parameter count, heads, dtype of a model folder"},
    {"tokenize", cmd_tokenize, "token ids and pieces of a text, or decode ids"},
    {"chat", cmd_chat, "an interactive conversation through the model's chat template"},
    {"score", cmd_score, "mean NLL and perplexity over the scored tokens of a dataset"},
    {"generate", cmd_generate, "generate tokens (greedy or sampled) with the KV cache"},
    {"diagnose", cmd_diagnose, "CAST stage A: the head-level conflict map (safety vs utility gradients)"},
    {"eval", cmd_eval, "refusal rate, attack success rate and utility of a model, optionally against a base"},
    {"tune", cmd_tune, "CAST stage B: safety fine-tuning that skips high-conflict heads, and baselines"},
    {"apply-delta", cmd_apply_delta, "a tuned model from its base and a sparse delta"},
    {"attribute", cmd_attribute, "headroom: what resetting each head, k/v group, layer of a tuned model to its base recovers"},
    {"data", cmd_data, "datasets other tools read: a refusal training set from harmful prompts (cast data refusals)"},
    {"organism", cmd_organism, "the model organism: its synthetic world and tokenizer (cast organism data)"},
    {"demo", cmd_demo, "the model organism end to end: diagnose, align with every strategy, evaluate, report"},
    {"bench", cmd_bench, "throughput of forward, forward+backward and decode"},
};

static void usage(FILE *fp) {
    fprintf(fp, "cast %s: conflict-aware sparse tuning of language models\n\nusage: cast COMMAND [options]\n\ncommands:\n",
            CAST_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(fp, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(fp, "\n'cast COMMAND --help' describes each command.\n");
}

static int dispatch(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("cast %s\n", CAST_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "cast: unknown command \"%s\" (see cast --help)\n", argv[1]);
    return 1;
}

/* Under mpirun every rank runs the same command on its shard of the work;
 * rank 0 alone prints and writes. A rank that fails has said why (cli_fail)
 * and ends the whole job, so that no rank waits forever in a collective. */
int main(int argc, char **argv) {
    if (cast_dist_init(&argc, &argv)) {
        fprintf(stderr, "cast: MPI failed to start\n");
        return 1;
    }
    if (cast_dist_rank() > 0 && !freopen("/dev/null", "w", stdout)) return 1;
    int rc = dispatch(argc, argv);
    fflush(stdout);
    if (rc != 0 && cast_dist_size() > 1) {
        /* let mpirun forward the error line before the job is torn down */
        fflush(stderr);
        nanosleep(&(struct timespec){0, 300 * 1000 * 1000}, NULL);
        cast_dist_abort(rc);
    }
    cast_dist_finalize();
    return rc;
}
