#!/usr/bin/env bash
# run_unit.sh BUILD - run every C unit test binary and the fuzz corpus replay;
# fail if any fails. Prints a closing "N passed, N failed" line.
set -u
BUILD=${1:-build}
pass=0; fail=0; failed=()
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    if "$t"; then pass=$((pass+1)); else fail=$((fail+1)); failed+=("$(basename "$t")"); fi
done
if [ -x "$BUILD/tests/fuzz_gguf_replay" ]; then
    # the seed GGUFs are generated (tests/fuzz/make_seeds.py, standard library
    # only); tests/fuzz/corpus holds the inputs libFuzzer found
    SEEDS="$BUILD/fuzz-seeds"
    rm -rf "$SEEDS"
    if python3 tests/fuzz/make_seeds.py --rotor-model "$BUILD/bin/rotor-model" --out "$SEEDS" >/dev/null &&
       "$BUILD/tests/fuzz_gguf_replay" "$SEEDS" tests/fuzz/corpus >/dev/null; then pass=$((pass+1));
    else fail=$((fail+1)); failed+=("fuzz_gguf_replay"); fi
fi
if [ -x "$BUILD/tests/fuzz_openai_replay" ]; then
    # the request-parser fuzzer's seeds (tests/fuzz/make_seeds_openai.py) and
    # the inputs libFuzzer found (tests/fuzz/corpus_openai)
    SEEDS="$BUILD/fuzz-seeds-openai"
    rm -rf "$SEEDS"
    if python3 tests/fuzz/make_seeds_openai.py --out "$SEEDS" >/dev/null &&
       "$BUILD/tests/fuzz_openai_replay" "$SEEDS" tests/fuzz/corpus_openai >/dev/null; then pass=$((pass+1));
    else fail=$((fail+1)); failed+=("fuzz_openai_replay"); fi
fi
echo "unit: $pass passed, $fail failed"
((fail == 0)) || { echo "failed: ${failed[*]}"; exit 1; }
