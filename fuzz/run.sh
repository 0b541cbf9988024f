#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a bounded time; exits non-zero if any
# target crashes (a panic, an assertion, a timeout or an out-of-memory), leaving the
# reproducer in fuzz/artifacts/<target>/.
#
#   bash fuzz/run.sh                 # every target, 45 s each
#   bash fuzz/run.sh 60 envelope     # one target, 60 s
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked --version 0.13.2`). The toolchain is
# stable: RUSTC_BOOTSTRAP=1 lets it take cargo-fuzz's nightly-only flags.
# Environment: FUZZ_SECONDS (default 45; the first argument wins), FUZZ_SANITIZER
# (default none: the code under test is safe Rust, and without ASan it runs several
# times faster; set address to check the unsafe code of dependencies too).
#
# libFuzzer adds the inputs it finds to fuzz/work/<target>/ (ignored by git); the
# committed seeds in fuzz/corpus/<target>/ are only read. To reproduce a crash:
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none -a <target> <artifact file>
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${1:-${FUZZ_SECONDS:-45}}
shift $(($# > 0 ? 1 : 0))
sanitizer=${FUZZ_SANITIZER:-none}
export RUSTC_BOOTSTRAP=1

case $secs in '' | *[!0-9]*) echo "fuzz/run.sh: seconds must be a whole number, got '$secs'" >&2; exit 2 ;; esac
command -v cargo-fuzz >/dev/null 2>&1 ||
    { echo "fuzz/run.sh: cargo-fuzz is missing (cargo install cargo-fuzz --locked --version 0.13.2)" >&2; exit 2; }

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

# -a: debug assertions (integer overflow is a crash); one build serves every run below.
flags=(--fuzz-dir fuzz -s "$sanitizer" -a)
mkdir -p fuzz/work
build=()
[ ${#targets[@]} -eq 1 ] && build=("${targets[0]}")
echo "==> cargo fuzz build ${flags[*]} ${build[*]}"
if ! cargo fuzz build "${flags[@]}" "${build[@]}" >fuzz/work/build.log 2>&1; then
    tail -n 40 fuzz/work/build.log >&2
    echo "fuzz/run.sh: build failed (fuzz/work/build.log)" >&2
    exit 1
fi

failed=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t"
    log="fuzz/work/$t.log"
    echo "==> fuzz $t for ${secs}s (seeds: fuzz/corpus/$t, $(find "fuzz/corpus/$t" -type f | wc -l) files)"
    rc=0
    cargo fuzz run "${flags[@]}" "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -dict=fuzz/json.dict \
        -print_final_stats=1 >"$log" 2>&1 || rc=$?
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$log" | tail -n 2 || true
    grep -E 'stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
    if [ "$rc" -ne 0 ]; then
        echo "!! $t crashed (exit $rc); log: $log" >&2
        grep -E -A 30 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -n 60 >&2 || tail -n 40 "$log" >&2
        ls -l "fuzz/artifacts/$t/" >&2
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz/run.sh: crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz/run.sh: ${#targets[@]} target(s), ${secs}s each, no crash"
