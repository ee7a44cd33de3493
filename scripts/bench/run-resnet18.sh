#!/usr/bin/env bash
# The ResNet benchmark of issue 19 / docs/performance.md:
#   scripts/bench/run-resnet18.sh [THREADS]     (default 2; PYTHON=path/to/venv/bin/python)
# Writes torchvision's ResNet-18 with seeded random weights and 16 images once (target/bench/),
# then runs `sanity run experiments/bench-resnet18.toml` and scripts/bench/captum_resnet18.py
# on them with the same thread count, one after the other, and prints both times and the ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=${1:-2}
PY=${PYTHON:-python3}
mkdir -p target/bench
cargo build --release --quiet
if [ ! -f target/bench/resnet18.safetensors ]; then
  "$PY" scripts/bench/captum_resnet18.py --make --dir target/bench
fi
B=$PWD/target/bench
DATA="{ source = \"arrays\", images = \"$B/resnet18-images.npy\", labels = \"$B/resnet18-labels.npy\", \
test_images = \"$B/resnet18-images.npy\", test_labels = \"$B/resnet18-labels.npy\", num_classes = 10, scale = \"none\" }"
target/release/sanity run experiments/bench-resnet18.toml --threads "$THREADS" --set "data=$DATA" \
  --set model.weights="$B/resnet18.safetensors" --out target/bench/sanity-resnet18 --force > /dev/null
"$PY" scripts/bench/captum_resnet18.py --dir target/bench --threads "$THREADS" > target/bench/captum-resnet18.json
"$PY" - "$THREADS" <<'PYEOF'
import json, sys
m = json.load(open("target/bench/sanity-resnet18/manifest.json"))
t = dict(m["timings_s"])
c = json.load(open("target/bench/captum-resnet18.json"))
ours = t["stages"] + t["attribution"]
print(f"threads {sys.argv[1]}; peak RSS: sanity {m.get('peak_rss_mib', float('nan')):.0f} MiB, "
      f"python {c['peak_rss_mib']:.0f} MiB")
print(f"python: original maps {c['original_maps_s']:.1f} s, cascade + metrics {c['cascade_s']:.1f} s")
print(f"metrics: sanity {t['scores_within_attribution']:.2f} s (post-processing included), python {c['metrics_s']:.2f} s")
print(f"workload: sanity {ours:.1f} s, python {c['total_s']:.1f} s, ratio {ours / c['total_s']:.3f}")
print(f"whole sanity run (data, model, summary included): {t['total']:.1f} s")
PYEOF
