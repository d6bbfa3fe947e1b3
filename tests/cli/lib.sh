# Shared helpers for the CLI tests: counters, assertions, a scratch folder.
set -u
PASSED=0
FAILED=0
: "${CAST:?CAST must name the cast binary}"
TMP="${CAST_TEST_TMP:-$(mktemp -d)}"
rm -rf "$TMP"
mkdir -p "$TMP"
SRC="${CAST_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
SHARED="${CAST_SHARED_DATA:-$SRC/../shared/data}"
# Python snippets import the shared test modules (cast_test, safetensors_io) from tests/reference
export PYTHONPATH="$SRC/tests/reference${PYTHONPATH:+:$PYTHONPATH}"

pass() { PASSED=$((PASSED + 1)); }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*" >&2; }
check() { # check "description" command...
    local what="$1"; shift
    if "$@"; then pass; else fail "$what"; fi
}
# expect_error "description" "substring of stderr" command...: exit 1, one line on stderr starting "cast: "
expect_error() {
    local what="$1" needle="$2"; shift 2
    local err rc
    err=$("$@" 2>&1 >/dev/null); rc=$?
    if [ "$rc" -eq 1 ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] && [[ "$err" == "cast: "* ]] && [[ "$err" == *"$needle"* ]]; then
        pass
    else
        fail "$what: exit $rc, stderr: $err"
    fi
}
# json_get FILE EXPR: evaluates a Python expression on the parsed JSON `j`
json_get() { /usr/bin/python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }
finish() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}
