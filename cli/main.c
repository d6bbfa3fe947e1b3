#include <stdio.h>
#include <string.h>

#include "cast.h"
#include "cli.h"

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

int main(int argc, char **argv) {
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
