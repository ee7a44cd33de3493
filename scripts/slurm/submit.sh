#!/usr/bin/env bash
# Runs a sanity config (one run or a whole [sweep]) as a Slurm job array of N shards, then
# merges the shards into the files one unsharded run writes:
#
#   scripts/slurm/submit.sh CONFIG OUT N [--wait] [-- extra sanity run flags]
#
# OUT must be on a file system every node sees. Each array task runs
#   sanity run CONFIG --shard K/N --out OUT/shard-K
# and a job that depends on the whole array (afterok) runs
#   sanity merge OUT/shard-* --out OUT/merged
# Environment: SANITY (default: target/release/sanity), THREADS (per task, default 1),
# SBATCH_ARGS (extra sbatch flags for both jobs, e.g. "--partition=cpu --time=02:00:00").
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,12p' "$0" >&2
  exit 2
fi
CONFIG=$(realpath "$1"); OUT=$(realpath -m "$2"); N=$3; shift 3
WAIT=()
if [ "${1:-}" = "--wait" ]; then WAIT=(--wait); shift; fi
if [ "${1:-}" = "--" ]; then shift; fi
SANITY=$(realpath "${SANITY:-target/release/sanity}")
[ -x "$SANITY" ] || { echo "no sanity binary at $SANITY (cargo build --release, or set SANITY)" >&2; exit 2; }
[[ "$N" =~ ^[1-9][0-9]*$ ]] || { echo "N must be a positive number of shards, got '$N'" >&2; exit 2; }
mkdir -p "$OUT"
HERE=$(cd "$(dirname "$0")" && pwd)
export SANITY CONFIG OUT THREADS="${THREADS:-1}" SANITY_ARGS="$*"
# shellcheck disable=SC2086  # SBATCH_ARGS is a list of flags
array=$(sbatch --parsable --array="0-$((N - 1))" --cpus-per-task="${THREADS:-1}" --chdir="$OUT" \
  --export=ALL ${SBATCH_ARGS:-} "$HERE/sweep.sbatch")
array=${array%%;*}
# shellcheck disable=SC2086
merge=$(sbatch --parsable "${WAIT[@]}" --dependency="afterok:$array" --kill-on-invalid-dep=yes \
  --job-name=sanity-merge --chdir="$OUT" \
  --output="sanity-merge-%j.out" ${SBATCH_ARGS:-} \
  --wrap="\"$SANITY\" merge \"$OUT\"/shard-* --out \"$OUT/merged\" --force")
echo "array job $array, merge job ${merge%%;*}: results in $OUT/merged"
