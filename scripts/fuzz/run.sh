#!/usr/bin/env bash
# Fuzzes the IDX, NPY/NPZ and config parsers (issue 9), the safetensors weights and
# architecture TOML readers and the ONNX importer, each for a fixed budget:
#   scripts/fuzz/run.sh [SECONDS_PER_TARGET]      (default 60)
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Each target starts from
# the seeds in fuzz/corpus/<target>/ (copied, so the committed seeds stay as they are) plus the
# kept crash inputs in fuzz/regressions/<target>/. A crash is copied into fuzz/regressions/<target>/,
# where `cargo test` (crates/sanity-data/tests/fuzz_regressions.rs,
# crates/sanity-experiments/tests/fuzz_regressions.rs and
# crates/sanity-model/tests/fuzz_regressions.rs) replays it from then on.
set -uo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_TARGET=${1:-60}
status=0
for target in idx npy config safetensors architecture onnx; do
  work="fuzz/target/corpus-$target"
  mkdir -p "$work" "fuzz/artifacts/$target" "fuzz/regressions/$target"
  cp fuzz/corpus/"$target"/* "$work"/
  cp fuzz/regressions/"$target"/* "$work"/ 2>/dev/null
  echo "== $target: $SECONDS_PER_TARGET s"
  cargo +nightly fuzz run "$target" "$work" -- -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 \
      -max_len=65536 -print_final_stats=1 > "fuzz/target/$target.log" 2>&1
  rc=$?
  grep -E "^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb|==[0-9]+==|SUMMARY)" "fuzz/target/$target.log"
  if [ "$rc" -ne 0 ]; then
    status=1
    echo "$target: exit code $rc (see fuzz/target/$target.log)"
    for crash in fuzz/artifacts/"$target"/*; do
      [ -f "$crash" ] && cp "$crash" "fuzz/regressions/$target/" && echo "kept $crash in fuzz/regressions/$target/"
    done
  fi
done
exit $status
