#!/usr/bin/env bash
# Reproduce docs/results/: every benchmark sweep in configs/experiment/, then aetl report.
#   bash scripts/benchmark.sh [OUT_DIR]        (about 40 minutes on a 2-core CPU)
# Two jobs run at a time (joblib launcher, one thread each); the source-model cache
# means each (pair, seed, pretraining objective) is pretrained once.
set -euo pipefail
out=${1:-multirun/benchmark}
export AETL_CACHE_DIR=${AETL_CACHE_DIR:-$out/cache}
common=(trainer.progress=false trainer.threads=1 hydra/launcher=joblib hydra.launcher.n_jobs=2)

for exp in mnist_digits mnist_mnist_m fashion_mnist; do
  aetl train -m experiment=$exp "${common[@]}" hydra.sweep.dir="$out/$exp"
done
# The moderate budget: 500 target images, 50 labels per class.
aetl train -m experiment=mnist_digits "${common[@]}" data.target.n_train=500 \
  data.target.labels_per_class=50 hydra.sweep.dir="$out/mnist_digits_moderate"
# Without source labels: Mf pretrained on reconstruction alone (kept apart in the table).
aetl train -m experiment=mnist_digits "${common[@]}" trainer.pretrain.cls_weight=0 \
  data.target.labels_per_class=1,10 hydra.sweep.dir="$out/mnist_digits_no_source_labels"

# Scratch given ten times the target steps: how long it takes to catch up.
aetl train -m experiment=mnist_digits "${common[@]}" strategy=scratch data.target.labels_per_class=10 \
  trainer.transfer.steps=3000 hydra.sweep.dir="$out/mnist_digits_long_scratch"

aetl report "$out"/mnist_* "$out"/fashion_mnist --out docs/results
