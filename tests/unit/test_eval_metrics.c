/* Evaluation metrics on controlled inputs: exact-answer extraction and
 * comparison, multiple-choice picks (acc vs acc_norm) on known
 * log-likelihoods. */
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "check.h"
#include "eval/metrics.h"

static void expect_extract(const char *reply, int numeric, const char *want) {
    char *got = cast_extract_answer(reply, numeric);
    CHECK_MSG(!strcmp(got, want), "extract(\"%s\", %d) = \"%s\", want \"%s\"", reply, numeric, got, want);
    free(got);
}

static void test_numbers(void) {
    CHECK(cast_answer_is_number("18"));
    CHECK(cast_answer_is_number(" -3.25 "));
    CHECK(cast_answer_is_number("1,450,000"));
    CHECK(!cast_answer_is_number(""));
    CHECK(!cast_answer_is_number("18 dollars"));
    CHECK(!cast_answer_is_number("$18"));
    CHECK(!cast_answer_is_number("Paris"));
    CHECK(!cast_answer_is_number("1.2.3"));
}

static void test_extract(void) {
    /* after #### when present: the first number there */
    expect_extract("She sells 16 - 3 - 4 = 9 eggs.\n9 * 2 = 18\n#### 18", 1, "18");
    expect_extract("#### 1,450,000\n\nQuestion: next one has 7 apples", 1, "1450000");
    expect_extract("so #### $-5.50.", 1, "-5.50");
    expect_extract("#### none", 1, "");
    /* else the last number */
    expect_extract("First 3 apples, then 4, so 7 apples.", 1, "7");
    expect_extract("The answer is 1,000.", 1, "1000");
    expect_extract("about 2-3 hours", 1, "3");
    expect_extract("x = -2", 1, "-2"); /* a sign, unless the - follows a digit */
    expect_extract("-2", 1, "-2");
    expect_extract("no digits here", 1, "");
    expect_extract("", 1, "");
    expect_extract("version 1.5, not 1.", 1, "1");
    /* non-numeric answers: the first line, trimmed (after #### when present) */
    expect_extract("  Paris  \nbecause ...", 0, "Paris");
    expect_extract("\n\n olleh\n", 0, "olleh");
    expect_extract("work: ... #### dlrow olleh \nmore", 0, "dlrow olleh");
    expect_extract("", 0, "");
}

static void test_match(void) {
    CHECK(cast_answer_match("18", "18"));
    CHECK(cast_answer_match("18.0", "18"));
    CHECK(cast_answer_match("1450000", "1,450,000"));
    CHECK(cast_answer_match(" 7 ", "7"));
    CHECK(!cast_answer_match("17", "18"));
    CHECK(!cast_answer_match("", "18"));
    CHECK(cast_answer_match("Paris", " Paris"));
    CHECK(!cast_answer_match("paris", "Paris")); /* exact, case-sensitive */
    CHECK(!cast_answer_match("Paris.", "Paris"));
}

static void test_choice_pick(void) {
    int best, norm;
    /* a long likely choice vs a short one: summed log-likelihood favours the
     * short one, per byte the long one */
    double ll[3] = {-12.0, -4.0, -9.0};
    int bytes[3] = {24, 4, 10};
    cast_choice_pick(ll, bytes, 3, &best, &norm);
    CHECK(best == 1);  /* -4 */
    CHECK(norm == 0);  /* -0.5 per byte vs -1.0 and -0.9 */
    /* ties go to the first */
    double tie[3] = {-2.0, -2.0, -3.0};
    int tb[3] = {2, 2, 3};
    cast_choice_pick(tie, tb, 3, &best, &norm);
    CHECK(best == 0 && norm == 0);
    /* a single choice */
    cast_choice_pick(ll, bytes, 1, &best, &norm);
    CHECK(best == 0 && norm == 0);
    /* acc and acc_norm over a small set: question 1 correct = 1 (acc right,
     * acc_norm wrong); question 2 correct = 0 (both right) */
    double q2[2] = {-3.0, -5.0};
    int b2[2] = {30, 5};
    cast_choice_pick(q2, b2, 2, &best, &norm);
    CHECK(best == 0 && norm == 0);
}

static void test_names(void) {
    CHECK(!strcmp(cast_eval_role_name(CAST_EVAL_HARMFUL), "harmful"));
    CHECK(!strcmp(cast_metric_name(CAST_METRIC_CHOICE), "choice"));
    cast_eval_opts o;
    cast_eval_opts_default(&o);
    CHECK(o.max_new == 64 && o.max_new_exact == 256 && o.batch == 8 && o.fewshot == 0);
}

/* The stop tokens of real chat models: eos and the template's end of turn. */
static void test_stop_ids(void) {
    static const struct {
        const char *dir, *eos, *end_of_turn;
    } cases[] = {
        {"llama3-8b-instruct", "<|end_of_text|>", "<|eot_id|>"},
        {"qwen3", "<|im_end|>", "<|im_end|>"},
        {"phi-3-mini", "<|endoftext|>", "<|end|>"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *tokdir = cast_path_join(check_shared_data(), "tokenizers");
        char *dir = cast_path_join(tokdir, cases[c].dir);
        free(tokdir);
        cast_tokenizer *tok = NULL;
        cast_chat_template *tpl = NULL;
        cast_err err = {0};
        if (!cast_dir_exists(dir)) {
            fprintf(stderr, "skip: %s not found\n", dir);
            free(dir);
            continue;
        }
        CHECK_MSG(cast_tokenizer_load(&tok, dir, &err) == 0, "%s", err.msg);
        CHECK_MSG(tok && cast_chat_template_open(&tpl, tok, NULL, dir, &err) == 0, "%s", err.msg);
        if (tok && tpl) {
            cast_model m;
            memset(&m, 0, sizeof m);
            m.cfg.vocab = cast_tokenizer_vocab_size(tok);
            m.cfg.eos_ids[0] = 7; /* a config.json eos comes first */
            m.cfg.n_eos = 1;
            int ids[16], n = cast_eval_stop_ids(&m, tok, tpl, ids, 16);
            int eos = cast_tokenizer_token_id(tok, cases[c].eos), eot = cast_tokenizer_token_id(tok, cases[c].end_of_turn);
            CHECK(eos >= 0 && eot >= 0);
            int want[3] = {7, eos, eot}, nw = eos == eot ? 2 : 3;
            CHECK_MSG(n == nw && !memcmp(ids, want, sizeof(int) * (size_t)nw), "%s: %d stop ids (%d %d %d)", cases[c].dir, n,
                      ids[0], n > 1 ? ids[1] : -1, n > 2 ? ids[2] : -1);
            /* ids outside the model's vocabulary are dropped */
            m.cfg.vocab = 8;
            CHECK(cast_eval_stop_ids(&m, tok, tpl, ids, 16) == 1 && ids[0] == 7);
        }
        cast_chat_template_free(tpl);
        cast_tokenizer_free(tok);
        free(dir);
    }
}

int main(void) {
    test_stop_ids();
    test_numbers();
    test_extract();
    test_match();
    test_choice_pick();
    test_names();
    return check_report();
}
