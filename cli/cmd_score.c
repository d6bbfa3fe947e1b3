/* cast score MODEL --data FILE: mean NLL and perplexity over the scored tokens. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/timer.h"
#include "cli.h"
#include "model/forward.h"

int cmd_score(int argc, char **argv) {
    const char *data = NULL, *template_name = NULL;
    int json = 0, batch = 8, max_len = 0, limit = 0, threads = 0;
    const cli_opt opts[] = {
        {"--data", CLI_STRING, &data, "FILE", "dataset (JSONL prompt/response, messages or input_ids/labels; CSV; ...)"},
        {"--template", CLI_STRING, &template_name, "NAME", "chat template instead of the model's (chatml, llama2, ...)"},
        {"--batch", CLI_INT, &batch, "N", "sequences per forward pass (default 8)"},
        {"--max-len", CLI_INT, &max_len, "N", "truncate sequences to N tokens (default: no limit)"},
        {"--limit", CLI_INT, &limit, "N", "score the first N examples only"},
        {"--threads", CLI_INT, &threads, "N", "threads (default: all cores)"},
        {"--json", CLI_FLAG, &json, NULL, "print {\"loss\", \"perplexity\", \"tokens\", \"examples\"} only"},
        {0}};
    const cli_spec spec = {"score", "MODEL --data FILE [options]",
                           "Mean negative log-likelihood and perplexity over the scored (response) tokens of a dataset.", opts, 1, 1};
    const char *pos[1];
    int np, rc = cli_parse(&spec, argc, argv, pos, &np);
    if (rc) return rc == 2 ? 0 : 1;
    if (!data) return cli_failf("score: --data FILE is required");
    if (batch <= 0 || max_len < 0 || limit < 0) return cli_failf("score: --batch must be positive, --max-len and --limit >= 0");
    cast_set_threads(threads);
    cli_model cm;
    if (cli_model_open(&cm, pos[0], template_name)) return 1;
    cast_seqs seqs;
    if (cli_encode_file(&cm, data, limit, max_len, -1, &seqs, NULL)) {
        cli_model_close(&cm);
        return 1;
    }
    cast_err err = {{0}};
    cast_acts *acts = cast_acts_new();
    double sum = 0;
    int64_t count = 0;
    rc = 1;
    cli_progress bar;
    cli_progress_start(&bar, "score", seqs.n);
    for (int i = 0; i < seqs.n; i += batch) {
        cast_seqs part = cast_seqs_slice(&seqs, i, seqs.n - i < batch ? seqs.n - i : batch);
        cast_loss l;
        if (cast_model_forward(&cm.m, acts, &part, NULL, &l, NULL, NULL, &err)) {
            cast_fail_prefix(&err, data);
            cli_fail(&err);
            goto done;
        }
        sum += l.sum;
        count += l.count;
        cli_progress_update(&bar, i + part.n, NULL);
    }
    cli_progress_end(&bar);
    if (count == 0) {
        cli_failf("%s: no scored tokens", data);
        goto done;
    }
    double loss = sum / (double)count;
    if (!isfinite(loss)) {
        cli_failf("%s: the loss is not finite (%g)", data, loss);
        goto done;
    }
    if (json) {
        cast_buf b = {0};
        cast_buf_puts(&b, "{\"loss\":");
        cast_buf_json_number(&b, loss);
        cast_buf_puts(&b, ",\"perplexity\":");
        cast_buf_json_number(&b, exp(loss));
        cast_buf_printf(&b, ",\"tokens\":%lld,\"examples\":%d}\n", (long long)count, seqs.n);
        fputs(b.data, stdout);
        cast_buf_free(&b);
    } else {
        printf("data        %s\nexamples    %d\ntokens      %lld scored\nloss        %.6f nats/token\nperplexity  %.4f\n", data,
               seqs.n, (long long)count, loss, exp(loss));
    }
    rc = 0;
done:
    cast_acts_free(acts);
    cast_seqs_free(&seqs);
    cli_model_close(&cm);
    return rc;
}
