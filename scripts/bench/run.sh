#!/usr/bin/env bash
# The side-by-side benchmark of issue 3 / docs/performance.md:
#   scripts/bench/run.sh [THREADS]        (default 2; PYTHON=path/to/venv/bin/python)
# Trains adebayo-cnn on Fashion-MNIST once (target/bench/adebayo-cnn.safetensors), then runs
# `sanity run experiments/bench-cascade.toml` and scripts/bench/captum_cascade.py on the same
# weights, images and thread count, one after the other, and prints both times and the ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=${1:-2}
PY=${PYTHON:-python3}
W=target/bench/adebayo-cnn.safetensors
mkdir -p target/bench
cargo build --release --quiet
if [ ! -f "$W" ]; then
  target/release/sanity train --arch adebayo-cnn --data fashion-mnist --epochs 2 --threads "$THREADS" --out "$W"
fi
target/release/sanity run experiments/bench-cascade.toml --set model.weights="$W" --threads "$THREADS" \
  --out target/bench/sanity-run --force > /dev/null
"$PY" scripts/bench/captum_cascade.py --weights "$W" --threads "$THREADS" > target/bench/captum.json
"$PY" - "$THREADS" <<'PYEOF'
import json, sys
m = json.load(open("target/bench/sanity-run/manifest.json"))
t = dict(m["timings_s"])
c = json.load(open("target/bench/captum.json"))
ours = t["stages"] + t["attribution"]
print(f"threads {sys.argv[1]}; peak RSS of sanity: {m.get('peak_rss_mib', float('nan')):.0f} MiB")
print(f"python: original maps {c['original_maps_s']:.1f} s, cascade + metrics {c['cascade_s']:.1f} s")
print("sanity evaluates every stage of a batch together (shared layers once): one phase")
print(f"metrics (spearman + ssim over all pairs): sanity {t['scores_within_attribution']:.2f} s "
      f"(post-processing included), python {c['metrics_s']:.2f} s, ratio {t['scores_within_attribution'] / c['metrics_s']:.3f}")
print(f"workload: sanity {ours:.1f} s, python {c['total_s']:.1f} s, ratio {ours / c['total_s']:.3f}")
print(f"whole sanity run (data, model, summary included): {t['total']:.1f} s")
PYEOF
