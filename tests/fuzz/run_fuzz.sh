#!/usr/bin/env bash
# run_fuzz.sh [TARGET] [SECONDS] - fuzz one of rotor's parsers with libFuzzer.
#
# TARGET is gguf (the default: the GGUF reader, tests/fuzz/fuzz_gguf.c) or
# openai (the OpenAI request parsers, tests/fuzz/fuzz_openai.c). Builds the
# target and the library sources it needs with
# clang -fsanitize=fuzzer,address,undefined into OUT (build/fuzz for gguf,
# build/fuzz-openai for openai), then fuzzes for SECONDS (default 60)
# starting from the target's checked-in corpus (tests/fuzz/corpus,
# tests/fuzz/corpus_openai) and freshly generated seeds (make_seeds.py,
# make_seeds_openai.py). Inputs the run finds go to OUT/corpus/ first; at the
# end the ones that add coverage are merged into the checked-in corpus
# (libFuzzer -merge=1, so it grows only by what is new, not by thousands of
# near-duplicates). Crashes land in OUT/artifacts/ (crash-*, leak-*,
# timeout-*) and fail the script.
#
# Environment: FUZZ_TARGET (when TARGET is not given), FUZZ_SECONDS (when
# SECONDS is not given), CLANG (default clang, then clang-14), FUZZ_JOBS
# (parallel workers, default 1), FUZZ_ARGS (extra libFuzzer flags), FUZZ_SRCS
# (the library sources to build, default what the target needs).
set -euo pipefail
cd "$(dirname "$0")/../.."

TARGET=${FUZZ_TARGET:-gguf}
case "${1:-}" in
[0-9]*|"") ;;
*) TARGET=$1; shift ;;
esac
SECONDS_TO_RUN=${1:-${FUZZ_SECONDS:-60}}
CLANG=${CLANG:-$(command -v clang || command -v clang-14 || true)}
if [ -z "$CLANG" ]; then
    echo "run_fuzz: clang not found (apt-get install clang libclang-rt-14-dev)" >&2
    exit 1
fi
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
CFLAGS="-std=c17 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -Iinclude -Isrc -Wall -Wextra -Wno-unused-parameter"
case "$TARGET" in
gguf)
    OUT=build/fuzz
    CORPUS=tests/fuzz/corpus
    DICT_FILE=tests/fuzz/gguf.dict
    SEEDS_PY=tests/fuzz/make_seeds.py
    MAX_LEN=65536
    FUZZ_SRCS=${FUZZ_SRCS:-"src/model/gguf.c src/core/status.c src/core/types.c src/core/log.c"}
    LIBS=()
    ;;
openai)
    OUT=build/fuzz-openai
    CORPUS=tests/fuzz/corpus_openai
    DICT_FILE=tests/fuzz/openai.dict
    SEEDS_PY=tests/fuzz/make_seeds_openai.py
    MAX_LEN=16384
    # the parser, the error renderer (openai_render.c) and what they call
    FUZZ_SRCS=${FUZZ_SRCS:-"src/frontend/openai_parse.c src/frontend/openai_render.c src/sampling/sampler.c src/sampling/rng.c src/tokenizer/piece.c src/tokenizer/unicode.c src/core/status.c"}
    CFLAGS="$CFLAGS $(pkg-config --cflags libcjson)"
    read -r -a LIBS <<<"$(pkg-config --libs libcjson || echo -lcjson)"
    ;;
*)
    echo "run_fuzz: unknown target '$TARGET' (gguf, openai)" >&2
    exit 2
    ;;
esac
FUZZER=$OUT/fuzz_$TARGET

mkdir -p "$OUT/obj" "$OUT/artifacts" "$OUT/corpus" "$CORPUS"
# generated seeds (valid files and hand-broken ones) start every run
python3 "$SEEDS_PY" --out "$OUT/seeds" >/dev/null
objs=()
for src in $FUZZ_SRCS tests/fuzz/fuzz_$TARGET.c; do
    obj="$OUT/obj/$(echo "$src" | tr / _).o"
    if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ "$0" -nt "$obj" ] ||
       [ -n "$(find include src -newer "$obj" -name '*.h' -print -quit)" ]; then
        echo "  CLANG $src"
        "$CLANG" $CFLAGS $SAN -fsanitize=fuzzer-no-link -c "$src" -o "$obj"
    fi
    objs+=("$obj")
done
echo "  LD $FUZZER"
"$CLANG" $SAN -fsanitize=fuzzer -o "$FUZZER" "${objs[@]}" ${LIBS[@]+"${LIBS[@]}"} -lm -pthread

DICT=()
[ -f "$DICT_FILE" ] && DICT=(-dict="$DICT_FILE")
JOBS=()
[ "${FUZZ_JOBS:-1}" -gt 1 ] && JOBS=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS")
n_before=$(find "$CORPUS" -type f | wc -l)
echo "run_fuzz: $TARGET: fuzzing for ${SECONDS_TO_RUN}s from $CORPUS ($n_before inputs)"
set +e
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
"$FUZZER" "$OUT/corpus" "$CORPUS" "$OUT/seeds" "${DICT[@]}" \
    -max_total_time="$SECONDS_TO_RUN" -timeout=10 -rss_limit_mb=2048 -max_len="$MAX_LEN" \
    "${JOBS[@]}" \
    -artifact_prefix="$OUT/artifacts/" -print_final_stats=1 ${FUZZ_ARGS:-} 2>&1 | tee "$OUT/last_run.log" | \
    grep -v -E '^#[0-9]+\s+(NEW|REDUCE|pulse)' | tail -40
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -eq 0 ] && [ "${FUZZ_MERGE:-1}" = 1 ]; then
    "$FUZZER" -merge=1 -timeout=10 -rss_limit_mb=2048 -max_len="$MAX_LEN" \
        "$CORPUS" "$OUT/corpus" >"$OUT/merge.log" 2>&1 || { echo "run_fuzz: merge failed, see $OUT/merge.log" >&2; rc=1; }
fi
n_after=$(find "$CORPUS" -type f | wc -l)
echo "run_fuzz: exit $rc, corpus $n_before -> $n_after inputs, log in $OUT/last_run.log"
if [ "$rc" -ne 0 ]; then
    echo "run_fuzz: FAILED - reproduce with: $FUZZER $OUT/artifacts/<crash-file>" >&2
    ls -1 "$OUT/artifacts/" >&2 || true
fi
exit "$rc"
