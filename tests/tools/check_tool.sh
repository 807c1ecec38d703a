#!/usr/bin/env bash
# check_tool.sh ok|gpu|fail REGEX TOOL [ARGS...]
#   ok:   TOOL must exit 0 and its stdout must match the extended regex REGEX (if non-empty).
#   gpu:  as ok, but exits 77 (reported as skipped) when the tool says there is no CUDA device.
#   fail: TOOL must exit with a code in 1..123 (not a crash, not a timeout), print nothing on
#         stdout that looks like a table, and print exactly ONE line on stderr, of the form
#         "<tool>: error: ..." (and matching REGEX, if non-empty).
# Every run has stdin from /dev/null and a 90 s time limit, so a hang fails the test.
set -u
mode=$1; regex=$2; shift 2
out=$(mktemp); err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
timeout 90 "$@" </dev/null >"$out" 2>"$err"
rc=$?
show() { echo "--- command: $*"; echo "--- exit code: $rc"; echo "--- stdout:"; head -c 4000 "$out"; echo "--- stderr:"; head -c 4000 "$err"; }
if [ "$mode" = gpu ] && [ $rc -ne 0 ] && grep -Eq "no usable CUDA device|no CUDA device" "$err"; then
  show "$@"; echo "SKIP: no CUDA device"; exit 77
fi
if [ "$mode" = ok ] || [ "$mode" = gpu ]; then
  if [ $rc -ne 0 ]; then show "$@"; echo "FAIL: expected exit code 0"; exit 1; fi
  if [ -n "$regex" ] && ! grep -Eq -- "$regex" "$out"; then show "$@"; echo "FAIL: stdout does not match /$regex/"; exit 1; fi
  show "$@"
  exit 0
fi
if [ $rc -eq 0 ] || [ $rc -ge 124 ]; then show "$@"; echo "FAIL: expected an error exit code in 1..123 (124: timeout, >= 128: crash)"; exit 1; fi
lines=$(wc -l <"$err")
if [ "$lines" -ne 1 ] || [ -n "$(tail -c1 "$err")" ]; then show "$@"; echo "FAIL: expected exactly one line on stderr, got $lines"; exit 1; fi
prog=$(basename "$1")
if ! grep -Eq "^$prog: error: " "$err"; then show "$@"; echo "FAIL: stderr does not start with '$prog: error: '"; exit 1; fi
if [ -n "$regex" ] && ! grep -Eq -- "$regex" "$err"; then show "$@"; echo "FAIL: stderr does not match /$regex/"; exit 1; fi
show "$@"
exit 0
