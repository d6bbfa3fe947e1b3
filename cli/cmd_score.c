/* cast score MODEL --data FILE: mean NLL and perplexity over the scored tokens. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/timer.h"
#include "base/threads.h"
#include "cli.h"
#include "model/forward.h"

int cmd_score(int argc, char **argv) {
    const char *compute = "auto";
    const char *data = NULL, *template_name = NULL, *on_long = "skip";
    int json = 0, batch = 8, threads = 0;
    cli_data_opts d = {0, 0, CAST_ON_LONG_SKIP, -1};
    const cli_opt opts[] = {
        {"--data", CLI_STRING, &data, "FILE", "dataset (JSONL prompt/response, messages or input_ids/labels; CSV; ...)"},
        {"--template", CLI_STRING, &template_name, "NAME", "chat template instead of the model's (default: the model's; chatml, llama2, ...)"},
        {"--batch", CLI_INT, &batch, "N", "sequences per forward pass (default 8)"},
        {"--max-len", CLI_INT, &d.max_len, "N", "tokens per example at most (default 0 = no limit)"},
        {"--on-long", CLI_STRING, &on_long, "POLICY", CLI_ON_LONG_HELP},
        {"--first", CLI_INT, &d.first, "N", "the first N examples of the dataset (default 0 = all)"},
        {"--threads", CLI_INT, &threads, "N", "threads (default 0 = all cores)"},
        CLI_COMPUTE_OPT(compute),
        {"--json", CLI_FLAG, &json, NULL, "print {\"loss\", \"perplexity\", \"tokens\", \"examples\", \"skipped\", \"compute\", \"peak_rss_mb\"} only"},
        {0}};
    const cli_spec spec = {"score", "MODEL --data FILE [options]",
                           "Mean negative log-likelihood and perplexity over the scored (response) tokens of a dataset.", opts, 1, 1};
    const char *pos[1];
    int np, rc = cli_parse(&spec, argc, argv, pos, &np);
    if (rc) return rc == 2 ? 0 : 1;
    if (!data) return cli_failf("score: --data FILE is required");
    if (batch <= 0 || d.max_len < 0 || d.first < 0) return cli_failf("score: --batch must be positive, --max-len and --first >= 0");
    if (cli_on_long("score", on_long, &d.on_long)) return 1;
    cast_set_threads(threads);
    cli_model cm;
    if (cli_model_open(&cm, pos[0], template_name, compute)) return 1;
    cast_seqs seqs;
    int skipped = 0;
    if (cli_encode_file(&cm, data, &d, &seqs, NULL, &skipped)) {
        cli_model_close(&cm);
        return 1;
    }
    cast_err err = {0};
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
        cast_buf_printf(&b, ",\"tokens\":%lld,\"examples\":%d,\"skipped\":%d,\"compute\":\"%s\",\"peak_rss_mb\":%.0f}\n", (long long)count,
                        seqs.n, skipped, cm.m.bf16 ? "bf16" : "f32", cast_peak_rss_mb());
        fputs(b.data, stdout);
        cast_buf_free(&b);
    } else {
        printf("data        %s\nexamples    %d", data, seqs.n);
        if (skipped) printf(" (%d longer than --max-len skipped)", skipped);
        printf("\ntokens      %lld scored\nloss        %.6f nats/token\nperplexity  %.4f\n", (long long)count, loss, exp(loss));
    }
    rc = 0;
done:
    cast_acts_free(acts);
    cast_seqs_free(&seqs);
    cli_model_close(&cm);
    return rc;
}
