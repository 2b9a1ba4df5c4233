#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 60 s each) from its committed seeds
# (fuzz/seeds/TARGET) and prints executions per target. Needs the nightly toolchain and
# cargo-fuzz (installed here if missing). A crash stops the script with libFuzzer's report; the
# input is saved under fuzz/artifacts/TARGET/ — turn it into a regression test, fix, re-run.
#
# With FUZZ_SEED=N the run is reproducible: libFuzzer's random seed is N and the corpus starts
# from the seeds alone (a fresh folder), so the same build explores the same inputs in the same
# order on every machine (a longer run covers a shorter one). CI uses FUZZ_SEED=1.
#
#   scripts/fuzz.sh                 # all targets, 60 s each
#   scripts/fuzz.sh 600 manifest_parse   # one target, 10 minutes
#   FUZZ_SEED=1 scripts/fuzz.sh 120      # what CI runs, four times longer
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(gallery_from_bytes manifest_parse reference_csv image_to_top5 signature_file
        compiled_model)
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# one optimised, sanitised build of all targets (the first build compiles tract: minutes)
cargo +nightly fuzz build -O
SEED_ARGS=()
if [ -n "${FUZZ_SEED:-}" ]; then
    SEED_ARGS=(-seed="$FUZZ_SEED")
fi
for t in "${TARGETS[@]}"; do
    corpus="corpus/$t"
    if [ -n "${FUZZ_SEED:-}" ]; then
        corpus="$(mktemp -d)"
    fi
    mkdir -p "$corpus"
    log="$(mktemp)"
    # -rss_limit_mb bounds memory per input; -timeout flags any input slower than 10 s
    if ! cargo +nightly fuzz run -O "$t" "$corpus" "seeds/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=10 \
        ${SEED_ARGS[@]+"${SEED_ARGS[@]}"} -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz target $t FAILED (input saved under fuzz/artifacts/$t/)" >&2
        exit 1
    fi
    execs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo '?')"
    cov="$(grep -Eo 'cov: [0-9]+' "$log" | tail -n 1 || true)"
    echo "fuzz $t: ${execs} executions in ${SECONDS_PER_TARGET} s, ${cov}, corpus $(ls "$corpus" | wc -l) inputs"
    rm -f "$log"
    if [ -n "${FUZZ_SEED:-}" ]; then
        rm -rf "$corpus"
    fi
done
