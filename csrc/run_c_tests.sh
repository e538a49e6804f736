#!/usr/bin/env bash
# run_c_tests.sh — builds and runs the C core's own tests outside Python:
#   1. engine_core.c and engine_index.c alone with -Wall -Wextra -Werror -O2
#      (the warning gate),
#   2. csrc/tests/test_core.c under AddressSanitizer + UndefinedBehaviorSanitizer,
#   3. csrc/tests/fuzz_core.c (mutation fuzzer) under ASan + UBSan,
#   4. test_core.c again, unsanitized, under valgrind (if valgrind is on PATH).
# Everything is built in a temporary directory, never in the repo. Exits
# non-zero on the first failure.
#
# Environment: CC (default gcc), FUZZ_SEED (default 1), FUZZ_ITERS (default 200000).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cc="${CC:-gcc}"
fuzz_seed="${FUZZ_SEED:-1}"
fuzz_iters="${FUZZ_ITERS:-200000}"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/engine-ctests.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

base_flags=(-std=c11 -Wall -Wextra -Werror -I"$here")
san_flags=(-g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all
           -fno-omit-frame-pointer)
# Any sanitizer report is fatal; leaks count as failures.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

echo "== warning gate: engine_core.c, engine_index.c (-O2 -Werror)"
"$cc" "${base_flags[@]}" -O2 -c "$here/engine_core.c" -o "$tmp/engine_core.o"
"$cc" "${base_flags[@]}" -O2 -c "$here/engine_index.c" -o "$tmp/engine_index.o"

echo "== test_core (ASan+UBSan)"
"$cc" "${base_flags[@]}" "${san_flags[@]}" "$here/tests/test_core.c" \
    "$here/engine_core.c" "$here/engine_index.c" -o "$tmp/test_core_san"
"$tmp/test_core_san"

echo "== fuzz_core (ASan+UBSan), seed $fuzz_seed, $fuzz_iters iterations"
"$cc" "${base_flags[@]}" "${san_flags[@]}" "$here/tests/fuzz_core.c" \
    "$here/engine_core.c" "$here/engine_index.c" -o "$tmp/fuzz_core_san"
"$tmp/fuzz_core_san" "$fuzz_seed" "$fuzz_iters"

if command -v valgrind >/dev/null 2>&1; then
    echo "== test_core (valgrind)"
    "$cc" "${base_flags[@]}" -g -O1 "$here/tests/test_core.c" "$here/engine_core.c" \
        "$here/engine_index.c" -o "$tmp/test_core_vg"
    valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=all \
        "$tmp/test_core_vg"
else
    echo "== valgrind not on PATH: skipping the valgrind run"
fi

echo "== all C tests passed"
