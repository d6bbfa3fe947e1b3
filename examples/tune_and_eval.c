/* Tune a model with a given skip set, then evaluate it and save it.
 *
 *   cc tune_and_eval.c $(pkg-config --cflags --libs cast) -o tune_and_eval
 *   ./tune_and_eval MODEL_DIR SAFETY.jsonl HARMFUL BENIGN UTILITY OUT_DIR STEPS LAYER.HEAD ...
 *
 * Trains attention on SAFETY (harmful prompts with refusals) for STEPS steps
 * with the listed heads frozen (e.g. 0.3 2.1), prints refusal rates and the
 * utility metric, and writes the tuned model and its sparse delta to OUT_DIR. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cast.h>

static int on_step(void *user, int64_t step, int64_t total, double loss) {
    (void)user;
    if (step == total) printf("step %lld/%lld: loss %.4f\n", (long long)step, (long long)total, loss);
    return 0; /* non-zero would stop the run */
}

int main(int argc, char **argv) {
    if (argc < 9) {
        fprintf(stderr, "usage: %s MODEL SAFETY HARMFUL BENIGN UTILITY OUT_DIR STEPS LAYER.HEAD...\n", argv[0]);
        return 2;
    }
    cast_error err;
    cast_llm *model = NULL;
    cast_data *safety = NULL;
    int status = 1;
    if (cast_llm_open(argv[1], NULL, &model, &err) || cast_data_read(model, argv[2], NULL, &safety, &err)) goto fail;
    cast_llm_info info;
    cast_llm_get_info(model, &info);
    int n = argc - 8, *heads = calloc((size_t)n, sizeof(int));
    for (int i = 0; i < n; i++) {
        int layer, head;
        if (sscanf(argv[8 + i], "%d.%d", &layer, &head) != 2) {
            fprintf(stderr, "%s: not LAYER.HEAD\n", argv[8 + i]);
            free(heads);
            goto done;
        }
        heads[i] = layer * info.heads + head;
    }
    cast_tune_params p;
    cast_tune_default_params(&p);
    p.strategy = "cast";
    p.heads = heads; /* a given skip set: no map needed */
    p.n_heads = n;
    p.steps = atoi(argv[7]);
    p.lr = 1e-4;
    p.keep_delta = 1;
    p.progress = on_step;
    cast_tune_result r;
    cast_code rc = cast_tune(model, safety, NULL, NULL, &p, &r, NULL, &err);
    free(heads);
    if (rc) goto fail;
    printf("tuned: %d heads skipped, %lld parameters trained, %lld steps\n", r.k, (long long)r.trainable, (long long)r.steps);

    cast_eval_params ep;
    cast_eval_default_params(&ep);
    ep.first = 16;
    ep.max_new = 32;
    const char *utility[] = {argv[5]};
    cast_eval_result ev;
    if (cast_evaluate(model, argv[3], argv[4], utility, 1, &ep, &ev, NULL, &err)) goto fail;
    printf("harmful refused %.3f, benign refused %.3f, utility %s %.4f (n %d)\n", ev.harmful_refusal, ev.benign_refusal,
           ev.utility[0].metric, ev.utility[0].value, ev.utility[0].n);

    char delta[4096];
    snprintf(delta, sizeof delta, "%s/delta.safetensors", argv[6]);
    if (cast_llm_save(model, argv[6], NULL, &err) || cast_tune_write_delta(model, delta, "sparse", &err)) goto fail;
    printf("wrote %s\n", argv[6]);
    status = 0;
    goto done;
fail:
    fprintf(stderr, "error (%s): %s\n", cast_code_name(err.code), err.message);
done:
    cast_data_free(safety);
    cast_llm_free(model);
    return status;
}
