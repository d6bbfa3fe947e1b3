/* cast info MODEL: what a model folder holds. */
#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "cli.h"
#include "model/model.h"
#include "text/tokenizer.h"

int cmd_info(int argc, char **argv) {
    int json = 0;
    const cli_opt opts[] = {{"--json", CLI_FLAG, &json, NULL, "one JSON object on stdout"}, {0}};
    const cli_spec spec = {"info", "MODEL [--json]", "Architecture, parameter count, heads, dtype and vocabulary of a model folder.",
                           opts, 1, 1};
    const char *pos[1];
    int np, rc = cli_parse(&spec, argc, argv, pos, &np);
    if (rc) return rc == 2 ? 0 : 1;
    /* the tokenizer is optional for info, but a broken one is reported */
    cli_model cm;
    if (cli_model_open_header(&cm, pos[0])) return 1; /* headers only: never the weights */
    const cast_model *mp = &cm.m;
    const cast_tokenizer *tok = cm.tok;
    const cast_config *c = &mp->cfg;
    int64_t params = cast_model_param_count(mp);
    const char *tmpl = tok ? cast_tokenizer_chat_template(tok) : NULL;
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
        cast_buf_printf(&b, ",\"rope_scaling\":%s,\"sliding_window\":%d,\"tokenizer\":%s,\"chat_template\":%s}\n",
                        c->rope_llama3 ? "\"llama3\"" : "null", c->sliding_window, tok ? "true" : "false",
                        tmpl ? "true" : "false");
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
    }
    cli_model_close(&cm);
    return 0;
}
