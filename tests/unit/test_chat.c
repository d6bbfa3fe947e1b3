/* Chat templates: the Jinja interpreter (cases checked against Python
 * Jinja2 with transformers' settings), the three real templates against the
 * reference renderings and token ids in ../shared/data, built-in templates,
 * training masks and errors. */
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "base/json.h"
#include "check.h"
#include "model/seqs.h"
#include "text/chat.h"
#include "text/jinja.h"
#include "text/tokenizer.h"

/* Expected outputs produced by Python Jinja2 3.1.6, ImmutableSandboxedEnvironment
 * (trim_blocks, lstrip_blocks, loopcontrols), as transformers configures it. */
static const char *JINJA_VARS = "{\"messages\": [{\"role\": \"system\", \"content\": \"Sys\"}, {\"role\": \"user\", \"content\": \"Hi  there\\n\"}, {\"role\": \"assistant\", \"content\": \"Hello\", \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1, \"b\": [1, 2.5, \"x\"], \"c\": null, \"d\": true}}}]}, {\"role\": \"user\", \"content\": \"Bye\"}], \"add_generation_prompt\": true, \"n\": 5, \"s\": \"Hello World\", \"l\": [3, 1, 2], \"d\": {\"b\": 1, \"a\": 2}, \"e\": \"\"}";
static const struct { const char *tpl, *want; } JINJA_CASES[] = {
    {"{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1e-5 }} {{ 3.0 }}",
     "7 3 -4 2 3.5 1024 0.30000000000000004 1e+20 1e-05 3.0"},
    {"{{ 'a' ~ 1 ~ none ~ true }} {{ 'x' * 3 }} {{ [1,2] + [3] }} {{ (1, 2) }} {{ d.items()|list }}",
     "a1NoneTrue xxx [1, 2, 3] (1, 2) [('b', 1), ('a', 2)]"},
    {"{{ s.upper() }} {{ s|lower }} {{ \"they're ok\"|title }} {{ \"they're ok\".title() }} {{ 'abc'|capitalize }}",
     "HELLO WORLD hello world They're Ok They'Re Ok Abc"},
    {"{{ s.split() }} {{ 'a,b,,c'.split(',', 1) }} {{ '  a  b  '.split(None, 1) }} {{ '  x  '.strip() }}|{{ '\\n\\nab\\n'.lstrip('\\n') }}|{{ 'ab  '.rstrip() }}|{{ '  ab '|trim }}|",
     "['Hello', 'World'] ['a', 'b,,c'] ['a', 'b  '] x|ab\n|ab|ab|"},
    {"{{ s.startswith('He') }} {{ s.endswith(('x', 'd')) }} {{ s.replace('l','L',1) }} {{ s.find('o') }} {{ s.count('l') }}",
     "True True HeLlo World 4 3"},
    {"{{ s[0] }} {{ s[-1] }} {{ s[1:3] }} {{ s[::-1] }} {{ l[::-1] }} {{ '\303\251\346\227\245\346\234\254x'[1:3] }} {{ '\303\251\346\227\245\346\234\254x'|length }} {{ '\303\251\346\227\245\346\234\254x'[::-1] }}",
     "H d el dlroW olleH [2, 1, 3] \346\227\245\346\234\254 4 x\346\234\254\346\227\245\303\251"},
    {"{{ l|length }} {{ l|first }} {{ l|last }} {{ l|sort }} {{ l|sort(reverse=true) }} {{ l|join('-') }} {{ l|sum }} {{ l|max }}",
     "3 3 2 [1, 2, 3] [3, 2, 1] 3-1-2 6 3"},
    {"{{ d|tojson }} {{ messages[2]|tojson }} {{ d|tojson(indent=2) }} {{ '\303\251\"\\n\\u0001'|tojson }} {{ [] | tojson }}",
     "{\"b\": 1, \"a\": 2} {\"role\": \"assistant\", \"content\": \"Hello\", \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1, \"b\": [1, 2.5, \"x\"], \"c\": null, \"d\": true}}}]} {\n  \"b\": 1,\n  \"a\": 2\n} \"\303\251\\\"\\n\\u0001\" []"},
    {"{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{{ d.get('z', 9) }} {{ d.get('z') }}",
     "b=1;a=2;9 None"},
    {"{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }}|{% endfor %}",
     "1/0/4/True/False/4|2/1/3/False/False/4|3/2/2/False/False/4|4/3/1/False/True/4|"},
    {"{% for m in messages if m.role != 'system' %}{{ loop.index }}{{ m.role }}{% else %}none{% endfor %}{% for x in [] %}x{% else %}empty{% endfor %}",
     "1user2assistant3userempty"},
    {"{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}",
     "02"},
    {"{% set x = 1 %}{% for i in range(3) %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}",
     "1231"},
    {"{% set ns = namespace(c=0, s='') %}{% for i in range(4) %}{% set ns.c = ns.c + i %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.c }} {{ ns.s }}",
     "6 0123"},
    {"{% if n > 3 and not e %}A{% elif n > 1 %}B{% else %}C{% endif %}{% if e %}X{% elif s %}Y{% endif %}",
     "AY"},
    {"{{ 'yes' if n is even else 'no' }} {{ n is odd }} {{ n is divisibleby 5 }} {{ s is string }} {{ d is mapping }} {{ zz is defined }} {{ none is none }} {{ e is not none }}",
     "no True True True True False True True"},
    {"{{ messages|selectattr('role','equalto','user')|list|length }} {{ messages|map(attribute='role')|join(',') }} {{ messages|rejectattr('role','eq','user')|map(attribute='role')|list }}",
     "2 system,user,assistant,user ['system', 'assistant']"},
    {"{{ zz|default('dflt') }} {{ e|default('dflt') }} {{ e|default('dflt', true) }}",
     "dflt  dflt"},
    {"{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', '?') }} {{ greet(name='C', punct='.') }}",
     "Hello A! Hello B? Hello C."},
    {"{% set blk %}  inner {{ n }}  {% endset %}[{{ blk }}]",
     "[  inner 5  ]"},
    {"{# comment #}a{#- c -#}  b  {{- 'c' -}}  d",
     "abcd"},
    {"line1\n  {% if true %}\n    yes\n  {% endif %}\nline2\n{% for i in [1,2] %}\n  - {{ i }}\n{% endfor %}\nend\n",
     "line1\n    yes\nline2\n  - 1\n  - 2\nend"},
    {"  {%- if true -%}  x  {%- endif -%}  \n  {%+ if true %}y{% endif %}\n{{ 'z' }}\n",
     "xyz"},
    {"{{ \"it's\" }} {{ '\\u00e9\\x41\\t|' }} {{ 'a' 'b' }} {{ ['a', \"it's\"] }} {{ d }} {{ none }} {{ true }}",
     "it's \303\251A\t| ab ['a', \"it's\"] {'b': 1, 'a': 2} None True"},
    {"{{ 1 < 2 < 3 }} {{ 'a' in 'cat' }} {{ 2 in l }} {{ 'a' in d }} {{ 'x' not in s }} {{ 1 == 1.0 }} {{ true == 1 }}",
     "True True True True True True True"},
    {"{{ messages[0]['content'] }} {{ messages[9] }}|{{ messages[-1].content }} {{ (messages|length - 1) - 1 }} {{ -n|abs }}",
     "Sys |Bye 2 5"},
    {"{{ 'a</think>\\nb'.split('</think>')[-1].lstrip('\\n') }} {{ messages[2].tool_calls[0].function.arguments|tojson }}",
     "b {\"a\": 1, \"b\": [1, 2.5, \"x\"], \"c\": null, \"d\": true}"},
    {"{% raw %}{{ not rendered }}{% endraw %} after {{ 'a\\nb'|indent(2) }}",
     "{{ not rendered }} after a\n  b"},
    {"{%- if messages[0]['role'] == 'system' -%}{%- set rest = messages[1:] -%}{%- endif -%}{{ rest|length }}",
     "3"},
};


