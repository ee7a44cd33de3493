#!/usr/bin/env bash
# Fuzzes the IDX, NPY/NPZ and config parsers (issue 9), each for a fixed budget:
#   scripts/fuzz/run.sh [SECONDS_PER_TARGET]      (default 60)
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Each target starts from
# the seeds in fuzz/corpus/<target>/ (copied, so the committed seeds stay as they are) plus the
# kept crash inputs in fuzz/regressions/<target>/. A crash is copied into fuzz/regressions/<target>/,
# where `cargo test` (crates/sanity-data/tests/fuzz_regressions.rs and
# crates/sanity-experiments/tests/fuzz_regressions.rs) replays it from then on.
set -uo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_TARGET=${1:-60}
status=0
for target in idx npy config; do
  work="fuzz/target/corpus-$target"
  mkdir -p "$work" "fuzz/artifacts/$target"
  cp fuzz/corpus/"$target"/* fuzz/regressions/"$target"/* "$work"/ 2>/dev/null
  echo "== $target: $SECONDS_PER_TARGET s"
  if cargo +nightly fuzz run "$target" "$work" -- -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 \
      -max_len=65536 -print_final_stats=1 2>&1 | tee "fuzz/target/$target.log" | grep -E "^(#[0-9]+ +DONE|stat::|==[0-9]+==|SUMMARY)"; then :; fi
  if [ "${PIPESTATUS[0]}" -ne 0 ]; then
    status=1
    for crash in fuzz/artifacts/"$target"/*; do
      [ -f "$crash" ] && cp "$crash" "fuzz/regressions/$target/" && echo "kept $crash in fuzz/regressions/$target/"
    done
  fi
done
exit $status
