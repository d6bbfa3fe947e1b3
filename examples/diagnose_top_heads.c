/* Diagnose a model and print its top heads by conflict score.
 *
 *   cc diagnose_top_heads.c $(pkg-config --cflags --libs cast) -o diagnose_top_heads
 *   ./diagnose_top_heads MODEL_DIR SAFETY.jsonl UTILITY.jsonl [TOP]
 *
 * SAFETY: harmful prompts with refusals; UTILITY: prompts with good answers
 * (any format `cast diagnose` reads). */
#include <stdio.h>
#include <stdlib.h>

#include <cast.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL_DIR SAFETY UTILITY [TOP]\n", argv[0]);
        return 2;
    }
    int top = argc > 4 ? atoi(argv[4]) : 5;
    cast_error err;
    cast_llm *model = NULL;
    cast_data *safety = NULL, *utility = NULL;
    cast_map *map = NULL;
    int status = 1;
    if (cast_llm_open(argv[1], NULL, &model, &err) || cast_data_read(model, argv[2], NULL, &safety, &err) ||
        cast_data_read(model, argv[3], NULL, &utility, &err) || cast_diagnose(model, safety, utility, NULL, &map, &err)) {
        fprintf(stderr, "error (%s): %s\n", cast_code_name(err.code), err.message);
        goto done;
    }
    cast_llm_info info;
    cast_llm_get_info(model, &info);
    printf("%s: %d layers x %d heads; top %d of %d heads by conflict score (top 5%% hold %.1f%%)\n", info.architecture, info.layers,
           info.heads, top, cast_map_heads(map), 100 * cast_map_concentration(map));
    printf("rank layer head    score      cos\n");
    for (int rank = 0; rank < top && rank < cast_map_heads(map); rank++)
        for (int i = 0; i < cast_map_heads(map); i++) {
            cast_head_score h;
            cast_map_head(map, i, &h);
            if (h.rank == rank) printf("%4d %5d %4d %8.4f %8.4f\n", rank + 1, h.layer, h.head, h.score, h.cos);
        }
    status = 0;
done:
    cast_map_free(map);
    cast_data_free(safety);
    cast_data_free(utility);
    cast_llm_free(model);
    return status;
}