static char *render_src(const char *tpl, const char *vars_json, cast_err *err) {
    cast_jinja *t;
    if (cast_jinja_parse(&t, tpl, "test.jinja", err)) return NULL;
    cast_json *v = cast_json_parse(vars_json, strlen(vars_json), "vars", err);
    cast_buf b = {0};
    int rc = v ? cast_jinja_render(t, v, &b, NULL, NULL, err) : -1;
    cast_json_free(v);
    cast_jinja_free(t);
    if (rc) {
        cast_buf_free(&b);
        return NULL;
    }
    return cast_buf_steal(&b);
}

static void test_jinja_cases(void) {
    for (size_t i = 0; i < sizeof JINJA_CASES / sizeof JINJA_CASES[0]; i++) {
        cast_err err = {0};
        char *out = render_src(JINJA_CASES[i].tpl, JINJA_VARS, &err);
        CHECK_MSG(out && strcmp(out, JINJA_CASES[i].want) == 0, "case %zu: %s\n  got:  [%s]\n  want: [%s]", i,
                  JINJA_CASES[i].tpl, out ? out : err.msg, JINJA_CASES[i].want);
        free(out);
    }
}

static void expect_error(const char *tpl, const char *vars, const char *needle) {
    cast_err err = {0};
    char *out = render_src(tpl, vars, &err);
    CHECK_MSG(!out && strstr(err.msg, needle) && strstr(err.msg, "test.jinja"), "template %s: want error containing '%s', got %s",
              tpl, needle, out ? out : err.msg);
    free(out);
}

