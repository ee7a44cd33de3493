#!/usr/bin/env bash
# The training benchmark of issue 20 / docs/performance.md ("Training"):
#   scripts/bench/train.sh [ARCH] [THREADS] [N_TRAIN] [EPOCHS]
#   (defaults: adebayo-cnn 2 20000 1; PYTHON=path/to/venv/bin/python)
# Trains ARCH on the first N_TRAIN Fashion-MNIST training images with PyTorch
# (scripts/bench/train_pytorch.py) and with `sanity train`, one after the other, with the same
# batch size (64), optimiser (AdamW, lr 1e-3, weight decay 1e-4), initialisation and thread
# count; prints each side's epoch times (the minibatches alone), peak RSS, test accuracy and
# the ratio of the mean epoch times.
set -euo pipefail
cd "$(dirname "$0")/../.."
ARCH=${1:-adebayo-cnn}
THREADS=${2:-2}
N=${3:-20000}
EPOCHS=${4:-1}
PY=${PYTHON:-python3}
DATA=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
OUT=target/bench/train
mkdir -p "$OUT"
cargo build --release --quiet
/usr/bin/time -f "%M" -o "$OUT/python.rss" "$PY" scripts/bench/train_pytorch.py --arch "$ARCH" --data "$DATA" \
  --n-train "$N" --epochs "$EPOCHS" --threads "$THREADS" > "$OUT/python.json"
/usr/bin/time -f "%M" -o "$OUT/sanity.rss" target/release/sanity train --arch "$ARCH" --data "fashion-mnist:$DATA" \
  --n-train "$N" --epochs "$EPOCHS" --threads "$THREADS" --out "$OUT/$ARCH.safetensors" > "$OUT/sanity.out" 2> "$OUT/sanity.err"
"$PY" - "$ARCH" "$THREADS" "$N" "$OUT" <<'PYEOF'
import json, re, sys
arch, threads, n, out = sys.argv[1:]
py = json.load(open(f"{out}/python.json"))
err = open(f"{out}/sanity.err").read()
ours = [float(s) for s in re.findall(r"epoch \d+: loss [0-9.]+, running accuracy [0-9.]+ \(([0-9.]+) s\)", err)]
acc = re.search(r"test accuracy ([0-9.]+)", open(f"{out}/sanity.out").read() + err)
rss = {k: int(open(f"{out}/{k}.rss").read().split()[-1]) / 1024 for k in ("python", "sanity")}
mean = lambda v: sum(v) / len(v)
print(f"{arch}, {n} images, batch 64, AdamW, {threads} threads")
print(f"pytorch: epochs {', '.join(f'{t:.2f}' for t in py['epoch_s'])} s; test accuracy {py['test_accuracy']:.4f}; peak RSS {rss['python']:.0f} MiB")
print(f"sanity:  epochs {', '.join(f'{t:.2f}' for t in ours)} s; test accuracy {acc.group(1) if acc else '?'}; peak RSS {rss['sanity']:.0f} MiB")
print(f"ratio (sanity / pytorch, mean epoch): {mean(ours) / mean(py['epoch_s']):.3f}")
PYEOF
