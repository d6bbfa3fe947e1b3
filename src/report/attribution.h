/* The files of `cast attribute` (src/eval/attribute.h computes what they hold). */
#ifndef CAST_REPORT_ATTRIBUTION_H
#define CAST_REPORT_ATTRIBUTION_H

#include "base/buf.h"
#include "base/error.h"
#include "eval/attribute.h"

/* attribution.json (docs/attribute.md has the schema), .csv (one row per
 * unit) and .svg (heatmaps layer × head of utility recovered). */
void cast_attribution_json(const cast_attribution *a, cast_buf *out);
void cast_attribution_csv(const cast_attribution *a, cast_buf *out);
void cast_attribution_svg(const cast_attribution *a, cast_buf *out);
/* All three files into dir (created if needed), each through a temporary
 * name, renamed only after every write succeeded: all three or none. */
int cast_attribution_write(const cast_attribution *a, const char *dir, cast_err *err);

#endif