static void test_jinja_errors(void) {
    expect_error("a\n{{ raise_exception('Roles must alternate') }}", "{}", "line 2: raise_exception: Roles must alternate");
    expect_error("{% for x in y %}", "{}", "missing {% endfor %}");
    expect_error("{% if x %}\n\n{% endfor %}", "{}", "line 3");
    expect_error("{{ 1 + }}", "{}", "line 1");
    expect_error("{% include 'x' %}", "{}", "unsupported tag 'include'");
    expect_error("{{ x | nosuch }}", "{\"x\": 1}", "unsupported filter 'nosuch'");
    expect_error("{{ undefined_fn() }}", "{}", "'undefined_fn' is undefined");
    expect_error("{{ missing.attr }}", "{}", "'missing' is undefined");
    expect_error("{{ 'a' + 1 }}", "{}", "unsupported operand");
    expect_error("{{ 1 / 0 }}", "{}", "division by zero");
    expect_error("{{ 'abc", "{}", "unterminated string");
    expect_error("{# open", "{}", "unclosed comment");
    expect_error("{% set x.y = 1 %}", "{\"x\": {}}", "non-namespace");
    /* Python's integers are unbounded; ours report overflow instead of wrapping */
    expect_error("{{ 9223372036854775807 + 1 }}", "{}", "integer overflow");
    expect_error("{{ 2 ** 64 }}", "{}", "integer overflow");
    expect_error("{{ range(-9223372036854775807, 9223372036854775807)|length }}", "{}", "range too large");
    /* a hostile template ends in a one-line error (inputs found while fuzzing, tests/fuzz) */
    expect_error("{% set ns = namespace() %}{% set ns.a = ns %}{{ ns }}", "{}", "template exceeds its value nesting limit");
    expect_error("{% set ns = namespace() %}{% set ns.a = ns %}{{ ns|tojson }}", "{}", "value nesting limit");
    /* (a set inside a loop is local to it: a namespace carries values out) */
    expect_error("{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}", "{}",
                 "work limit");
    expect_error("{% set ns = namespace(a=[1], b=[1]) %}{% for i in range(60) %}{% set ns.a = [ns.a, ns.a] %}"
                 "{% set ns.b = [ns.b, ns.b] %}{% endfor %}{{ ns.a == ns.b }}",
                 "{}", "work limit");
    /* copying bytes is work too: a string doubling 64 times stops there first */
    expect_error("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "{}",
                 "work limit");
    expect_error("{% for i in range(10000000) %}{% endfor %}", "{}", "memory limit");
    expect_error("{{ range(1000000)|unique|length }}", "{}", "work limit");
    expect_error("{{ ('x' * 1000)|replace('', 'y' * 1000000) }}", "{}", "memory limit");
    expect_error("{{ [1]|tojson(indent=100000000000) }}", "{}", "memory limit");
    expect_error("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "{}", "macro recursion too deep");
    {
        char deep[4100];
        memset(deep, '(', 2000);
        memcpy(deep + 2000, "1", 1);
        memset(deep + 2001, ')', 2000);
        deep[4001] = 0;
        char tpl[4200];
        snprintf(tpl, sizeof tpl, "{{ %s }}", deep);
        expect_error(tpl, "{}", "nested too deep");
    }
    expect_error("{% set ns = namespace(l=1) %}{% for i in range(1000) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}", "{}",
                 "value nesting limit");
    expect_error("{% set s = 'a' * 4000000 %}{% for i in range(1000000) %}{{ s|length }}{% endfor %}", "{}", "work limit");
    expect_error("{{ '\\UFFFFFFFF' }}", "{}", "bad code point");
    {
        /* C's INT64_MIN % -1 and INT64_MIN - q * j overflow; Python's answers */
        cast_err e2;
        char *out = render_src("{{ (-9223372036854775807 - 1) % 9223372036854775807 }} {{ (-9223372036854775807 - 1) // 9223372036854775807 }} "
                               "{{ (-9223372036854775807 - 1) is divisibleby(-1) }} {{ -7 % 3 }} {{ 7 % -3 }} {{ -7 // 2 }}",
                               "{}", &e2);
        CHECK_MSG(out && strcmp(out, "9223372036854775806 -2 True 2 -2 -4") == 0, "%s", out ? out : e2.msg);
        free(out);
    }
    {
        cast_err e2;
        char *out = render_src("{{ 'abcdef'[::9223372036854775807] }}{{ [1,2,3][-9223372036854775807:] }}{{ 2 ** 62 }}", "{}", &e2);
        CHECK_MSG(out && strcmp(out, "a[1, 2, 3]4611686018427387904") == 0, "%s", out ? out : e2.msg);
        free(out);
    }
    /* generation spans */
    cast_jinja *t;
    cast_err err;
    CHECK(cast_jinja_parse(&t, "a{% generation %}bc{% endgeneration %}d{% generation %}{% endgeneration %}", "g", &err) == 0);
    CHECK(cast_jinja_has_generation(t));
    cast_json *v = cast_json_parse("{}", 2, "v", &err);
    cast_buf b = {0};
    cast_jinja_span *sp = NULL;
    int ns = 0;
    CHECK(cast_jinja_render(t, v, &b, &sp, &ns, &err) == 0);
    CHECK(ns == 2 && sp[0].start == 1 && sp[0].end == 3 && sp[1].start == 4 && sp[1].end == 4);
    CHECK(b.len == 4 && strcmp(b.data, "abcd") == 0);
    free(sp);
    cast_buf_free(&b);
    cast_json_free(v);
    cast_jinja_free(t);
}

/* ---------------------------------------------------------------- fixtures */

typedef struct fixture {
    char *name;
    cast_message m[8];
    int n, add_gen;
    char *rendered;
    int *ids, n_ids;
} fixture;

static int load_fixtures(const char *dir, fixture *fx, int max) {
    char *path = cast_path_join(dir, "chat_template.jsonl"), *text;
    size_t len;
    cast_err err;
    int n = 0;
    if (cast_read_file(path, &text, &len, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        free(path);
        return 0;
    }
    for (char *line = text, *nl; *line && n < max; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl) nl = line + strlen(line);
        cast_json *j = cast_json_parse(line, (size_t)(nl - line), path, &err);
        CHECK_MSG(j != NULL, "%s", err.msg);
        if (!j) break;
        fixture *f = &fx[n++];
        memset(f, 0, sizeof *f);
        f->name = cast_xstrdup(cast_json_string(cast_json_get(j, "name")));
        f->rendered = cast_xstrdup(cast_json_string(cast_json_get(j, "rendered")));
        f->add_gen = cast_json_is_true(cast_json_get(j, "add_generation_prompt"));
        cast_json *msgs = cast_json_get(j, "messages");
        for (int i = 0; i < cast_json_array_size(msgs) && i < 8; i++) {
            cast_json *mm = cast_json_array_item(msgs, i);
            f->m[i].role = cast_xstrdup(cast_json_string(cast_json_get(mm, "role")));
            f->m[i].content = cast_xstrdup(cast_json_string(cast_json_get(mm, "content")));
            f->n++;
        }
        cast_json_int_array(cast_json_get(j, "ids"), &f->ids, &f->n_ids, path, &err);
        cast_json_free(j);
        if (!*nl) break;
    }
    free(text);
    free(path);
    return n;
}

static void free_fixtures(fixture *fx, int n) {
    for (int i = 0; i < n; i++) {
        free(fx[i].name);
        free(fx[i].rendered);
        free(fx[i].ids);
        for (int k = 0; k < fx[i].n; k++) {
            free((char *)fx[i].m[k].role);
            free((char *)fx[i].m[k].content);
        }
    }
}

/* The scored spans of a sequence, decoded, joined with '|'. */
static char *scored_text(const cast_tokenizer *tok, const int *ids, const int *labels, int n) {
    cast_buf b = {0};
    cast_err err;
    for (int i = 0; i < n;) {
        if (labels[i] == CAST_IGNORE_LABEL) {
            i++;
            continue;
        }
        int j = i;
        while (j < n && labels[j] != CAST_IGNORE_LABEL) {
            if (labels[j] != ids[j]) cast_buf_puts(&b, "<label!=id>");
            j++;
        }
        char *s;
        if (cast_tokenizer_decode(tok, ids + i, j - i, 0, &s, &err) == 0) {
            if (b.len) cast_buf_putc(&b, '|');
            cast_buf_puts(&b, s);
            free(s);
        }
        i = j;
    }
    return cast_buf_steal(&b);
}

static void test_model(const char *name, const char *end_token) {
    char *dir = cast_path_join(check_shared_data(), "tokenizers");
    char *mdir = cast_path_join(dir, name);
    char *cfg_path = cast_path_join(mdir, "tokenizer_config.json");
    cast_err err;
    fixture fx[8];
    int nf = load_fixtures(mdir, fx, 8);
    CHECK_MSG(nf == 3, "%s: %d fixtures", name, nf);

    /* rendering needs only tokenizer_config.json */
    cast_json *cfg = cast_json_parse_file(cfg_path, &err);
    CHECK_MSG(cfg != NULL, "%s", err.msg);
    cast_chat_template *t = NULL;
    if (cfg) {
        CHECK(cast_chat_template_from_source(&t, cast_json_string(cast_json_get(cfg, "chat_template")),
                                             cast_json_string(cast_json_get(cfg, "bos_token")),
                                             cast_json_string(cast_json_get(cfg, "eos_token")), cfg_path, &err) == 0);
    }
    for (int i = 0; t && i < nf; i++) {
        char *out = NULL;
        CHECK_MSG(cast_chat_render(t, fx[i].m, fx[i].n, fx[i].add_gen, &out, &err) == 0, "%s", err.msg);
        CHECK_MSG(out && strcmp(out, fx[i].rendered) == 0, "%s/%s rendered:\n[%s]\nwant:\n[%s]", name, fx[i].name,
                  out ? out : "", fx[i].rendered);
        free(out);
    }
    cast_chat_template_free(t);
    cast_json_free(cfg);

    /* through the tokenizer: same rendering, ids exact, masks */
    cast_tokenizer *tok = NULL;
    int loaded = cast_tokenizer_load(&tok, mdir, &err) == 0;
    CHECK_MSG(loaded, "tokenizer %s: %s", name, err.msg);
    t = NULL;
    if (loaded) CHECK_MSG(cast_chat_template_open(&t, tok, NULL, mdir, &err) == 0, "%s", err.msg);
    for (int i = 0; t && i < nf; i++) {
        char *out = NULL;
        CHECK(cast_chat_render(t, fx[i].m, fx[i].n, fx[i].add_gen, &out, &err) == 0);
        CHECK_MSG(out && strcmp(out, fx[i].rendered) == 0, "%s/%s (open) rendered differently", name, fx[i].name);
        free(out);
        int *ids, *labels, n;
        int rc = cast_chat_encode(t, tok, fx[i].m, fx[i].n, fx[i].add_gen, &ids, &labels, &n, &err);
        CHECK_MSG(rc == 0, "%s/%s: %s", name, fx[i].name, err.msg);
        if (rc) continue;
        int same = n == fx[i].n_ids;
        for (int k = 0; same && k < n; k++) same = ids[k] == fx[i].ids[k];
        CHECK_MSG(same, "%s/%s: ids differ from apply_chat_template (%d vs %d tokens)", name, fx[i].name, n, fx[i].n_ids);
        if (fx[i].add_gen) {
            int none = 1;
            for (int k = 0; k < n; k++) none &= labels[k] == CAST_IGNORE_LABEL;
            CHECK_MSG(none, "%s/%s: a generation prompt scores nothing", name, fx[i].name);
        }
        free(ids);
        free(labels);
        /* as training data: every assistant turn and its end token, nothing else */
        int n_assist = 0;
        cast_buf want = {0};
        for (int k = 0; k < fx[i].n; k++)
            if (!strcmp(fx[i].m[k].role, "assistant")) {
                if (want.len) cast_buf_putc(&want, '|');
                cast_buf_puts(&want, fx[i].m[k].content);
                cast_buf_puts(&want, end_token);
                n_assist++;
            }
        rc = cast_chat_encode(t, tok, fx[i].m, fx[i].n, 0, &ids, &labels, &n, &err);
        if (n_assist == 0) {
            CHECK_MSG(rc != 0 && strstr(err.msg, "no assistant turn"), "%s/%s: training without assistant: %s", name,
                      fx[i].name, rc ? err.msg : "accepted");
        } else {
            CHECK_MSG(rc == 0, "%s", err.msg);
            if (rc == 0) {
                char *got = scored_text(tok, ids, labels, n);
                CHECK_MSG(strcmp(got, want.data) == 0, "%s/%s scored [%s], want [%s]", name, fx[i].name, got, want.data);
                free(got);
                free(ids);
                free(labels);
            }
        }
        cast_buf_free(&want);
    }
    cast_chat_template_free(t);
    cast_tokenizer_free(tok);
    free_fixtures(fx, nf);
    free(cfg_path);
    free(mdir);
    free(dir);
}

/* ---------------------------------------------------------------- built-ins */

static const cast_message CONV[] = {
    {"system", "S"}, {"user", "U1"}, {"assistant", "A1"}, {"user", "U2"}, {"assistant", "A2"}};

static void expect_builtin(const char *name, int n, int add_gen, const char *want) {
    cast_chat_template *t;
    cast_err err;
    int rc = cast_chat_template_open(&t, NULL, name, "model", &err);
    CHECK_MSG(rc == 0, "%s: %s", name, err.msg);
    if (rc) return;
    CHECK(strcmp(cast_chat_template_name(t), name) == 0);
    char *out = NULL;
    CHECK_MSG(cast_chat_render(t, CONV, n, add_gen, &out, &err) == 0, "%s: %s", name, err.msg);
    CHECK_MSG(out && strcmp(out, want) == 0, "builtin %s:\n[%s]\nwant\n[%s]", name, out ? out : "", want);
    free(out);
    cast_chat_template_free(t);
}

static void test_builtins(void) {
    expect_builtin("chatml", 5, 0,
                   "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
                   "<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\nA2<|im_end|>\n");
    expect_builtin("chatml", 2, 1, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\n");
    expect_builtin("llama2", 5, 0, "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST] A1 </s><s>[INST] U2 [/INST] A2 </s>");
    expect_builtin("mistral", 4, 1, "<s>[INST] S\n\nU1 [/INST]A1</s>[INST] U2 [/INST]");
    expect_builtin("zephyr", 3, 0, "<|system|>\nS</s>\n<|user|>\nU1</s>\n<|assistant|>\nA1</s>\n");
    expect_builtin("zephyr", 2, 1, "<|system|>\nS</s>\n<|user|>\nU1</s>\n<|assistant|>\n");
    expect_builtin("llama3", 3, 0,
                   "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user"
                   "<|end_header_id|>\n\nU1<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|>");
    expect_builtin("qwen", 1, 1,
                   "<|im_start|>system\nS<|im_end|>\n<|im_start|>assistant\n");
    expect_builtin("qwen3", 5, 0,
                   "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
                   "<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nA2<|im_end|>\n");
    expect_builtin("phi3", 3, 0, "<|system|>\nS<|end|>\n<|user|>\nU1<|end|>\n<|assistant|>\nA1<|end|>\n<|endoftext|>");
    {
        /* qwen without a system message gets Qwen2.5's default one */
        cast_chat_template *t;
        cast_err err;
        char *out = NULL;
        CHECK(cast_chat_template_open(&t, NULL, "qwen", "m", &err) == 0);
        CHECK(cast_chat_render(t, CONV + 1, 1, 1, &out, &err) == 0);
        CHECK(out && strcmp(out, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                                 "assistant.<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\n") == 0);
        free(out);
        /* llama2 insists on alternation */
        cast_chat_template_free(t);
        CHECK(cast_chat_template_open(&t, NULL, "llama2", "m", &err) == 0);
        cast_message bad[] = {{"user", "a"}, {"user", "b"}};
        CHECK(cast_chat_render(t, bad, 2, 1, &out, &err) != 0 && strstr(err.msg, "alternate"));
        cast_chat_template_free(t);
    }

    /* built-ins reproduce the real templates where those agree */
    const char *pairs[][2] = {{"qwen3", "qwen3"}, {"phi-3-mini", "phi3"}, {"llama3-8b-instruct", "llama3"}};
    for (int p = 0; p < 3; p++) {
        char *dir = cast_path_join(check_shared_data(), "tokenizers");
        char *mdir = cast_path_join(dir, pairs[p][0]);
        fixture fx[8];
        int nf = load_fixtures(mdir, fx, 8);
        cast_chat_template *t;
        cast_err err;
        const char *bos = p == 2 ? "<|begin_of_text|>" : NULL;
        CHECK(cast_chat_template_open(&t, NULL, pairs[p][1], "m", &err) == 0);
        for (int i = 0; i < nf; i++) {
            /* first-release Llama 3 always appends the assistant header */
            if (p == 2 && !fx[i].add_gen) continue;
            char *out = NULL;
            CHECK(cast_chat_render(t, fx[i].m, fx[i].n, fx[i].add_gen, &out, &err) == 0);
            CHECK_MSG(out && strcmp(out, fx[i].rendered) == 0, "builtin %s vs %s/%s:\n[%s]", pairs[p][1], pairs[p][0],
                      fx[i].name, out ? out : err.msg);
            free(out);
        }
        (void)bos;
        cast_chat_template_free(t);
        free_fixtures(fx, nf);
        free(mdir);
        free(dir);
    }
}

/* ---------------------------------------------------------------- masks */

static void test_masks(void) {
    char *dir = cast_path_join(check_shared_data(), "tokenizers");
    char *qdir = cast_path_join(dir, "qwen3"), *pdir = cast_path_join(dir, "mistral-7b-v0.1");
    cast_tokenizer *qwen = NULL, *phi = NULL;
    cast_err err;
    CHECK_MSG(cast_tokenizer_load(&qwen, qdir, &err) == 0, "%s", err.msg);
    CHECK_MSG(cast_tokenizer_load(&phi, pdir, &err) == 0, "%s", err.msg);
    cast_message conv[] = {{"system", "You are terse."},
                           {"user", "Say hi"},
                           {"assistant", "  Hi there!  "},
                           {"user", "Again, with thought"},
                           {"assistant", "<think>\nplan it\n</think>\n\nHello again."}};
    /* an earlier turn's reasoning is dropped by Qwen3's template */
    cast_message conv2[] = {{"user", "Q1"}, {"assistant", "<think>\nold plan\n</think>\n\nA1"}, {"user", "Q2"},
                            {"assistant", "A2"}};
    int *ids, *labels, n;
    if (qwen) {
        /* the tokenizer's own Qwen3 template: the last turn's reasoning is
         * rendered as written, so it is scored with the content; the empty
         * think block the template adds is not */
        cast_chat_template *t;
        CHECK(cast_chat_template_open(&t, qwen, NULL, qdir, &err) == 0);
        CHECK(cast_chat_encode(t, qwen, conv, 5, 0, &ids, &labels, &n, &err) == 0);
        char *got = scored_text(qwen, ids, labels, n);
        CHECK_MSG(strcmp(got, "  Hi there!  <|im_end|>|<think>\nplan it\n</think>\n\nHello again.<|im_end|>") == 0,
                  "qwen3 scored [%s]", got);
        free(got);
        free(ids);
        free(labels);
        /* an empty reply still ends its turn: only <|im_end|> is scored */
        cast_message conv3[] = {{"user", "Q1"}, {"assistant", "A1"}, {"user", "Q2"}, {"assistant", ""}};
        CHECK(cast_chat_encode(t, qwen, conv3, 4, 0, &ids, &labels, &n, &err) == 0);
        got = scored_text(qwen, ids, labels, n);
        CHECK_MSG(strcmp(got, "A1<|im_end|>|<|im_end|>") == 0, "qwen3 empty reply scored [%s]", got);
        free(got);
        free(ids);
        free(labels);
        CHECK(cast_chat_encode(t, qwen, conv2, 4, 0, &ids, &labels, &n, &err) == 0);
        got = scored_text(qwen, ids, labels, n);
        CHECK_MSG(strcmp(got, "A1<|im_end|>|A2<|im_end|>") == 0, "qwen3 scored [%s]", got);
        free(got);
        free(ids);
        free(labels);
        cast_chat_template_free(t);

        /* chatml built-in */
        CHECK(cast_chat_template_open(&t, qwen, "chatml", qdir, &err) == 0);
        CHECK(cast_chat_encode(t, qwen, conv, 3, 0, &ids, &labels, &n, &err) == 0);
        got = scored_text(qwen, ids, labels, n);
        CHECK_MSG(strcmp(got, "  Hi there!  <|im_end|>") == 0, "chatml scored [%s]", got);
        free(got);
        free(ids);
        free(labels);
        cast_chat_template_free(t);

        /* {% generation %} marks exactly what is scored */
        CHECK(cast_chat_template_from_source(&t,
                                             "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' }}"
                                             "{% if m.role == 'assistant' %}{% generation %}{{ m.content + '<|im_end|>' }}"
                                             "{% endgeneration %}{% else %}{{ m.content + '<|im_end|>' }}{% endif %}"
                                             "{{ '\\n' }}{% endfor %}",
                                             NULL, "<|im_end|>", "gen.jinja", &err) == 0);
        CHECK(cast_chat_encode(t, qwen, conv, 3, 0, &ids, &labels, &n, &err) == 0);
        got = scored_text(qwen, ids, labels, n);
        CHECK_MSG(strcmp(got, "  Hi there!  <|im_end|>") == 0, "generation scored [%s]", got);
        free(got);
        free(ids);
        free(labels);
        /* evaluation prompt: nothing scored, no assistant needed */
        CHECK(cast_chat_encode(t, qwen, conv, 2, 1, &ids, &labels, &n, &err) == 0);
        CHECK(n > 0 && labels[n - 1] == CAST_IGNORE_LABEL);
        free(ids);
        free(labels);
        CHECK(cast_chat_encode(t, qwen, conv, 2, 0, &ids, &labels, &n, &err) != 0 &&
              strstr(err.msg, "no assistant turn"));
        cast_chat_template_free(t);
    }
    if (phi) {
        /* SentencePiece vocabulary with the llama2 built-in: " A </s>" after [/INST] */
        cast_chat_template *t;
        CHECK(cast_chat_template_open(&t, phi, "llama2", pdir, &err) == 0);
        cast_message c2[] = {{"user", "Hello"}, {"assistant", "Hi! How are you?"}, {"user", "Fine"}, {"assistant", "Good."}};
        CHECK(cast_chat_encode(t, phi, c2, 4, 0, &ids, &labels, &n, &err) == 0);
        char *got = scored_text(phi, ids, labels, n);
        CHECK_MSG(strcmp(got, "Hi! How are you? </s>|Good. </s>") == 0, "llama2 scored [%s]", got);
        free(got);
        int *plain, np;
        char *text;
        CHECK(cast_chat_render(t, c2, 4, 0, &text, &err) == 0);
        CHECK(cast_tokenizer_encode(phi, text, strlen(text), 0, &plain, &np, &err) == 0);
        CHECK(np == n && memcmp(plain, ids, sizeof(int) * (size_t)n) == 0);
        free(plain);
        free(text);
        free(ids);
        free(labels);
        cast_chat_template_free(t);
    }
    cast_tokenizer_free(qwen);
    cast_tokenizer_free(phi);
    free(qdir);
    free(pdir);
    free(dir);
}

static void test_open_errors(void) {
    cast_chat_template *t;
    cast_err err;
    CHECK(cast_chat_template_open(&t, NULL, "vicuna", "models/x", &err) != 0);
    CHECK_MSG(strstr(err.msg, "models/x: unsupported chat template (use --template NAME: chatml, llama2, mistral") &&
                  strstr(err.msg, "vicuna"),
              "%s", err.msg);
    /* a base model without a chat template */
    char *dir = cast_path_join(check_shared_data(), "tokenizers");
    char *mdir = cast_path_join(dir, "mistral-7b-v0.1");
    cast_tokenizer *tok = NULL;
    if (cast_tokenizer_load(&tok, mdir, &err) == 0) {
        CHECK(cast_chat_template_open(&t, tok, NULL, mdir, &err) != 0);
        CHECK_MSG(strstr(err.msg, "unsupported chat template (use --template NAME: chatml") &&
                      strstr(err.msg, mdir) == err.msg,
                  "%s", err.msg);
        /* a built-in takes bos/eos from the tokenizer */
        CHECK(cast_chat_template_open(&t, tok, "mistral", mdir, &err) == 0);
        char *out;
        CHECK(cast_chat_render(t, CONV + 1, 2, 0, &out, &err) == 0);
        CHECK(strcmp(out, "<s>[INST] U1 [/INST]A1</s>") == 0);
        free(out);
        cast_chat_template_free(t);
    } else {
        CHECK_MSG(0, "tokenizer mistral-7b-v0.1: %s", err.msg);
    }
    cast_tokenizer_free(tok);
    free(mdir);
    free(dir);
    /* a template this interpreter cannot run is refused when opened, with the reason */
    const char *tmp = getenv("CAST_TEST_TMP");
    char *tdir = cast_xstrdup(tmp ? tmp : "/tmp");
    cast_mkdirs(tdir, &err);
    char *tpath = cast_path_join(tdir, "bad_template.jinja");
    const char *src = "{% for m in messages %}{% include 'turn.jinja' %}{% endfor %}";
    CHECK(cast_write_file_atomic(tpath, src, strlen(src), &err) == 0);
    CHECK(cast_chat_template_open(&t, NULL, tpath, "model", &err) != 0);
    CHECK_MSG(strstr(err.msg, "unsupported chat template") && strstr(err.msg, "include"), "%s", err.msg);
    const char *good = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}";
    CHECK(cast_write_file_atomic(tpath, good, strlen(good), &err) == 0);
    CHECK_MSG(cast_chat_template_open(&t, NULL, tpath, "model", &err) == 0, "%s", err.msg);
    cast_chat_template_free(t);
    free(tpath);
    free(tdir);
    /* messages must have role and content */
    CHECK(cast_chat_template_open(&t, NULL, "chatml", "m", &err) == 0);
    cast_message bad[] = {{"user", NULL}};
    char *out;
    CHECK(cast_chat_render(t, bad, 1, 1, &out, &err) != 0 && strstr(err.msg, "no content"));
    cast_chat_template_free(t);
}

int main(void) {
    test_jinja_cases();
    test_jinja_errors();
    test_model("llama3-8b-instruct", "<|eot_id|>");
    test_model("qwen3", "<|im_end|>");
    test_model("phi-3-mini", "<|end|>");
    test_builtins();
    test_masks();
    test_open_errors();
    return check_report();
}
