#!/usr/bin/env bash
# Builds quamba, runs the whole test suite, compute-sanitizer and the benchmarks on a GPU
# machine, in one go. Logs go to $LOGDIR (default: gpu-logs/), one file per stage:
#   build.log  ctest.log  sanitizer.log  bench.log (+ bench_<family>.json)  profile_<row>.txt
# Usage: bench/gpu_suite.sh [stages...]   stages: build test sanitize bench profile
#   (default: build test sanitize bench)
#   BENCH_FILTER=regex      passed to --benchmark_filter (BENCH_FILTER_<family>, e.g.
#                           BENCH_FILTER_gemm, overrides it for one program)
#   SANITIZE_TOOLS="memcheck racecheck initcheck synccheck"
#   SANITIZE_FILTER=pattern passed to --gtest_filter under the sanitizer (default: the
#                   per-binary filters of tests/gpu/sanitize_filters.txt)
#   SANITIZE_TIMEOUT=seconds per binary and tool (default 240)
#   SANITIZE_BINARIES=regex only the test binaries whose name matches (default: all gpu_test_*)
#   PROFILE_ROWS="row ..."  profile: bench_model rows whose kernels ncu times one by one, one
#                   profile_<row>.txt each plus its per-kernel table (bench/ncu_kernels.py);
#                   default: the W8A8 and fp16 decode step at batch 8 and 32, prefill at 2048
#   PROFILE_LAUNCHES=n      kernels ncu times per row (default 5000: setup plus a few steps)
# With the -dev packages unpacked into .deps/ (a machine without them installed), export first:
#   CMAKE_PREFIX_PATH=$PWD/.deps/usr LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu
#   PKG_CONFIG_SYSROOT_DIR=$PWD/.deps   (the PCRE2 .pc files say prefix=/usr)
set -uo pipefail
cd "$(dirname "$0")/.."
LOGDIR=${LOGDIR:-gpu-logs}
BUILD=${BUILD:-build-gpu}
mkdir -p "$LOGDIR"
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(build test sanitize bench)
has() { for s in "${stages[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
rc=0

if has build; then
  { nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv; nvcc --version | tail -2; cmake --version | head -1; } > "$LOGDIR/build.log" 2>&1
  cmake -S . -B "$BUILD" -G Ninja -DQUAMBA_BUILD_TESTS=ON -DQUAMBA_BUILD_BENCH=ON -DQUAMBA_BUILD_EXAMPLES=ON \
    >> "$LOGDIR/build.log" 2>&1 && cmake --build "$BUILD" -j16 -- -k 0 >> "$LOGDIR/build.log" 2>&1 || { rc=1; echo "BUILD FAILED"; grep -E "error|Error" "$LOGDIR/build.log" | head -40; }
fi

if has test; then
  ctest --test-dir "$BUILD" -j8 --output-on-failure --timeout 600 > "$LOGDIR/ctest.log" 2>&1 || rc=1
  grep -E "tests passed|tests failed|Skipped|Failed|\*\*\*" "$LOGDIR/ctest.log" | tail -40
fi

if has sanitize; then
  : > "$LOGDIR/sanitizer.log"
  tools=${SANITIZE_TOOLS:-memcheck racecheck initcheck synccheck}
  for t in "$BUILD"/tests/gpu_test_*; do
    [ -x "$t" ] || continue
    [[ "$(basename "$t")" =~ ${SANITIZE_BINARIES:-.} ]] || continue
    filter=${SANITIZE_FILTER:-$(awk -v b="$(basename "$t")" '$1 == b {print $2}' tests/gpu/sanitize_filters.txt)}
    for tool in $tools; do
      echo "=== $tool $(basename "$t") ${filter}" >> "$LOGDIR/sanitizer.log"
      timeout "${SANITIZE_TIMEOUT:-240}" compute-sanitizer --tool "$tool" --error-exitcode 99 \
        "$t" --gtest_brief=1 ${filter:+"--gtest_filter=$filter"} >> "$LOGDIR/sanitizer.log" 2>&1
      r=$?
      echo "=== exit $r" >> "$LOGDIR/sanitizer.log"
      echo "sanitizer $tool $(basename "$t"): exit $r $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$LOGDIR/sanitizer.log" | tail -1)"
      [ $r -eq 0 ] || rc=1
    done
  done
fi

if has bench; then
  : > "$LOGDIR/bench.log"
  for b in "$BUILD"/bench/quamba_bench_*; do
    [ -x "$b" ] || continue
    name=$(basename "$b")
    fam=${name#quamba_bench_}
    fvar="BENCH_FILTER_${fam}"
    filter=${!fvar:-${BENCH_FILTER:-}}
    echo "=== $name ${filter}" | tee -a "$LOGDIR/bench.log"
    "$b" --benchmark_min_time=0.05 ${filter:+"--benchmark_filter=$filter"} \
      --benchmark_out="$LOGDIR/${name#quamba_}.json" --benchmark_out_format=json >> "$LOGDIR/bench.log" 2>&1 || rc=1
  done
fi

if has profile; then
  rows=${PROFILE_ROWS:-"TPOT/w8a8/8/ TPOT/fp16/8/ TPOT/w8a8/32/ TPOT/fp16/32/ TTFT/w8a8/2048/ TTFT/fp16/2048/"}
  for row in $rows; do
    out="$LOGDIR/profile_$(echo "$row" | tr '/' '_' | sed 's/_$//').txt"
    ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum \
      --launch-count "${PROFILE_LAUNCHES:-5000}" --print-summary per-kernel \
      "$BUILD/bench/quamba_bench_model" --benchmark_filter="^$row" --benchmark_min_time=0.001 > "$out" 2>&1 || rc=1
    echo "=== profile $row"
    python3 bench/ncu_kernels.py "$out" | tee "${out%.txt}_table.txt" | grep -E '^\*|^sum' || rc=1
  done
fi
exit $rc
