#!/usr/bin/env bash
# run_fuzz.sh [SECONDS] - fuzz the GGUF reader with libFuzzer.
#
# Builds tests/fuzz/fuzz_gguf.c and the reader sources with
# clang -fsanitize=fuzzer,address,undefined into build/fuzz/, then fuzzes for
# SECONDS (default 60) starting from tests/fuzz/corpus/. Inputs the run finds
# go to build/fuzz/corpus/ first; at the end the ones that add coverage are
# merged into tests/fuzz/corpus/ (libFuzzer -merge=1, so the checked-in corpus
# grows only by what is new, not by thousands of near-duplicates). Crashes
# land in build/fuzz/artifacts/ (crash-*, leak-*, timeout-*) and fail the
# script.
#
# Environment: CLANG (default clang, then clang-14), FUZZ_JOBS (parallel
# workers, default 1), FUZZ_ARGS (extra libFuzzer flags), FUZZ_SRCS (the
# library sources to build, default the reader and what it needs).
set -euo pipefail
cd "$(dirname "$0")/../.."

SECONDS_TO_RUN=${1:-${FUZZ_SECONDS:-60}}
OUT=build/fuzz
CORPUS=tests/fuzz/corpus
CLANG=${CLANG:-$(command -v clang || command -v clang-14 || true)}
if [ -z "$CLANG" ]; then
    echo "run_fuzz: clang not found (apt-get install clang libclang-rt-14-dev)" >&2
    exit 1
fi
FUZZ_SRCS=${FUZZ_SRCS:-"src/model/gguf.c src/core/status.c src/core/types.c src/core/log.c"}
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
CFLAGS="-std=c17 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -Iinclude -Isrc -Wall -Wextra -Wno-unused-parameter"

mkdir -p "$OUT/obj" "$OUT/artifacts" "$OUT/corpus" "$CORPUS"
# generated seeds (valid files and hand-broken ones) start every run
python3 tests/fuzz/make_seeds.py --out "$OUT/seeds" >/dev/null
objs=()
for src in $FUZZ_SRCS tests/fuzz/fuzz_gguf.c; do
    obj="$OUT/obj/$(echo "$src" | tr / _).o"
    if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ "$0" -nt "$obj" ] ||
       [ -n "$(find include -newer "$obj" -name '*.h' -print -quit)" ]; then
        echo "  CLANG $src"
        "$CLANG" $CFLAGS $SAN -fsanitize=fuzzer-no-link -c "$src" -o "$obj"
    fi
    objs+=("$obj")
done
echo "  LD $OUT/fuzz_gguf"
"$CLANG" $SAN -fsanitize=fuzzer -o "$OUT/fuzz_gguf" "${objs[@]}" -lm -pthread

DICT=()
[ -f tests/fuzz/gguf.dict ] && DICT=(-dict=tests/fuzz/gguf.dict)
JOBS=()
[ "${FUZZ_JOBS:-1}" -gt 1 ] && JOBS=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS")
n_before=$(find "$CORPUS" -type f | wc -l)
echo "run_fuzz: fuzzing for ${SECONDS_TO_RUN}s from $CORPUS ($n_before inputs)"
set +e
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
"$OUT/fuzz_gguf" "$OUT/corpus" "$CORPUS" "$OUT/seeds" "${DICT[@]}" \
    -max_total_time="$SECONDS_TO_RUN" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    "${JOBS[@]}" \
    -artifact_prefix="$OUT/artifacts/" -print_final_stats=1 ${FUZZ_ARGS:-} 2>&1 | tee "$OUT/last_run.log" | \
    grep -v -E '^#[0-9]+\s+(NEW|REDUCE|pulse)' | tail -40
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -eq 0 ] && [ "${FUZZ_MERGE:-1}" = 1 ]; then
    "$OUT/fuzz_gguf" -merge=1 -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        "$CORPUS" "$OUT/corpus" >"$OUT/merge.log" 2>&1 || { echo "run_fuzz: merge failed, see $OUT/merge.log" >&2; rc=1; }
fi
n_after=$(find "$CORPUS" -type f | wc -l)
echo "run_fuzz: exit $rc, corpus $n_before -> $n_after inputs, log in $OUT/last_run.log"
if [ "$rc" -ne 0 ]; then
    echo "run_fuzz: FAILED - reproduce with: $OUT/fuzz_gguf $OUT/artifacts/<crash-file>" >&2
    ls -1 "$OUT/artifacts/" >&2 || true
fi
exit "$rc"
