#!/usr/bin/env bash
# Reproduce the augmentation table of docs/results.md: finetune on MNIST -> digits and
# MNIST -> MNIST-M at 0, 1 and 10 labels per class (3 seeds), then every augment mode on
# each run (source only at 0 labels: the others move labelled target images).
#   bash scripts/augment_benchmark.sh [OUT_DIR]        (about an hour on a shared 2-core CPU)
set -euo pipefail
out=${1:-multirun/augment}
export AETL_CACHE_DIR=${AETL_CACHE_DIR:-$out/cache}

runs_with() {  # the finished runs of a sweep dir whose labels_per_class matches $2 (a regex), comma-separated
  grep -lE "\"labels_per_class\": ($2)," "$1"/*/summary.json | xargs -n1 dirname | paste -sd, -
}

for pair in mnist_digits mnist_mnist_m; do
  aetl train -m data=$pair strategy=finetune seed=0,1,2 data.target.labels_per_class=0,1,10 \
    trainer.progress=false hydra.sweep.dir="$out/$pair"
  aetl augment -m run="$(runs_with "$out/$pair" '1|10')" app.mode=noise,interpolate,extrapolate,image \
    hydra.sweep.dir="$out/augment_$pair"
  # source: every labelled source image once, shifted, no pixel noise (chosen on MNIST -> digits' validation split)
  aetl augment -m run="$(runs_with "$out/$pair" '0|1|10')" app.mode=source app.amount=1 app.strength=0 \
    hydra.sweep.dir="$out/augment_source_$pair"
done
aetl report "$out"/augment_* --out docs/results/augment
python scripts/augment_table.py "$out"
