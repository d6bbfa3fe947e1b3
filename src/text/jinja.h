/* A small Jinja2 interpreter: the subset that Hugging Face chat templates use,
 * with the environment transformers renders them in (trim_blocks=True,
 * lstrip_blocks=True, loop controls, raise_exception, namespace, tojson as
 * json.dumps(ensure_ascii=False), the {% generation %} tag).
 *
 * Supported: {{ }}, {% %}, {# #}, whitespace control (- and +), raw; if/elif/
 * else, for (else, inline if filter, tuple targets, loop.*), set (name,
 * ns.attr, tuples, block form), macro, break/continue, generation; Python-like
 * values (none, bool, int, float, str, list, dict, namespace), operators,
 * filters, tests, string/dict methods and slicing. Anything else is a clear
 * error naming the template and line, never a silent difference. Templates
 * are untrusted: rendering is bounded in work, memory and nesting (jinja.c
 * lists the limits), and going over one is an error too. */
#ifndef CAST_TEXT_JINJA_H
#define CAST_TEXT_JINJA_H

#include <stddef.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/json.h"

typedef struct cast_jinja cast_jinja;

/* A [start, end) byte range of the rendered output. */
typedef struct cast_jinja_span {
    size_t start, end;
} cast_jinja_span;

/* Parses template source; `what` names it in messages (e.g. a file path). */
int cast_jinja_parse(cast_jinja **out, const char *src, const char *what, cast_err *err);
void cast_jinja_free(cast_jinja *t);
/* Whether the template marks assistant output with {% generation %}. */
int cast_jinja_has_generation(const cast_jinja *t);

/* Renders with the members of the JSON object `vars` as variables, appending
 * to *out. When spans is non-NULL, *spans (malloc'd) receives the output
 * ranges produced inside {% generation %} blocks. */
int cast_jinja_render(const cast_jinja *t, const cast_json *vars, cast_buf *out, cast_jinja_span **spans,
                      int *n_spans, cast_err *err);

#endif
