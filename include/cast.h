/* cast: conflict-aware sparse tuning of language models — the public C API.
 *
 * Every fallible function takes a cast_err* and returns 0 on success, -1 on
 * failure with a one-line message "PATH: what is wrong". The library never
 * prints and never exits. */
#ifndef CAST_H
#define CAST_H

#define CAST_VERSION "0.1.0"

#include "base/buf.h"
#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "base/rng.h"
#include "base/timer.h"
#include "model/seqs.h"
#include "text/tokenizer.h"

#endif
