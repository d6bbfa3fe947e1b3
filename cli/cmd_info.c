/* cast info MODEL: what a model folder holds, and the memory diagnose and
 * tune would take with it (estimates from config.json and the safetensors
 * headers; no weight is read). */
#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "base/cpu.h"
#include "base/threads.h"
#include "cli.h"
#include "tensor/linear.h"
#include "model/model.h"
#include "text/tokenizer.h"

int cmd_info(int argc, char **argv) {
    int json = 0, batch = 4, seq = 512, grad_passes = 0, threads = 0, kv_freeze = 0;
    double memory_gb = 0;
    const cli_opt opts[] = {{"--batch", CLI_INT, &batch, "N", "memory estimates: sequences per forward/backward (default 4)"},
                            {"--seq", CLI_INT, &seq, "T", "memory estimates: tokens per sequence (default 512)"},
                            {"--grad-passes", CLI_INT, &grad_passes, "N", "diagnose's gradient passes (default 0 = the fewest that fit)"},
                            {"--kv-freeze", CLI_FLAG, &kv_freeze, NULL, "tune with k and v frozen (q and o trained)"},
                            {"--memory", CLI_DOUBLE, &memory_gb, "GB", "the budget, GiB (default: physical memory less 1 GiB)"},
                            {"--threads", CLI_INT, &threads, "N", "threads the run would use (default 0 = all cores)"},
                            {"--json", CLI_FLAG, &json, NULL, "one JSON object on stdout"},
                            {0}};
    const cli_spec spec = {"info", "MODEL [options]",
                           "Architecture, parameter count, heads, dtype and vocabulary of a model folder, and the memory "
                           "`cast diagnose` and `cast tune` would take (estimates; no weight is read).",
                           opts, 1, 1};
    const char *pos[1];
    int np, rc = cli_parse(&spec, argc, argv, pos, &np);
    if (rc) return rc == 2 ? 0 : 1;
    if (batch <= 0 || seq <= 1 || grad_passes < 0 || !(memory_gb >= 0)) return cli_failf("info: need --batch >= 1, --seq >= 2, --grad-passes and --memory >= 0");
    cast_set_threads(threads);
    /* the tokenizer is optional for info, but a broken one is reported */
    cli_model cm;
    if (cli_model_open_header(&cm, pos[0])) return 1; /* headers only: never the weights */
    const cast_model *mp = &cm.m;
    const cast_tokenizer *tok = cm.tok;
    const cast_config *c = &mp->cfg;
    int64_t params = cast_model_param_count(mp);
    const char *tmpl = tok ? cast_tokenizer_chat_template(tok) : NULL;
    cast_mem_opts mo;
    cast_mem_opts_default(&mo);
    mo.storage = mp->storage;
    mo.micro_batch = batch;
    mo.seq_len = seq;
    mo.threads = cast_get_threads();
    mo.grad_passes = grad_passes;
    mo.budget = (int64_t)(memory_gb * 1073741824.0);
    mo.kv_trained = !kv_freeze;
    cast_mem_plan pd, pt;
    cast_mem_diagnose(c, &mo, &pd);
    cast_mem_tune(c, &mo, &pt);
    /* what --compute auto would choose here */
    const char *compute = mp->storage == CAST_BF16 && cast_linear_bf16_native() ? "bf16" : "f32";
    if (json) {
        cast_buf b = {0};
        cast_buf_puts(&b, "{\"path\":");
        cast_buf_json_string(&b, pos[0], strlen(pos[0]));
        cast_buf_printf(&b,
                        ",\"architecture\":\"%s\",\"parameters\":%lld,\"layers\":%d,\"heads\":%d,\"kv_heads\":%d,"
                        "\"head_dim\":%d,\"hidden\":%d,\"intermediate\":%d,\"vocab\":%d,\"dtype\":\"%s\","
                        "\"tied_embeddings\":%s,\"rope_theta\":",
                        c->architecture, (long long)params, c->layers, c->heads, c->kv_heads, c->head_dim, c->hidden, c->inter,
                        c->vocab, cast_dtype_name(mp->storage), c->tie_embeddings ? "true" : "false");
        cast_buf_json_number(&b, c->rope_theta);
        cast_buf_printf(&b, ",\"rope_scaling\":%s,\"sliding_window\":%d,\"tokenizer\":%s,\"chat_template\":%s",
                        c->rope_llama3 ? "\"llama3\"" : "null", c->sliding_window, tok ? "true" : "false",
                        tmpl ? "true" : "false");
        cast_buf_printf(&b, ",\"compute_auto\":\"%s\",\"cpu_bf16\":\"%s\",\"memory\":{\"batch\":%d,\"seq\":%d,\"threads\":%d",
                        compute, cast_cpu_bf16_name(), batch, seq, mo.threads);
        const cast_mem_plan *plans[2] = {&pd, &pt};
        const char *names[2] = {"diagnose", "tune"};
        for (int i = 0; i < 2; i++) {
            const cast_mem_plan *p = plans[i];
            cast_buf_printf(&b,
                            ",\"%s\":{\"total_mb\":%.0f,\"weights_mb\":%.0f,\"activations_mb\":%.0f,\"gradients_mb\":%.0f,"
                            "\"optimizer_mb\":%.0f,\"runtime_mb\":%.0f,\"budget_mb\":%.0f,\"fits\":%s,\"grad_passes\":%d,"
                            "\"recompute\":%s,\"stream\":%s,\"half_moments\":%s}",
                            names[i], p->total / 1048576.0, p->weights / 1048576.0, p->activations / 1048576.0,
                            p->gradients / 1048576.0, p->optimizer / 1048576.0, p->runtime / 1048576.0, p->budget / 1048576.0,
                            p->fits ? "true" : "false", p->grad_passes, p->recompute ? "true" : "false", p->stream ? "true" : "false",
                            p->half_moments ? "true" : "false");
        }
        cast_buf_puts(&b, "}}\n");
        fputs(b.data, stdout);
        cast_buf_free(&b);
    } else {
        printf("model         %s\n", pos[0]);
        printf("architecture  %s\n", c->architecture);
        printf("parameters    %lld (%.1fM)\n", (long long)params, (double)params / 1e6);
        printf("layers        %d\n", c->layers);
        printf("heads         %d query, %d kv (group of %d), head_dim %d\n", c->heads, c->kv_heads, c->heads / c->kv_heads,
               c->head_dim);
        printf("hidden        %d, MLP %d\n", c->hidden, c->inter);
        printf("vocab         %d%s\n", c->vocab, c->tie_embeddings ? " (tied embeddings)" : "");
        printf("dtype         %s\n", cast_dtype_name(mp->storage));
        printf("rope          theta %g%s\n", c->rope_theta, c->rope_llama3 ? ", llama3 scaling" : "");
        if (c->sliding_window) printf("window        %d\n", c->sliding_window);
        printf("tokenizer     %s\n", tok ? "yes" : "none");
        printf("chat template %s\n", tmpl ? "yes" : "none");
        printf("compute       auto = %s here (bf16 dot products: %s)\n", compute, cast_cpu_bf16_name());
        printf("\nmemory at --batch %d --seq %d, %d threads (estimates):\n", batch, seq, mo.threads);
        cli_memory_plan_print("diagnose", &pd);
        cli_memory_plan_print("tune", &pt);
        if (!pd.fits) printf("  diagnose: try a smaller --batch or --seq%s\n", pd.grad_passes < c->layers ? ", or more --grad-passes" : "");
        if (!pt.fits) printf("  tune: try a smaller --batch or --seq%s\n", kv_freeze ? "" : ", or --kv-freeze all");
    }
    cli_model_close(&cm);
    return 0;
}
